"""benchmarks/igen_real_size.py --smoke: WIW's layout at CPU size, and the suite passes on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import make_checks_dir, run_checks

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "igen_real_size.py"


def test_smoke_build_is_wiws_layout_and_passes(tmp_path, run_env):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), "--smoke", "--device", "cpu"], env=run_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "igen" / "checkpoint-6000"
    assert sorted(p.name for p in (ckpt / "unet").iterdir()) == ["config.json",
                                                                 "diffusion_pytorch_model.fp16.safetensors"]
    assert "action_input_channel" not in json.loads((ckpt / "unet" / "config.json").read_text())
    assert (out / "svd" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert (out / "svd" / "model_index.json").is_file() and (ckpt / "optimizer.bin").is_file()
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "igen", "--wm", "svd",
                     f"--ckpt-path=igen={ckpt}", f"--ckpt-path=svd={out / 'svd'}",
                     "--wm-opt=variant=fp16")  # the base holds both variants, as the hub's does; WIW loads fp16
    assert run.returncode == 0, run.output[-3000:]
    for check in ("test_differs_from_zero_shot", "test_honest_baseline", "test_checkpoint_applied"):
        assert run[f"{check}[igen]"].outcome == "passed", check
