"""--wm-preset wiw: every type at World-in-World's own generation settings (WIW-FACTS.md §4)."""

from __future__ import annotations

import json

import pytest
from conftest import make_checks_dir, run_checks

from pytest_wiw.api.registry import load_registry
from pytest_wiw.errors import UsageError
from pytest_wiw.runtime.presets import WIW_NOT_EVALUATED, preset_options
from pytest_wiw.runtime.settings import effective_generation

# Written from ../shared/WIW-FACTS.md §4 (not from the preset module): height x width, output height x width,
# frames, steps, guidance. Output 480x480: workers_cfg.py OUT_WIDTH/OUT_HEIGHT, except wan22's own
# --out_width/--out_height and the FT workers, whose scripts resize to their generation size (WIW's
# DiffuserModel.postprocess_frames and wan_model_diffsynth.py leave --out_* unused). svd/igen guidance: the SVD pipeline's default max_guidance_scale (3.0);
# FTcosmos/FTltx guidance: their scripts' defaults (cosmos_model.py 7, ltx_model.py 3).
WIW_SETTINGS = {
    "svd": ((480, 480), (480, 480), 14, 30, 3.0),
    "wan21": ((480, 480), (480, 480), 25, 30, 5.0),
    "cosmos20": ((480, 480), (480, 480), 33, 30, 7.0),
    "ltx": ((480, 480), (480, 480), 33, 50, 3.0),
    "hunyuan": ((480, 480), (480, 480), 33, 30, 8.0),
    "wan22": ((704, 1280), (704, 1280), 33, 50, 5.0),
    "cosmos25": ((576, 576), (480, 480), 14, 35, 7.0),
    "FTcosmos": ((576, 1024), (576, 1024), 14, 30, 7.0),
    "FTltx": ((576, 1024), (576, 1024), 17, 50, 3.0),
    "FTwan21": ((576, 1024), (576, 1024), 13, 30, 5.0),
    "FTwan22": ((576, 1024), (576, 1024), 13, 30, 5.0),
    "igen": ((576, 1024), (480, 480), 14, 30, 3.0),
}
IGEN_OPTIONS = {"fps": "7", "motion_bucket_id": "127", "noise_aug_strength": "0.02"}

REGISTRY = load_registry()
RUNNABLE = sorted(name for name, spec in REGISTRY.items() if spec.runnable)


@pytest.mark.parametrize("wm_type", RUNNABLE)
def test_wiw_preset_resolves_to_wiw_settings(wm_type):
    spec = REGISTRY[wm_type]
    generation = effective_generation(spec.defaults, [], preset_options("wiw", wm_type))
    if wm_type in WIW_NOT_EVALUATED:
        assert generation == spec.defaults  # WIW gives none: the registry's, said so in the header
        return
    (h, w), (oh, ow), frames, steps, guidance = WIW_SETTINGS[wm_type]
    got = (generation.height, generation.width, generation.out_height, generation.out_width, generation.num_frames,
           generation.steps, generation.guidance_scale)
    assert got == (h, w, oh, ow, frames, steps, guidance)


def test_every_runnable_type_is_in_the_table_or_said_to_have_no_wiw_settings():
    assert set(RUNNABLE) == set(WIW_SETTINGS) | set(WIW_NOT_EVALUATED)


def test_igen_gets_eval_inference_micro_conditioning():
    options = preset_options("wiw", "igen")
    assert {k: options[k] for k in IGEN_OPTIONS} == IGEN_OPTIONS


def test_an_ft_type_runs_at_its_own_settings_not_its_base_s():
    assert preset_options("wiw", "FTltx")["num_frames"] == "17" and preset_options("wiw", "ltx")["num_frames"] == "33"


def test_no_preset_changes_nothing():
    assert preset_options(None, "svd") == {}


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="--wm-preset 'nope': unknown; presets: wiw"):
        preset_options("nope", "svd")


def test_unknown_preset_stops_the_run(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", "--wm-preset=nope")
    assert run.returncode == 4 and "--wm-preset 'nope': unknown" in run.output


def test_preset_run_shows_preset_in_header_and_json(tmp_path, run_env):
    """A real tiny run under the preset. The preset's sizes are too slow for the tiny models on this CPU
    (480x480 and 1024x576 frames through the VAE), so --wm-opt brings sizes and steps down: that is also the
    proof that --wm-opt wins over the preset. Frames and guidance stay the preset's."""
    report = tmp_path / "report"
    small = ["--wm-opt=steps=2", "--wm-opt=height=32", "--wm-opt=width=32", "--wm-opt=out_height=32",
             "--wm-opt=out_width=32"]
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd,FTwan21", "--wm-preset=wiw", *small,
                     f"--wm-report={report}")
    bad = {k: (v.outcome, v.message[:200]) for k, v in run.checks.items() if v.outcome not in ("passed", "skipped")}
    assert run.returncode == 0 and not bad, (bad, run.output[-3000:])
    assert "wiw: preset wiw (--wm-opt values win)" in run.output
    assert ("wiw:   FTwan21: height=32, width=32, out_height=32, out_width=32, num_frames=13, steps=2, "
            "guidance_scale=5.0 (WIW-FACTS §4: workers_cfg.py FTwan21_worker") in run.output
    for wm_type, frames, guidance in (("svd", 14, 3.0), ("FTwan21", 13, 5.0)):
        data = json.loads((report / f"{wm_type}.json").read_text())
        assert data["preset"]["name"] == "wiw" and data["preset"]["settings"]["steps"] == "2"
        assert data["preset"]["settings"]["num_frames"] == str(frames)
        gen = data["generation"]  # what the worker really ran at
        assert (gen["height"], gen["steps"], gen["num_frames"], gen["guidance_scale"]) == (32, 2, frames, guidance)
    # the FT type's zero-shot baseline ran in its worker, at the same settings: the comparison is valid
    assert run["test_differs_from_zero_shot[FTwan21]"].outcome == "passed"


def test_honest_baseline_skips_when_the_preset_sets_ft_and_base_apart(tmp_path, run_env):
    small = ["--wm-opt=steps=2", "--wm-opt=height=32", "--wm-opt=width=32", "--wm-opt=out_height=32",
             "--wm-opt=out_width=32"]
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "ltx,FTltx", "--wm-preset=wiw", *small)
    verdict = run["test_honest_baseline[FTltx]"]
    assert verdict.outcome == "skipped" and "runs FTltx at its FT settings" in verdict.message, verdict.message
    assert run.returncode == 0, run.output[-3000:]
