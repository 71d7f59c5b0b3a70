"""wrappers.cosmos on real tiny checkpoints (no mocks): cosmos20 and FTcosmos, built once per module."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint, registry  # noqa: E402
from pytest_wiw.errors import CheckpointError  # noqa: E402
from pytest_wiw.fingerprint import compare, file_fingerprints  # noqa: E402
from pytest_wiw.request import GenerationRequest  # noqa: E402
from wrappers.cosmos import TINY_GENERATION, Cosmos2VideoToWorld  # noqa: E402


def _load(wm_type, path, base=None):
    """Build the wrapper the way the worker does: card overrides applied to the spec's defaults."""
    spec = registry.get_spec(wm_type)
    ckpt = checkpoint.open_checkpoint(path)
    spec = dataclasses.replace(spec, defaults=spec.defaults.updated(checkpoint.card_generation(ckpt.card)))
    base_ckpt = checkpoint.open_checkpoint(base) if base is not None else None
    return Cosmos2VideoToWorld(spec, ckpt, base_ckpt=base_ckpt, device="cpu", dtype=torch.float32, options={})


def _request(wm_type, seed=(11, 12), batch=2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 3, 40, 48), dtype=np.uint8)
    actions = [[4, 1, 2, 1], [4, 3, 3, 1]][:batch]
    seed = list(seed[:batch]) if isinstance(seed, (tuple, list)) else seed
    return GenerationRequest(images=images, actions=actions, task_type="navigation", seed=seed,
                             request_model_name=wm_type)


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
    # The worker pins its thread count; here one thread keeps the timing steady on a shared 2-core box
    # (two OpenMP threads fighting another process made a 0.1 s call take seconds).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosmos")
    base = Cosmos2VideoToWorld.make_tiny("cosmos20", root / "cosmos20", seed=0)
    ft = Cosmos2VideoToWorld.make_tiny("FTcosmos", root / "FTcosmos", base=base, seed=0)
    # An FT transformer identical to the base, in the flat "component" layout (config.json at the root).
    same = root / "FTsame"
    shutil.copytree(base / "transformer", same)
    shutil.copy(ft / "README.md", same / "README.md")  # its card: tiny generation sizes, base_model
    return {"base": base, "ft": ft, "same": same}


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("cosmos20", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("FTcosmos", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def base_out(base_model):
    return base_model.generate(_request("cosmos20"))


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


def test_output_dtype_and_shape(base_model, base_out):
    g = base_model.generation
    assert base_out.dtype == np.uint8
    assert base_out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width) == (2, 4, 3, 32, 32)
    assert base_out.std() > 0  # not a constant image
    assert not base_model.nonfinite_seen


def test_same_seed_is_bitwise_equal(base_model, base_out):
    assert np.array_equal(base_model.generate(_request("cosmos20")), base_out)
    with base_model.zero_shot():  # a zero-shot type runs its base weights anyway
        assert np.array_equal(base_model.generate(_request("cosmos20")), base_out)


def test_different_seed_differs(base_model, base_out):
    other = base_model.generate(_request("cosmos20", seed=(21, 22)))
    assert np.abs(other.astype(int) - base_out.astype(int)).mean() > 0.5


def test_batch_item_equals_item_alone(base_model, base_out):
    tol = base_model.spec.tolerances
    request = _request("cosmos20")
    for i in range(request.batch_size):
        alone = base_model.generate(request.item(i))[0]
        diff = np.abs(base_out[i].astype(int) - alone.astype(int))
        assert diff.max() <= tol.batch_max_abs and diff.mean() <= tol.batch_mean_abs, (i, diff.max(), diff.mean())
        assert np.array_equal(base_out[i], alone)  # the wrapper runs items one by one: bitwise


def test_ft_differs_from_zero_shot(ft_model):
    request = _request("FTcosmos")
    ft_out = ft_model.generate(request)
    with ft_model.zero_shot():
        zs_out = ft_model.generate(request)
    assert np.abs(ft_out.astype(int) - zs_out.astype(int)).mean() > 0.2
    # Leaving zero_shot() restores the fine-tuned transformer.
    assert np.array_equal(ft_model.generate(request), ft_out)


def test_zero_shot_equals_base_wrapper(ft_model, base_out):
    with ft_model.zero_shot():
        zs_out = ft_model.generate(_request("FTcosmos"))
    assert np.array_equal(zs_out, base_out)


def test_zero_shot_restores_ft_on_error(ft_model):
    running = ft_model.components()["transformer"]
    with pytest.raises(RuntimeError):
        with ft_model.zero_shot():
            assert ft_model.components()["transformer"] is not running
            raise RuntimeError("boom")
    assert ft_model.components()["transformer"] is running


def test_ft_shares_modules_with_base(ft_model):
    ft, base = ft_model.components(), None
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
    model = _load("FTcosmos", tiny["ft"], base=tiny["base"])
    model.ckpt = checkpoint.open_checkpoint(tiny["base"])
    running = model.weight_fingerprints()
    assert running and all(k.startswith("transformer/") for k in running)
    expected = file_fingerprints(model.ckpt, list(running), {k: fp.dtype for k, fp in running.items()})
    assert all(compare(k, running[k], expected[k]) for k in running)


def test_identical_ft_equals_zero_shot(tiny, base_out):
    model = _load("FTcosmos", tiny["same"], base=tiny["base"])
    assert model.ckpt.format == "component"
    missing, problems = _mismatches(model)
    assert not missing and not problems
    assert not any("/" in k for k in model.weight_fingerprints())  # bare tensor names
    request = _request("FTcosmos")
    out = model.generate(request)
    with model.zero_shot():
        zs = model.generate(request)
    assert np.array_equal(out, zs)
    assert np.array_equal(out, base_out)


def test_ft_without_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("FTcosmos", tiny["ft"])


def test_ft_transformer_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    from diffusers import CosmosTransformer3DModel

    config = dict(CosmosTransformer3DModel.load_config(str(tiny["base"] / "transformer")))
    config["num_layers"] = 2
    bad = tmp_path / "FTbad"
    CosmosTransformer3DModel.from_config(config).save_pretrained(str(bad), safe_serialization=True)
    shutil.copy(tiny["ft"] / "README.md", bad / "README.md")
    with pytest.raises(CheckpointError, match="num_layers 2"):
        _load("FTcosmos", bad, base=tiny["base"])


def test_ft_rejects_a_pipeline_folder_as_transformer(tiny):
    with pytest.raises(CheckpointError, match="fine-tuned transformer"):
        _load("FTcosmos", tiny["base"], base=tiny["base"])
