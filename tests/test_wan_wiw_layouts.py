"""Issue 10, items 5, 6 and 9 (Wan): WIW's own Wan post-train layouts pass every check in real plugin runs.

One ``pytest -n 2`` session checks, each under its own registered wm_type (``FTwan21_full`` ...):

* the embedded defaults, which make_tiny now writes in DiffSynth-Studio's layout: FTwan21 and FTwan22
  as ``<model>_lora_navigation/epoch-{0,1}.safetensors``, FTwan22-14B as its two expert folders;
* a DiffSynth full fine-tune (one DiT state dict in original-Wan names);
* FTwan22-14B given as ``A,B`` (two files), and as diffusers ``transformer/`` + ``transformer_2/`` folders;
* damaged copies: two high-noise LoRAs, a full state dict with keys that do not map.

Two more runs pick an epoch with ``--wm-opt epoch=N``: one that exists (passes, runs epoch 0), one that
does not (fails naming the folder and the epochs it holds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_checks_dir, run_checks
from safetensors.torch import load_file, save_file

from pytest_wiw.api.registry import get_spec
from pytest_wiw.runtime.tiny import ensure_tiny
from wrappers.common.component_swap import save_tiny_fine_tune
from wrappers.wan_native import to_native

CONFTEST = '''
from pytest_wiw.api.registry import get_spec, register_wm

for name, of in {aliases!r}.items():
    spec = get_spec(of)
    register_wm(name, wrapper=spec.wrapper, category=spec.category, base=spec.base, finetune=spec.finetune,
                tasks=spec.tasks, defaults=spec.defaults, env=str(spec.env_path()))
'''
#: Full fine-tunes get this much noise (times mean |w| + 0.02) per tensor: enough to change the output.
FULL_NOISE = 0.5
#: Every check a passing FT run may end in.
FINE = ("passed", "skipped")


def tiny(name: str, cache: Path) -> tuple[Path, Path | None]:
    spec = get_spec(name)
    return ensure_tiny(spec, get_spec(spec.base) if spec.is_ft else None, cache)


def native_full_fine_tune(base: Path, out: Path, *, extra: dict | None = None) -> Path:
    """A DiffSynth ``--ft_method=full`` checkpoint: ``<model>_full_navigation/epoch-0.safetensors`` holding
    the (noised) transformer in original-Wan names, with a card naming ``base``."""
    from wrappers.wan import TINY_GENERATION

    staging = out.parent / f".{out.name}-staging"
    save_tiny_fine_tune(type_of_transformer(), staging, base, 5, noise_scale=FULL_NOISE, generation=TINY_GENERATION,
                        description="Tiny DiffSynth full fine-tune of the tiny Wan 2.1 transformer.")
    tensors = load_file(str(next((staging / "transformer").glob("*.safetensors"))))
    out.mkdir(parents=True)
    native = {to_native(k): t for k, t in tensors.items()}
    native.update(extra or {})
    save_file(native, str(out / "epoch-0.safetensors"))
    shutil.copy(staging / "README.md", out / "README.md")
    shutil.rmtree(staging)
    return out


def type_of_transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, run_env, tiny_cache):
    """One -n 2 session over every layout and damaged copy; (run, {alias: what it is}, paths)."""
    root = tmp_path_factory.mktemp("wanwiw")
    ft14, base14 = tiny("FTwan22-14B", tiny_cache)
    _, base21 = tiny("FTwan21", tiny_cache)
    high, low = sorted(ft14.glob("*_high_noise_lora")), sorted(ft14.glob("*_low_noise_lora"))
    assert len(high) == len(low) == 1, sorted(ft14.iterdir())

    twohigh = root / "twohigh"
    shutil.copytree(ft14, twohigh)
    (twohigh / low[0].name).rename(twohigh / (high[0].name + "_2"))  # a second high-noise LoRA folder

    dfull = root / "dfull14"
    for component in ("transformer", "transformer_2"):
        save_tiny_fine_tune(type_of_transformer(), dfull, base14, 7, noise_scale=FULL_NOISE,
                            generation=_generation("wan22_a14b"), description="Tiny diffusers full fine-tune of "
                            "both experts of the tiny Wan 2.2 A14B pipeline.", component=component)

    paths = {
        "FTwan21_full": native_full_fine_tune(base21, root / "Wan2.1-I2V-tiny_full_navigation"),
        "FTwan21_badfull": native_full_fine_tune(base21, root / "bad" / "Wan2.1-I2V-tiny_full_navigation", extra={
            "blocks.0.self_attn.bogus.weight": torch.zeros(2, 2), "blocks.9.ffn.0.weight": torch.zeros(32, 16)}),
        "FTwan22-14B_list": f"{high[0] / 'epoch-1.safetensors'},{low[0] / 'epoch-0.safetensors'}",
        "FTwan22-14B_dfull": dfull,
        "FTwan22-14B_twohigh": twohigh,
    }
    aliases = {name: name.split("_")[0] for name in paths}
    workdir = make_checks_dir(root / "run")
    (workdir / "conftest.py").write_text((workdir / "conftest.py").read_text() + CONFTEST.format(aliases=aliases))
    names = ["FTwan21", "FTwan22", "FTwan22-14B", *paths]
    args = ["-n", "2", "--wm", ",".join(names), "--wm-max-examples", "0", f"--wm-report={root / 'report'}"]
    args += [f"--ckpt-path={name}={path}" for name, path in paths.items()]
    return run_checks(workdir, run_env, *args), paths, root


def report_of(root: Path, wm_type: str) -> dict:
    return json.loads((root / "report" / f"{wm_type}.json").read_text())


def _generation(module: str) -> dict:
    import importlib

    return importlib.import_module(f"wrappers.{module}").TINY_GENERATION


def outcomes(run, wm_type: str) -> dict[str, str]:
    found = {t.split("[")[0]: c.outcome for t, c in run.checks.items() if t.endswith(f"[{wm_type}]")}
    assert found, f"no checks ran for {wm_type}:\n{run.output[-3000:]}"
    return found


@pytest.mark.parametrize("wm_type", ["FTwan21", "FTwan22", "FTwan22-14B", "FTwan21_full", "FTwan22-14B_list",
                                     "FTwan22-14B_dfull"])
def test_wiw_layout_passes_every_check(layouts, wm_type):
    run, *_ = layouts
    found = outcomes(run, wm_type)
    bad = {t: o for t, o in found.items() if o not in FINE}
    assert not bad, (bad, [run.checks[f"{t}[{wm_type}]"].message[:1500] for t in bad])
    for check in ("test_checkpoint_loads", "test_checkpoint_applied", "test_differs_from_zero_shot"):
        assert found[check] == "passed", (wm_type, check)


@pytest.mark.parametrize("wm_type, folders", [("FTwan21", 1), ("FTwan22", 1), ("FTwan22-14B", 2)])
def test_epoch_folders_load_their_highest_epoch_and_the_report_says_so(layouts, wm_type, folders):
    _, _, root = layouts
    report = report_of(root, wm_type)
    chosen = [n for n in report["notes"] if "epoch-1.safetensors loaded (the highest of epochs 0, 1" in n]
    assert len(chosen) == folders, report["notes"]
    assert "post-train detected: LoRA (the registry declares finetune='lora')" in report["notes"]
    assert all(f.endswith("epoch-1.safetensors") for f in report["checkpoint"]["files"]), report["checkpoint"]


def test_report_names_the_kind_detected_and_the_routing(layouts):
    _, _, root = layouts
    full = report_of(root, "FTwan21_full")["notes"]
    assert any(n.startswith("post-train detected: full fine-tune (a DiT state dict") and "finetune='lora'" in n
               for n in full), full
    listed = report_of(root, "FTwan22-14B_list")["notes"]
    assert any("_high_noise_lora/epoch-1.safetensors -> transformer (high-noise expert)" in n for n in listed), listed
    assert any("_low_noise_lora/epoch-0.safetensors -> transformer_2 (low-noise expert)" in n for n in listed), listed
    dfull = report_of(root, "FTwan22-14B_dfull")["notes"]
    assert "post-train detected: full fine-tune (diffusers transformer folders) (the registry declares " \
           "finetune='lora')" in dfull, dfull


def test_two_high_noise_loras_fail_naming_both_files(layouts):
    run, paths, _ = layouts
    verdict = run["test_checkpoint_loads[FTwan22-14B_twohigh]"]
    assert verdict.outcome == "failed"
    assert "two high-noise expert files" in verdict.message, verdict.message
    assert "_high_noise_lora/epoch-1.safetensors" in verdict.message
    assert "_high_noise_lora_2/epoch-1.safetensors" in verdict.message


def test_full_state_dict_with_keys_that_do_not_map_fails_naming_them(layouts):
    run, *_ = layouts
    verdict = run["test_checkpoint_loads[FTwan21_badfull]"]
    assert verdict.outcome == "failed"
    for fragment in ("epoch-0.safetensors", "2 of", "blocks.0.self_attn.bogus.weight", "no Wan DiT module",
                     "blocks.9.ffn.0.weight", "which the Wan 2.1 I2V transformer does not have"):
        assert fragment in verdict.message, (fragment, verdict.message)


@pytest.mark.parametrize("epoch, passes", [("0", True), ("7", False)])
def test_wm_opt_epoch_picks_an_epoch_or_fails_listing_them(epoch, passes, tmp_path, run_env, tiny_cache):
    from wrappers.wan import TINY_LORA_FOLDER

    ft = tiny("FTwan21", tiny_cache)[0] / TINY_LORA_FOLDER  # the epoch folder itself, as WIW users name it
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", f"--ckpt-path={ft}",
                     "--wm-opt", f"epoch={epoch}", "--wm-max-examples", "0", f"--wm-report={tmp_path / 'report'}")
    found = outcomes(run, "FTwan21")
    if passes:
        assert all(o in FINE for o in found.values()), {t: run.checks[f"{t}[FTwan21]"].message[:800]
                                                        for t, o in found.items() if o not in FINE}
        report = report_of(tmp_path, "FTwan21")
        assert any(n.endswith("epoch-0.safetensors loaded (--wm-opt epoch=0; epochs here: 0, 1)")
                   for n in report["notes"]), report["notes"]
        assert report["checkpoint"]["files"] == ["epoch-0.safetensors"], report["checkpoint"]
    else:
        for check, outcome in (("test_checkpoint_readable", "failed"), ("test_checkpoint_loads", "skipped")):
            message = run[f"{check}[FTwan21]"].message  # the load is blocked by the readable check, naming why
            assert run[f"{check}[FTwan21]"].outcome == outcome
            assert f"{ft}: no epoch-7.safetensors" in message and "holds epochs 0, 1" in message, message
        assert run.returncode == 1
