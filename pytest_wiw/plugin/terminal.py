"""Showing a worker's progress on the terminal: one updating line on a tty, plain lines otherwise."""

from __future__ import annotations

import contextlib
import time

# A tty line is redrawn at most this often.
REDRAW_INTERVAL_S = 0.1


def describe(label: str, frame: dict) -> str:
    done, total, unit = frame.get("done"), frame.get("total"), frame.get("unit")
    if unit == "bytes":
        amount = f"{done / 2**20:.1f} MiB loaded"
    else:
        amount = f"{done}/{total} {frame.get('what', unit)}" if total else f"{done} {unit}"
    return f"wiw: {label}: {frame.get('stage')}: {amount}"


class ProgressDisplay:
    """The pool's progress callback; silent with -q, and under xdist (the workers have no terminal)."""

    def __init__(self, terminalreporter, live: bool, capture_manager=None):
        self.tr = terminalreporter
        self.live = live
        # Progress arrives while a check runs, when pytest captures fd 1: write past the capture.
        self.uncaptured = (capture_manager.global_and_fixture_disabled if capture_manager is not None
                           else contextlib.nullcontext)
        self.shown = False
        self.last = 0.0

    def __call__(self, label: str, frame: dict | None) -> None:
        with self.uncaptured():
            self._show(label, frame)

    def _show(self, label: str, frame: dict | None) -> None:
        if frame is None:  # the reply came: clear the live line
            if self.live and self.shown:
                self.tr.rewrite("", erase=True)
                self.shown = False
            return
        text = describe(label, frame)
        if self.live:
            now = time.monotonic()
            if now - self.last >= REDRAW_INTERVAL_S or frame.get("done") == frame.get("total"):
                self.last = now
                self.tr.rewrite(text, erase=True)
                self.shown = True
        elif frame.get("unit") == "steps" and frame.get("done") == frame.get("total"):
            self.tr.write_line(text)  # one plain line per finished generation call
