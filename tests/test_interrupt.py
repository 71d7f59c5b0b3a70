"""Ctrl-C in the middle of a generation: the report is still written and no worker survives."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import TOY_SIZES, make_checks_dir, sigint_as_in_a_terminal, toy_worker_command

# How long to wait for the hanging workers to start generating before pressing Ctrl-C.
START_TIMEOUT_S = 120
# How long every process of an interrupted run gets to be gone once pytest has returned: the WM
# workers' parent-death watchdog polls every second, xdist kills its workers after 10 s.
ORPHAN_TIMEOUT_S = 30
# What the hanging test wrapper (defective_wms.SlowSVD) writes to its log once it is generating.
GENERATING = "generating forever"
# What the toy WIW script writes once it hangs in a request (it then reads neither EOF nor "DONE").
SCRIPT_HANGS = "hanging in request"


def test_ctrl_c_writes_the_report_and_ends_every_worker(tmp_path, run_env):
    workdir = make_checks_dir(tmp_path / "run")
    report = workdir / "report"
    proc = _start_run(workdir, run_env, "--wm", "svd-hangs", "--wm-report", str(report))
    processes = _wait_until_generating(proc, workers=1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in out, out[-2000:]
    assert (report / "report.md").exists() and (report / "svd-hangs.json").exists(), out[-2000:]
    assert not _survivors(processes), out[-2000:]


def test_ctrl_c_under_xdist_ends_every_xdist_and_wm_worker(tmp_path, run_env):
    """Two families on two xdist workers, both hanging in a generation: Ctrl-C leaves no process behind."""
    workdir = make_checks_dir(tmp_path / "run")
    report = workdir / "report"
    proc = _start_run(workdir, run_env, "-n", "2", "--wm", "svd-hangs,svd-forks-and-hangs", "--wm-report", str(report))
    processes = _wait_until_generating(proc, workers=2)
    xdist_workers = {p.ppid() for p in processes if _is_wm_worker(p)}
    assert len(xdist_workers) == 2 and proc.pid not in xdist_workers, "each family on its own xdist worker"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in out, out[-2000:]
    written = ["report.md", "svd-hangs.json", "svd-forks-and-hangs.json"]
    assert all((report / name).exists() for name in written), out[-2000:]
    assert not _survivors(processes), out[-2000:]


def test_killed_session_leaves_no_worker_or_helper_behind(tmp_path, run_env):
    """A pytest killed outright runs no teardown: each WM worker's watchdog ends its process group."""
    workdir = make_checks_dir(tmp_path / "run")
    proc = _start_run(workdir, run_env, "--wm", "svd-forks-and-hangs")
    processes = _wait_until_generating(proc, workers=1)
    assert len(processes) >= 2, [p.cmdline() for p in processes]  # the WM worker and its helper
    proc.kill()
    proc.communicate(timeout=60)
    assert not _survivors(processes)


def test_killed_session_leaves_no_wiw_script_behind(tmp_path, run_env):
    """An unmodified WIW script has no watchdog of its own, and one stuck in a request reads nothing: when
    pytest is killed outright, the adapter's watchdog ends the script's process group, then itself."""
    workdir = make_checks_dir(tmp_path / "run")
    proc = _start_run(workdir, run_env, "--wm", "nwm", "--wm-worker-cmd", toy_worker_command("--hang-on-request", "1"),
                      *TOY_SIZES)
    processes = _wait_until_generating(proc, workers=1, is_worker=_is_toy_script, marker=SCRIPT_HANGS)
    proc.kill()
    proc.communicate(timeout=60)
    assert not _survivors(processes)


def _start_run(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--wm-timeout", "600", *args],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=sigint_as_in_a_terminal)


def _wait_until_generating(proc: subprocess.Popen, workers: int, is_worker=None,
                           marker: str = GENERATING) -> list[psutil.Process]:
    """Every descendant of the run once ``workers`` WM workers (``is_worker``, ours by default) all hang in their
    generation (``marker`` is in their log)."""
    is_worker = is_worker or _is_wm_worker
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        processes = _descendants(proc.pid)
        wm_workers = [p for p in processes if is_worker(p)]
        if len(wm_workers) == workers and all(marker in _log_text(p) for p in wm_workers):
            return processes
    proc.kill()
    out, _ = proc.communicate()
    raise AssertionError(f"{workers} WM worker(s) never all started generating:\n{out[-3000:]}")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _is_wm_worker(process: psutil.Process) -> bool:
    try:
        return "pytest_wiw.worker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _is_toy_script(process: psutil.Process) -> bool:
    try:
        return "toy_worker.py" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _log_text(worker: psutil.Process) -> str:
    """What a WM worker wrote to its log (its stderr) so far."""
    try:
        return Path(f"/proc/{worker.pid}/fd/2").read_text(errors="replace")
    except OSError:
        return ""


def _survivors(processes: list[psutil.Process]) -> list[str]:
    """The processes still alive after ORPHAN_TIMEOUT_S, as 'pid cmdline'."""
    deadline = time.monotonic() + ORPHAN_TIMEOUT_S
    alive = [p for p in processes if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if _running(p)]
    return [_describe(p) for p in alive]


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return str(process.pid)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
