"""Where a session's time goes (pytest_wiw.session.timeline), and the pytest-side work taken off the worker's
critical path: the worker starts when the checks are collected, and the checkpoint's fingerprints are read while
it loads (pytest_wiw.session.prefetch)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import make_checks_dir, run_checks
from safetensors.numpy import save_file

from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.checkpoints.fingerprint import file_fingerprints
from pytest_wiw.checkpoints.pipeline_diff import differing_components
from pytest_wiw.session import prefetch
from pytest_wiw.session.timeline import LISTED_GAP_S, WorkerTimeline


def test_the_summary_splits_the_time_into_start_up_calls_and_the_gaps_between_them():
    timeline = WorkerTimeline(spawned=10.0, startup_seconds=5.0)
    timeline.calls += [("G1", 17.0, 20.0),   # 2 s idle after the start-up (ready at 15)
                       ("G2", 20.01, 22.0),  # 0.01 s: bookkeeping, counted but not listed
                       ("stats", 23.0, 23.5)]
    summary = timeline.summary(session_start=8.0, now=24.0)
    assert summary["before_worker_seconds"] == 2.0
    assert summary["worker_startup_seconds"] == 5.0
    assert summary["call_seconds"] == pytest.approx(3.0 + 1.99 + 0.5)
    assert summary["calls"] == 3
    assert summary["idle_seconds"] == pytest.approx(2.0 + 0.01 + 1.0)
    assert summary["idle_gaps"] == [{"before": "G1", "seconds": 2.0}, {"before": "stats", "seconds": 1.0}]
    assert all(g["seconds"] > LISTED_GAP_S for g in summary["idle_gaps"])
    assert summary["after_last_call_seconds"] == 0.5


def test_a_call_sent_before_the_worker_was_ready_waited_for_it_and_left_no_gap():
    timeline = WorkerTimeline(spawned=0.0, startup_seconds=5.0)
    timeline.calls.append(("G1", 1.0, 7.0))  # sent at once; answered once loaded
    summary = timeline.summary(session_start=0.0, now=7.0)
    assert summary["idle_seconds"] == 0 and summary["idle_gaps"] == []
    assert summary["call_seconds"] == 2.0  # the wait for the start-up is the start-up's, not the call's
    parts = ("before_worker_seconds", "worker_startup_seconds", "call_seconds", "idle_seconds",
             "after_last_call_seconds")
    assert sum(summary[k] for k in parts) == 7.0


def _checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"blocks.{i}.weight": rng.standard_normal((16, 8)).astype(np.float32) for i in range(6)}
    save_file(tensors, str(tmp_path / "ft.safetensors"))
    return open_checkpoint(tmp_path / "ft.safetensors")


@pytest.fixture
def reads(monkeypatch):
    """The keys each thread read from the files, by thread name."""
    seen: dict[str, list[str]] = {}

    def counted(ckpt, keys, dtypes):
        seen.setdefault(threading.current_thread().name, []).extend(keys)
        return file_fingerprints(ckpt, keys, dtypes)

    monkeypatch.setattr(prefetch, "file_fingerprints", counted)
    return seen


def test_the_fingerprints_read_ahead_serve_the_check_and_only_other_dtypes_are_read_again(tmp_path, reads):
    ckpt = _checkpoint(tmp_path)
    keys = ckpt.fingerprint_keys()
    ahead = prefetch.CheckpointPrefetch(ckpt, "bfloat16")
    dtypes = {**dict.fromkeys(keys, "bfloat16"), keys[2]: "float32"}  # the model runs one tensor in float32
    got = ahead.fingerprints(open_checkpoint(tmp_path / "ft.safetensors"), keys, dtypes)
    assert reads["wiw-checkpoint-prefetch"] == keys
    assert reads[threading.current_thread().name] == [keys[2]]
    assert got == file_fingerprints(ckpt, keys, dtypes)
    assert got[keys[2]].dtype == "float32" and got[keys[0]].dtype == "bfloat16"


def test_fingerprints_read_ahead_from_other_files_are_not_used(tmp_path, reads):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ahead = prefetch.CheckpointPrefetch(_checkpoint(tmp_path / "a"), "float32")
    other = _checkpoint(tmp_path / "b")
    keys = other.fingerprint_keys()
    got = ahead.fingerprints(other, keys, dict.fromkeys(keys, "float32"))
    assert reads[threading.current_thread().name] == keys
    assert got == file_fingerprints(other, keys, dict.fromkeys(keys, "float32"))


def test_a_failed_read_ahead_leaves_the_check_to_read_and_report(tmp_path, reads):
    ckpt = _checkpoint(tmp_path)
    keys = ckpt.fingerprint_keys()
    (tmp_path / "ft.safetensors").write_bytes(b"")  # emptied after it was opened: the read ahead fails
    ahead = prefetch.CheckpointPrefetch(ckpt, "float32")
    with pytest.raises(Exception):
        ahead.fingerprints(ckpt, keys, dict.fromkeys(keys, "float32"))


def _pipeline(folder, vae_fill: float):
    """A two-component diffusers pipeline folder: the transformer the type runs, and a VAE."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "LTXImageToVideoPipeline", "transformer": ["diffusers", "X"], "vae": ["diffusers", "Y"]}))
    for name, fill in (("transformer", 1.0), ("vae", vae_fill)):
        (folder / name).mkdir()
        (folder / name / "config.json").write_text("{}")
        weights = folder / name / "diffusion_pytorch_model.safetensors"
        save_file({"w": np.full((4, 4), fill, dtype=np.float32)}, str(weights))
    return open_checkpoint(folder)


