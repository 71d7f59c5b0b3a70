"""Worker processes: the handshake, error replies, timeouts, deaths, and teardown of the process group."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import time

import psutil
import pytest
from conftest import TESTS_DIR

from pytest_wiw.api.registry import get_spec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.session.client import (
    LOG_LINE_CHARS,
    LOG_TAIL_LINES,
    SHUTDOWN_GRACE_S,
    WorkerDied,
    WorkerError,
    WorkerTimeout,
)
from pytest_wiw.errors import RequestRejected
from pytest_wiw.session.pool import PoolSettings, WorkerPool, device_environment
from pytest_wiw.session.subject import reference_image

# Short timeouts: the defective workers below hang for an hour unless the client gives up.
REQUEST_TIMEOUT_S = 3.0
LOAD_TIMEOUT_S = 120.0
# When the simulated Ctrl-C arrives: mid-request, well before REQUEST_TIMEOUT_S.
INTERRUPT_AFTER_S = 1.0
# The flooding wrappers write 32 MiB before they generate: more than REQUEST_TIMEOUT_S on a busy machine.
FLOOD_REQUEST_TIMEOUT_S = 120.0
# An error message with its log tail: LOG_TAIL_LINES cut lines, the indent and cut notes, and the
# sentence and log path before them. The log under it holds megabytes.
MAX_MESSAGE_CHARS = LOG_TAIL_LINES * (LOG_LINE_CHARS + 64) + 2000


@pytest.fixture
def pool(tiny_cache, monkeypatch):
    pool = _pool(tiny_cache, monkeypatch, request_timeout=REQUEST_TIMEOUT_S)
    yield pool
    pool.close_all()


@pytest.fixture
def flood_pool(tiny_cache, monkeypatch):
    pool = _pool(tiny_cache, monkeypatch, request_timeout=FLOOD_REQUEST_TIMEOUT_S)
    yield pool
    pool.close_all()


def _pool(tiny_cache, monkeypatch, **settings) -> WorkerPool:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return WorkerPool(PoolSettings(device="cpu", tiny_cache=str(tiny_cache), load_timeout=LOAD_TIMEOUT_S,
                                   **settings))


def svd_like(wrapper: str):
    spec = get_spec("svd")
    return dataclasses.replace(spec, name=f"svd-{wrapper.lower()}", wrapper=f"defective_wms:{wrapper}")


def request_for(handle, name=None) -> GenerationRequest:
    gen = handle.ready.generation
    return GenerationRequest(images=reference_image(gen["height"], gen["width"])[None], actions=[[4, 1]],
                             task_type="navigation", seed=0, request_model_name=name or handle.spec.name)


def test_ready_handshake_reports_load_and_environment(pool):
    handle = pool.get(get_spec("svd"), None, None, None)
    assert handle.failure is None, handle.failure
    ready = handle.ready
    assert ready.wm_type == "svd" and ready.load_seconds > 0
    assert ready.environment["threads"] == 1 and ready.environment["deterministic_algorithms"] is True
    assert ready.memory["host_rss"] > 0 and ready.fingerprints
    assert pool.counts()["svd"]["loads"] == 1
    assert pool.get(get_spec("svd"), None, None, None) is handle  # one load per key
    assert pool.counts()["svd"]["loads"] == 1


def test_error_reply_leaves_worker_serving(pool):
    handle = pool.get(get_spec("svd"), None, None, None)
    with pytest.raises(RequestRejected) as rejected:
        handle.generate(request_for(handle, name="wan21"))
    assert rejected.value.field == "request_model_name"
    frames, reply = handle.generate(request_for(handle))
    assert frames.dtype.name == "uint8" and reply.TYPE == "result"
    assert handle.stats().generations == 1


def test_hung_request_times_out_and_kills_the_worker(pool):
    handle = pool.get(svd_like("SlowSVD"), None, None, None)
    pid = handle.ready.pid
    start = time.monotonic()
    with pytest.raises(WorkerTimeout) as timeout:
        handle.generate(request_for(handle))
    assert time.monotonic() - start < REQUEST_TIMEOUT_S + 5
    assert "SlowSVD: generating forever" in str(timeout.value)
    assert not _alive(pid)


def test_a_worker_that_hung_is_started_again_then_given_up_on(pool, monkeypatch):
    """After a timeout the next call starts the worker again (one more load, with its reason); a worker that
    keeps hanging is given up on after MAX_RESTARTS restarts."""
    monkeypatch.setattr("pytest_wiw.session.pool.MAX_RESTARTS", 1)
    handle = pool.get(svd_like("SlowSVD"), None, None, None)
    first = handle.ready.pid
    with pytest.raises(WorkerTimeout):
        handle.generate(request_for(handle))
    with pytest.raises(WorkerTimeout):  # started again, and hangs again
        handle.generate(request_for(handle))
    assert handle.ready.pid != first and not _alive(handle.ready.pid)
    assert handle.loads == 2 and len(handle.restarts) == 1 and "timed out while generating" in handle.restarts[0]
    with pytest.raises(WorkerError, match="already started again 1 time"):
        handle.generate(request_for(handle))


def test_a_released_worker_exits_and_is_started_again_when_needed(pool):
    """Released after its wm_type's last check, the worker exits; a later call (an FT type's honest baseline
    asking its base) starts it again: one more load, listed with its reason, not an error."""
    handle = pool.get(get_spec("svd"), None, None, None)
    first = handle.process.proc
    handle.release()
    first.wait(timeout=30)  # it exits of itself: nobody waits on it or kills it
    assert first.returncode == 0
    assert handle.stats().generations == 0
    assert handle.loads == 2 and handle.restarts == ["was released after its last check, then needed again"]
    assert handle.timeline.released is None  # serving again


def test_stopping_a_busy_worker_kills_it_without_waiting_for_shutdown(pool):
    """Ctrl-C during a request: teardown kills the worker at once (it would read no ``shutdown``)."""
    handle = pool.get(svd_like("SlowSVD"), None, None, None)
    pid = handle.ready.pid
    previous = signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, INTERRUPT_AFTER_S)
    try:
        with pytest.raises(KeyboardInterrupt):
            handle.generate(request_for(handle))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    start = time.monotonic()
    pool.close_all()
    assert time.monotonic() - start < SHUTDOWN_GRACE_S  # killed, not given the grace of an idle worker
    assert "was stopped while generating" in handle.process.stopped_because
    assert not _alive(pid)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_hang_at_load_hits_the_load_timeout(tiny_cache, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    pool = WorkerPool(PoolSettings(device="cpu", tiny_cache=str(tiny_cache), load_timeout=15.0))
    try:
        start = time.monotonic()
        handle = pool.get(svd_like("HangOnLoadSVD"), None, None, None)
        assert time.monotonic() - start < 15.0 + 10
        assert handle.ready is None
        assert "while loading the checkpoint" in handle.failure and "loading forever" in handle.failure
        assert not _alive(handle.process.proc.pid)
    finally:
        pool.close_all()


@pytest.mark.parametrize(("wrapper", "cause"), [("CrashOnLoadSVD", "RuntimeError: CUDA error: out of memory"),
                                                ("ExitOnLoadSVD", "exited with status 3 while loading the checkpoint"),
                                                ("SegfaultOnLoadSVD", "was killed by SIGSEGV while loading")])
def test_crash_at_load_is_reported_with_its_cause_and_log(pool, wrapper, cause):
    handle = pool.get(svd_like(wrapper), None, None, None)
    assert handle.ready is None
    assert cause in handle.failure, handle.failure
    assert re.search(r"last lines of its log .*\n.*about to", handle.failure, re.S), handle.failure
    assert not _alive(handle.process.proc.pid)
    with pytest.raises(WorkerError, match=re.escape(cause)):  # every later use reports the same failure
        handle.stats()
    assert handle.loads == 1 and handle.restarts == []  # a worker that never loaded is not retried


@pytest.mark.parametrize(("wrapper", "cause"), [("DiesMidRequestSVD", "exited with status 7"),
                                                ("SegfaultSVD", "was killed by SIGSEGV"),
                                                ("ExitsZeroMidRequestSVD", "exited with status 0")])
def test_death_mid_request_is_reported_at_once_with_its_log(pool, wrapper, cause):
    handle = pool.get(svd_like(wrapper), None, None, None)
    start = time.monotonic()
    with pytest.raises(WorkerDied) as died:
        handle.generate(request_for(handle))
    assert time.monotonic() - start < REQUEST_TIMEOUT_S  # detected at once, not at the timeout
    message = str(died.value)
    assert cause in message and "while generating" in message and "without replying" in message, message
    assert re.search(r"last lines of its log .*\n.*about to", message, re.S), message


@pytest.mark.parametrize(("wrapper", "problem"), [
    ("ListOutputSVD", "generate() returned a list, not an array"),
    ("NoneOutputSVD", "generate() returned None"),
    ("PathOutputSVD", "generate() returned a str, not an array"),
    ("ThreeDimOutputSVD", "generate() returned a 3-D array of shape ("),
])
def test_malformed_output_is_rejected_and_the_worker_keeps_serving(pool, wrapper, problem):
    handle = pool.get(svd_like(wrapper), None, None, None)
    for call in (1, 2):
        with pytest.raises(RequestRejected) as rejected:
            handle.generate(request_for(handle))
        message = str(rejected.value)
        assert problem in message and "expected a numpy uint8 array of shape (B, T, 3, H, W)" in message, message
        assert rejected.value.reply.stage == "generate"
        stats = handle.stats()
        assert stats.generations == call and handle.generation_calls == call
    assert _alive(handle.ready.pid)


def test_output_flood_on_stderr_and_stdout_leaves_the_request_and_protocol_intact(flood_pool):
    from defective_wms import FLOOD_BYTES, STDOUT_MARKER  # (imports torch and diffusers: only here)

    handle = flood_pool.get(svd_like("FloodSVD"), None, None, None)
    frames, reply = handle.generate(request_for(handle))
    assert reply.TYPE == "result" and frames.dtype.name == "uint8" and frames.ndim == 5
    assert handle.stats().generations == 1  # the protocol stream is still in step
    log = handle.process.log_path
    assert os.path.getsize(log) > FLOOD_BYTES
    assert log.read_text(errors="replace").count(STDOUT_MARKER) == 2  # print() and fd 1 went to the log
    tail = handle.process.log_tail_text()
    assert "line cut at" in tail and len(tail) < MAX_MESSAGE_CHARS


def test_flood_then_death_reports_a_bounded_log_tail(flood_pool):
    from defective_wms import FLOOD_BYTES

    handle = flood_pool.get(svd_like("FloodThenDieSVD"), None, None, None)
    with pytest.raises(WorkerDied) as died:
        handle.generate(request_for(handle))
    message = str(died.value)
    assert "exited with status 9 while generating" in message
    assert message.rstrip().endswith("FloodThenDieSVD: about to exit with status 9"), message[-1000:]
    assert os.path.getsize(handle.process.log_path) > FLOOD_BYTES
    assert len(message) < MAX_MESSAGE_CHARS, len(message)


def test_teardown_ends_the_whole_process_group(pool):
    handle = pool.get(svd_like("ForkingSVD"), None, None, None)
    worker = psutil.Process(handle.ready.pid)
    children = worker.children(recursive=True)
    assert children, "the test wrapper should have started a child process"
    pool.close_all()
    time.sleep(0.5)
    assert not _alive(worker.pid)
    assert not [c.pid for c in children if _alive(c.pid)]


def test_cpu_worker_sees_no_gpu():
    device, env = device_environment("cpu", worker_index=3, threads=2)
    assert device == "cpu" and env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize(("inherited", "index", "expected"), [("4,5", 0, "4"), ("4,5", 1, "5"), ("4,5", 2, "4"),
                                                               ("7", 3, "7")])
def test_xdist_worker_takes_device_n_mod_len(monkeypatch, inherited, index, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    device, env = device_environment("cuda", worker_index=index, threads=1)
    assert device == "cuda:0" and env["CUDA_VISIBLE_DEVICES"] == expected
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_explicit_cuda_index_beyond_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(WorkerError, match="only 1 GPU"):
        device_environment("cuda:1", worker_index=0, threads=1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
