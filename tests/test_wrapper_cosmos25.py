"""wrappers.cosmos25 on a real tiny checkpoint (no mocks): Cosmos-Predict2.5, built once per module."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint, registry  # noqa: E402
from pytest_wiw.fingerprint import compare, file_fingerprints  # noqa: E402
from pytest_wiw.request import GenerationRequest  # noqa: E402
from wrappers.cosmos import NoOpSafetyChecker  # noqa: E402
from wrappers.cosmos25 import TINY_GENERATION, Cosmos25Predict  # noqa: E402

WM = "cosmos25"


def _load(path):
    """Build the wrapper the way the worker does: card overrides applied to the spec's defaults."""
    spec = registry.get_spec(WM)
    ckpt = checkpoint.open_checkpoint(path)
    spec = dataclasses.replace(spec, defaults=spec.defaults.updated(checkpoint.card_generation(ckpt.card)))
    return Cosmos25Predict(spec, ckpt, base_ckpt=None, device="cpu", dtype=torch.float32, options={})


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
    path = Cosmos25Predict.make_tiny(WM, tmp_path_factory.mktemp("cosmos25") / "cosmos25", seed=0)
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


def test_loads_with_the_noop_safety_checker_and_a_chat_template(model):
    assert isinstance(model.pipe.safety_checker, NoOpSafetyChecker)
    assert model.pipe.tokenizer.chat_template


def test_output_dtype_and_shape(model, out):
    g = model.generation
    assert out.dtype == np.uint8
    assert out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width) == (2, 4, 3, 32, 32)
    assert out.std() > 0 and all(out[i].std() > 0 for i in range(2))  # not a constant video
    assert not model.nonfinite_seen


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
    assert {"transformer", "vae", "text_encoder"} <= components


def test_fingerprints_follow_the_running_qwen_weights(tiny):
    # Qwen2.5-VL is saved under transformers' legacy names; the lookup must still reach the running tensors.
    model = _load(tiny)
    key = next(k for k in model.ckpt.fingerprint_keys()
               if k.startswith("text_encoder/model.layers.") and model.running_tensor(k) is not None)
    with torch.no_grad():
        model.running_tensor(key).add_(1.0)
    _, problems = _fingerprint_problems(model)
    assert any(p.startswith(key + ":") for p in problems), problems


def test_image_input_matches_the_pipelines_image_path(model, monkeypatch):
    """The torchvision-free clip path gives the frames the pipeline's own image= path gives.

    The image path needs torchvision.transforms.functional.to_tensor; a stand-in computing the same
    (uint8 / 255, CHW) runs it here.
    """
    import diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict as cosmos25_module

    def to_tensor(pic):
        return torch.from_numpy(np.array(pic, dtype=np.uint8)).permute(2, 0, 1).float().div(255)

    stand_in = types.SimpleNamespace(transforms=types.SimpleNamespace(
        functional=types.SimpleNamespace(to_tensor=to_tensor)))
    monkeypatch.setattr(cosmos25_module, "torchvision", stand_in, raising=False)
    g = model.generation
    request = _request(batch=1)
    image = model.images_as_pil(request, g.height, g.width)[0]
    common = dict(prompt=request.prompts()[0], height=g.height, width=g.width, num_frames=g.num_frames,
                  num_inference_steps=g.steps, guidance_scale=g.guidance_scale, output_type="np")
    with torch.inference_mode():
        via_image = model.pipe(image=image, generator=torch.Generator().manual_seed(5), **common).frames
        via_clip = model.pipe(video=model._conditioning_clip(image), num_latent_conditional_frames=1,
                              generator=torch.Generator().manual_seed(5), **common).frames
    assert np.array_equal(np.asarray(via_image), np.asarray(via_clip))
