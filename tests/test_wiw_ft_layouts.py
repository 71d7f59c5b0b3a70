"""FTltx and FTcosmos checkpoints laid out as World-in-World has them, through real runs of the plugin.

WIW's FTltx checkpoint is a whole LTX pipeline folder; its FTcosmos checkpoint is the folder its converter
fills (``transformer/`` with the weights alone, no config.json). The embedded defaults are written in
these layouts, so a plain ``--wm FTltx --wm FTcosmos`` run checks them; the older layout (``transformer/``
with its config) and damaged copies are given with --ckpt-path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import make_checks_dir, run_checks  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from pytest_wiw.api import registry  # noqa: E402
from pytest_wiw.api.checklist import CHECKS  # noqa: E402
from pytest_wiw.runtime.tiny import ensure_tiny  # noqa: E402

#: Every check of an FT type (with its base in the same session) but closer to ground truth (no --wm-reference here).
FT_CHECKS = tuple(c.test for c in CHECKS if c.name != "closer to ground truth")


@pytest.fixture(scope="module")
def tiny(tiny_cache) -> dict[str, Path]:
    """The embedded defaults the plugin runs use (built into the shared cache here, in-process)."""
    import wrappers.catalog  # noqa: F401  (registers the roster)

    out = {}
    for ft_type in ("FTltx", "FTcosmos"):
        spec = registry.get_spec(ft_type)
        out[ft_type], out[spec.base] = ensure_tiny(spec, registry.get_spec(spec.base), tiny_cache)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _failed(run, test_id: str) -> str:
    check = run[test_id]
    assert check.outcome == "failed", (test_id, check.outcome, check.message[-2000:])
    return check.message


def test_wiw_layouts_pass_every_check(tiny, tmp_path, run_env):
    assert (tiny["FTltx"] / "model_index.json").is_file()  # a whole pipeline folder
    assert not (tiny["FTcosmos"] / "transformer" / "config.json").exists()  # as WIW's converter writes it
    run = run_checks(make_checks_dir(tmp_path), run_env, "--wm", "FTltx", "--wm", "ltx", "--wm", "FTcosmos",
                     "--wm", "cosmos20", "--wm-report", str(tmp_path / "report"))
    for wm_type in ("FTltx", "FTcosmos"):
        outcomes = {name: run[f"{name}[{wm_type}]"].outcome for name in FT_CHECKS}
        assert set(outcomes.values()) == {"passed"}, (wm_type, outcomes, run.output[-3000:])
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_checkpoint_applied[FTltx]"].properties["ft_components_differing"] == "none"
    ltx_notes = json.loads((tmp_path / "report" / "FTltx.json").read_text())["notes"]
    assert any(n.startswith("FT checkpoint is a whole pipeline folder: its transformer/ runs") for n in ltx_notes)
    cosmos_notes = json.loads((tmp_path / "report" / "FTcosmos.json").read_text())["notes"]
    assert any("has no config.json beside it (as WIW's converter utils/pt_to_safetensors_cosmos.py writes it)" in n
               for n in cosmos_notes), cosmos_notes


def test_older_transformer_folder_layouts_pass_every_check(tiny, tmp_path, run_env):
    """``transformer/`` with its config.json beside the weights, for both types (their base from the card)."""
    ltx = tmp_path / "ft_ltx_transformer"
    (ltx / "transformer").mkdir(parents=True)
    shutil.copy(tiny["FTltx"] / "README.md", ltx / "README.md")
    for f in (tiny["FTltx"] / "transformer").iterdir():
        shutil.copy(f, ltx / "transformer" / f.name)
    cosmos = _copy(tiny["FTcosmos"], tmp_path / "ft_cosmos_with_config")
    shutil.copy(tiny["cosmos20"] / "transformer" / "config.json", cosmos / "transformer" / "config.json")
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTltx", "--wm", "FTcosmos",
                     f"--ckpt-path=FTltx={ltx}", f"--ckpt-path=FTcosmos={cosmos}")
    for wm_type in ("FTltx", "FTcosmos"):
        outcomes = {name: run[f"{name}[{wm_type}]"].outcome for name in FT_CHECKS if name != "test_honest_baseline"}
        assert set(outcomes.values()) == {"passed"}, (wm_type, outcomes, run.output[-3000:])
    assert run.returncode == 0, run.output[-3000:]


def test_damaged_copies_fail_naming_the_file_and_the_cause(tiny, tmp_path, run_env):
    """An FTltx pipeline whose VAE differs from the base's (not run: named in checkpoint applied); a
    config-less FTcosmos transformer that does not fit the base's config (named in checkpoint loads)."""
    ltx = _copy(tiny["FTltx"], tmp_path / "ft_ltx_vae_differs")
    vae = ltx / "vae" / "diffusion_pytorch_model.safetensors"
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(str(vae)).items()}, str(vae))
    cosmos = _copy(tiny["FTcosmos"], tmp_path / "ft_cosmos_misfit")
    weights = cosmos / "transformer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["proj_out.weight"] = torch.cat([tensors["proj_out.weight"]] * 2)  # twice the output channels
    save_file(tensors, str(weights))
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTltx", "--wm", "FTcosmos",
                     f"--ckpt-path=FTltx={ltx}", f"--ckpt-path=FTcosmos={cosmos}")
    applied = _failed(run, "test_checkpoint_applied[FTltx]")
    assert (f"{ltx} is a whole pipeline folder and FTltx runs only its transformer/ (finetune='transformer'), "
            f"but these components of it differ from the base's ({tiny['ltx']}), whose own run instead:") in applied
    assert "vae/: " in applied and " tensors of diffusion_pytorch_model.safetensors hold other values" in applied
    assert "text_encoder/" not in applied
    assert run["test_checkpoint_applied[FTltx]"].properties["ft_components_differing"] == "vae"
    assert run["test_differs_from_zero_shot[FTltx]"].outcome == "passed"  # only the check meant for it fails
    loads = _failed(run, "test_checkpoint_loads[FTcosmos]")
    config = tiny["cosmos20"] / "transformer" / "config.json"
    assert f"{weights} (config from the base: {config}): tensor proj_out.weight has shape [" in loads, loads
    assert "in the file, [" in loads and "in the base's transformer" in loads
    assert run.returncode == 1


