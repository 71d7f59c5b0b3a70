"""The suite against its floor, per native wm_type: loads and generation calls, and wall time.

For each wm_type (its tiny embedded checkpoint unless --ckpt-path WM=PATH names a real one):
- runs `pytest --wm WM --wm-report DIR --wm-max-examples 0` and reads the counted loads and generation
  calls from its report, with the suite's wall time;
- times the floor in the same run, in a fresh process: one load of the same checkpoint(s) plus the
  floor's generations (3, or 4 for an FT type) made directly through the wrapper's diffusers pipeline,
  on the same device, dtype and torch settings, including the process start and imports the suite's
  worker also pays.

    python benchmarks/bench_floor.py [--ckpt-path WM=PATH ...] [--device cuda] [--dtype bfloat16] [WM_TYPE ...]

Prints a table: wm_type, loads/generations (floor), suite seconds, floor seconds, suite / floor.
"""

from __future__ import annotations

import argparse
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
import dataclasses, json, os, sys, time, numpy as np, torch
from pytest_wiw.checkpoint import open_checkpoint
from pytest_wiw.registry import get_spec
from pytest_wiw.request import GenerationRequest
from pytest_wiw.subject import reference_image, REFERENCE_ACTIONS
from pytest_wiw.tiny import default_cache_dir, ensure_tiny
from pytest_wiw.pool import CUBLAS_WORKSPACE
from pytest_wiw.worker.server import configure_torch, effective_generation, load_wrapper_class, resolve_base_path
cfg = json.loads(sys.argv[1])
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
configure_torch(1, True, cfg["device"])
spec = get_spec(cfg["wm"]); base_spec = get_spec(spec.base) if spec.base else None
if cfg["ckpt"]:
    ckpt = open_checkpoint(cfg["ckpt"])
    base = open_checkpoint(resolve_base_path(ckpt, None)) if spec.is_ft else None
else:
    ckpt_path, base_path = ensure_tiny(spec, base_spec, default_cache_dir())
    ckpt = open_checkpoint(ckpt_path); base = open_checkpoint(base_path) if base_path else None
spec = dataclasses.replace(spec, defaults=effective_generation(spec.defaults, [base, ckpt], {}))
model = load_wrapper_class(spec.wrapper)(spec, ckpt, base_ckpt=base, device=cfg["device"],
                                         dtype=getattr(torch, cfg["dtype"]), options={})
g = spec.defaults; task = model.tasks[0]
r = GenerationRequest(images=reference_image(g.height, g.width)[None], actions=[REFERENCE_ACTIONS[task]],
                      task_type=task, seed=0, request_model_name=spec.name)
model.generate(r)
model.generate(GenerationRequest(np.concatenate([r.images, r.images]), r.actions * 2, task, [1, 0], spec.name))
model.generate(r)
if spec.is_ft:
    with model.zero_shot():
        model.generate(r)
if cfg["device"].startswith("cuda"):
    torch.cuda.synchronize()
"""


def run_suite(wm_type: str, workdir: Path, args: argparse.Namespace) -> tuple[float, dict]:
    report = workdir / wm_type
    ckpt = args.ckpt_paths.get(wm_type)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--wm", wm_type,
                    "--wm-max-examples", "0", "--wm-report", str(report), "--wm-device", args.device,
                    "--wm-dtype", args.dtype, *(["--ckpt-path", ckpt] if ckpt else [])],
                   cwd=workdir, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    figures = json.loads((report / f"{wm_type}.json").read_text())["figures"]
    return seconds, figures


def run_floor(wm_type: str, args: argparse.Namespace) -> float:
    cfg = {"wm": wm_type, "ckpt": args.ckpt_paths.get(wm_type), "device": args.device, "dtype": args.dtype}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, json.dumps(cfg)], check=True, capture_output=True)
    return time.perf_counter() - start


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wm_types", nargs="*", default=NATIVE)
    parser.add_argument("--ckpt-path", action="append", default=[], metavar="WM=PATH",
                        help="a real checkpoint for WM (an FT type's base comes from its card)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    args.ckpt_paths = dict(item.split("=", 1) for item in args.ckpt_path)
    return args


def main(args: argparse.Namespace) -> None:
    names = args.wm_types
    print("| wm_type | loads | generation calls (floor) | suite s | floor s | suite / floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            run_floor(name, args)  # builds the tiny checkpoints, so neither timing pays for them
            suite_s, figures = run_suite(name, Path(tmp), args)
            floor_s = run_floor(name, args)
            floor_calls = 4 if name.startswith("FT") or name == "igen" else 3
            print(f"| {name} | {figures['loads']} | {figures['generations']} ({floor_calls}) | {suite_s:.1f} | "
                  f"{floor_s:.1f} | {suite_s / floor_s:.2f}x |", flush=True)


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
