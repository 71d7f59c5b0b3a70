"""Reports (--wm-report), merging shards (pytest-wiw report), checkpoint cards, and CI selection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jsonschema
import pytest
from conftest import make_checks_dir, run_checks
from PIL import Image

from pytest_wiw.api.checklist import CHECK_NAMES, check_named
from pytest_wiw.report.writer import SCHEMA_PATH

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def cli(run_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_wiw.cli", *args], env=run_env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, run_env):
    """One xdist run of FTwan21 and wan21 plus a defective type, with a report."""
    workdir = make_checks_dir(tmp_path_factory.mktemp("report"))
    report = workdir / "out"
    run = run_checks(workdir, run_env, "-n", "2", "--wm", "FTwan21", "--wm", "wan21", "--wm", "svd-fixed-seed",
                     "--wm-report", str(report))
    return run, report


def test_report_files_written_once_each(full_run):
    run, report = full_run
    names = sorted(p.name for p in report.iterdir())
    assert names == ["FTwan21.json", "FTwan21.png", "report.md", "svd-fixed-seed.json", "svd-fixed-seed.png",
                     "wan21.json", "wan21.png"], names
    assert run.output.count("wiw: report written to") == 1


@pytest.mark.parametrize("wm_type", ["FTwan21", "wan21", "svd-fixed-seed"])
def test_report_json_validates_and_holds_the_figures(full_run, wm_type):
    _, report = full_run
    data = json.loads((report / f"{wm_type}.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["figures"]["loads"] == 1
    assert data["figures"]["generations"] == (4 if wm_type == "FTwan21" else 3)
    assert len(data["checkpoint"]["sha256"]) == 64
    assert data["environment"]["threads"] == 1 and data["environment"]["deterministic_algorithms"] is True
    # a row per declared check, named as declared (as expected_failures spell them), in declaration order
    assert [c["name"] for c in data["checks"]] == list(CHECK_NAMES)
    assert [c["test_id"] for c in data["checks"]] == [f"{check_named(n).test}[{wm_type}]" for n in CHECK_NAMES]


def test_report_verdicts_and_failures(full_run):
    _, report = full_run
    assert json.loads((report / "FTwan21.json").read_text())["verdict"] == "passed"
    bad = json.loads((report / "svd-fixed-seed.json").read_text())
    assert bad["verdict"] == "failed"
    failed = next(c for c in bad["checks"] if c["name"] == "seed sensitivity")
    assert failed["outcome"] == "failed" and "ignores the request's seed" in failed["message"]
    md = (report / "report.md").read_text()
    assert "**3 wm_type(s), 1 failed**: svd-fixed-seed" in md
    assert "- **svd-fixed-seed** / seed sensitivity:" in md
    assert "FT vs zero-shot" in md and "![FTwan21](FTwan21.png)" in md
    table = [line.split(" | ")[0].removeprefix("| ") for line in md.splitlines() if line.startswith("| ")]
    assert table[2:2 + len(CHECK_NAMES)] == list(CHECK_NAMES)  # after the header rows, in declaration order
    legend = md.split("## What each check proves", 1)[1]
    assert f"- **property: contract holds**: {check_named('property: contract holds').doc}" in legend


def test_contact_sheet_has_three_labelled_rows(full_run):
    _, report = full_run
    sheet = Image.open(report / "FTwan21.png")
    assert sheet.width > 400 and sheet.height > 3 * 96  # three rows of enlarged frames under a title


def test_report_cli_gates_on_failed_verdicts(full_run, run_env, tmp_path):
    _, report = full_run
    proc = cli(run_env, "report", str(report))
    assert proc.returncode == 1 and "failed: svd-fixed-seed" in proc.stderr
    passing = tmp_path / "passing"
    passing.mkdir()
    for name in ("FTwan21.json", "wan21.json"):
        shutil.copy(report / name, passing / name)
    proc = cli(run_env, "report", str(passing), "--out", str(tmp_path / "merged"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "merged" / "report.md").exists()


def test_two_shards_merge_to_the_same_verdicts(full_run, run_env, tmp_path):
    run, report = full_run
    shards = []
    for k in (1, 2):
        workdir = make_checks_dir(tmp_path / f"shard{k}")
        out = workdir / "out"
        run_checks(workdir, run_env, "--wm", "FTwan21,wan21,svd-fixed-seed", "--wm-shard", f"{k}/2",
                   "--wm-report", str(out))
        shards.append(out)
    merged = tmp_path / "merged"
    proc = cli(run_env, "report", *map(str, shards), "--out", str(merged))
    assert proc.returncode == 1  # svd-fixed-seed fails, as in the single run
    for name in ("FTwan21", "wan21", "svd-fixed-seed"):
        one = json.loads((report / f"{name}.json").read_text())
        both = json.loads((merged / f"{name}.json").read_text())
        assert both["verdict"] == one["verdict"]
        assert {c["name"]: c["outcome"] for c in both["checks"]} == {c["name"]: c["outcome"] for c in one["checks"]}


def test_shards_partition_the_selection_by_family(run_env, tmp_path):
    workdir = make_checks_dir(tmp_path / "run")
    seen = []
    for k in (1, 2, 3):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "--wm", "all",
                               "--wm-shard", f"{k}/3"], cwd=workdir, env=run_env, capture_output=True, text=True)
        seen.append({line.split("[")[1].rstrip("]") for line in proc.stdout.splitlines() if "[" in line})
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    union = set().union(*seen)
    assert {"FTwan21", "wan21", "GTsim"} <= union
    assert next(i for i, s in enumerate(seen) if "FTwan21" in s) == next(i for i, s in enumerate(seen) if "wan21" in s)


def test_card_check_fails_without_a_card_and_pytest_wiw_card_fixes_it(run_env, tmp_path):
    ckpt = tmp_path / "ft"
    assert cli(run_env, "make-tiny", "FTwan21", str(ckpt)).returncode == 0
    card = (ckpt / "README.md").read_text()
    base = next(line.split(":", 1)[1].strip() for line in card.splitlines() if line.startswith("base_model:"))
    (ckpt / "README.md").unlink()
    args = ("--wm", "FTwan21", "--ckpt-path", str(ckpt), "--base-ckpt-path", base, "-k", "card")
    run = run_checks(make_checks_dir(tmp_path / "run1"), run_env, *args)
    verdict = run["test_checkpoint_card[FTwan21]"]
    assert verdict.outcome == "failed"
    assert "no model card" in verdict.message and "pytest-wiw card" in verdict.message
    proc = cli(run_env, "card", str(ckpt))
    assert "still to fill in" in proc.stdout
    run = run_checks(make_checks_dir(tmp_path / "run2"), run_env, *args)
    assert "training_steps: <number of optimizer steps" in run["test_checkpoint_card[FTwan21]"].message
    cli(run_env, "card", str(ckpt), "--datasets", "habitat-nav", "--training-steps", "5000", "--license", "apache-2.0")
    run = run_checks(make_checks_dir(tmp_path / "run3"), run_env, *args)
    assert run["test_checkpoint_card[FTwan21]"].outcome == "passed"


def test_wm_changed_selects_types_whose_files_changed(run_env, tmp_path):
    """A contributor's package in its own git repo: only the wm_type whose wrapper changed is selected."""
    pkg = tmp_path / "contrib"
    (pkg / "mywms").mkdir(parents=True)
    (pkg / "mywms" / "__init__.py").write_text("")
    (pkg / "mywms" / "a.py").write_text("X = 1\n")
    (pkg / "mywms" / "b.py").write_text("Y = 1\n")
    (pkg / "env.txt").write_text("torch==2.13.0\n")
    (pkg / "conftest.py").write_text(
        "from pytest_wiw.api.registry import get_spec, register_wm\n"
        "d = get_spec('svd').defaults\n"
        "register_wm('contrib-a', wrapper='mywms.a:A', category='text', defaults=d, env='env.txt')\n"
        "register_wm('contrib-b', wrapper='mywms.b:B', category='text', defaults=d, env='env.txt')\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=pkg, check=True)
    subprocess.run([*git, "add", "-A"], cwd=pkg, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=pkg, check=True)
    (pkg / "mywms" / "b.py").write_text("Y = 2\n")
    env = {**run_env, "PYTHONPATH": f"{pkg}:{run_env['PYTHONPATH']}"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "--wm",
                           "contrib-a,contrib-b", "--wm-changed", "HEAD"], cwd=pkg, env=env, capture_output=True,
                          text=True)
    assert "[contrib-b]" in proc.stdout and "[contrib-a]" not in proc.stdout, proc.stdout + proc.stderr
    # A module of the package that only b's wrapper imports (its loading or tiny-building helpers) selects b alone.
    (pkg / "mywms" / "shared.py").write_text("Z = 1\n")
    (pkg / "mywms" / "b.py").write_text("from .shared import Z\nY = 2\n")
    subprocess.run([*git, "add", "-A"], cwd=pkg, check=True)
    subprocess.run([*git, "commit", "-qm", "b uses shared"], cwd=pkg, check=True)
    (pkg / "mywms" / "shared.py").write_text("Z = 2\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "--wm",
                           "contrib-a,contrib-b", "--wm-changed", "HEAD"], cwd=pkg, env=env, capture_output=True,
                          text=True)
    assert "[contrib-b]" in proc.stdout and "[contrib-a]" not in proc.stdout, proc.stdout + proc.stderr
