"""wrappers.hunyuan on a real tiny checkpoint (no mocks): HunyuanVideo-I2V, built once per module."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint, registry  # noqa: E402
from pytest_wiw.errors import SpecError  # noqa: E402
from pytest_wiw.fingerprint import compare, file_fingerprints  # noqa: E402
from pytest_wiw.request import GenerationRequest  # noqa: E402
from wrappers.hunyuan import (  # noqa: E402
    TINY_GENERATION,
    HunyuanImageToVideo,
    min_num_frames,
    returned_frames,
)

WM = "hunyuan"


def _load(path, **generation):
    """Build the wrapper the way the worker does: card overrides (then ``generation``) on the spec's defaults."""
    spec = registry.get_spec(WM)
    ckpt = checkpoint.open_checkpoint(path)
    defaults = spec.defaults.updated(checkpoint.card_generation(ckpt.card)).updated(generation)
    spec = dataclasses.replace(spec, defaults=defaults)
    return HunyuanImageToVideo(spec, ckpt, base_ckpt=None, device="cpu", dtype=torch.float32, options={})


def _request(seed=(11, 12), batch=2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 3, 40, 48), dtype=np.uint8)
    actions = [[4, 1, 2, 1], [4, 3, 3, 1]][:batch]
    seed = list(seed[:batch]) if isinstance(seed, (tuple, list)) else seed
    return GenerationRequest(images=images, actions=actions, task_type="navigation", seed=seed,
                             request_model_name=WM)


def _fingerprint_problems(model):
    running = model.weight_fingerprints()
    keys = model.ckpt.fingerprint_keys()
    assert keys, "the checkpoint has no float tensors to fingerprint"
    missing = sorted(set(keys) - set(running))
    expected = file_fingerprints(model.ckpt, keys, {k: fp.dtype for k, fp in running.items()})
    problems = [compare(k, running[k], expected[k]) for k in running]
    return missing, [p for p in problems if p]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # One thread: steady timing on a shared 2-core box, and the thread count the worker pins.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng_before = torch.random.get_rng_state()
    path = HunyuanImageToVideo.make_tiny(WM, tmp_path_factory.mktemp("hunyuan") / "hunyuan", seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before), "make_tiny moved the global RNG"
    return path


@pytest.fixture(scope="module")
def model(tiny):
    return _load(tiny)


@pytest.fixture(scope="module")
def out(model):
    return model.generate(_request())


def test_tiny_checkpoint_layout(tiny):
    ckpt = checkpoint.open_checkpoint(tiny)
    assert ckpt.format == "diffusers"
    assert checkpoint.card_generation(ckpt.card) == TINY_GENERATION
    assert all(f.suffix == ".safetensors" for f in ckpt.files)


def test_prompt_template_fits_the_tiny_tokenizer(model):
    t = model.prompt_template
    # 49 CLIP-224/32 features in place of the image token; the user turn starts after the 2nd header.
    assert (t["image_emb_start"], t["image_emb_len"], t["image_emb_end"]) == (3, 49, 52)
    ids = model.pipe.tokenizer(t["template"].format("stop"))["input_ids"]
    assert model.pipe.tokenizer.convert_ids_to_tokens(ids[t["crop_start"]]) == "stop"


def test_output_dtype_and_shape(model, out):
    g = model.generation
    assert out.dtype == np.uint8
    assert out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width) == (2, 4, 3, 32, 32)
    assert out.std() > 0 and all(out[i].std() > 0 for i in range(2))  # not a constant video
    assert not model.nonfinite_seen
    assert any("drops the first 4" in n for n in model.notes)


def test_same_seed_is_bitwise_equal(model, out):
    assert np.array_equal(model.generate(_request()), out)


def test_different_seed_differs(model, out):
    other = model.generate(_request(seed=(21, 22)))
    assert np.abs(other.astype(int) - out.astype(int)).mean() >= 2.0


def test_batch_item_equals_item_alone(model, out):
    request = _request()
    for i in range(request.batch_size):
        assert np.array_equal(model.generate(request.item(i))[0], out[i]), i  # items run one by one: bitwise


def test_fingerprints_agree_with_files(model):
    missing, problems = _fingerprint_problems(model)
    assert not missing and not problems, (missing, problems[:3])
    components = {k.split("/", 1)[0] for k in model.weight_fingerprints()}
    assert {"transformer", "vae", "text_encoder", "text_encoder_2"} <= components


def test_fingerprints_follow_the_running_llava_weights(tiny):
    # Llava is saved under transformers' legacy names; the lookup must still reach the running tensors.
    model = _load(tiny)
    key = next(k for k in model.ckpt.fingerprint_keys()
               if k.startswith("text_encoder/") and model.running_tensor(k) is not None
               and model.running_tensor(k).numel() > 1 and "language_model" in k)
    with torch.no_grad():
        model.running_tensor(key).add_(1.0)
    _, problems = _fingerprint_problems(model)
    assert any(p.startswith(key + ":") for p in problems), problems


def test_frame_accounting():
    assert [returned_frames(n) for n in (1, 4, 5, 8, 9, 33)] == [0, 0, 1, 1, 5, 29]
    assert (min_num_frames(1), min_num_frames(4), min_num_frames(14)) == (5, 9, 21)


@pytest.mark.parametrize("num_frames, minimum", [(4, 9), (8, 9)])
def test_too_few_frames_is_a_clear_error(tiny, num_frames, minimum):
    with pytest.raises(SpecError, match=rf"num_frames={num_frames} is too few.*minimum is num_frames={minimum}"):
        _load(tiny, num_frames=num_frames)


def test_a_single_output_frame_needs_five(tiny):
    with pytest.raises(SpecError, match=r"returning 0 \(an empty video\).*minimum is num_frames=5"):
        _load(tiny, num_frames=4, num_output_frames=1)
