"""The CI recipes in docs/ are valid and use only commands that exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_github_workflow_is_valid_and_shards_then_merges():
    workflow = yaml.safe_load((DOCS / "ci" / "wiw-conformance.yml").read_text())
    jobs = workflow["jobs"]
    assert jobs["check"]["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    check_steps = " ".join(s.get("run", "") for s in jobs["check"]["steps"])
    assert "--wm-shard ${{ matrix.shard }}/4" in check_steps and "--wm-report=report-" in check_steps
    assert jobs["merge"]["needs"] == "check"
    merge_steps = " ".join(s.get("run", "") for s in jobs["merge"]["steps"])
    assert "pytest-wiw report shards/* --out merged" in merge_steps


def test_slurm_recipe_is_valid_bash():
    subprocess.run(["bash", "-n", str(DOCS / "ci" / "wiw-slurm.sh")], check=True)


def test_documented_options_exist():
    help_text = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True).stdout
    for option in ("--wm-shard", "--wm-changed", "--wm-report", "--wm-worker-cmd", "--wm-worker-python",
                   "--wm-reference", "--wm-reference-episodes", "--wm-reference-margin"):
        assert option in help_text, option


def test_reliability_table_names_tests_that_exist():
    """Every `file.py::test_name` docs/reliability.md cites is a test in tests/; every `[fault]` id is a
    fault of tests/test_bad_checkpoints.py."""
    import re

    from test_bad_checkpoints import FAULTS

    text = (DOCS / "reliability.md").read_text()
    tests_dir = Path(__file__).resolve().parent
    cited = re.findall(r"(test_\w+\.py)::(test_\w+)", text)
    assert len(cited) > 20
    for file, name in cited:
        assert f"def {name}" in (tests_dir / file).read_text(), f"{file}::{name}"
    faults = {f.name for f in FAULTS}
    ids = set(re.findall(r"`\[(\w+)\]`", text))
    assert ids and ids <= faults, ids - faults
    assert faults <= set(re.findall(r"\[(\w+)\]", text)), faults


def test_ground_truth_doc_states_the_constants_the_code_uses():
    """docs/ground-truth.md quotes the check's numbers; they are the code's."""
    from pytest_wiw.checks import ground_truth as gt
    from pytest_wiw.plugin.options import DEFAULT_REFERENCE_EPISODES
    from pytest_wiw.reference.habitat_import import DEFAULT_FRAMES, DEFAULT_HFOV, DEFAULT_VIEW

    text = " ".join((DOCS / "ground-truth.md").read_text().split())
    assert f"`BOOTSTRAP_RESAMPLES` = {gt.BOOTSTRAP_RESAMPLES:,} resamples" in text
    assert f"score {gt.PSNR_IDENTICAL_DB:g} dB (`PSNR_IDENTICAL_DB`)" in text
    assert f"fewer than {gt.MIN_EPISODES_FOR_EVIDENCE} episodes (`MIN_EPISODES_FOR_EVIDENCE`" in text
    assert f"(`--wm-reference-episodes`, default {DEFAULT_REFERENCE_EPISODES})" in text
    assert f"`--frames` frames (default {DEFAULT_FRAMES}," in text
    assert f"`--hfov` degrees (default {DEFAULT_HFOV:g}) at `--view-size` (default {DEFAULT_VIEW[0]}x{DEFAULT_VIEW[1]})" in text
    assert f"{gt.SSIM_WINDOW} pixels, sigma 1.5" in text


def test_readme_table_lists_every_declared_check():
    """The README's table of checks has a row per declared check (pytest_wiw.api.checklist), named as its test is."""
    import re

    from pytest_wiw.api.checklist import CHECKS

    readme = (DOCS.parent / "README.md").read_text()
    table = readme.split("| check | asserts |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert sorted(rows) == sorted(c.test.removeprefix("test_") for c in CHECKS)
