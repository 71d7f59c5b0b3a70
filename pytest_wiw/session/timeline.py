"""Where a session's wall time went for one worker: before it started, its start-up, its calls, and the gaps.

A gap is time the worker sat idle, between its start-up and its last call, while the pytest process did work
of its own that did not overlap with it (reading the checkpoint, comparing videos): the seconds a suite spends
beyond the floor of loads and generations (DESIGN §9) show here, named by the call that came after them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Gaps shorter than this are the pipe's and pytest's own bookkeeping between two calls: not listed one by one
# (they still count in idle_seconds).
LISTED_GAP_S = 0.05


def process_start_monotonic() -> float:
    """time.monotonic() at the moment this process was started (its interpreter start-up included)."""
    import psutil

    return time.monotonic() - (time.time() - psutil.Process().create_time())


@dataclass
class WorkerTimeline:
    """One worker's life in time.monotonic() seconds: when it was spawned, when it said ready, its calls."""

    spawned: float
    #: the worker's own process start to its ready reply (None: a legacy script, ready as soon as it runs)
    startup_seconds: float | None = None
    #: (what, sent, answered) for every request the pytest process made of it
    calls: list[tuple[str, float, float]] = field(default_factory=list)
    #: when it was asked to exit because no check of the session needed it any more (None: at the session's end)
    released: float | None = None

    def call(self, what: str, sent: float) -> None:
        self.calls.append((what, sent, time.monotonic()))

    def summary(self, session_start: float, now: float | None = None) -> dict:
        """Seconds: before the worker was spawned, its start-up, its calls (the time they kept it busy after its
        start-up), the idle gaps after its start-up (each one over LISTED_GAP_S with the call it preceded), and from
        its last call to ``now``. The five add up to the session's time up to ``now``. Beside them: when the worker was
        released after its last check (None when it lived to the session's end)."""
        now = time.monotonic() if now is None else now
        ready_at = self.spawned + (self.startup_seconds or 0.0)
        busy_until, busy, idle, gaps = ready_at, 0.0, 0.0, []
        for what, sent, answered in sorted(self.calls, key=lambda c: c[1]):
            gap = sent - busy_until
            if gap > 0:
                idle += gap
                if gap > LISTED_GAP_S:
                    gaps.append({"before": what, "seconds": round(gap, 3)})
            busy += max(answered - max(sent, busy_until), 0.0)  # a call sent during the start-up waited for it
            busy_until = max(busy_until, answered)
        return {"before_worker_seconds": round(self.spawned - session_start, 3),
                "worker_startup_seconds": None if self.startup_seconds is None else round(self.startup_seconds, 3),
                "call_seconds": round(busy, 3),
                "calls": len(self.calls), "idle_seconds": round(idle, 3), "idle_gaps": gaps,
                "after_last_call_seconds": round(max(now - busy_until, 0.0), 3),
                "released_seconds": None if self.released is None else round(self.released - session_start, 3)}
