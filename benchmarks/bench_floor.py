"""The suite against its floor, per native wm_type: loads and generation calls, and wall time.

For each wm_type (tiny embedded defaults unless --ckpt-path is given through --pytest-args):
- runs `pytest --wm WM --wm-report DIR --wm-max-examples 0` and reads the counted loads and generation
  calls from its report, with the suite's wall time;
- times the floor in the same run, in a fresh process: one load of the same checkpoint(s) plus the
  floor's generations (3, or 4 for an FT type) made directly through the wrapper's diffusers pipeline,
  including the process start and imports the suite's worker also pays.

    python benchmarks/bench_floor.py [WM_TYPE ...]

Prints a table: wm_type, loads/generations (floor), suite seconds, floor seconds, suite / floor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NATIVE = ("svd ltx hunyuan cosmos20 cosmos25 wan21 wan22 wan22-14B FTcosmos FTltx FTwan21 FTwan22 FTwan22-14B "
          "igen").split()

# Runs in a fresh interpreter: load once, then the floor's generations, as a bare script would.
FLOOR_SCRIPT = r"""
import dataclasses, sys, time, numpy as np, torch
from pytest_wiw.checkpoint import open_checkpoint
from pytest_wiw.registry import get_spec
from pytest_wiw.request import GenerationRequest
from pytest_wiw.subject import reference_image, REFERENCE_ACTIONS
from pytest_wiw.tiny import default_cache_dir, ensure_tiny
from pytest_wiw.worker.server import effective_generation, load_wrapper_class
torch.set_num_threads(1)
spec = get_spec(sys.argv[1]); base_spec = get_spec(spec.base) if spec.base else None
ckpt_path, base_path = ensure_tiny(spec, base_spec, default_cache_dir())
ckpt = open_checkpoint(ckpt_path); base = open_checkpoint(base_path) if base_path else None
spec = dataclasses.replace(spec, defaults=effective_generation(spec.defaults, [base, ckpt], {}))
model = load_wrapper_class(spec.wrapper)(spec, ckpt, base_ckpt=base, device="cpu", dtype=torch.float32, options={})
g = spec.defaults; task = model.tasks[0]
r = GenerationRequest(images=reference_image(g.height, g.width)[None], actions=[REFERENCE_ACTIONS[task]],
                      task_type=task, seed=0, request_model_name=spec.name)
model.generate(r)
model.generate(GenerationRequest(np.concatenate([r.images, r.images]), r.actions * 2, task, [1, 0], spec.name))
model.generate(r)
if spec.is_ft:
    with model.zero_shot():
        model.generate(r)
"""


def run_suite(wm_type: str, workdir: Path) -> tuple[float, dict]:
    report = workdir / wm_type
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--wm", wm_type,
                    "--wm-max-examples", "0", "--wm-report", str(report)], cwd=workdir, capture_output=True,
                   check=False)
    seconds = time.perf_counter() - start
    figures = json.loads((report / f"{wm_type}.json").read_text())["figures"]
    return seconds, figures


def run_floor(wm_type: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, wm_type], check=True, capture_output=True)
    return time.perf_counter() - start


def main(names: list[str]) -> None:
    print("| wm_type | loads | generation calls (floor) | suite s | floor s | suite / floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            run_floor(name)  # builds the tiny checkpoints, so neither timing pays for them
            suite_s, figures = run_suite(name, Path(tmp))
            floor_s = run_floor(name)
            floor_calls = 4 if name.startswith("FT") or name == "igen" else 3
            print(f"| {name} | {figures['loads']} | {figures['generations']} ({floor_calls}) | {suite_s:.1f} | "
                  f"{floor_s:.1f} | {suite_s / floor_s:.2f}x |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or NATIVE)
