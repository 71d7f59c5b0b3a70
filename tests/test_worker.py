"""Worker processes: the handshake, error replies, timeouts, deaths, and teardown of the process group."""

from __future__ import annotations

import dataclasses
import os
import re
import time

import psutil
import pytest

from pytest_wiw.pool import PoolSettings, RequestRejected, WorkerPool, device_environment
from pytest_wiw.registry import get_spec
from pytest_wiw.request import GenerationRequest
from pytest_wiw.subject import reference_image
from pytest_wiw.worker.client import WorkerDied, WorkerError, WorkerTimeout

from conftest import TESTS_DIR

# Short timeouts: the defective workers below hang for an hour unless the client gives up.
REQUEST_TIMEOUT_S = 3.0
LOAD_TIMEOUT_S = 120.0


@pytest.fixture
def pool(tiny_cache, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pool = WorkerPool(PoolSettings(device="cpu", tiny_cache=str(tiny_cache), request_timeout=REQUEST_TIMEOUT_S,
                                   load_timeout=LOAD_TIMEOUT_S))
    yield pool
    pool.close_all()


def svd_like(wrapper: str):
    spec = get_spec("svd")
    return dataclasses.replace(spec, name=f"svd-{wrapper.lower()}", wrapper=f"defective_wms:{wrapper}")


def request_for(handle, name=None) -> GenerationRequest:
    gen = handle.ready["generation"]
    return GenerationRequest(images=reference_image(gen["height"], gen["width"])[None], actions=[[4, 1]],
                             task_type="navigation", seed=0, request_model_name=name or handle.spec.name)


def test_ready_handshake_reports_load_and_environment(pool):
    handle = pool.get(get_spec("svd"), None, None, None)
    assert handle.failure is None, handle.failure
    ready = handle.ready
    assert ready["wm_type"] == "svd" and ready["load_seconds"] > 0
    assert ready["environment"]["threads"] == 1 and ready["environment"]["deterministic_algorithms"] is True
    assert ready["memory"]["host_rss"] > 0 and ready["fingerprints"]
    assert pool.loads == 1
    assert pool.get(get_spec("svd"), None, None, None) is handle and pool.loads == 1  # one load per key


def test_error_reply_leaves_worker_serving(pool):
    handle = pool.get(get_spec("svd"), None, None, None)
    with pytest.raises(RequestRejected) as rejected:
        handle.generate(request_for(handle, name="wan21"))
    assert rejected.value.field == "request_model_name"
    frames, reply = handle.generate(request_for(handle))
    assert frames.dtype.name == "uint8" and reply["type"] == "result"
    assert handle.stats()["generations"] == 1


def test_hung_request_times_out_and_kills_the_worker(pool):
    handle = pool.get(svd_like("SlowSVD"), None, None, None)
    pid = handle.ready["pid"]
    start = time.monotonic()
    with pytest.raises(WorkerTimeout) as timeout:
        handle.generate(request_for(handle))
    assert time.monotonic() - start < REQUEST_TIMEOUT_S + 5
    assert "SlowSVD: generating forever" in str(timeout.value)
    assert not _alive(pid)
    with pytest.raises(WorkerError, match="stopped earlier: it timed out"):
        handle.generate(request_for(handle))


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


@pytest.mark.parametrize(("wrapper", "cause"), [("DiesMidRequestSVD", "exited with status 7"),
                                                ("SegfaultSVD", "was killed by SIGSEGV")])
def test_death_mid_request_is_reported_at_once_with_its_log(pool, wrapper, cause):
    handle = pool.get(svd_like(wrapper), None, None, None)
    start = time.monotonic()
    with pytest.raises(WorkerDied) as died:
        handle.generate(request_for(handle))
    assert time.monotonic() - start < REQUEST_TIMEOUT_S  # detected at once, not at the timeout
    message = str(died.value)
    assert cause in message and "while generating" in message
    assert re.search(r"last lines of its log .*\n.*about to", message, re.S), message


def test_teardown_ends_the_whole_process_group(pool):
    handle = pool.get(svd_like("ForkingSVD"), None, None, None)
    worker = psutil.Process(handle.ready["pid"])
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
