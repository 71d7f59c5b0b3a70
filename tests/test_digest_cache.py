"""The checkpoint digest off the critical path: kept across sessions (pytest_wiw.checkpoints.digest_cache), and computed
while the worker already loads (the readable check starts the worker first)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import make_checks_dir, run_checks
from safetensors.numpy import save_file

from pytest_wiw.checkpoints import digest_cache
from pytest_wiw.checkpoints.files import open_checkpoint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PYTEST_WIW_CACHE", str(folder))
    monkeypatch.setattr(digest_cache, "counts", {"hashed": 0, "cached": 0})
    return folder


def _weights(path, fill: float):
    save_file({"blocks.0.weight": np.full((64, 64), fill, dtype=np.float32)}, str(path))
    return path


def _digest(path):
    """The digest a fresh session computes (a new Checkpoint: nothing remembered in memory)."""
    return open_checkpoint(path).sha256()


def test_the_digest_is_cached_and_invalidated_when_the_file_changes(tmp_path, cache):
    file = _weights(tmp_path / "ft.safetensors", 1.0)
    first = _digest(file)
    assert digest_cache.counts == {"hashed": 1, "cached": 0}
    assert first == open_checkpoint(file)._hash_files()  # the cache changes where it comes from, not the value
    assert _digest(file) == first
    assert digest_cache.counts == {"hashed": 1, "cached": 1}
    assert len(list((cache / digest_cache.DIGESTS_DIR).glob("*.json"))) == 1

    before = os.stat(file)
    _weights(file, 2.0)  # rewritten: same size, new contents
    assert os.stat(file).st_size == before.st_size
    second = _digest(file)
    assert second != first and digest_cache.counts == {"hashed": 2, "cached": 1}


def test_a_rewrite_that_restores_size_and_mtime_is_still_caught_by_ctime(tmp_path, cache):
    file = _weights(tmp_path / "ft.safetensors", 1.0)
    first = _digest(file)
    before = os.stat(file)
    with open(file, "r+b") as fh:  # in place: same inode, same size
        fh.seek(before.st_size - 4)
        fh.write(np.float32(3.0).tobytes())
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back, as rsync --inplace -t does
    after = os.stat(file)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert _digest(file) != first and digest_cache.counts["hashed"] == 2


def test_a_broken_entry_is_a_miss_not_an_error(tmp_path, cache):
    file = _weights(tmp_path / "ft.safetensors", 1.0)
    first = _digest(file)
    for entry in (cache / digest_cache.DIGESTS_DIR).glob("*.json"):
        entry.write_text("{not json")
    assert _digest(file) == first and digest_cache.counts == {"hashed": 2, "cached": 0}


# A conftest for the plugin run below: each hash first waits (up to WAIT_S) for a worker process of this pytest
# process to exist, and writes down whether one did. Started after the hash, no worker ever shows up in time.
WAIT_S = 20
OBSERVER = f'''
import json, os, time

import psutil

from pytest_wiw.checkpoints import files as _checkpoint

_hash_files = _checkpoint.Checkpoint._hash_files


def _worker_running():
    for child in psutil.Process().children(recursive=True):
        try:
            if "pytest_wiw.worker" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            pass
    return False


def _observed(self):
    deadline = time.monotonic() + {WAIT_S}
    while not _worker_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(os.environ["WIW_HASH_EVENTS"], "a") as fh:
        fh.write(json.dumps({{"path": str(self.path), "worker_running": _worker_running()}}) + "\\n")
    return _hash_files(self)


_checkpoint.Checkpoint._hash_files = _observed
'''


def test_the_worker_starts_before_the_checkpoint_is_hashed(tmp_path, run_env):
    pytest.importorskip("diffusers")
    from wrappers.cosmos import Cosmos2VideoToWorld

    ckpt = Cosmos2VideoToWorld.make_tiny("cosmos20", tmp_path / "cosmos20")
    workdir = make_checks_dir(tmp_path / "run")
    with open(workdir / "conftest.py", "a") as fh:
        fh.write(OBSERVER)
    events = tmp_path / "events.jsonl"
    env = {**run_env, "WIW_HASH_EVENTS": str(events), "PYTEST_WIW_CACHE": str(tmp_path / "cache")}
    run = run_checks(workdir, env, "--wm", "cosmos20", f"--ckpt-path={ckpt}", "-k", "readable or loads")
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_checkpoint_readable[cosmos20]"].outcome == "passed"
    assert run["test_checkpoint_loads[cosmos20]"].outcome == "passed"
    hashed = [json.loads(line) for line in events.read_text().splitlines()]
    assert hashed and all(e["worker_running"] for e in hashed), hashed
    assert run["test_checkpoint_readable[cosmos20]"].properties["checkpoint_sha256"] == \
        open_checkpoint(ckpt)._hash_files()
