"""WIW's own worker scripts, by wm_type: what to give ``--wm-worker-cmd`` and what the suite will find.

Read from WIW's public repository (``downstream/utils/workers_cfg.py`` and the scripts it names; commit
853e0827). Paths are relative to a WIW checkout; the legacy adapter runs a script inside one with that
checkout as its working directory and first on PYTHONPATH, as WIW's launcher does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WiwScript:
    """One WIW worker script: its path, the arguments a run needs, and what is known to hold it back."""

    path: str
    args: str
    known: str = ""

    def command(self) -> str:
        return f"python {self.path} {self.args}".strip()


_UNSEEDED = "draws unseeded noise: seed determinism fails (batch invariance, order independence, seed sensitivity blocked)"
_KEPT = "builds one generator at load ({seed}) and reuses it: seed determinism fails"
_SIZES = "--width=W --height=H --num_frames=N --num_output_frames=14 --num_inference_steps=S"

WIW_SCRIPTS: dict[str, WiwScript] = {
    "svd": WiwScript("downstream/api_models/svd_model.py", f"--ckpt_path=SVD_FOLDER {_SIZES} --out_width=W --out_height=H",
                     f"{_UNSEEDED}; loads the fp16 variant files"),
    "wan21": WiwScript("downstream/api_models/wan_model.py", f"--ckpt_path=WAN21_DIFFUSERS_FOLDER {_SIZES}",
                       f"{_UNSEEDED}; output at --width/--height (--out_* unused); CPU offload needs CUDA"),
    "cosmos20": WiwScript("downstream/api_models/cosmos_model.py", _SIZES,
                          f"{_UNSEEDED}; base hard-coded to the hub id nvidia/Cosmos-Predict2-2B-Video2World"),
    "FTcosmos": WiwScript("downstream/api_models/cosmos_model.py", f"--ft_dir=FT_DIR {_SIZES}",
                          f"{_UNSEEDED}; FT_DIR/transformer/ needs a config.json; output at --width/--height"),
    "ltx": WiwScript("downstream/api_models/ltx_model.py", f"--ckpt_path=LTX_FOLDER {_SIZES}", _UNSEEDED),
    "FTltx": WiwScript("downstream/api_models/ltx_model.py", f"--ft_dir=FT_PIPELINE --ckpt_path=FT_PIPELINE {_SIZES}",
                       f"{_UNSEEDED}; output at --width/--height"),
    "hunyuan": WiwScript("downstream/api_models/hunyuan_model.py", f"--model_slug=HUNYUAN_FOLDER {_SIZES}", _UNSEEDED),
    "wan22": WiwScript("downstream/api_models/wan22_ti2v_model.py", f"{_SIZES} --out_width=W --out_height=H",
                       _KEPT.format(seed="seed 42, on CUDA") + "; loads remote code from the hub"),
    "wan22-14B": WiwScript("downstream/api_models/wan22_i2v_model.py", f"{_SIZES} --out_width=W --out_height=H",
                           _KEPT.format(seed="seed 0, on CUDA") + "; answers to the name wan22"),
    "FTwan22-14B": WiwScript("downstream/api_models/wan22_i2v_model.py",
                             f"--ft_dir=FT_DIR {_SIZES} --out_width=W --out_height=H",
                             _KEPT.format(seed="seed 0, on CUDA") + "; answers to the name wan22, not FTwan22-14B"),
    "FTwan21": WiwScript("downstream/api_models/wan_model_diffsynth.py",
                         f"--model_id=MODEL_ID --ft_method=lora --lora_path=EPOCH_FILE {_SIZES}",
                         "same fixed seed (42) at every call: seed sensitivity fails; its model_id test is "
                         "lower-case only, so WIW's own Wan-AI/... ids stop it at start-up"),
    "FTwan22": WiwScript("downstream/api_models/wan_model_diffsynth.py",
                         f"--model_id=MODEL_ID --ft_method=lora --lora_path=EPOCH_FILE {_SIZES}",
                         "as FTwan21"),
    "cosmos25": WiwScript("downstream/api_models/cosmos25_model.py", "",
                          "same fixed seed (0) at every call; needs cosmos_predict2 and pydantic 1"),
    "nwm": WiwScript("downstream/api_models/nwm_model.py", "--ckpt_path=NWM_CKPT",
                     "unseeded; 224x224 output, 14 actions per row, CUDA only; no --task_type"),
    "se3ds": WiwScript("downstream/api_models/se3ds_model.py", "--ckpt_path=SE3DS_CKPT",
                       "TensorFlow; reads panoramas from save_dirs, not b_image; no --task_type"),
    "pathdreamer": WiwScript("downstream/api_models/pathdreamer_model.py", "--ckpt_path=PATHDREAMER_CKPT",
                             "TensorFlow; forward-only actions, panoramas from save_dirs; no --task_type"),
    "igen": WiwScript("FTsvd/eval_inference.py",
                      "--unet_path=CHECKPOINT_DIR --svd_path=SVD_FOLDER --action_input_channel=14 --task_type=navigation",
                      _KEPT.format(seed="seed 1") + "; needs WIW's modified diffusers (FTsvd/diffusers-private); "
                      "never sets its world_model_name, so it dies on its first request"),
    "gen4tur": WiwScript("downstream/api_models/runway_model.py", "--width=480 --height=480",
                         "not in WIW's public repository (a Runway API client)"),
}


def wiw_script_rows() -> list[tuple[str, str, str]]:
    """(wm_type, --wm-worker-cmd, what the suite will find) for ``pytest-wiw list``."""
    return [(name, script.command(), script.known) for name, script in WIW_SCRIPTS.items()]
