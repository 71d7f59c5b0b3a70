"""Named generation presets: ``--wm-preset wiw`` runs each wm_type at World-in-World's own settings.

A preset maps a wm_type to generation settings (``GenerationDefaults`` fields) and wrapper options;
they travel to the worker as ``--wm-opt`` values would, under the user's own ``--wm-opt`` (which
win). An FT type's zero-shot baseline runs in the same worker, so it runs at the FT type's settings.
Seeds are not part of a preset: the checks choose theirs (s and s + 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from pytest_wiw.errors import UsageError


@dataclass(frozen=True)
class PresetEntry:
    """The settings of one wm_type in a preset, and where their values come from."""

    settings: Mapping[str, object] = field(default_factory=dict)
    source: str = ""


# -- the "wiw" preset: World-in-World's evaluation settings ---------------------------------------------
# Values from ../shared/WIW-FACTS.md §4, read from World-In-World/world-in-world (commit 0a1c616):
# the per-script defaults of downstream/api_models/<x>_model.py and the worker commands of
# downstream/utils/workers_cfg.py.

#: workers_cfg.py OUT_WIDTH / OUT_HEIGHT: "default output size (not generation size) for video generation
#: workers": what svd_model.py, wan22_*, cosmos25 and eval_inference.py resize to. The DiffuserModel scripts
#: (wan_model.py, cosmos_model.py, ltx_model.py, hunyuan_model.py) and wan_model_diffsynth.py resize to their
#: --width/--height instead and leave --out_* unused (DiffuserModel.postprocess_frames): for the zero-shot
#: ones that is 480x480 as well, for the FT workers their 1024x576 generation size (FT_OUT).
WIW_OUT = {"out_height": 480, "out_width": 480}
FT_OUT = {"out_height": 576, "out_width": 1024}
#: StableVideoDiffusionPipeline's default max_guidance_scale; svd_model.py and FTsvd/eval_inference.py
#: leave guidance at the pipeline default (frame-wise 1.0 -> 3.0; the svd wrapper keeps min 1.0).
SVD_PIPELINE_GUIDANCE = 3.0


def _wiw(height: int, width: int, frames: int, steps: int, guidance: float, source: str, *,
         out: Mapping[str, int] = WIW_OUT, **options: object) -> PresetEntry:
    return PresetEntry({"height": height, "width": width, **out, "num_frames": frames, "steps": steps,
                        "guidance_scale": guidance, **options}, source)


WIW_PRESET: dict[str, PresetEntry] = {
    "svd": _wiw(480, 480, 14, 30, SVD_PIPELINE_GUIDANCE, "WIW-FACTS §4: svd_model.py defaults (fp16)"),
    "wan21": _wiw(480, 480, 25, 30, 5.0, "WIW-FACTS §4: wan_model.py defaults (2.1-I2V-14B-480P)"),
    # cosmos_model.py's fps 16 is Cosmos2VideoToWorldPipeline's default already: no option for it.
    "cosmos20": _wiw(480, 480, 33, 30, 7.0, "WIW-FACTS §4: cosmos_model.py defaults (Predict2 2B)"),
    "ltx": _wiw(480, 480, 33, 50, 3.0, "WIW-FACTS §4: ltx_model.py defaults (LTX-Video 0.9.1)"),
    "hunyuan": _wiw(480, 480, 33, 30, 8.0, "WIW-FACTS §4: hunyuan_model.py defaults"),
    "wan22": _wiw(704, 1280, 33, 50, 5.0, "WIW-FACTS §4: wan22_ti2v_model.py; workers_cfg.py wan22_worker "
                  "(--width=1280 --height=704 --out_width=1280 --out_height=704)",
                  out={"out_height": 704, "out_width": 1280}),
    "cosmos25": _wiw(576, 576, 14, 35, 7.0, "WIW-FACTS §4: cosmos25_model.py defaults"),
    # FT workers: workers_cfg.py passes size and frames; steps and guidance are their scripts' defaults.
    "FTcosmos": _wiw(576, 1024, 14, 30, 7.0, "WIW-FACTS §4: workers_cfg.py FTcosmos_worker (--width=1024 "
                     "--height=576 --num_frames=14), cosmos_model.py steps and guidance", out=FT_OUT),
    "FTltx": _wiw(576, 1024, 17, 50, 3.0, "WIW-FACTS §4: workers_cfg.py FTltx_worker (--width=1024 "
                  "--height=576 --num_frames=17), ltx_model.py steps and guidance", out=FT_OUT),
    "FTwan21": _wiw(576, 1024, 13, 30, 5.0, "WIW-FACTS §4: workers_cfg.py FTwan21_worker (--width=1024 "
                    "--height=576), wan_model_diffsynth.py frames, steps and guidance", out=FT_OUT),
    "FTwan22": _wiw(576, 1024, 13, 30, 5.0, "WIW-FACTS §4: workers_cfg.py FTwan22_worker (--width=1024 "
                    "--height=576), wan_model_diffsynth.py frames, steps and guidance", out=FT_OUT),
    # SVD-dagger's micro-conditioning, as FTsvd/eval_inference.py passes it (options the igen wrapper reads).
    "igen": _wiw(576, 1024, 14, 30, SVD_PIPELINE_GUIDANCE, "WIW-FACTS §4: FTsvd/eval_inference.py defaults",
                 fps=7, motion_bucket_id=127, noise_aug_strength=0.02),
}
#: Runnable types WIW gives no settings for: they keep the registry's defaults under the preset.
WIW_NOT_EVALUATED = {
    "wan22-14B": "WIW has no worker entry for Wan 2.2 A14B (worker_manager.py lists it, workers_cfg.py does not)",
    "FTwan22-14B": "WIW has no worker entry for Wan 2.2 A14B (worker_manager.py lists it, workers_cfg.py does not)",
}

PRESETS: dict[str, dict[str, PresetEntry]] = {"wiw": WIW_PRESET}
_UNSET = {"wiw": WIW_NOT_EVALUATED}


def preset_options(preset: str | None, wm_type: str) -> dict[str, str]:
    """The ``--wm-opt``-style options ``preset`` gives ``wm_type`` ({} without a preset or an entry)."""
    if preset is None:
        return {}
    entry = _table(preset).get(wm_type)
    return {k: str(v) for k, v in entry.settings.items()} if entry else {}


def preset_note(preset: str, wm_type: str) -> str:
    """Where the preset's values for ``wm_type`` come from, or why it has none."""
    entry = _table(preset).get(wm_type)
    if entry is not None:
        return entry.source
    return _UNSET[preset].get(wm_type, f"the {preset} preset has no settings for {wm_type}") + ": registry defaults"


def _table(preset: str) -> dict[str, PresetEntry]:
    if preset not in PRESETS:
        raise UsageError(f"--wm-preset {preset!r}: unknown; presets: {', '.join(PRESETS)}")
    return PRESETS[preset]
