"""WIW's own worker protocol (--wm-worker-cmd), and workers under another interpreter (--wm-worker-python)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest
from conftest import TOY_SIZES, make_checks_dir, run_checks, toy_worker_command

from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.session.legacy import LegacyWorkerProcess

REQUEST_TIMEOUT = "60"


def run_toy(tmp_path, run_env, *flags: str):
    return run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "nwm", "--wm-worker-cmd",
                      toy_worker_command(*flags), "--wm-timeout", REQUEST_TIMEOUT, *TOY_SIZES)


def test_seeded_wiw_worker_passes(tmp_path, run_env):
    run = run_toy(tmp_path, run_env)
    assert run.returncode == 0, run.output[-3000:]
    for check in ("test_output_contract", "test_batch_invariance", "test_seed_determinism", "test_seed_sensitivity",
                  "test_order_independence", "test_bad_request_rejected", "test_checkpoint_loads"):
        assert run[f"{check}[nwm]"].outcome == "passed", check
    assert "nwm runs a WIW worker script" in run["test_checkpoint_applied[nwm]"].message  # skipped, with reason


def test_unseeded_wiw_worker_fails_seed_determinism(tmp_path, run_env):
    run = run_toy(tmp_path, run_env, "--unseeded")
    verdict = run["test_seed_determinism[nwm]"]
    assert verdict.outcome == "failed"
    assert "probably draws noise without the request's generator" in verdict.message


def test_dying_wiw_worker_fails_fast_instead_of_hanging(tmp_path, run_env):
    start = time.monotonic()
    run = run_toy(tmp_path, run_env, "--die-on-request", "2")
    assert time.monotonic() - start < float(REQUEST_TIMEOUT)  # WIW's own manager would block for ever
    verdict = run["test_batch_invariance[nwm]"]
    assert verdict.outcome == "failed"
    assert "exited with status 9" in verdict.message and "dying on request 2" in verdict.message
    assert run["test_output_contract[nwm]"].outcome == "passed"  # the request before it was served
    assert run.returncode == 1 and "INTERNALERROR" not in run.output


def test_closed_wiw_worker_takes_its_watchdog_and_saved_videos_with_it(tmp_path):
    """At a session's end the adapter ends the script itself: the watchdog is dismissed, not left to fire
    (test_interrupt holds that it fires when pytest dies), and the folder the script saved videos in is gone."""
    log = tmp_path / "nwm.log"
    process = LegacyWorkerProcess(toy_worker_command(), dict(os.environ), log, "legacy worker nwm")
    request = GenerationRequest(images=np.zeros((1, 3, 32, 32), np.uint8), actions=[[1, 2]], task_type="navigation",
                                seed=0, request_model_name="nwm")
    result = process.generate(request, "ft", timeout=60, what="in a test")
    assert result.frames.shape == (1, 4, 3, 32, 32)
    saved = process.output_root
    assert (saved / "task1" / "item0").is_dir()
    watchdog = process._watchdog
    assert watchdog.poll() is None  # it watches while the script runs
    process.close()
    assert process.proc.returncode is not None and watchdog.returncode == 0
    assert not saved.exists()
    assert "watchdog killed" not in log.read_text()


def test_registry_says_how_legacy_types_are_tested(run_env):
    listing = subprocess.run([sys.executable, "-m", "pytest_wiw.cli", "list"], env=run_env, capture_output=True,
                             text=True, timeout=120).stdout
    for name, script in (("nwm", "nwm_model.py"), ("se3ds", "se3ds_model.py"),
                         ("pathdreamer", "pathdreamer_model.py"), ("gen4tur", "gen4tur_model.py")):
        line = next(l for l in listing.splitlines() if l.startswith(name + " "))
        assert f'--wm-worker-cmd "python downstream/api_models/{script} --ckpt_path ...' in line, line
    gtsim = next(l for l in listing.splitlines() if l.startswith("GTsim "))
    assert "not a generative model, so there is nothing to check" in gtsim


@pytest.fixture(scope="module")
def second_venv(tmp_path_factory):
    """Another virtual environment whose interpreter sees this one's packages (through a .pth file)."""
    venv = tmp_path_factory.mktemp("venv2")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(f"{site}/parent-env.pth", "w") as pth:
        # addsitedir also runs that folder's own .pth files (the editable install of this project)
        pth.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return venv / "bin" / "python"


def test_worker_runs_under_another_interpreter(tmp_path, run_env, second_venv):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", "--wm-worker-python",
                     str(second_venv), "-k", "loads or contract")
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_checkpoint_loads[svd]"].properties["worker_python"] == str(second_venv)
