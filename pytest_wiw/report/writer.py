"""Conformance reports: one JSON per wm_type, a Markdown summary, merged across xdist workers and shards.

The controller builds the reports from what reaches it anyway: every check's log report (outcome,
duration, message, and the figures each check records with ``wiw_record``) and, per wm_type, a
summary of its worker (checkpoint, environment, loads, generations) that each xdist worker sends in
``workeroutput``. Files are written once, by the controller, also when checks fail or the run is
interrupted. ``pytest-wiw report`` merges reports from several shards or machines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pytest_wiw.api.checklist import CHECK_NAMES, check_named, check_of_test
from pytest_wiw.checks.dependencies import is_blocked

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
_TEST_ID = re.compile(r"::(?P<test>test_\w+)\[(?P<wm>[^\]]+)\]")
# Figures lifted from the checks' recorded metrics into the report's "figures" block.
FIGURE_KEYS = ("load_seconds", "seconds_per_generation", "load_host_peak_bytes", "load_gpu_peak_bytes",
               "baseline_diff_mean_abs", "baseline_diff_max_abs", "baseline_diff_psnr_db", "determinism_max_abs",
               "batch_diff_max_abs", "seed_diff_mean_abs", "peak_host_bytes", "peak_gpu_bytes",
               "weight_audit_seconds",
               *(f"ground_truth_{m}_{k}" for m in ("psnr", "ssim") for k in ("improvement", "ci_low", "ci_high",
                                                                              "win_rate")))
#: A check's recorded one-line summary (a junit property): the report's message of that check when it passes.
SUMMARY_KEY = "summary"


class ReportCollector:
    """Gathers check outcomes (from log reports) and worker summaries, and writes the report files."""

    def __init__(self, selection):
        self.selection = selection
        self.checks: dict[str, dict[str, dict]] = {name: {} for name in selection.wm_types}
        self.workers: dict[str, dict] = {}

    def add_logreport(self, report) -> None:
        """Fold one phase (setup, call, teardown) of a check into its entry."""
        match = _TEST_ID.search(report.nodeid)
        if not match or match["wm"] not in self.checks:
            return
        check = check_name(match["test"])
        entry = self.checks[match["wm"]].setdefault(check, {
            "name": check, "test_id": f"{match['test']}[{match['wm']}]", "outcome": "passed", "duration": 0.0,
            "message": "", "metrics": {}})
        entry["duration"] = round(entry["duration"] + report.duration, 4)
        entry["metrics"].update({k: v for k, v in getattr(report, "user_properties", []) if k != "wm_type"})
        if report.when == "call" or report.failed or report.skipped:
            entry["outcome"] = _outcome(report)
            entry["message"] = _message(report) or entry["message"]
            if entry["outcome"] == "passed" and not entry["message"]:
                entry["message"] = str(entry["metrics"].get(SUMMARY_KEY, ""))

    def add_workers(self, summaries: dict) -> None:
        for wm_type, summary in summaries.items():
            self.workers.setdefault(wm_type, {}).update(summary)

    def reports(self) -> dict[str, dict]:
        return {name: self.build(name) for name in self.selection.wm_types}

    def build(self, wm_type: str) -> dict:
        spec = self.selection.registry[wm_type]
        checks = sorted(self.checks[wm_type].values(), key=lambda c: row_order(c["name"]))
        worker = self.workers.get(wm_type, {})
        figures = {"loads": worker.get("loads", 0), "generations": worker.get("generations", 0),
                   "property_examples": worker.get("property_examples", 0),
                   "reference_generations": worker.get("reference_generations", 0)}
        for check in checks:
            for key in FIGURE_KEYS:
                if key in check["metrics"]:
                    figures[key] = check["metrics"][key]
        offload = (worker.get("wrapper_stats") or {}).get("offload") or {}
        if "swaps" in offload:
            figures["offload_swaps"], figures["offload_swap_seconds"] = offload["swaps"], offload["swap_seconds"]
        checkpoint = dict(worker.get("checkpoint") or {}) or None
        readable = self.checks[wm_type].get("checkpoint readable", {}).get("metrics", {})
        if checkpoint is not None and "checkpoint_sha256" in readable:
            checkpoint["sha256"] = readable["checkpoint_sha256"]
        return {
            "schema_version": SCHEMA_VERSION, "wm_type": wm_type, "category": spec.category, "base": spec.base,
            "verdict": verdict(checks), "checkpoint": checkpoint, "worker_failure": worker.get("worker_failure"),
            "base_checkpoint": worker.get("base_checkpoint"), "environment": worker.get("environment", {}),
            "generation": worker.get("generation"), "notes": worker.get("notes", []),
            "tasks": worker.get("tasks"), "restarts": worker.get("restarts", []),
            "preset": self.preset(wm_type),
            "expected_failures": {**spec.expected_failures,
                                  **{c: r for (w, c), r in self.selection.expected_failures.items() if w == wm_type}},
            "checks": checks, "figures": figures, "ground_truth": worker.get("ground_truth"),
            "wrapper_stats": worker.get("wrapper_stats") or {},
            "timeline": worker.get("timeline"),
        }

    def preset(self, wm_type: str) -> dict | None:
        """The --wm-preset this wm_type ran under: its name, resolved settings and their source."""
        name = self.selection.preset
        if name is None:
            return None
        from pytest_wiw.runtime.presets import preset_note

        return {"name": name, "settings": self.selection.preset_settings(wm_type),
                "source": preset_note(name, wm_type)}

    def write(self, out_dir: Path) -> list[Path]:
        return write_reports(self.reports(), out_dir)


def check_name(test: str) -> str:
    """The row name of a conformance test function: its declared check's name (``test_property_contract_holds``
    -> ``property: contract holds``, as expected_failures spell it); the test's words for an undeclared test."""
    declared = check_of_test(test)
    return declared.name if declared else test.removeprefix("test_").replace("_", " ")