def test_the_pipeline_folder_comparison_read_ahead_serves_the_check(tmp_path, monkeypatch):
    compared = []

    def counted(ft, base, *, skip=()):
        compared.append(threading.current_thread().name)
        return differing_components(ft, base, skip=skip)

    monkeypatch.setattr(prefetch, "differing_components", counted)
    base, ft = _pipeline(tmp_path / "base", 0.0), _pipeline(tmp_path / "ft", 2.0)
    ahead = prefetch.CheckpointPrefetch(ft, "float32", base=base, component="transformer")
    got = ahead.differing_components(open_checkpoint(tmp_path / "ft"), open_checkpoint(tmp_path / "base"),
                                     ("transformer",))
    assert [d.name for d in got] == ["vae"]
    assert compared == ["wiw-checkpoint-prefetch"]  # compared once, while the worker would load
    other_base = _pipeline(tmp_path / "other", 2.0)  # the worker loaded another base than the card's
    assert ahead.differing_components(ft, other_base, ("transformer",)) == []
    assert compared[-1] == threading.current_thread().name


# A conftest for the plugin runs below: at the setup of each check, whether a worker process of this pytest process
# exists already.
OBSERVER = '''
import json, os

import psutil


def _workers():
    found = 0
    for child in psutil.Process().children(recursive=True):
        try:
            found += "pytest_wiw.worker" in " ".join(child.cmdline())
        except psutil.Error:
            pass
    return found


def _worker_running():
    return _workers() > 0


class Observer:
    """A plugin, not conftest hooks: the checks' items live outside this folder, where its conftest hooks do not
    apply."""

    checks = 0

    def pytest_runtest_setup(self, item):
        self.checks += 1
        with open(os.environ["WIW_SETUP_EVENTS"], "a") as fh:
            fh.write(json.dumps({"test": item.name, "workers": _workers()}) + "\\n")

    def pytest_sessionfinish(self, session):  # before the plugin's own (trylast), which ends the workers
        with open(os.environ["WIW_SETUP_EVENTS"], "a") as fh:
            fh.write(json.dumps({"session": os.environ.get("PYTEST_XDIST_WORKER", "main"), "checks": self.checks,
                                 "worker_running": _worker_running()}) + "\\n")


def pytest_configure(config):
    config.pluginmanager.register(Observer(), "wiw-test-observer")
'''


def test_a_plain_run_starts_the_first_worker_before_the_first_check_and_reports_where_the_time_went(tmp_path, run_env):
    workdir = make_checks_dir(tmp_path / "run")
    with open(workdir / "conftest.py", "a") as fh:
        fh.write(OBSERVER)
    events = tmp_path / "events.jsonl"
    report = tmp_path / "report"
    run = run_checks(workdir, {**run_env, "WIW_SETUP_EVENTS": str(events)}, "--wm", "svd,cosmos20",
                     "--wm-max-examples=0", f"--wm-report={report}")
    assert run.returncode == 0, run.output[-3000:]
    setups = [e for e in map(json.loads, events.read_text().splitlines()) if "test" in e]
    # svd's worker started at collection, before any check ran; cosmos20's only at its own first check (loads
    # started together would compete, each against its own load timeout)
    assert setups[0]["test"].endswith("[svd]") and setups[0]["workers"] == 1, setups[:3]
    assert max(e["workers"] for e in setups) == 2

    written = json.loads((report / "svd.json").read_text())
    timeline, figures = written["timeline"], written["figures"]
    assert timeline["calls"] > figures["generations"] == 3  # the floor, plus the bad requests and stats
    assert timeline["worker_startup_seconds"] > 0 and timeline["call_seconds"] > 0
    assert timeline["idle_seconds"] >= sum(g["seconds"] for g in timeline["idle_gaps"]) - 1e-6  # each rounded to ms
    floor_labels = ("G1 ", "G2 ", "G3 ", "a bad request", "a stats request")
    assert all(g["before"].startswith(floor_labels) for g in timeline["idle_gaps"]), timeline["idle_gaps"]


def test_under_xdist_each_worker_starts_at_its_family_first_check(tmp_path, run_env):
    """With -n, the xdist workers learn their families only as checks are scheduled: nothing starts at
    collection (a worker of every family in every xdist worker would load each model twice)."""
    workdir = make_checks_dir(tmp_path / "run")
    with open(workdir / "conftest.py", "a") as fh:
        fh.write(OBSERVER)
    events = tmp_path / "events.jsonl"
    run = run_checks(workdir, {**run_env, "WIW_SETUP_EVENTS": str(events)}, "--wm", "svd", "-n", "2",
                     "--wm-max-examples=0")
    assert run.returncode == 0, run.output[-3000:]
    sessions = [e for e in map(json.loads, events.read_text().splitlines()) if "session" in e]
    assert sorted(e["session"] for e in sessions) == ["gw0", "gw1", "main"]
    idle = [e for e in sessions if e["session"] != "main" and e["checks"] == 0]
    assert len(idle) == 1 and not idle[0]["worker_running"], sessions  # one family: one xdist worker ran it all
    busy = [e for e in sessions if e["session"] != "main" and e["checks"] > 0]
    assert busy[0]["worker_running"]
    assert "svd: 1 load(s)" in run.output
