"""One WM worker at a time: a wm_type's checks run together, base first, and its worker exits after the last."""

from __future__ import annotations

from conftest import assert_one_worker_at_a_time, make_checks_dir, run_checks


def test_checks_are_ordered_by_family_then_zero_shot_first(tmp_path, run_env):
    """FTwan21 is named first, so its family comes first, and in it wan21 (the base) before FTwan21; svd after."""
    run = run_checks(make_checks_dir(tmp_path), run_env, "--wm", "FTwan21,svd,wan21", "--collect-only", "-q")
    ids = [line for line in run.output.splitlines() if "::test_" in line]
    wm_types = [nodeid.rsplit("[", 1)[1].rstrip("]") for nodeid in ids]
    assert list(dict.fromkeys(wm_types)) == ["wan21", "FTwan21", "svd"], wm_types
    assert len(wm_types) == len(ids) and all(wm_types.count(w) == len(wm_types) // 3 for w in wm_types)
    first_of_svd = ids[wm_types.index("svd"):]
    assert first_of_svd[0].startswith("test_card.py::") and first_of_svd[-1].startswith("test_requests.py::")


def test_one_worker_holds_the_device_at_a_time(tmp_path, run_env):
    """Without xdist: wan21's worker is released after its last check, and FTwan21's starts then, not before;
    the honest baseline still reads wan21's floor (from the store: no second load of wan21)."""
    folder = make_checks_dir(tmp_path)
    run = run_checks(folder, run_env, "--wm", "FTwan21", "--wm", "wan21", "--wm-report=rep")
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_honest_baseline[FTwan21]"].outcome == "passed"
    assert_one_worker_at_a_time(folder / "rep", base="wan21", ft="FTwan21")
    assert "(released at" in run.output
