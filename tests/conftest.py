"""Shared fixtures of the project's own tests: pytester runs of the plugin on real tiny models."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # defective_wms, importable here and (via PYTHONPATH) in workers

#: A WIW-style worker script (WIW's worker protocol, a numpy "model"), and the sizes it makes, given as --wm-opt:
#: it stands for nwm, which is registered without generation defaults.
TOY_WORKER = TESTS_DIR / "wiw_workers" / "toy_worker.py"
TOY_SIZES = [f"--wm-opt={k}={v}" for k, v in (("height", 32), ("width", 32), ("out_height", 32), ("out_width", 32),
                                              ("num_frames", 4), ("num_output_frames", 4))]


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` of a pytest run that a test will Ctrl-C: SIGINT back to its default in the child, so that its
    Python turns it into KeyboardInterrupt. A shell without job control starts background commands with SIGINT
    ignored (POSIX), a CI runner may too, and every process below inherits the ignore: Ctrl-C never arrives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def toy_worker_command(*flags: str) -> str:
    """The --wm-worker-cmd that runs the toy WIW script as nwm, with its ``flags``."""
    return f"{sys.executable} {TOY_WORKER} --model-name nwm {' '.join(flags)}"


def pytest_configure(config: pytest.Config) -> None:
    """Under -n with no --dist given, send each test file to one xdist worker (``--dist loadfile``): a module
    fixture that runs the plugin is otherwise built on every xdist worker that runs one of its tests.
    (The plugin's own family scheduler applies only to runs with --wm; xdist's loadgroup breaks on pytest 9.2.)"""
    explicit = any(a in ("--dist", "-d") or a.startswith("--dist=") for a in config.invocation_params.args)
    if not explicit and getattr(config.option, "numprocesses", None) and config.option.dist == "load":
        config.option.dist = "loadfile"


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One tiny-checkpoint cache for the whole test session (each pytester run reuses its builds)."""
    return tmp_path_factory.getbasetemp() / "tiny-cache"


def make_checks_dir(path: Path) -> Path:
    """A folder to run the plugin in: its conftest registers the defective wrappers."""
    from defective_wms import DEFECTIVE_CONFTEST

    path.mkdir(parents=True, exist_ok=True)
    (path / "conftest.py").write_text(DEFECTIVE_CONFTEST)
    return path


@pytest.fixture
def checks_dir(tmp_path: Path) -> Path:
    return make_checks_dir(tmp_path / "run")


@pytest.fixture(scope="session")
def run_env(tiny_cache: Path) -> dict[str, str]:
    """Environment of a plugin run: the shared tiny cache, and the defective wrappers importable."""
    env = dict(os.environ)
    env["PYTEST_WIW_CACHE"] = str(tiny_cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    env.pop("PYTEST_XDIST_WORKER", None)  # our own xdist worker must not leak into the run under test
    env.pop("PYTEST_ADDOPTS", None)
    return env


@dataclass
class Check:
    outcome: str  # passed | failed | skipped | error
    message: str
    properties: dict


@dataclass
class ChecksRun:
    """A run of pytest with the plugin, in a subprocess, read back from its junit XML."""

    returncode: int
    output: str
    checks: dict[str, Check]

    def __getitem__(self, test_id: str) -> Check:
        if test_id not in self.checks:
            raise KeyError(f"{test_id} did not run; ran: {sorted(self.checks)}\n{self.output[-5000:]}")
        return self.checks[test_id]

    def of(self, wm_type: str) -> dict[str, Check]:
        suffix = f"[{wm_type}]"
        return {k: v for k, v in self.checks.items() if k.endswith(suffix)}


def make_tiny_cli(wm_type: str, out: Path, env: dict[str, str]) -> Path:
    """``pytest-wiw make-tiny WM_TYPE OUT`` in a subprocess, as a user runs it; the path it prints."""
    proc = subprocess.run([sys.executable, "-m", "pytest_wiw.cli", "make-tiny", wm_type, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def run_checks(workdir: Path, env: dict[str, str], *args: str, timeout: float = 900) -> ChecksRun:
    """Run ``pytest ARGS`` in ``workdir``; each check's outcome keyed by ``test_x[wm_type]``."""
    junit = workdir / f"junit-{len(list(workdir.glob('junit-*.xml')))}.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", f"--junitxml={junit}", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    checks = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = re.sub(r"@[^\]]*$", "", case.get("name"))
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (node.get("message") or "") + "\n" + (node.text or "")
                    break
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            checks[name] = Check(outcome, message, props)
    return ChecksRun(proc.returncode, proc.stdout + "\n" + proc.stderr, checks)


def assert_one_worker_at_a_time(report_dir: Path, base: str, ft: str) -> None:
    """The base's worker was released no later than the FT type's was spawned; each loaded once, never again."""
    reports = {name: json.loads((report_dir / f"{name}.json").read_text()) for name in (base, ft)}
    for name, report in reports.items():
        assert report["figures"]["loads"] == 1 and report["restarts"] == [], (name, report["figures"])
        assert report["timeline"]["released_seconds"] is not None, (name, report["timeline"])
    base_line, ft_line = reports[base]["timeline"], reports[ft]["timeline"]
    assert base_line["released_seconds"] <= ft_line["before_worker_seconds"], (base_line, ft_line)
