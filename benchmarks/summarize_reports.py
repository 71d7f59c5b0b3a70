"""One markdown table of the figures in pytest-wiw report folders (``--wm-report`` output).

    python benchmarks/summarize_reports.py REPORT_DIR [REPORT_DIR ...]

A row per wm_type: verdict, checkpoint weight GiB (an FT type's base included), loads, generation
calls, load seconds and GiB/s, seconds per generation, peak GPU memory at load and over the run, and
for an FT type its peak GPU memory over its base's (when the base ran in the same folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GIB = 1024 ** 3


def rows(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def weight_gib(report: dict) -> float:
    total = sum((report.get(k) or {}).get("size_bytes", 0) for k in ("checkpoint", "base_checkpoint"))
    return total / GIB


def run_peak(report: dict) -> int | None:
    return report["figures"].get("peak_gpu_bytes") or report["figures"].get("load_gpu_peak_bytes")


def gib(value) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def main(folders: list[Path]) -> None:
    reports = {}
    for folder in folders:
        reports.update(rows(folder))
    print("| wm_type | verdict | weights GiB | loads | generation calls | load s | load GiB/s | s/generation "
          "| GPU peak at load GiB | GPU peak over run GiB | FT peak / base peak |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in reports.items():
        f = r["figures"]
        size, load_s = weight_gib(r), f.get("load_seconds")
        rate = f"{size / load_s:.2f}" if load_s else "-"
        base = reports.get(r.get("base") or "")
        ratio = (f"{run_peak(r) / run_peak(base):.3f}x"
                 if base and run_peak(r) and run_peak(base) else "-")
        print(f"| {name} | {r['verdict']} | {size:.2f} | {f.get('loads')} | {f.get('generations')} | "
              f"{load_s if load_s is not None else '-'} | {rate} | {f.get('seconds_per_generation', '-')} | "
              f"{gib(f.get('load_gpu_peak_bytes'))} | {gib(run_peak(r))} | {ratio} |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
