"""What the tests of the wrappers (tests/test_wrapper_*.py) share: building a wrapper as the worker does,
reference requests, output and fingerprint comparisons, and checks every component-swap FT wrapper passes.

Imported as ``from wrapper_helpers import ...`` (tests/conftest.py puts tests/ on sys.path).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_wiw.api import registry
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.checkpoints import files as checkpoint
from pytest_wiw.checkpoints.fingerprint import compare, file_fingerprints

#: Navigation actions of the reference requests, one row per batch item (4 opens a row).
NAVIGATION_ACTIONS = [[4, 1, 2, 1], [4, 3, 3, 1]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Pin torch to one thread for the module, as the worker pins its count.

    One thread keeps the timing steady on a shared 2-core box (two OpenMP threads fighting another
    process made a 0.1 s call take seconds). A test module turns it on by importing it.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- building wrappers -------------------------------------------------------------------------------
def build_wrapper(cls, spec, ckpt, base_ckpt=None, options=None):
    """``cls`` built as the worker builds it, on the CPU in float32."""
    return cls(spec, ckpt, base_ckpt=base_ckpt, device="cpu", dtype=torch.float32, options=options or {})


def load_wrapper(cls, wm_type: str, path, base=None, *, options=None, **generation):
    """Build the wrapper the way the worker does: the checkpoint's card overrides (then ``generation``)
    applied to the registry spec's defaults, the checkpoint (and its base) opened with open_checkpoint."""
    spec = registry.get_spec(wm_type)
    variant = (options or {}).get(checkpoint.VARIANT_OPTION)
    ckpt = checkpoint.open_checkpoint(path, variant)
    defaults = spec.defaults.updated(checkpoint.card_generation(ckpt.card)).updated(generation)
    spec = dataclasses.replace(spec, defaults=defaults)
    base_ckpt = checkpoint.open_checkpoint(base, variant) if base is not None else None
    return build_wrapper(cls, spec, ckpt, base_ckpt, options)


# -- requests and outputs ------------------------------------------------------------------------------
def reference_request(wm_type: str, seed=(11, 12), batch: int = 2, *, actions=None, task_type: str = "navigation",
                      images=None, image_hw=(40, 48), image_seed: int = 0) -> GenerationRequest:
    """A request of ``batch`` seeded random images (``image_hw``, not a generation size, so the wrapper's
    resize runs) and the first ``batch`` NAVIGATION_ACTIONS; a tuple seed is sliced to the batch."""
    if images is None:
        images = np.random.default_rng(image_seed).integers(0, 256, (batch, 3, *image_hw), dtype=np.uint8)
    if actions is None:
        actions = [list(row) for row in NAVIGATION_ACTIONS[:batch]]
    seed = list(seed[:batch]) if isinstance(seed, (tuple, list)) else seed
    return GenerationRequest(images=images, actions=actions, task_type=task_type, seed=seed,
                             request_model_name=wm_type)


def abs_diff_levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Largest and mean absolute difference of two uint8 videos, in levels."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float(d.mean())


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 videos, in levels."""
    return abs_diff_levels(a, b)[1]


def assert_uint8_video(model, out: np.ndarray, batch: int, shape: tuple | None = None) -> None:
    """``out`` is what the model must return for ``batch`` items: uint8 (batch, num_output_frames, 3,
    out_height, out_width), with no non-finite values seen; ``shape``, when given, is what that comes to."""
    g = model.generation
    assert out.dtype == np.uint8
    assert out.shape == (batch, g.num_output_frames, 3, g.out_height, g.out_width)
    if shape is not None:
        assert out.shape == shape
    assert not model.nonfinite_seen


def assert_batch_items_equal_items_alone(model, request: GenerationRequest, batch_out: np.ndarray, *,
                                         within_tolerance: bool = True, bitwise: bool = True) -> None:
    """Each item of ``batch_out`` against the item run alone: within the spec's batch tolerances, and equal
    bitwise (the wrappers run items one by one, which promises more than the tolerance)."""
    tol = model.spec.tolerances
    for i in range(request.batch_size):
        alone = model.generate(request.item(i))[0]
        if within_tolerance:
            max_abs, mean_abs = abs_diff_levels(batch_out[i], alone)
            assert max_abs <= tol.batch_max_abs and mean_abs <= tol.batch_mean_abs, (i, max_abs, mean_abs)
        if bitwise:
            assert np.array_equal(batch_out[i], alone), i


# -- fingerprints ----------------------------------------------------------------------------------------
def expected_fingerprints(ckpt, running: dict, keys) -> dict:
    """The fingerprints of the checkpoint files' tensors ``keys``, in the dtypes the running tensors have."""
    return file_fingerprints(ckpt, keys, {k: fp.dtype for k, fp in running.items()})


