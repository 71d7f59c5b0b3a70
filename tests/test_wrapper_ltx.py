"""wrappers.ltx on real tiny checkpoints (no mocks): ltx and FTltx, built once per module."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint, registry  # noqa: E402
from pytest_wiw.errors import CheckpointError  # noqa: E402
from pytest_wiw.fingerprint import compare, file_fingerprints  # noqa: E402
from pytest_wiw.request import GenerationRequest  # noqa: E402
from wrappers.ltx import TINY_GENERATION, LTXImageToVideo  # noqa: E402


def _load(wm_type, path, base=None, **generation):
    """Build the wrapper the way the worker does: card overrides applied to the spec's defaults."""
    spec = registry.get_spec(wm_type)
    ckpt = checkpoint.open_checkpoint(path)
    defaults = spec.defaults.updated(checkpoint.card_generation(ckpt.card)).updated(generation)
    spec = dataclasses.replace(spec, defaults=defaults)
    base_ckpt = checkpoint.open_checkpoint(base) if base is not None else None
    return LTXImageToVideo(spec, ckpt, base_ckpt=base_ckpt, device="cpu", dtype=torch.float32, options={})


def _request(wm_type, seed=(11, 12), batch=2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 3, 40, 48), dtype=np.uint8)
    actions = [[4, 1, 2, 1], [4, 3, 3, 1]][:batch]
    seed = list(seed[:batch]) if isinstance(seed, (tuple, list)) else seed
    return GenerationRequest(images=images, actions=actions, task_type="navigation", seed=seed,
                             request_model_name=wm_type)


