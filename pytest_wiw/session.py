"""WiwSession: the session-wide pool, result store and one WMSubject per selected wm_type."""

from __future__ import annotations

from pathlib import Path

from .baseline_cache import BaselineCache
from .pool import WorkerPool
from .selection import Selection
from .subject import ResultStore, WMSubject


class WiwSession:
    def __init__(self, selection: Selection, on_progress=None):
        self.selection = selection
        self.pool = WorkerPool(selection.settings, on_progress)
        self.store = ResultStore()
        self.baseline_cache = BaselineCache(Path(selection.baseline_cache)) if selection.baseline_cache else None
        self.subjects: dict[str, WMSubject] = {}

    def subject(self, wm_type: str) -> WMSubject:
        if wm_type not in self.subjects:
            sel = self.selection
            spec = sel.registry[wm_type]
            base_spec = sel.registry.get(spec.base) if spec.base else None
            self.subjects[wm_type] = WMSubject(
                spec, base_spec, sel.ckpt.get(wm_type), sel.base_ckpt.get(wm_type), self.pool, self.store,
                seed=sel.seed, max_batch=sel.max_batch, baseline_cache=self.baseline_cache)
        return self.subjects[wm_type]

    def summaries(self, report_dir: Path | None) -> dict[str, dict]:
        """Per wm_type run here: what its worker loaded and cost; contact sheets go into ``report_dir``."""
        counts = self.pool.counts()
        out = {}
        for name, subject in self.subjects.items():
            out[name] = {**subject.summary(), **counts.get(name, {"loads": 0, "generations": 0})}
            if report_dir is not None:
                subject.write_contact_sheet(report_dir / f"{name}.png")
        return out

    def selected(self, wm_type: str) -> bool:
        return wm_type in self.selection.wm_types

    def close(self) -> None:
        self.pool.close_all()
