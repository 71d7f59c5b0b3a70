"""WIW's worker protocol as WIW's own scripts speak it: the stand-in tests/wiw_workers/wiw_svd_worker.py.

The stand-in behaves as WIW's svd_model.py does (reader thread, HIGHEST_PROTOCOL results, the name assert
that kills the process, --task_type fixed at launch, unseeded pipeline calls) on a real tiny SVD pipeline.
One run (without xdist, and again with `-n 2`) holds WIW's unseeded worker and our seeded variant to every check; the verdicts expected
of each are listed below.
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import TESTS_DIR, make_checks_dir, make_tiny_cli, run_checks

WIW_SVD = TESTS_DIR / "wiw_workers" / "wiw_svd_worker.py"
SIZES = ("--width 32 --height 32 --out_width 32 --out_height 32 --num_frames 4 --num_output_frames 4 "
         "--num_inference_steps 2")

# WIW's unseeded script: the one finding (unseeded noise), the checks that follow from it, and the name death.
UNSEEDED = {
    "test_checkpoint_loads": "passed",
    "test_output_contract": "passed",
    "test_seed_determinism": "failed",
    "test_batch_invariance": "blocked",
    "test_order_independence": "blocked",
    "test_seed_sensitivity": "blocked",
    "test_property_contract_holds": "passed",
    "test_bad_request_rejected": "failed",
    "test_memory_stable": "skipped",  # a WIW script reports no memory
    "test_checkpoint_applied": "skipped",
    "test_checkpoint_readable": "skipped",
    "test_registered": "skipped",
}
# The same script seeded per item from the request: everything but the name death passes.
SEEDED = {**UNSEEDED, "test_seed_determinism": "passed", "test_batch_invariance": "passed",
          "test_order_independence": "passed", "test_seed_sensitivity": "passed"}


@pytest.fixture(scope="module")
def tiny_svd(tmp_path_factory, run_env):
    out = tmp_path_factory.mktemp("tiny-svd")
    make_tiny_cli("svd", out, run_env)
    return out


def command(ckpt, *extra: str) -> str:
    return f"{sys.executable} {WIW_SVD} --ckpt_path {ckpt} {SIZES} {' '.join(extra)}"


@pytest.fixture(scope="module", params=["0", "2"], ids=["serial", "xdist"])
def run(request, tmp_path_factory, run_env, tiny_svd):
    """One session over both wm_types, without xdist and with ``-n 2``: the same verdicts either way."""
    workdir = make_checks_dir(tmp_path_factory.mktemp("wiw-style"))
    report = workdir / "report"
    result = run_checks(workdir, run_env, "-n", request.param, "--wm", "svd,svd-wiw-seeded",
                        f"--wm-worker-cmd=svd={command(tiny_svd)}",
                        f"--wm-worker-cmd=svd-wiw-seeded={command(tiny_svd, '--seeded', '--world_model_name', 'svd-wiw-seeded')}",
                        "--wm-timeout=120", f"--wm-report={report}")
    result.report = {name: json.loads((report / f"{name}.json").read_text()) for name in ("svd", "svd-wiw-seeded")}
    result.markdown = (report / "report.md").read_text()
    return result


def outcome(check) -> str:
    return "blocked" if check.outcome == "skipped" and check.message.startswith("blocked by ") else check.outcome


@pytest.mark.parametrize(("wm_type", "expected"), [("svd", UNSEEDED), ("svd-wiw-seeded", SEEDED)])
def test_verdicts_of_wiw_style_worker(run, wm_type, expected):
    got = {name: outcome(run[f"{name}[{wm_type}]"]) for name in expected}
    assert got == expected, {k: run[f"{k}[{wm_type}]"].message[:300] for k in got if got[k] != expected[k]}
    assert all("cannot check" not in c.message for c in run.of(wm_type).values())


def test_unseeded_noise_is_named_and_its_consequences_blocked(run):
    assert "draws noise without the request's generator" in run["test_seed_determinism[svd]"].message
    for check in ("batch_invariance", "order_independence", "seed_sensitivity"):
        assert run[f"test_{check}[svd]"].message.startswith("blocked by seed determinism: outputs differ")


def test_name_death_is_a_failure_of_its_own_and_the_script_is_restarted(run):
    message = run["test_bad_request_rejected[svd]"].message
    assert ("another model's name: the worker process exited (status 1) on a request with another model's name "
            "instead of replying with an error") in message, message
    assert "does not match deployed world_model_name" in message  # its last log lines: WIW's assert
    report = run.report["svd"]
    assert report["figures"]["loads"] == 2 and len(report["restarts"]) == 1, report["restarts"]
    assert "exited with status 1" in report["restarts"][0]


def test_only_the_launch_task_is_sent(run):
    for name in ("svd", "svd-wiw-seeded"):
        assert run.report[name]["tasks"] == ["navigation"]
        assert "task tested: navigation (WIW's default: the command has no --task_type)" in run.report[name]["notes"]
    assert run["test_property_contract_holds[svd]"].properties["property_tasks"] == "navigation"


def test_blocked_checks_fail_the_verdict(run):
    assert run.report["svd"]["verdict"] == "failed"
    outcomes = {c["name"]: c["outcome"] for c in run.report["svd"]["checks"]}
    assert outcomes["batch invariance"] == "blocked"
    # root causes in the checks' declared order: upstream checks first
    assert "## Root causes\n\n- **svd** / seed determinism: outputs differ across two runs with seed 0" in run.markdown
    assert "- **svd** / bad request rejected: invalid requests were not rejected" in run.markdown
    assert "- **svd** / batch invariance: blocked by seed determinism: outputs differ" in run.markdown
    assert "wiw: root causes" in run.output and "svd / seed determinism: outputs differ" in run.output
    assert run.returncode == 1 and "INTERNALERROR" not in run.output