def _mean_diff(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


def _mismatches(model):
    """Fingerprint disagreements between the running tensors and the checkpoint files."""
    running = model.weight_fingerprints()
    keys = model.ckpt.fingerprint_keys()
    assert keys, "the checkpoint has no float tensors to fingerprint"
    missing = sorted(set(keys) - set(running))
    expected = file_fingerprints(model.ckpt, keys, {k: fp.dtype for k, fp in running.items()})
    problems = [compare(k, running[k], expected[k]) for k in running]
    return missing, [p for p in problems if p]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The worker pins its thread count; here one thread keeps the timing steady on a shared 2-core box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx")
    base = LTXImageToVideo.make_tiny("ltx", root / "ltx", seed=0)
    ft = LTXImageToVideo.make_tiny("FTltx", root / "FTltx", base=base, seed=0)
    # An FT transformer identical to the base, in the flat "component" layout (config.json at the root).
    same = root / "FTsame"
    shutil.copytree(base / "transformer", same)
    shutil.copy(ft / "README.md", same / "README.md")  # its card: tiny generation sizes, base_model
    return {"base": base, "ft": ft, "same": same}


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("ltx", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("FTltx", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def base_out(base_model):
    return base_model.generate(_request("ltx"))


def test_tiny_checkpoints_have_the_expected_layout(tiny):
    base = checkpoint.open_checkpoint(tiny["base"])
    assert base.format == "diffusers"
    assert checkpoint.card_generation(base.card) == TINY_GENERATION
    ft = checkpoint.open_checkpoint(tiny["ft"])
    assert ft.format == "component-folder"
    assert [ft.rel(f) for f in ft.files] == ["transformer/diffusion_pytorch_model.safetensors"]
    assert ft.card["base_model"] == str(tiny["base"])
    assert checkpoint.card_generation(ft.card) == TINY_GENERATION
    assert checkpoint.open_checkpoint(tiny["same"]).format == "component"


def test_make_tiny_is_seeded_and_leaves_the_global_rng_alone(tiny, tmp_path):
    state = torch.random.get_rng_state()
    again = LTXImageToVideo.make_tiny("ltx", tmp_path / "ltx", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    a, b = checkpoint.open_checkpoint(tiny["base"]), checkpoint.open_checkpoint(again)
    assert a.sha256() == b.sha256()


def test_output_dtype_and_shape(base_model, base_out):
    g = base_model.generation
    assert base_out.dtype == np.uint8
    assert base_out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width) == (2, 4, 3, 32, 32)
    assert base_out.std() > 0  # not a constant image
    assert not base_model.nonfinite_seen
    assert "pipeline returned 9 frames, mapped to 4 (uniform subsample)" in base_model.notes


def test_same_seed_is_bitwise_equal(base_model, base_out):
    assert np.array_equal(base_model.generate(_request("ltx")), base_out)
    with base_model.zero_shot():  # a zero-shot type runs its base weights anyway
        assert np.array_equal(base_model.generate(_request("ltx")), base_out)


def test_different_seed_differs(base_model, base_out):
    other = base_model.generate(_request("ltx", seed=(21, 22)))
    assert _mean_diff(other, base_out) >= 1.0


def test_batch_item_equals_item_alone(base_model, base_out):
    tol = base_model.spec.tolerances
    request = _request("ltx")
    for i in range(request.batch_size):
        alone = base_model.generate(request.item(i))[0]
        diff = np.abs(base_out[i].astype(int) - alone.astype(int))
        assert diff.max() <= tol.batch_max_abs and diff.mean() <= tol.batch_mean_abs, (i, diff.max(), diff.mean())
        assert np.array_equal(base_out[i], alone)  # the wrapper runs items one by one: bitwise


def test_sizes_are_rounded_and_noted(tiny):
    # 12 frames -> 9 (8k+1, rounding down as the pipeline does); 40x48 -> 32x32 (multiples of 32).
    model = _load("ltx", tiny["base"], num_frames=12, height=40, width=48)
    out = model.generate(_request("ltx", batch=1))
    assert out.shape == (1, 4, 3, 32, 32)
    assert "num_frames 12 rounded down to 9 (LTX generates 8k+1 frames)" in model.notes
    assert any(n.startswith("generation size 40x48 rounded down to 32x32") for n in model.notes)


def test_ft_differs_from_zero_shot(ft_model):
    request = _request("FTltx")
    ft_out = ft_model.generate(request)
    with ft_model.zero_shot():
        zs_out = ft_model.generate(request)
    assert _mean_diff(ft_out, zs_out) >= 1.0
    # Leaving zero_shot() restores the fine-tuned transformer.
    assert np.array_equal(ft_model.generate(request), ft_out)


def test_zero_shot_equals_base_wrapper(ft_model, base_out):
    with ft_model.zero_shot():
        zs_out = ft_model.generate(_request("FTltx"))
    assert np.array_equal(zs_out, base_out)


def test_zero_shot_restores_ft_on_error(ft_model):
    running = ft_model.components()["transformer"]
    with pytest.raises(RuntimeError):
        with ft_model.zero_shot():
            assert ft_model.components()["transformer"] is not running
            raise RuntimeError("boom")
    assert ft_model.components()["transformer"] is running


def test_ft_shares_modules_with_base(ft_model):
    ft = ft_model.components()
    with ft_model.zero_shot():
        base = ft_model.components()
    assert ft["vae"] is base["vae"] and ft["text_encoder"] is base["text_encoder"]
    assert ft["transformer"] is not base["transformer"]


def test_fingerprints_agree_with_files(base_model, ft_model):
    for model in (base_model, ft_model):
        missing, problems = _mismatches(model)
        assert not missing and not problems, (model.spec.name, missing, problems[:3])
    assert all(k.startswith("transformer/") for k in ft_model.weight_fingerprints())


def test_fingerprints_catch_base_weights(tiny):
    # The fine-tuned transformer's running tensors, held against the base pipeline's transformer files
    # (same keys, transformer/<name>), must disagree: the check has teeth.
    model = _load("FTltx", tiny["ft"], base=tiny["base"])
    model.ckpt = checkpoint.open_checkpoint(tiny["base"])
    running = model.weight_fingerprints()
    assert running and all(k.startswith("transformer/") for k in running)
    expected = file_fingerprints(model.ckpt, list(running), {k: fp.dtype for k, fp in running.items()})
    assert all(compare(k, running[k], expected[k]) for k in running)


def test_identical_ft_equals_zero_shot(tiny, base_out):
    model = _load("FTltx", tiny["same"], base=tiny["base"])
    assert model.ckpt.format == "component"
    missing, problems = _mismatches(model)
    assert not missing and not problems
    assert not any("/" in k for k in model.weight_fingerprints())  # bare tensor names
    request = _request("FTltx")
    out = model.generate(request)
    with model.zero_shot():
        zs = model.generate(request)
    assert np.array_equal(out, zs)
    assert np.array_equal(out, base_out)


def test_ft_without_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("FTltx", tiny["ft"])


def test_ft_transformer_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    from diffusers import LTXVideoTransformer3DModel

    config = dict(LTXVideoTransformer3DModel.load_config(str(tiny["base"] / "transformer")))
    config["num_layers"] = 2
    bad = tmp_path / "FTbad"
    LTXVideoTransformer3DModel.from_config(config).save_pretrained(str(bad), safe_serialization=True)
    shutil.copy(tiny["ft"] / "README.md", bad / "README.md")
    with pytest.raises(CheckpointError, match=f"{bad}.*num_layers 2"):
        _load("FTltx", bad, base=tiny["base"])


def test_ft_folder_of_another_component_is_a_checkpoint_error(tiny, tmp_path):
    vae = tmp_path / "FTvae"
    shutil.copytree(tiny["base"] / "vae", vae)
    shutil.copy(tiny["ft"] / "README.md", vae / "README.md")
    with pytest.raises(CheckpointError, match="AutoencoderKLLTXVideo"):
        _load("FTltx", vae, base=tiny["base"])
    assert json.loads((vae / "config.json").read_text())["_class_name"] == "AutoencoderKLLTXVideo"


def test_ft_rejects_a_pipeline_folder_as_transformer(tiny):
    with pytest.raises(CheckpointError, match="fine-tuned transformer"):
        _load("FTltx", tiny["base"], base=tiny["base"])
