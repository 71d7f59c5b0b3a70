"""Ctrl-C in the middle of a generation: the report is still written and no worker survives."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from conftest import make_checks_dir

# How long to wait for the hanging worker to start generating before pressing Ctrl-C.
START_TIMEOUT_S = 120


def test_ctrl_c_writes_the_report_and_ends_every_worker(tmp_path, run_env):
    workdir = make_checks_dir(tmp_path / "run")
    report = workdir / "report"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--wm", "svd-hangs",
                             "--wm-report", str(report), "--wm-timeout", "600"], cwd=workdir, env=run_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    workers = []
    while time.monotonic() < deadline and not workers:
        time.sleep(0.5)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "pytest_wiw.worker" in " ".join(p.cmdline())]
    assert workers, "the worker never started"
    time.sleep(8)  # let it load and enter the hanging generation
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in out, out[-2000:]
    assert (report / "report.md").exists() and (report / "svd-hangs.json").exists(), out[-2000:]
    time.sleep(1)
    assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