def fingerprint_problems(model) -> tuple[list[str], list[str]]:
    """The checkpoint keys with no running tensor, and the disagreements between running tensors and files."""
    running = model.weight_fingerprints()
    keys = model.ckpt.fingerprint_keys()
    assert keys, "the checkpoint has no float tensors to fingerprint"
    missing = sorted(set(keys) - set(running))
    expected = expected_fingerprints(model.ckpt, running, keys)
    return missing, [p for k in running if (p := compare(k, running[k], expected[k]))]


def assert_fingerprints_agree(model) -> None:
    """Every checkpoint tensor has a running tensor, and every running tensor matches its file."""
    missing, problems = fingerprint_problems(model)
    assert not missing and not problems, (model.spec.name, missing[:3], problems[:3])


def fingerprint_mismatches(model, ckpt) -> dict[str, str]:
    """The suite's comparison: every fingerprint key of ``ckpt`` must have a running tensor; the
    disagreements between running tensors and the files, by key."""
    running = model.weight_fingerprints()
    keys = ckpt.fingerprint_keys()
    assert sorted(running) == sorted(keys), "every checkpoint tensor has a running tensor"
    expected = expected_fingerprints(ckpt, running, keys)
    return {k: msg for k in keys if (msg := compare(k, running[k], expected[k]))}


def assert_fingerprints_follow_running_tensor(model, key: str) -> None:
    """Moving the running tensor of ``key`` makes the fingerprint check name ``key``."""
    with torch.no_grad():
        model.running_tensor(key).add_(1.0)
    _, problems = fingerprint_problems(model)
    assert any(p.startswith(key + ":") for p in problems), problems


# -- tiny checkpoints ------------------------------------------------------------------------------------
def make_tiny_leaving_rng(cls, wm_type: str, out_dir: Path, **kwargs) -> Path:
    """``cls.make_tiny``, asserting that it left torch's global RNG where it was."""
    rng_before = torch.random.get_rng_state()
    path = cls.make_tiny(wm_type, out_dir, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), rng_before), "make_tiny moved the global RNG"
    return path


def assert_tiny_pipeline_checkpoint(path: Path, generation: dict) -> None:
    """A tiny zero-shot checkpoint: a diffusers folder of safetensors whose card carries ``generation``."""
    ckpt = checkpoint.open_checkpoint(path)
    assert ckpt.format == "diffusers"
    assert checkpoint.card_generation(ckpt.card) == generation
    assert all(f.suffix == ".safetensors" for f in ckpt.files)


# -- component-swap FT wrappers (FTcosmos, FTltx, igen) -------------------------------------------------
def tiny_swap_checkpoints(cls, root: Path, zero_shot_type: str, ft_type: str) -> dict[str, Path]:
    """The tiny zero-shot pipeline (``base``), its tiny FT transformer (``ft``, a folder holding
    ``transformer/``), and an FT transformer identical to the base in the flat "component" layout (``same``)."""
    base = cls.make_tiny(zero_shot_type, root / zero_shot_type, seed=0)
    ft = cls.make_tiny(ft_type, root / ft_type, base=base, seed=0)
    # The card of "same" is the FT's: tiny generation sizes, base_model.
    same = copy_component(base / "transformer", root / "FTsame", card_from=ft)
    return {"base": base, "ft": ft, "same": same}


def copy_component(src: Path, dst: Path, card_from: Path) -> Path:
    """A component folder copied to ``dst`` (the flat "component" layout), with the card of ``card_from``."""
    shutil.copytree(src, dst)
    shutil.copy(card_from / "README.md", dst / "README.md")
    return dst


