"""The plugin in real pytest runs: options, usage errors, selection, test ids, skips and the header."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import make_checks_dir

from pytest_wiw.api.checklist import CHECKS as DECLARED

ALL_WIW = ("wan21 ltx hunyuan nwm cosmos20 cosmos25 wan22 svd gen4tur FTcosmos FTltx FTwan21 FTwan22 "
           "FTwan22-14B se3ds pathdreamer igen GTsim").split()
CHECKS = tuple(c.test for c in DECLARED)


@pytest.fixture
def run_pytest(tmp_path, run_env):
    workdir = make_checks_dir(tmp_path / "run")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=workdir,
                              env=run_env, capture_output=True, text=True, timeout=timeout)

    return run


def test_plugin_without_wm_imports_no_model_library(pytester):
    pytester.makepyfile("""
        import sys
        def test_light():
            assert "torch" not in sys.modules and "diffusers" not in sys.modules
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_plugin_leaves_other_tests_with_a_wm_type_argument_alone(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.parametrize("wm_type", ["mine"])
        def test_own(wm_type):
            assert wm_type == "mine"
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_wm_list_shows_every_wiw_type(run_pytest):
    proc = run_pytest("--wm-list")
    assert proc.returncode == 0, proc.stderr
    for name in ALL_WIW:
        assert f"\n{name} " in proc.stdout, name
    assert "GTsim" in proc.stdout and "not a generative model" in proc.stdout


def test_cli_list(run_env):
    proc = subprocess.run([sys.executable, "-m", "pytest_wiw.cli", "list"], env=run_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert all(name in proc.stdout for name in ALL_WIW)
    assert "wm_type" in proc.stdout and "runnable here" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--wm", "nope"], "--wm 'nope': not a registered wm_type; registered: FTcosmos"),
    (["--wm", "svd", "--wm-dtype", "float8"], "--wm-dtype 'float8': expected one of float32, bfloat16, float16"),
    (["--wm", "svd,wan21", "--ckpt-path", "/x"], "say which one: --ckpt-path WM=PATH"),
    (["--wm", "svd", "--ckpt-path", "wan21=/x"], "wan21 is not selected; add --wm wan21"),
    (["--wm", "svd", "--wm-device", "tpu"], "--wm-device 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["--wm", "svd", "--base-ckpt-path", "/x"], "svd is a zero-shot type; only FT types take a base"),
    (["--wm", "svd", "--wm-opt", "steps"], "--wm-opt 'steps': expected KEY=VALUE"),
    (["--wm", "svd", "--wm-seed", "-3"], "--wm-seed '-3': expected an integer of at least 0"),
    (["--wm", "svd", "--wm-timeout", "soon"], "--wm-timeout 'soon': expected a number"),
    (["--wm", "svd", "--wm-worker-python", "/no/python"], "--wm-worker-python '/no/python': not an executable"),
])
def test_wrong_values_are_usage_errors(run_pytest, args, message):
    proc = run_pytest(*args)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr


def test_ids_read_check_and_wm_type(run_pytest):
    proc = run_pytest("--wm", "svd", "--wm", "FTwan21", "--co", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in CHECKS:
        for wm_type in ("svd", "FTwan21"):
            assert f"::{check}[{wm_type}]" in proc.stdout, (check, wm_type)
    assert f"{2 * len(CHECKS)} tests collected" in proc.stdout


def test_all_selects_every_registered_type(run_pytest, tmp_path):
    (tmp_path / "run" / "conftest.py").unlink()  # without the defective test types
    proc = run_pytest("--wm", "all", "--co", "-q")
    assert proc.returncode == 0
    assert f"{len(CHECKS) * 19} tests collected" in proc.stdout  # the 19 WIW types (wan22-14B included)


def test_header_says_what_is_under_test(run_pytest, tmp_path):
    proc = run_pytest("--wm", "FTwan21", "--ckpt-path", str(tmp_path), "--wm-seed", "7", "--co")
    out = proc.stdout
    assert "wiw: wm_types FTwan21" in out
    assert f"wiw:   FTwan21: checkpoint {tmp_path}" in out
    assert "wiw: device cpu, dtype float32, seed 7, threads 1, deterministic algorithms on, max batch 2" in out


def test_unavailable_types_skip_with_their_reason(run_pytest):
    proc = run_pytest("--wm", "se3ds,GTsim,nwm", "-rs")
    assert proc.returncode == 0, proc.stdout
    assert f"{3 * len(CHECKS)} skipped" in proc.stdout
    assert "se3ds is not runnable here: SE3DS is TensorFlow-only" in proc.stdout
    assert "GTsim is not runnable here: ground truth from the simulator itself" in proc.stdout
    assert "--wm-worker-cmd" in proc.stdout  # nwm says how it is meant to be tested


def test_ft_only_checks_skip_zero_shot_types_with_reason(run_pytest):
    ft_only = [c for c in DECLARED if c.ft_only]
    proc = run_pytest("--wm", "svd", "-k", " or ".join(c.test for c in ft_only), "-rs")
    assert proc.returncode == 0, proc.stdout
    assert f"{len(ft_only)} skipped" in proc.stdout, proc.stdout
    for c in ft_only:
        assert f"svd is a zero-shot type: '{c.name}' applies to FT types" in proc.stdout, c.name


def test_explicit_paths_keep_the_users_tests(run_pytest, tmp_path):
    """`pytest tests/ --wm X` runs the user's tests and the checks; `pytest --wm X` alone only the checks."""
    workdir = tmp_path / "run"
    (workdir / "test_mine.py").write_text("def test_mine():\n    pass\n")
    alone = run_pytest("--wm", "GTsim", "--co", "-q")
    assert "test_mine" not in alone.stdout and f"{len(CHECKS)} tests collected" in alone.stdout
    both = run_pytest("test_mine.py", "--wm", "GTsim", "--co", "-q")
    assert "test_mine.py::test_mine" in both.stdout and f"{len(CHECKS) + 1} tests collected" in both.stdout


def test_ini_expected_failures_run_as_strict_xfail(run_pytest):
    proc = run_pytest("--wm", "svd-unseeded", "-k", "seed_determinism", "-rx",
                      "-o", "wm_expected_failures=svd-unseeded: seed determinism: upstream draws unseeded noise")
    assert proc.returncode == 0, proc.stdout
    assert "1 xfailed" in proc.stdout and "upstream draws unseeded noise" in proc.stdout


def test_ini_expected_failures_must_name_a_check(run_pytest):
    proc = run_pytest("--wm", "svd", "-o", "wm_expected_failures=svd: seed stuff: why")
    assert proc.returncode == 4
    assert "'seed stuff' is not a check; checks: registered" in proc.stderr


def test_progress_streams_as_plain_lines_and_is_silent_with_q(run_pytest):
    shown = run_pytest("--wm", "svd", "-k", "output_contract")
    assert "wiw: worker svd (cpu): generate: 2/2 denoising step" in shown.stdout, shown.stdout
    quiet = run_pytest("--wm", "svd", "-k", "output_contract", "-q")
    assert quiet.returncode == 0 and "denoising step" not in quiet.stdout
