"""One Markdown table of issue 15's goals from the JSON that benchmarks/gpu_realistic.sh's stages wrote.

    python benchmarks/bench_table.py OUT_DIR [OUT_DIR ...] > table.md

Reads ``floor-*.json`` (bench_floor.py), ``memory-*.json`` (ft_memory.py) and ``ceilings-*.json``
(load_ceilings.py), and ``machine-*.json`` for the card, driver and date. A goal with no measurement is
listed as missing, never left out. Needs no GPU: the stages' folders can be gathered on any machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GIB = 1024 ** 3
#: Issue 15's goals.
SUITE_OVER_FLOOR_MAX = 1.10
FT_MEMORY_OVER_BASE_MAX = 1.05
LOAD_OVER_CEILING_MIN = 0.90
FLOOR_TYPES = ("FTwan21", "FTcosmos", "FTltx", "igen")
CEILING_FAMILIES = ("wan", "cosmos", "ltx", "igen")


def load_all(dirs: list[Path], pattern: str) -> dict[str, object]:
    """Stage name -> its JSON, over every folder (a later folder's file wins)."""
    found = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob(pattern)):
            try:
                found[path.stem] = json.loads(path.read_text())
            except ValueError:
                continue
    return found


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def floor_rows(floors: dict) -> list[str]:
    rows = []
    for wm in FLOOR_TYPES:
        data = floors.get(f"floor-{wm}")
        figure = f"suite / floor, {wm} (`--wm-max-examples 0`)"
        if not data:
            rows.append(f"| {figure} | <= {SUITE_OVER_FLOOR_MAX:.2f}x | missing: stage floor-{wm} did not run | - | - |")
            continue
        r = data[0]
        cut = (f", cut by the time limit after {len(r['pairs'])} of {r['repeat']}" if r.get("complete") is False
               else "")
        rows.append(f"| {figure} | <= {SUITE_OVER_FLOOR_MAX:.2f}x | suite {r['suite_s_median']:.1f} s, floor "
                    f"{r['floor_s_median']:.1f} s (median of {len(r['pairs'])} interleaved pairs{cut}; ratio spread "
                    f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {r['ratio_median']:.2f}x | "
                    f"{met(r['ratio_median'] <= SUITE_OVER_FLOOR_MAX)} |")
    return rows


#: The parts of a suite's timeline (pytest_wiw.session.timeline) that the floor does not pay: (key, column).
TIMELINE_PARTS = (("before_worker_seconds", "before the worker"), ("idle_seconds", "worker idle between calls"),
                  ("after_last_call_seconds", "after its last call"), ("after_report_s", "report to exit"))