def save_altered_component(model_cls, src: Path, dst: Path, card_from: Path, *, subfolder: str = "",
                           **config_changes) -> Path:
    """An FT checkpoint at ``dst`` (the card of ``card_from``): a randomly initialised ``model_cls`` with
    ``src``'s config but ``config_changes``, saved in ``dst`` or in its ``subfolder``."""
    config = dict(model_cls.load_config(str(src)))
    config.update(config_changes)
    model_cls.from_config(config).save_pretrained(str(dst / subfolder), safe_serialization=True)
    shutil.copy(card_from / "README.md", dst / "README.md")
    return dst


def assert_component_folder_checkpoint(path: Path, component: str, base: Path, generation: dict) -> None:
    """An FT checkpoint holding ``<component>/`` whose card names its base and carries ``generation``."""
    ft = checkpoint.open_checkpoint(path)
    assert ft.format == "component-folder"
    assert [ft.rel(f) for f in ft.files] == [f"{component}/diffusion_pytorch_model.safetensors"]
    assert ft.card["base_model"] == str(base)
    assert checkpoint.card_generation(ft.card) == generation


def ft_and_zero_shot_outputs(model, request: GenerationRequest) -> tuple[np.ndarray, np.ndarray]:
    """The fine-tuned and the zero-shot output of one request."""
    ft_out = model.generate(request)
    with model.zero_shot():
        zero_out = model.generate(request)
    return ft_out, zero_out


def assert_zero_shot_restores_on_error(model, component: str) -> None:
    """An error inside zero_shot() swaps the base ``component`` out again: the fine-tuned one runs after."""
    running = model.components()[component]
    with pytest.raises(RuntimeError):
        with model.zero_shot():
            assert model.components()[component] is not running
            raise RuntimeError("boom")
    assert model.components()[component] is running


def assert_shares_modules_with_base(model, swapped: str, shared: tuple[str, ...]) -> None:
    """The fine-tuned pipeline has its own ``swapped`` component and the base pipeline's ``shared`` ones."""
    ft = model.components()
    with model.zero_shot():
        base = model.components()
    assert all(ft[name] is base[name] for name in shared)
    assert ft[swapped] is not base[swapped]


def assert_fingerprints_catch_base_weights(model, base: Path, component: str) -> None:
    """The fine-tuned component's running tensors, held against the base pipeline's ``<component>/`` files
    (the same keys), all disagree: the check has teeth."""
    model.ckpt = checkpoint.open_checkpoint(base)
    running = model.weight_fingerprints()
    assert running and all(k.startswith(f"{component}/") for k in running)
    expected = expected_fingerprints(model.ckpt, running, list(running))
    assert all(compare(k, running[k], expected[k]) for k in running)


def assert_flat_component_checkpoint(model) -> None:
    """A model loaded from a flat component folder: every tensor found and matching, keys without a folder."""
    assert model.ckpt.format == "component"
    assert_fingerprints_agree(model)
    assert not any("/" in k for k in model.weight_fingerprints())  # bare tensor names


def save_diffsynth_full_fine_tune(root: Path, base: Path, generation) -> Path:
    """DiffSynth-Studio's full fine-tune of the tiny wan21 at ``base``, as WIW's FTwan21 full checkpoints are: the
    noised transformer (also kept as a diffusers folder in ``root/dfull``) written as one state dict in
    original-Wan names, ``root/Wan2.1-I2V-tiny_full_navigation/epoch-0.safetensors``, with its card. Returns the
    epoch folder."""
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file, save_file

    from wrappers.common.component_swap import save_tiny_fine_tune
    from wrappers.wan_native import to_native

    save_tiny_fine_tune(WanTransformer3DModel, root / "dfull", base, 3, noise_scale=0.5, generation=generation,
                        description="tiny full fine-tune")
    full = root / "Wan2.1-I2V-tiny_full_navigation"
    full.mkdir()
    tensors = load_file(str(next((root / "dfull" / "transformer").glob("*.safetensors"))))
    save_file({to_native(k): t for k, t in tensors.items()}, str(full / "epoch-0.safetensors"))
    shutil.copy(root / "dfull" / "README.md", full / "README.md")
    return full
