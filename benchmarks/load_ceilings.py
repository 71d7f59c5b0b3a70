"""Loading ceilings of this host, and how close the wrappers' own load comes to them (issue 15).

    python benchmarks/load_ceilings.py [--device cuda] [--dtype bfloat16] [--json OUT.json] WM=PATH [WM=PATH ...]

For each checkpoint (an FT type's base comes from its card), over the weight files the wrapper reads (the
base pipeline's and the FT's; of a whole FT pipeline folder only its ``transformer/`` or ``unet/``):

- ``warm``: the page-cache-warm ceiling, ``safetensors.torch.load_file(device=DEVICE)`` of every file
  after a pass that brought them into the page cache;
- ``cold``: the cold-disk ceiling, the same after the files were dropped from the page cache:
  ``os.sync()`` then ``posix_fadvise(POSIX_FADV_DONTNEED)`` on each file (no root needed; clean pages
  of a file no process maps are dropped), or ``/proc/sys/vm/drop_caches`` where it is writable;
- the wrapper's own load, as the worker builds it (a fresh process: imports and the CUDA context outside
  the timing, the constructor timed, ``--wm-offload`` as given), page cache warm and cold;
- ``load / ceiling`` for both (issue 15's goal: at least 0.90).

On a CUDA host it also prints the pinned and pageable host-to-device copy rates. Prints one JSON object per
line; ``--json`` writes them all. On a CPU (``--device cpu``, tiny checkpoints) it tests the script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GIB = 1024 ** 3
#: Host-to-device copy measured on this many bytes, median of H2D_REPEATS copies.
H2D_BYTES = 4 * GIB
H2D_REPEATS = 5
#: Component folders a whole-pipeline FT checkpoint is read for (the rest of it is not loaded).
FT_COMPONENTS = ("transformer", "unet")

# The wrapper's load in a fresh process, as the worker does it; prints the constructor's seconds.
WRAPPER_LOAD = r"""
import dataclasses, json, sys, time
import torch
from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.api.registry import get_spec
from pytest_wiw.runtime.settings import configure_torch, effective_generation, resolve_base_path
from pytest_wiw.runtime.wrapper_class import load_wrapper_class
cfg = json.loads(sys.argv[1])
configure_torch(1, True, cfg["device"])
spec = get_spec(cfg["wm"])
ckpt = open_checkpoint(cfg["ckpt"])
base = open_checkpoint(resolve_base_path(ckpt, None)) if spec.is_ft else None
spec = dataclasses.replace(spec, defaults=effective_generation(spec.defaults, [base, ckpt], {}))
cls = load_wrapper_class(spec.wrapper)
cuda = cfg["device"].startswith("cuda")
if cuda:
    torch.zeros(1, device=cfg["device"]); torch.cuda.synchronize()
t0 = time.perf_counter()
model = cls(spec, ckpt, base_ckpt=base, device=cfg["device"], dtype=getattr(torch, cfg["dtype"]),
            options={"offload": cfg["offload"]})
if cuda:
    torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def weight_files(wm_type: str, path: str) -> list[Path]:
    """The files the wrapper of ``wm_type`` reads for checkpoint ``path`` (and its base)."""
    from pytest_wiw.api.registry import get_spec
    from pytest_wiw.checkpoints.files import open_checkpoint
    from pytest_wiw.runtime.settings import resolve_base_path

    spec = get_spec(wm_type)
    ckpt = open_checkpoint(path)
    files = list(ckpt.files)
    if spec.is_ft and ckpt.format == "diffusers":
        files = [f for f in files if ckpt.rel(f).split("/")[0] in FT_COMPONENTS]
    if spec.is_ft:
        files += open_checkpoint(resolve_base_path(ckpt, None)).files
    return files


def evict(files: list[Path]) -> str:
    """Drop ``files`` from the page cache (written back first, so their pages are clean); says how."""
    os.sync()
    try:
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise(DONTNEED)"
    except (AttributeError, OSError):  # no fadvise on this platform or file system
        pass
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        return "not evicted (no fadvise, /proc/sys/vm/drop_caches not writable): cold = warm"


def warm(files: list[Path]) -> None:
    """Read every file once, into the page cache."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(64 * 2**20):
                pass


def ceiling_seconds(torch, files: list[Path], device: str) -> float:
    """``load_file(device=...)`` of every file, in seconds."""
    from safetensors.torch import load_file

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for f in files:
        tensors = load_file(str(f), device=device)
        del tensors
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if cuda:
        torch.cuda.empty_cache()
    return seconds


def wrapper_seconds(wm_type: str, path: str, args) -> float | str:
    cfg = {"wm": wm_type, "ckpt": path, "device": args.device, "dtype": args.dtype, "offload": args.offload}
    out = subprocess.run([sys.executable, "-c", WRAPPER_LOAD, json.dumps(cfg)], capture_output=True, text=True)
    if out.returncode:
        return "error: " + (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def h2d(torch, pinned: bool) -> float:
    host = torch.empty(H2D_BYTES, dtype=torch.uint8, pin_memory=pinned)
    host.random_(0, 255)
    dev = torch.empty_like(host, device="cuda")
    times = []
    for _ in range(H2D_REPEATS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=pinned)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return H2D_BYTES / GIB / statistics.median(times)


def measure(wm_type: str, path: str, args, torch) -> dict:
    files = weight_files(wm_type, path)
    gib = sum(f.stat().st_size for f in files) / GIB
    row = {"wm_type": wm_type, "checkpoint": path, "files": len(files), "weights_gib": round(gib, 3),
           "device": args.device, "dtype": args.dtype, "offload": args.offload}
    warm(files)
    row["warm_ceiling_s"] = ceiling_seconds(torch, files, args.device)
    row["evicted_with"] = evict(files)
    row["cold_ceiling_s"] = ceiling_seconds(torch, files, args.device)
    warm(files)
    row["warm_load_s"] = wrapper_seconds(wm_type, path, args)
    evict(files)
    row["cold_load_s"] = wrapper_seconds(wm_type, path, args)
    for kind in ("warm", "cold"):
        ceiling, load = row[f"{kind}_ceiling_s"], row[f"{kind}_load_s"]
        row[f"{kind}_ceiling_gib_s"] = round(gib / ceiling, 3)
        if isinstance(load, float):
            row[f"{kind}_load_gib_s"] = round(gib / load, 3)
            row[f"{kind}_load_over_ceiling"] = round(ceiling / load, 3)  # throughput ratio: 1.0 = at the ceiling
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def parse_args(argv):
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="WM=PATH")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--offload", default="pinned", choices=("pinned", "none"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    bad = [c for c in args.checkpoints if "=" not in c]
    if bad:
        parser.error(f"expected WM=PATH, got {bad[0]!r}")
    return args


def main(args) -> None:
    import torch

    rows = []
    if args.device.startswith("cuda"):
        rows.append({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "pinned_h2d_gib_s": round(h2d(torch, True), 1), "pageable_h2d_gib_s": round(h2d(torch, False), 1)})
        print(json.dumps(rows[-1]), flush=True)
    for item in args.checkpoints:
        wm_type, _, path = item.partition("=")
        rows.append(measure(wm_type, path, args, torch))
        print(json.dumps(rows[-1]), flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
