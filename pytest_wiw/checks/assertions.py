"""Helpers the conformance checks share: clean failures, blocked checks, required inputs, recorded figures."""

from __future__ import annotations

from typing import Callable, NoReturn

import numpy as np
import pytest

from pytest_wiw.checks.compare import VideoDiff, video_diff
from pytest_wiw.checks.dependencies import blocked_reason, upstream_chain
from pytest_wiw.errors import GenerationUnavailable, WorkerError, WorkerNotReady
from pytest_wiw.session.subject import Generation, WMSubject


def fail(message: str) -> NoReturn:
    """Fail the check with ``message`` alone (no Python traceback: the message is the diagnosis)."""
    pytest.fail(message, pytrace=False)


def blocked(upstream: str, cause: str) -> NoReturn:
    """Report the check as blocked by ``upstream`` (a skip the report counts as ``blocked``, not passed)."""
    pytest.skip(blocked_reason(upstream, cause))


def require_upstream(wm: WMSubject, check: str) -> None:
    """Block ``check`` when a check its inputs come from fails (pytest_wiw.checks.dependencies.UPSTREAM)."""
    from pytest_wiw.checks.judgements import JUDGEMENTS

    for upstream in upstream_chain(check, embedded_default=wm.ckpt_arg is None):
        judge = JUDGEMENTS.get(upstream)
        if judge is not None and upstream not in wm.judged:  # once per wm_type: its inputs no longer change
            wm.judged[upstream] = judge(wm)
        cause = wm.judged.get(upstream)
        if not cause:
            continue
        declared = wm.declared_failures.get(upstream)
        if declared:  # a known failure the user declared: what it blocks is known too, not a new failure
            pytest.xfail(f"{blocked_reason(upstream, cause)} (declared known failure: {declared})")
        blocked(upstream, cause)


def require(fn: Callable[[], object], what: str):
    """Run ``fn``; a worker that never loaded blocks the check, a failed generation or a worker that died
    on this check's own call fails it, saying what was needed."""
    try:
        return fn()
    except WorkerNotReady as exc:
        blocked("checkpoint loads", str(exc))
    except (WorkerError, GenerationUnavailable) as exc:
        fail(f"cannot check {what}: {exc}")


def checkpoint_of(wm: WMSubject, what: str):
    """The checkpoint under test, opened; an unreadable one fails the check naming the file and cause."""
    from pytest_wiw.errors import CheckpointError

    try:
        return require(wm.checkpoint, what)
    except CheckpointError as exc:
        fail(f"checkpoint unreadable: {exc}")


def frames_of(gen: Generation | None, check: str) -> np.ndarray:
    """The frames of a floor generation ``check`` needs. When the generation failed, the check that sent it
    (its owner) fails naming the request; any other check is blocked by the owner."""
    if gen is None:
        fail(f"cannot check {check}: the generation was not run")
    if gen.frames is not None:
        return gen.frames
    cause = f"{gen.label} failed: {gen.error}"
    if gen.owner and gen.owner != check:
        blocked(gen.owner, cause)
    fail(cause)


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
