"""Loading ceilings of this GPU host, and how close a diffusers pipeline load comes to them.

    python benchmarks/load_ceilings.py PIPELINE_DIR [PIPELINE_DIR ...]

Prints one JSON object per line:
- ``pinned_h2d`` / ``pageable_h2d``: host-to-device copy of a 4 GiB buffer, GiB/s (median of 5);
- ``safetensors_to_gpu``: every ``*.safetensors`` under the folder read with
  ``safetensors.torch.load_file(device="cuda")``, GiB/s, first pass (page cache as found: it was
  just written, so usually warm; ``page_cache`` says whether it could be dropped) and second pass;
- ``pipeline_load``: the pipeline as the wrappers load it (``from_pretrained`` on the CPU, then
  ``.to("cuda")``) and with ``device_map="cuda"`` (weights go straight to the GPU), each in a fresh
  process with CUDA already initialised, in seconds and GiB/s of weight bytes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

GIB = 1024 ** 3

# One pipeline load in a fresh process; prints seconds. argv: folder, mode ("to" or "device_map").
LOAD_SCRIPT = r"""
import json, sys, time, torch, diffusers
folder, mode = sys.argv[1], sys.argv[2]
torch.zeros(1, device="cuda"); torch.cuda.synchronize()   # CUDA context outside the timing
index = json.load(open(folder + "/model_index.json"))
pipeline_cls = getattr(diffusers, index["_class_name"])   # the class itself: DiffusionPipeline drops safety_checker
extra = {}
if "safety_checker" in index:   # Cosmos: no cosmos_guardrail here (see wrappers.cosmos)
    from wrappers.cosmos import NoOpSafetyChecker
    extra["safety_checker"] = NoOpSafetyChecker()
t0 = time.perf_counter()
if mode == "device_map":
    pipe = pipeline_cls.from_pretrained(folder, dtype=torch.bfloat16, device_map="cuda", **extra)
else:
    pipe = pipeline_cls.from_pretrained(folder, dtype=torch.bfloat16, **extra).to("cuda")
torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t0, "gpu_allocated": torch.cuda.memory_allocated()}))
"""


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


def drop_page_cache() -> bool:
    """Ask the kernel to drop clean pages (root only); True if it took."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def h2d(torch, pinned: bool) -> float:
    host = torch.empty(4 * GIB, dtype=torch.uint8, pin_memory=pinned)
    host.random_(0, 255)
    dev = torch.empty_like(host, device="cuda")
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=pinned)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 4 / statistics.median(times)


def safetensors_pass(torch, files: list[Path]) -> float:
    from safetensors.torch import load_file

    nbytes = sum(f.stat().st_size for f in files)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for f in files:
        tensors = load_file(str(f), device="cuda")
        del tensors
    torch.cuda.synchronize()
    return nbytes / GIB / (time.perf_counter() - t0)


def pipeline_load(folder: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(folder), mode], capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(folders: list[Path]) -> None:
    import torch

    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "pinned_h2d_gib_s": round(h2d(torch, True), 1),
                      "pageable_h2d_gib_s": round(h2d(torch, False), 1)}), flush=True)
    for folder in folders:
        files = weight_files(folder)
        gib = sum(f.stat().st_size for f in files) / GIB
        cold = drop_page_cache()
        first = safetensors_pass(torch, files)
        second = safetensors_pass(torch, files)
        torch.cuda.empty_cache()
        row = {"folder": str(folder), "weights_gib": round(gib, 2), "page_cache": "dropped" if cold else "as found",
               "safetensors_to_gpu_gib_s": [round(first, 2), round(second, 2)]}
        for mode in ("to", "device_map"):
            drop_page_cache()
            load = pipeline_load(folder, mode)
            if "seconds" in load:
                load["gib_s"] = round(gib / load["seconds"], 2)
                load["seconds"] = round(load["seconds"], 2)
            row[f"pipeline_load_{mode}"] = load
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
