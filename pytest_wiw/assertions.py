"""Helpers the conformance checks share: clean failures, required inputs, and recorded figures."""

from __future__ import annotations

from typing import Callable, NoReturn

import numpy as np
import pytest

from .compare import VideoDiff, video_diff
from .subject import Generation, GenerationUnavailable, WMSubject
from .worker.client import WorkerError


def fail(message: str) -> NoReturn:
    """Fail the check with ``message`` alone (no Python traceback: the message is the diagnosis)."""
    pytest.fail(message, pytrace=False)


def require(fn: Callable[[], object], what: str):
    """Run ``fn``; a failed load or generation fails the check saying what was needed."""
    try:
        return fn()
    except (WorkerError, GenerationUnavailable) as exc:
        fail(f"cannot check {what}: {exc}")


def checkpoint_of(wm: WMSubject, what: str):
    """The checkpoint under test, opened; an unreadable one fails the check naming the file and cause."""
    from .errors import CheckpointError

    try:
        return require(wm.checkpoint, what)
    except CheckpointError as exc:
        fail(f"checkpoint unreadable: {exc}")


def frames_of(gen: Generation | None, what: str) -> np.ndarray:
    if gen is None:
        fail(f"cannot check {what}: the generation was not run")
    return require(gen.require, what)


def diff_of(a: np.ndarray, b: np.ndarray, what: str) -> VideoDiff:
    if a.shape != b.shape:
        fail(f"{what}: the two videos have different shapes {a.shape} and {b.shape} "
             "(see the output contract check)")
    return video_diff(a, b)


def record(wiw_record, wm: WMSubject, **metrics) -> None:
    """Attach figures to the junit test case (which carries its wm_type already) and to the subject."""
    for key, value in metrics.items():
        wiw_record(key, value)
        wm.metrics[key] = value
