"""Peak GPU memory of an FT type's floor (FT and zero-shot calls in one worker) against its base pipeline alone.

    python benchmarks/ft_memory.py [--device cuda] [--dtype bfloat16] [--offload pinned|none] [--json OUT.json]
                                   FT_TYPE[=PATH] [...]

Each side runs in a fresh process, as the worker builds the wrapper: the base type's wrapper on the FT
checkpoint's base (from its card) with one generation of the reference request R; then the FT type's
wrapper with R, R inside ``zero_shot()`` and R again. Peak = ``torch.cuda.max_memory_allocated()`` over the
load and the calls. Issue 15's goal: FT + zero-shot at most 1.05x the base alone, with ``--offload pinned``.
Without PATH the tiny embedded default is used. On a CPU the peak host RSS stands in (tests the script).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SIDE = r"""
import dataclasses, hashlib, json, resource, sys, torch
from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.api.registry import get_spec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.session.subject import REFERENCE_ACTIONS, reference_image
from pytest_wiw.checkpoints.cache_dir import default_cache_dir
from pytest_wiw.runtime.tiny import ensure_tiny
from pytest_wiw.runtime.settings import configure_torch, effective_generation, resolve_base_path
from pytest_wiw.runtime.wrapper_class import load_wrapper_class
cfg = json.loads(sys.argv[1])
configure_torch(1, True, cfg["device"])
ft_spec = get_spec(cfg["ft"])
if cfg["ckpt"]:
    ft_ckpt = open_checkpoint(cfg["ckpt"])
    base_ckpt = open_checkpoint(resolve_base_path(ft_ckpt, None))
else:
    paths = ensure_tiny(ft_spec, get_spec(ft_spec.base), default_cache_dir())
    ft_ckpt, base_ckpt = open_checkpoint(paths[0]), open_checkpoint(paths[1])
if cfg["side"] == "base":
    spec, ckpt, base = get_spec(ft_spec.base), base_ckpt, None
else:
    spec, ckpt, base = ft_spec, ft_ckpt, base_ckpt
spec = dataclasses.replace(spec, defaults=effective_generation(spec.defaults, [base_ckpt, ft_ckpt], {}))
model = load_wrapper_class(spec.wrapper)(spec, ckpt, base_ckpt=base, device=cfg["device"],
                                         dtype=getattr(torch, cfg["dtype"]), options={"offload": cfg["offload"]})
g, task = spec.defaults, model.tasks[0]
r = GenerationRequest(images=reference_image(g.height, g.width)[None], actions=[REFERENCE_ACTIONS[task]],
                      task_type=task, seed=0, request_model_name=spec.name)
digest = lambda video: hashlib.sha256(video.tobytes()).hexdigest()[:16]
digests = {cfg["side"]: digest(model.generate(r))}
if cfg["side"] == "ft":
    with model.zero_shot():
        digests["zero_shot"] = digest(model.generate(r))
    digests["ft_again"] = digest(model.generate(r))
cuda = cfg["device"].startswith("cuda")
print(json.dumps({"peak_bytes": torch.cuda.max_memory_allocated() if cuda else
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "measure": "gpu max_memory_allocated" if cuda else "host peak RSS", "stats": model.stats(),
                  "digests": digests}))
"""


def side(ft_type: str, path: str | None, which: str, args) -> dict:
    cfg = {"ft": ft_type, "ckpt": path, "side": which, "device": args.device, "dtype": args.dtype,
           "offload": args.offload}
    out = subprocess.run([sys.executable, "-c", SIDE, json.dumps(cfg)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{ft_type} ({which}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("types", nargs="+", metavar="FT_TYPE[=PATH]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--offload", default="pinned", choices=("pinned", "none"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    print("| FT type | offload | base alone | FT + zero-shot | ratio | swaps | zero-shot == base | FT digest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in args.types:
        ft_type, _, path = item.partition("=")
        base, ft = side(ft_type, path or None, "base", args), side(ft_type, path or None, "ft", args)
        ratio = ft["peak_bytes"] / base["peak_bytes"]
        offload = ft["stats"].get("offload", {})
        rows.append({"ft_type": ft_type, "checkpoint": path or "tiny default", "offload": args.offload,
                     "device": args.device, "dtype": args.dtype, "measure": ft["measure"],
                     "base_peak_bytes": base["peak_bytes"], "ft_peak_bytes": ft["peak_bytes"],
                     "ratio": round(ratio, 4), "offload_stats": offload,
                     # sha256 of each output: pinned and none must agree, zero_shot must equal base (bitwise)
                     "digests": {**base["digests"], **ft["digests"]},
                     "zero_shot_equals_base": ft["digests"]["zero_shot"] == base["digests"]["base"],
                     "ft_repeatable": ft["digests"]["ft"] == ft["digests"]["ft_again"]})
        print(f"| {ft_type} | {args.offload} | {base['peak_bytes'] / 2**30:.2f} GiB | {ft['peak_bytes'] / 2**30:.2f} GiB "
              f"| {ratio:.3f}x | {offload.get('swaps', '-')} ({offload.get('swap_seconds', '-')} s) "
              f"| {rows[-1]['zero_shot_equals_base']} | {ft['digests']['ft']} |", flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
