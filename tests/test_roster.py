"""The whole native WIW roster in one xdist run on the embedded defaults: every check passes."""

from __future__ import annotations

from conftest import make_checks_dir, run_checks

from pytest_wiw.api.checklist import CHECKS

NATIVE = ("svd ltx hunyuan cosmos20 cosmos25 wan21 wan22 wan22-14B FTcosmos FTltx FTwan21 FTwan22 FTwan22-14B "
          "igen").split()
FT_ONLY = {c.test for c in CHECKS if c.ft_only}
NEEDS_REFERENCE = "test_closer_to_ground_truth"  # skipped: no --wm-reference here (tests/test_ground_truth.py)


def test_every_native_wm_type_passes_every_check(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "-n", "2", *[f"--wm={n}" for n in NATIVE])
    assert run.returncode == 0, run.output[-5000:]
    for name in NATIVE:
        checks = run.of(name)
        assert sorted(checks) == sorted(f"{c.test}[{name}]" for c in CHECKS), name
        for test_id, check in checks.items():
            check_id = test_id.split("[")[0]
            zero_shot_skip = check_id in FT_ONLY and not name.startswith(("FT", "igen"))
            expected = "skipped" if zero_shot_skip or check_id == NEEDS_REFERENCE else "passed"
            assert check.outcome == expected, (test_id, check.message)
            if zero_shot_skip:  # skipped as the declaration says (ft_only), not for a reason of its own
                assert f"{name} is a zero-shot type" in check.message, (test_id, check.message)
    for name in NATIVE:
        floor = 4 if name.startswith(("FT", "igen")) else 3
        assert f"{name}: 1 load(s), {floor} generation call(s)" in run.output