_ROW = {name: i for i, name in enumerate(CHECK_NAMES)}


def row_order(name: str) -> tuple[int, str]:
    """Sort key of a report row: declaration order (pytest_wiw.api.checklist), then names not declared there
    (a report written by another version) alphabetically."""
    return _ROW.get(name, len(_ROW)), name


def _outcome(report) -> str:
    if report.failed:  # a strict XPASS is a failed call too
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return "xfailed"
        return "blocked" if is_blocked(_message(report)) else "skipped"
    return "passed"


def _message(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if hasattr(report, "wasxfail") and report.skipped:
        return str(report.wasxfail)
    if report.failed:
        text = getattr(report.longrepr, "reprcrash", None)
        full = str(report.longrepr)
        return full if len(full) < 4000 else (text.message if text else full[-4000:])
    return ""


def verdict(checks: list[dict]) -> str:
    """failed if any check failed, errored or was blocked; passed if any passed; else skipped."""
    outcomes = {c["outcome"] for c in checks}
    if outcomes & {"failed", "error", "blocked"}:
        return "failed"
    if outcomes & {"passed", "xfailed"}:
        return "passed"
    return "skipped"


def write_reports(reports: dict[str, dict], out_dir: Path) -> list[Path]:
    """Write ``<wm_type>.json`` for each report and one ``report.md``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, report in reports.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
        written.append(path)
    md = out_dir / "report.md"
    md.write_text(render_markdown(list(reports.values()), pngs={p.stem for p in out_dir.glob("*.png")}))
    written.append(md)
    return written


_SYMBOL = {"passed": "✅", "failed": "❌", "error": "❌", "skipped": "➖", "xfailed": "⚠️", "blocked": "⛔"}


def render_markdown(reports: list[dict], pngs: set[str] = frozenset()) -> str:
    """A table of wm_types by checks, verdicts and key figures; reads well as a pull-request comment."""
    reports = sorted(reports, key=lambda r: r["wm_type"])
    checks = sorted({c["name"] for r in reports for c in r["checks"]}, key=row_order)
    failed = [r["wm_type"] for r in reports if r["verdict"] == "failed"]
    lines = ["# pytest-wiw conformance report", "",
             f"**{len(reports)} wm_type(s), {len(failed)} failed**" + (f": {', '.join(failed)}" if failed else ""), ""]
    causes = root_causes(reports)
    if causes:
        lines += ["## Root causes", ""] + [f"- {line}" for line in causes] + [
            "", "(⛔ blocked: a check whose inputs come from a failed check; it is judged once that one passes)", ""]
    lines += [
             "| check | " + " | ".join(r["wm_type"] for r in reports) + " |",
             "| --- |" + " --- |" * len(reports)]
    for check in checks:
        cells = []
        for r in reports:
            found = next((c for c in r["checks"] if c["name"] == check), None)
            cells.append(_SYMBOL.get(found["outcome"], found["outcome"]) if found else " ")
        lines.append(f"| {check} | " + " | ".join(cells) + " |")
    lines.append("| **verdict** | " + " | ".join(f"**{r['verdict']}**" for r in reports) + " |")
    lines += ["", "| wm_type | checkpoint | loads | generations | load s | s/generation | FT vs zero-shot |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        f, ckpt = r["figures"], r.get("checkpoint") or {}
        diff = (f"mean {f['baseline_diff_mean_abs']}/255, PSNR {f.get('baseline_diff_psnr_db')} dB"
                if "baseline_diff_mean_abs" in f else "-")
        sha = (ckpt.get("sha256") or "")[:12]
        lines.append(f"| {r['wm_type']} | {checkpoint_title(ckpt)} {sha} | {f['loads']} | "
                     f"{f['generations']} | {f.get('load_seconds', '-')} | {f.get('seconds_per_generation', '-')} "
                     f"| {diff} |")
    lines += ground_truth_tables(reports)
    lines += cost_lines(reports)
    blocked = [(r["wm_type"], c) for r in reports for c in r["checks"] if c["outcome"] == "blocked"]
    if blocked:
        lines += ["", "## Blocked checks", ""] + [f"- **{w}** / {c['name']}: {c['message']}" for w, c in blocked]
    restarted = [(r["wm_type"], why) for r in reports for why in r.get("restarts", [])]
    if restarted:
        lines += ["", "## Worker restarts", ""] + [f"- **{w}**: started again after it {why}" for w, why in restarted]
    xfails = [(r["wm_type"], k, v) for r in reports for k, v in r["expected_failures"].items()]
    if xfails:
        lines += ["", "## Expected failures", ""] + [f"- **{w}** / {k}: {v}" for w, k, v in xfails]
    lines += check_legend(checks)
    for r in reports:
        if r["wm_type"] in pngs:
            lines += ["", f"![{r['wm_type']}]({r['wm_type']}.png)"]
    return "\n".join(lines) + "\n"


def check_legend(names: list[str]) -> list[str]:
    """What each check of the table proves, one line each (its declared ``doc``)."""
    docs = [(name, check_named(name).doc) for name in names if name in _ROW]
    if not docs:
        return []
    return ["", "## What each check proves", ""] + [f"- **{name}**: {doc}" for name, doc in docs]


def ground_truth_tables(reports: list[dict]) -> list[str]:
    """Per FT type that ran 'closer to ground truth': its summary and a row per episode (mean PSNR of FT and
    zero-shot against the ground truth, and who is closer)."""
    lines = []
    for r in reports:
        gt = r.get("ground_truth")
        if not gt:
            continue
        spent = r["figures"].get("reference_generations", 0)
        lines += ["", f"## Closer to ground truth: {r['wm_type']}", "",
                  f"{gt['summary']} ({spent} reference generation(s), seed {gt.get('seed')})", "",
                  "| episode | PSNR FT | PSNR zero-shot | winner |", "| --- | --- | --- | --- |"]
        lines += [f"| {e['episode']} | {e['psnr_ft']:.3f} | {e['psnr_zero_shot']:.3f} | {e['winner']} |"
                  for e in gt["episodes"]]
    return lines


def cost_lines(reports: list[dict]) -> list[str]:
    """The load's parts and the component swaps (--wm-offload) per wm_type that reported them."""
    rows = []
    for r in reports:
        f = r["figures"]
        offload = (r.get("wrapper_stats") or {}).get("offload") or {}
        if "weight_audit_seconds" not in f and not offload:
            continue
        swaps = (f"{offload['swaps']} in {offload['swap_seconds']} s" if "swaps" in offload else "-")
        rows.append(f"| {r['wm_type']} | {f.get('load_seconds', '-')} | {f.get('weight_audit_seconds', '-')} | "
                    f"{offload.get('mode', '-')} | {swaps} |")
    if not rows:
        return []
    return ["", "## Load and component swaps", "", "| wm_type | load s | weight audit s | offload | swaps |",
            "| --- | --- | --- | --- | --- |", *rows]


def root_causes(reports: list[dict]) -> list[str]:
    """One line per failed check (not blocked ones): what a reviewer fixes first."""
    out = []
    for r in reports:
        for c in r["checks"]:
            if c["outcome"] in ("failed", "error"):
                first = c["message"].strip().splitlines()[0] if c["message"].strip() else c["outcome"]
                out.append(f"**{r['wm_type']}** / {c['name']}: {first}")
    return out


def merge_report_dirs(dirs: list[Path]) -> dict[str, dict]:
    """Reports of several shards or machines, by wm_type; the same wm_type twice merges its checks."""
    merged: dict[str, dict] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.json")):
            report = json.loads(path.read_text())
            if not isinstance(report, dict) or report.get("schema_version") != SCHEMA_VERSION:
                continue
            name = report["wm_type"]
            if name not in merged:
                merged[name] = report
                continue
            have = {c["name"]: c for c in merged[name]["checks"]}
            for c in report["checks"]:
                if c["name"] not in have or have[c["name"]]["outcome"] == "skipped":
                    have[c["name"]] = c
            merged[name]["checks"] = sorted(have.values(), key=lambda c: row_order(c["name"]))
            merged[name]["verdict"] = verdict(merged[name]["checks"])
    return merged


# Revision characters the table shows, as git's short hashes do.
REVISION_SHOWN = 12


def checkpoint_title(ckpt: dict) -> str:
    """A checkpoint's short name: ``org/name@revision`` for a hub cache snapshot, else its file or folder name."""
    hub = ckpt.get("hub_snapshot")
    if hub:
        return f"{hub['repo_id']}@{hub['revision'][:REVISION_SHOWN]}"
    return Path(ckpt.get("path", "-")).name
