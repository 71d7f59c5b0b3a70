"""A project's pytest.ini must not be lost to `--ckpt-path PATH` (space form; pytest issue 8846)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import make_checks_dir, make_tiny_cli, run_checks

from pytest_wiw.plugin.rootdir import RESTARTED_ENV, equals_form, space_form_values

CARD_REASON = "this copy's card names no licence"
PROJECT_INI = f"""[pytest]
addopts = --wm-report=ini-report
wm_expected_failures =
    FTwan21: checkpoint card: {CARD_REASON}
"""


@pytest.fixture(scope="module")
def outside_ckpt(tmp_path_factory, run_env) -> Path:
    """A tiny FTwan21 LoRA, outside the project, whose card lacks its licence (checkpoint card fails)."""
    out = tmp_path_factory.mktemp("ckpts") / "ft_wan21"
    make_tiny_cli("FTwan21", out, run_env)
    card = out / "README.md"
    card.write_text(re.sub(r"(?m)^license:.*\n", "", card.read_text()))
    return out


def project(path: Path) -> Path:
    folder = make_checks_dir(path)
    (folder / "pytest.ini").write_text(PROJECT_INI)
    return folder


def test_equals_form_reads_the_project_ini(outside_ckpt, tmp_path, run_env):
    folder = project(tmp_path / "project")
    run = run_checks(folder, run_env, "--wm", "FTwan21", f"--ckpt-path={outside_ckpt}")
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_checkpoint_card[FTwan21]"].outcome == "skipped"  # junit's record of an xfail
    assert CARD_REASON in run["test_checkpoint_card[FTwan21]"].message
    assert (folder / "ini-report" / "FTwan21.json").is_file()  # addopts applied


def test_space_form_outside_the_project_reads_the_project_ini(outside_ckpt, tmp_path, run_env):
    """#10's acceptance: pytest is started again with '--ckpt-path=PATH', so the ini's expected failure and
    addopts hold exactly as with the '=' form."""
    folder = project(tmp_path / "project")
    run = run_checks(folder, run_env, "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt))
    assert run.returncode == 0, run.output[-3000:]
    assert f"starting pytest again with --ckpt-path={outside_ckpt}" in run.output
    assert run["test_checkpoint_card[FTwan21]"].outcome == "skipped"  # junit's record of an xfail
    assert CARD_REASON in run["test_checkpoint_card[FTwan21]"].message
    assert (folder / "ini-report" / "FTwan21.json").is_file()  # addopts applied
    assert not (outside_ckpt / ".pytest_cache").exists()


def test_space_form_under_xdist_reads_the_project_ini(outside_ckpt, tmp_path, run_env):
    folder = project(tmp_path / "project")
    run = run_checks(folder, run_env, "-n", "2", "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt),
                     "-k", "card or readable")
    assert run.returncode == 0, run.output[-3000:]
    assert CARD_REASON in run["test_checkpoint_card[FTwan21]"].message
    assert run["test_checkpoint_readable[FTwan21]"].outcome == "passed"


def test_space_form_is_a_usage_error_where_pytest_cannot_be_restarted(outside_ckpt, tmp_path, run_env):
    """A restarted run that is still misplaced (here: simulated by the restart marker) stops, never loops."""
    folder = project(tmp_path / "project")
    env = {**run_env, RESTARTED_ENV: "1"}
    run = run_checks(folder, env, "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt))
    assert run.returncode == 4, run.output[-3000:]
    assert f"Write the option with '=': --ckpt-path={outside_ckpt}" in run.output
    assert f"instead of rootdir {folder}, ini file {folder / 'pytest.ini'}" in run.output
    assert "pytest issue 8846" in run.output
    assert not run.checks and not (outside_ckpt / ".pytest_cache").exists()


def test_space_form_in_process_is_a_usage_error(outside_ckpt, tmp_path, monkeypatch, run_env):
    """pytest.main([...]) from Python: there is no command line to start again."""
    folder = project(tmp_path / "project")
    for key, value in run_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(folder)
    code = pytest.main(["-p", "no:cacheprovider", "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt), "--co"])
    assert code == pytest.ExitCode.USAGE_ERROR


def test_space_form_inside_the_project_still_works(outside_ckpt, tmp_path, run_env):
    """A path under the project leads pytest's ini search to the project's ini anyway: nothing to stop."""
    folder = project(tmp_path / "project")
    inside = folder / "ckpts" / "ft_wan21"
    shutil.copytree(outside_ckpt, inside)
    run = run_checks(folder, run_env, "--wm", "FTwan21", "--ckpt-path", str(inside))
    assert run.returncode == 0, run.output[-3000:]
    assert CARD_REASON in run["test_checkpoint_card[FTwan21]"].message
    assert (folder / "ini-report" / "FTwan21.json").is_file()


# -- the rule itself ------------------------------------------------------------------------------
def test_space_form_values_are_found():
    args = ["--wm", "FTwan21", "--ckpt-path", "/a", "--base-ckpt-path=/b", "--wm-report", "r", "--wm-opt", "x=1"]
    assert space_form_values(args) == [("--ckpt-path", "/a"), ("--wm-report", "r")]
    assert equals_form(args) == ["--wm", "FTwan21", "--ckpt-path=/a", "--base-ckpt-path=/b", "--wm-report=r",
                                 "--wm-opt", "x=1"]


def test_explicit_ini_file_is_trusted(outside_ckpt, tmp_path, run_env):
    """-c pytest.ini given: pytest did not search, the space form changed nothing it chose."""
    folder = project(tmp_path / "project")
    run = run_checks(folder, run_env, "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt),
                     f"-c={folder / 'pytest.ini'}", "--co")
    assert run.returncode == 0 and "pytest issue 8846" not in run.output, run.output[-3000:]


def test_no_ini_anywhere_and_a_neutral_rootdir_is_left_alone(outside_ckpt, tmp_path, run_env):
    """No ini file in either place and a rootdir that is only a common parent: nothing the user set is lost."""
    folder = make_checks_dir(tmp_path / "plain")
    run = run_checks(folder, run_env, "--wm", "FTwan21", "--ckpt-path", str(outside_ckpt), "--co")
    assert run.returncode == 0 and "pytest issue 8846" not in run.output, run.output[-3000:]
