"""WiwSession: the session-wide pool, result store and one WMSubject per selected wm_type."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_wiw.session.baseline_cache import BaselineCache
from pytest_wiw.session.pool import WorkerPool
from pytest_wiw.session.subject import ResultStore, WMSubject
from pytest_wiw.session.timeline import process_start_monotonic

if TYPE_CHECKING:
    from pytest_wiw.plugin.selection import Selection

#: The generation counts a session reports per wm_type, summed over xdist workers: the floor's, the property
#: check's and the ground-truth check's, each counted apart.
COUNTS = ("loads", "generations", "property_examples", "reference_generations")
# Property-check budgets when nothing else says: a tiny generation takes 0.1 s, a real one minutes.
TINY_MAX_EXAMPLES = 3
REAL_MAX_EXAMPLES = 1


class WiwSession:
    def __init__(self, selection: Selection, on_progress=None, hypothesis_profile: str | None = None):
        self.selection = selection
        self.hypothesis_profile = hypothesis_profile
        self.pool = WorkerPool(selection.settings, on_progress)
        self.store = ResultStore()
        self.baseline_cache = BaselineCache(Path(selection.baseline_cache)) if selection.baseline_cache else None
        self.subjects: dict[str, WMSubject] = {}
        #: time.monotonic() when this pytest process started: the timeline's zero
        self.started = process_start_monotonic()

    def subject(self, wm_type: str) -> WMSubject:
        if wm_type not in self.subjects:
            sel = self.selection
            spec = sel.registry[wm_type]
            base_spec = sel.registry.get(spec.base) if spec.base else None
            self.subjects[wm_type] = WMSubject(
                spec, base_spec, sel.ckpt.get(wm_type), sel.base_ckpt.get(wm_type), self.pool, self.store,
                seed=sel.seed, max_batch=sel.max_batch, baseline_cache=self.baseline_cache,
                allow_pickle=sel.allow_pickle,
                declared_failures={c: r for (w, c), r in sel.expected_failures.items() if w == wm_type})
            self.subjects[wm_type].comparable_base = lambda name=wm_type: self.comparable_base(name)
        return self.subjects[wm_type]

    def summaries(self) -> dict[str, dict]:
        """Per wm_type run here: what its worker loaded and cost."""
        counts = self.pool.counts()
        out = {}
        for name, subject in self.subjects.items():
            count = counts.get(name, {"loads": 0, "generations": 0, "restarts": []})
            extra = subject.property_examples + subject.reference_generations
            out[name] = {**subject.summary(), "loads": count["loads"], "restarts": count["restarts"],
                         "generations": count["generations"] - extra,
                         "property_examples": subject.property_examples,
                         "reference_generations": subject.reference_generations,
                         "ground_truth": subject.ground_truth, "timeline": subject.timeline(self.started)}
        return out

    def max_examples(self, subject) -> int:
        """The property check's budget: --wm-max-examples, else the loaded hypothesis profile's,
        else small: 3 on a tiny embedded default, 1 on a real checkpoint (a generation takes minutes)."""
        if self.selection.max_examples is not None:
            return self.selection.max_examples
        if self.hypothesis_profile:
            from hypothesis import settings

            return settings.get_profile(self.hypothesis_profile).max_examples
        return TINY_MAX_EXAMPLES if subject.ckpt_arg is None else REAL_MAX_EXAMPLES

    def comparable_base(self, wm_type: str):
        """The base subject an FT type's zero-shot output can be held against in this session, or None: the
        base is not selected, or the preset runs the two at different settings (WIW evaluates them apart)."""
        spec = self.selection.registry[wm_type]
        base = spec.base
        if base is None or not self.selected(base):
            return None
        sel = self.selection
        if sel.preset and sel.preset_settings(wm_type) != sel.preset_settings(base):
            return None
        return self.subject(base)

    def selected(self, wm_type: str) -> bool:
        return wm_type in self.selection.wm_types

    def release(self, wm_type: str) -> None:
        """The last check of ``wm_type`` in this process has run: its worker may exit now."""
        if wm_type in self.subjects:
            self.subjects[wm_type].release_worker()

    def request_stop(self) -> None:
        """Ask every idle worker to exit now; ``close`` then waits for them."""
        self.pool.request_stop_all()

    def close(self) -> None:
        self.pool.close_all()
