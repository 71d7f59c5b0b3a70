"""The suite against its floor, per native wm_type: loads and generation calls, and wall time.

For each wm_type (its tiny embedded checkpoint unless --ckpt-path WM=PATH names a real one):
- runs `pytest --wm WM --wm-report DIR --wm-max-examples 0` and reads the counted loads and generation
  calls from its report, with the suite's wall time;
- times the floor in the same run, in a fresh process: one load of the same checkpoint(s) plus the
  floor's generations (3, or 4 for an FT type) made directly through the wrapper's diffusers pipeline,
  on the same device, dtype and torch settings, including the process start and imports the suite's
  worker also pays.

    python benchmarks/bench_floor.py [--repeat N] [--ckpt-path WM=PATH ...] [--device cuda] [--dtype bfloat16]
                                     [--offload pinned|none] [--json OUT.json] [WM_TYPE ...]

With ``--repeat N`` each wm_type runs N interleaved pairs (suite, floor, suite, floor, ...): machines and
page caches drift, and one pair of timings says little (issue 15 saw the floor move from 36 s to 60 s
between two H200s). Prints a table: wm_type, loads/generations (floor), median suite and floor seconds,
and the median of the N suite / floor ratios with their spread (min-max); ``--json`` writes every timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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
from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.api.registry import get_spec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.session.subject import reference_image, REFERENCE_ACTIONS
from pytest_wiw.checkpoints.cache_dir import default_cache_dir
from pytest_wiw.runtime.tiny import ensure_tiny
from pytest_wiw.session.pool import CUBLAS_WORKSPACE
from pytest_wiw.runtime.settings import configure_torch, effective_generation, resolve_base_path
from pytest_wiw.runtime.wrapper_class import load_wrapper_class
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
                                         dtype=getattr(torch, cfg["dtype"]), options={"offload": cfg["offload"]})
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
    workdir.mkdir(parents=True, exist_ok=True)
    if args.fresh_digests:  # every suite hashes its checkpoint again (overlapped with the worker's load)
        from pytest_wiw.checkpoints.cache_dir import default_cache_dir
        from pytest_wiw.checkpoints.digest_cache import DIGESTS_DIR

        shutil.rmtree(default_cache_dir() / DIGESTS_DIR, ignore_errors=True)
    ckpt = args.ckpt_paths.get(wm_type)
    start = time.perf_counter()
    # --opt=VALUE forms: a path after a space would move pytest's rootdir (pytest issue 8846)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--wm={wm_type}",
                           "--wm-max-examples=0", f"--wm-report={report}", f"--wm-device={args.device}",
                           f"--wm-dtype={args.dtype}", f"--wm-offload={args.offload}",
                           *([f"--ckpt-path={ckpt}"] if ckpt else [])],
                          cwd=workdir, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if not (report / f"{wm_type}.json").is_file():
        raise SystemExit(f"the suite of {wm_type} wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    written = json.loads((report / f"{wm_type}.json").read_text())
    return seconds, {**written["figures"], "breakdown": suite_breakdown(written)}


#: the report's figures that say where a suite's time goes beside the floor's work
BREAKDOWN_FIGURES = ("load_seconds", "weight_audit_seconds", "seconds_per_generation")


def suite_breakdown(report: dict) -> dict:
    """Where the suite's time went: the worker's load, its weight audit, a generation, the session's timeline
    (before the worker was spawned, its start-up, its calls, the idle gaps between them and what came after
    its last call: pytest_wiw.session.timeline), and each check's own duration as pytest measured it (a check
    that waits for the worker carries the load and the generations)."""
    figures = {k: report["figures"].get(k) for k in BREAKDOWN_FIGURES}
    return {**figures, "timeline": report.get("timeline"),
            "check_seconds": {c["name"]: c["duration"] for c in report.get("checks", [])}}


def after_report(suite_s: float, breakdown: dict) -> float | None:
    """The suite's seconds its timeline does not cover: from the report's writing to the pytest process's exit."""
    timeline = breakdown.get("timeline")
    if not timeline or timeline.get("worker_startup_seconds") is None:
        return None
    covered = sum(timeline[k] for k in ("before_worker_seconds", "worker_startup_seconds", "idle_seconds",
                                         "call_seconds", "after_last_call_seconds"))
    return round(suite_s - covered, 2)


