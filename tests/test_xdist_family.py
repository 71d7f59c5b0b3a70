"""Under -n, a family's checks run on one xdist worker (pytest_wiw.plugin.xdist_family), on every pytest we support."""

from __future__ import annotations

import json

from conftest import assert_one_worker_at_a_time, make_checks_dir, run_checks

from pytest_wiw.plugin.xdist_family import family_of

FAMILIES = {"wan21": "wan21", "FTwan21": "wan21", "FTwan22-14B": "wan22_a14b", "svd": "svd"}


def test_the_family_is_read_from_the_wm_type_parameter():
    assert family_of("conformance/test_outputs.py::test_seed_determinism[FTwan21]", FAMILIES) == "wan21"
    assert family_of("conformance/test_finetune.py::test_honest_baseline[FTwan22-14B]", FAMILIES) == "wan22_a14b"
    assert family_of("conformance/test_x.py::test_y[FTwan22-14B-other]", FAMILIES) == "wan22_a14b"
    assert family_of("tests/test_a.py::test_b[unknown]", FAMILIES) is None
    assert family_of("tests/test_a.py::test_b", FAMILIES) is None


def test_a_family_lands_on_one_worker_under_xdist(tmp_path, run_env):
    """FTwan21 and wan21 share a worker: one load each, and the honest baseline (which needs wan21's output
    in the same worker's result store) is judged; svd, another family, may run beside them."""
    folder = make_checks_dir(tmp_path)
    run = run_checks(folder, run_env, "-n", "2", "--wm", "FTwan21", "--wm", "wan21", "--wm", "svd",
                     "--wm-report=rep")
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_honest_baseline[FTwan21]"].outcome == "passed"
    for wm_type in ("FTwan21", "wan21", "svd"):
        figures = json.loads((folder / "rep" / f"{wm_type}.json").read_text())["figures"]
        assert figures["loads"] == 1, (wm_type, figures)
    assert_one_worker_at_a_time(folder / "rep", base="wan21", ft="FTwan21")  # on that xdist worker, as without -n


def test_an_explicit_dist_is_the_users(tmp_path, run_env):
    """--dist load given: checks go wherever xdist sends them (each worker that gets one loads its own)."""
    folder = make_checks_dir(tmp_path)
    run = run_checks(folder, run_env, "-n", "2", "--dist", "load", "--wm", "FTwan21", "--wm-report=rep")
    assert run.returncode == 0, run.output[-3000:]
    figures = json.loads((folder / "rep" / "FTwan21.json").read_text())["figures"]
    assert figures["loads"] == 2