def timeline_rows(floors: dict) -> list[str]:
    """Where each floor-* suite spent its seconds beyond the worker's start-up and calls: the median of each part
    over the pairs, and the longest idle gap of any pair with the call it came before."""
    import statistics

    rows = []
    for wm in FLOOR_TYPES:
        pairs = (floors.get(f"floor-{wm}") or [{}])[0].get("pairs", [])
        timed = [p for p in pairs if (p.get("breakdown") or {}).get("timeline")]
        if not timed:
            continue
        cells = []
        for key, _ in TIMELINE_PARTS:
            values = [p[key] if key in p else p["breakdown"]["timeline"][key] for p in timed]
            values = [v for v in values if v is not None]
            cells.append(f"{statistics.median(values):.1f}" if values else "-")
        gaps = [g for p in timed for g in p["breakdown"]["timeline"]["idle_gaps"]]
        longest = max(gaps, key=lambda g: g["seconds"], default=None)
        cells.append(f"{longest['seconds']:.1f} s before {longest['before']}" if longest else "none over 0.05 s")
        rows.append(f"| {wm} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = " | ".join(column for _, column in TIMELINE_PARTS)
    return ["", "Where the suite's seconds beyond its worker's start-up and calls went (median over the pairs, s):", "",
            f"| wm_type | {header} | longest idle gap |", "| --- |" + " --- |" * (len(TIMELINE_PARTS) + 1), *rows]


def memory_rows(memory: dict) -> list[str]:
    rows = []
    for wm in FLOOR_TYPES:
        for suffix, mode in (("", "pinned"), ("-none", "none")):
            data = memory.get(f"memory-{wm}{suffix}")
            figure = f"FT + zero-shot peak GPU memory / base alone, {wm} (`--wm-offload {mode}`)"
            goal = f"<= {FT_MEMORY_OVER_BASE_MAX:.2f}x" if mode == "pinned" else "- (as before)"
            if not data:
                rows.append(f"| {figure} | {goal} | missing: stage memory-{wm} did not run | - | - |")
                continue
            r = data[0]
            offload = r.get("offload_stats") or {}
            swaps = (f"; {offload['swaps']} swaps in {offload['swap_seconds']:.2f} s" if "swaps" in offload else
                     "; nothing to swap (LoRA)" if not offload else "")
            verdict = met(r["ratio"] <= FT_MEMORY_OVER_BASE_MAX) if mode == "pinned" else "-"
            rows.append(f"| {figure} | {goal} | {r['ft_peak_bytes'] / GIB:.2f} GiB against {r['base_peak_bytes'] / GIB:.2f}"
                        f" GiB{swaps} | {r['ratio']:.3f}x | {verdict} |")
    return rows


def ceiling_rows(ceilings: dict) -> list[str]:
    rows = []
    for family in CEILING_FAMILIES:
        data = ceilings.get(f"ceilings-{family}")
        if not data:
            rows.append(f"| load / ceilings, {family} | >= {LOAD_OVER_CEILING_MIN:.0%} | missing: stage "
                        f"ceilings-{family} did not run | - | - |")
            continue
        for r in data:
            if "wm_type" not in r:
                continue
            for kind, what in (("warm", "page cache warm"), ("cold", f"cold disk, {r['evicted_with']}")):
                figure = f"load / `load_file(device=\"cuda\")` ceiling, {r['wm_type']} ({r['weights_gib']:.1f} GiB, {what})"
                ratio = r.get(f"{kind}_load_over_ceiling")
                if ratio is None:
                    rows.append(f"| {figure} | >= {LOAD_OVER_CEILING_MIN:.0%} | the load failed: "
                                f"{r[f'{kind}_load_s']} | - | **no** |")
                    continue
                rows.append(f"| {figure} | >= {LOAD_OVER_CEILING_MIN:.0%} | load {r[f'{kind}_load_s']:.1f} s = "
                            f"{r[f'{kind}_load_gib_s']:.2f} GiB/s, ceiling {r[f'{kind}_ceiling_s']:.1f} s = "
                            f"{r[f'{kind}_ceiling_gib_s']:.2f} GiB/s | {ratio:.0%} | {met(ratio >= LOAD_OVER_CEILING_MIN)} |")
        h2d = next((r for r in data if "pinned_h2d_gib_s" in r), None)
        if h2d:
            rows.append(f"| host-to-device copy, 4 GiB ({family} stage) | - | pinned {h2d['pinned_h2d_gib_s']} GiB/s, "
                        f"pageable {h2d['pageable_h2d_gib_s']} GiB/s | - | - |")
    return rows


def render(dirs: list[Path]) -> str:
    machines = load_all(dirs, "machine-*.json")
    seen = sorted({(m["card"], m["driver"], m.get("cuda"), m.get("torch")) for m in machines.values()
                   if m.get("card") != "no GPU"})
    dates = sorted(m["date"] for m in machines.values() if m.get("card") != "no GPU")
    lines = ["| figure | goal | measured | ratio | met |", "| --- | --- | --- | --- | --- |"]
    lines += floor_rows(load_all(dirs, "floor-*.json"))
    lines += memory_rows(load_all(dirs, "memory-*.json"))
    lines += ceiling_rows(load_all(dirs, "ceilings-*.json"))
    lines += timeline_rows(load_all(dirs, "floor-*.json"))
    cards = "; ".join(f"{card}, driver {driver}, CUDA {cuda}, torch {torch}" for card, driver, cuda, torch in seen)
    when = f"{dates[0]} to {dates[-1]}" if dates else "no GPU stage found"
    return "\n".join([f"Measured on {cards or 'no GPU stage found'} ({when}), by "
                      "`benchmarks/gpu_realistic.sh` (one stage per command):", "", *lines]) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.stdout.write(render([Path(p) for p in sys.argv[1:]]))
