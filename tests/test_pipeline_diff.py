"""pytest_wiw.checkpoints.pipeline_diff on a real tiny LTX pipeline folder and altered copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file, save_file  # noqa: E402

from pytest_wiw.api import registry  # noqa: E402
from pytest_wiw.checkpoints.files import open_checkpoint  # noqa: E402
from pytest_wiw.checkpoints.pipeline_diff import differing_components, identical_weight_files  # noqa: E402
from pytest_wiw.runtime.tiny import ensure_tiny  # noqa: E402

VAE_FILE = "vae/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def base(tiny_cache) -> Path:
    import wrappers.catalog  # noqa: F401  (registers the roster)

    path, _ = ensure_tiny(registry.get_spec("ltx"), None, tiny_cache)
    return path


def _copy(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    return dst


def _rewrite(file: Path, change) -> None:
    """Rewrite a safetensors file with ``change(name, tensor)`` applied to each tensor."""
    tensors = load_file(str(file))
    save_file({k: change(k, v).contiguous() for k, v in tensors.items()}, str(file), metadata={"format": "pt"})


def _differences(ft: Path, base: Path, **kwargs) -> dict[str, str]:
    return {d.name: d.describe() for d in differing_components(open_checkpoint(ft), open_checkpoint(base), **kwargs)}


def test_identical_copy_differs_nowhere(base, tmp_path):
    assert _differences(_copy(base, tmp_path / "copy"), base) == {}


def test_changed_vae_values_are_named_with_the_file(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    _rewrite(ft / VAE_FILE, lambda k, v: v + 0.01 if k == "encoder.conv_in.conv.weight" else v)
    found = _differences(ft, base)
    assert list(found) == ["vae"]
    assert found["vae"].startswith("vae/: 1 of ") and found["vae"].endswith(
        " tensors of diffusion_pytorch_model.safetensors hold other values than the base's "
        "(encoder.conv_in.conv.weight)"), found
    assert _differences(ft, base, skip=("vae",)) == {}


def test_reshaped_and_missing_tensors_are_named(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    tensors = load_file(str(ft / VAE_FILE))
    tensors.pop("decoder.conv_out.conv.bias")
    tensors["encoder.conv_in.conv.weight"] = torch.zeros(1, 2, 3)
    save_file(tensors, str(ft / VAE_FILE))
    found = _differences(ft, base)["vae"]
    assert "1 tensor(s) of the base missing (decoder.conv_out.conv.bias)" in found
    assert "1 tensor(s) of another shape (encoder.conv_in.conv.weight: [1, 2, 3] here" in found


def test_a_lower_precision_save_of_the_same_weights_is_no_difference(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    _rewrite(ft / VAE_FILE, lambda k, v: v.to(torch.bfloat16) if v.is_floating_point() else v)
    assert _differences(ft, base) == {}
    _rewrite(ft / VAE_FILE, lambda k, v: v + 1 if k == "encoder.conv_in.conv.weight" else v)
    assert "1 of " in _differences(ft, base)["vae"]


def test_configs_compare_without_library_versions(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    config = ft / "scheduler" / "scheduler_config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "_diffusers_version": "0.0.1"}))
    assert _differences(ft, base) == {}
    config.write_text(json.dumps({**data, "shift_terminal": 0.5}))
    assert _differences(ft, base) == {"scheduler": "scheduler/: scheduler_config.json differs"}


def test_a_component_the_base_lacks_differs(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    shutil.copytree(ft / "vae", ft / "vae_2")
    index = ft / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "vae_2": ["diffusers", "AutoencoderKLLTXVideo"]}))
    assert _differences(ft, base) == {"vae_2": "vae_2/: the base has no vae_2/ folder"}


def test_identical_weight_files_tells_a_copy_of_the_ft_from_a_fine_tune(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    same = identical_weight_files(open_checkpoint(ft), open_checkpoint(base))
    assert "transformer/diffusion_pytorch_model.safetensors" in same and VAE_FILE in same
    _rewrite(ft / "transformer" / "diffusion_pytorch_model.safetensors", lambda k, v: v * 2)
    assert identical_weight_files(open_checkpoint(ft), open_checkpoint(base)) == []


def test_identical_weight_files_of_one_component_ignore_the_others(base, tmp_path):
    """A base holding the FT's transformer but its own VAE is still named as holding the fine-tune."""
    ft = _copy(base, tmp_path / "ft")
    _rewrite(ft / VAE_FILE, lambda k, v: v + 1 if v.is_floating_point() else v)
    assert identical_weight_files(open_checkpoint(ft), open_checkpoint(base)) == []
    assert identical_weight_files(open_checkpoint(ft), open_checkpoint(base), component="transformer") == [
        "transformer/diffusion_pytorch_model.safetensors"]


def test_only_the_components_model_index_lists_are_compared(base, tmp_path):
    ft = _copy(base, tmp_path / "ft")
    shutil.copytree(ft / "vae", ft / "checkpoint-1000")  # a training leftover, not a pipeline component
    assert _differences(ft, base) == {}