def test_ft_pipeline_as_its_own_base_and_raw_training_pt(tiny, tmp_path, run_env):
    """``--ckpt-path=FT --base-ckpt-path=FT`` fails differs from zero-shot saying the base is the FT itself; a
    raw Cosmos training .pt fails checkpoint readable with WIW's converter command."""
    ft = tiny["FTltx"]
    pt = tmp_path / "cosmos_training" / "iter_000002000.pt"
    pt.parent.mkdir()
    torch.save({"model": {"net.blocks.0.self_attn.q_proj.weight": torch.zeros(4, 4),
                          "net.final_layer.linear.weight": torch.zeros(4, 4)}}, pt)
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTltx", "--wm", "FTcosmos",
                     f"--ckpt-path=FTltx={ft}", f"--base-ckpt-path=FTltx={ft}", f"--ckpt-path=FTcosmos={pt}")
    differs = _failed(run, "test_differs_from_zero_shot[FTltx]")
    assert f"The base checkpoint is the FT checkpoint itself ({ft}): --base-ckpt-path" in differs, differs
    assert run["test_checkpoint_applied[FTltx]"].outcome == "passed"
    readable = _failed(run, "test_checkpoint_readable[FTcosmos]")
    assert f"{pt}: pickle checkpoints are refused" in readable
    assert (f"raw Cosmos-Predict2 training checkpoint (keys net.blocks.N...): convert it with World-in-World's "
            f"converter into the transformer FTcosmos loads, then test that folder: python "
            f"utils/pt_to_safetensors_cosmos.py --src_pt {pt} ") in readable, readable
    assert run.returncode == 1