def run_floor(wm_type: str, args: argparse.Namespace) -> float:
    cfg = {"wm": wm_type, "ckpt": args.ckpt_paths.get(wm_type), "device": args.device, "dtype": args.dtype,
           "offload": args.offload}
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
    parser.add_argument("--repeat", type=int, default=1, help="interleaved suite/floor pairs per wm_type")
    parser.add_argument("--offload", default="pinned", choices=("pinned", "none"),
                        help="--wm-offload of the suite, and the same for the floor's wrapper")
    parser.add_argument("--json", type=Path, default=None, help="also write every timing here")
    parser.add_argument("--fresh-digests", action="store_true",
                        help="forget the checkpoint digests before each suite (default: the second and later suites "
                             "take them from the digest cache, as a user's later runs do)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="no warm-up floor before the first pair (checkpoints just written are in the page cache "
                             "already; the embedded defaults need it: it builds them)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.ckpt_paths = dict(item.split("=", 1) for item in args.ckpt_path)
    return args


def summarize(name: str, pairs: list[dict], args: argparse.Namespace) -> dict:
    """One wm_type's row from the pairs timed so far (``complete`` is false while fewer than ``args.repeat``)."""
    ratios = [p["ratio"] for p in pairs]
    return {"wm_type": name, "pairs": pairs, "complete": len(pairs) == args.repeat, "repeat": args.repeat,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "suite_s_median": statistics.median(p["suite_s"] for p in pairs),
            "floor_s_median": statistics.median(p["floor_s"] for p in pairs),
            "floor_calls": 4 if name.startswith("FT") or name == "igen" else 3, "device": args.device,
            "dtype": args.dtype, "offload": args.offload}


def measure(name: str, workdir: Path, args: argparse.Namespace, on_pair=None) -> dict:
    """``args.repeat`` interleaved (suite, floor) pairs of one wm_type, after one floor run that builds the tiny
    checkpoints (so no timing pays for them) and warms the page cache (unless ``--no-warmup``). ``on_pair(row)``
    gets the row so far after
    each pair."""
    if args.warmup:
        start = time.perf_counter()
        run_floor(name, args)
        print(f"{name} warm-up floor: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    pairs = []
    for i in range(args.repeat):
        suite_s, figures = run_suite(name, workdir / f"run{i}", args)
        floor_s = run_floor(name, args)
        pairs.append({"suite_s": round(suite_s, 2), "floor_s": round(floor_s, 2), "ratio": round(suite_s / floor_s, 3),
                      "loads": figures["loads"], "generations": figures["generations"],
                      "breakdown": figures["breakdown"], "after_report_s": after_report(suite_s, figures["breakdown"])})
        # each pair as it comes: a stage cut off by its command's time limit still shows the pairs it finished
        print(f"{name} pair {i + 1}/{args.repeat}: {pairs[-1]}", file=sys.stderr, flush=True)
        if on_pair is not None:
            on_pair(summarize(name, pairs, args))
    return summarize(name, pairs, args)


def main(args: argparse.Namespace) -> None:
    print(f"| wm_type | loads | generation calls (floor) | suite s | floor s | suite / floor, median of {args.repeat} "
          "(min-max) |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.wm_types:
            def write_partial(row: dict) -> None:  # a stage cut off by its time limit keeps the pairs it finished
                if args.json is not None:
                    args.json.write_text(json.dumps([*results, row], indent=2) + "\n")

            row = measure(name, Path(tmp) / name, args, on_pair=write_partial)
            results.append(row)
            last = row["pairs"][-1]
            print(f"| {name} | {last['loads']} | {last['generations']} ({row['floor_calls']}) | "
                  f"{row['suite_s_median']:.1f} | {row['floor_s_median']:.1f} | {row['ratio_median']:.2f}x "
                  f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) |", flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
