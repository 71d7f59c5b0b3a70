"""igen (WIW's SVD-dagger) through real plugin runs: the tiny default, a make-tiny checkpoint-N folder given
as --ckpt-path, one whose action modules are missing, and a 10-channel (manipulation) one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_checks_dir, make_tiny_cli, run_checks

from pytest_wiw.api.registry import CHECK_NAMES
from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.errors import CheckpointError

GENERATION_CHECKS = ("test_output_contract", "test_seed_determinism", "test_differs_from_zero_shot")
#: Skipped in these runs: no --wm-reference was given.
NEEDS_REFERENCE = "test_closer_to_ground_truth"


def assert_all_passed(run) -> None:
    """Every igen check passed; honest baseline skips without the svd base in the session (its message says so),
    closer to ground truth without --wm-reference."""
    checks = run.of("igen")
    assert len(checks) == len(CHECK_NAMES), sorted(checks)
    for test_id, check in checks.items():
        expected = "skipped" if test_id.startswith(("test_honest_baseline", NEEDS_REFERENCE)) else "passed"
        assert check.outcome == expected, (test_id, check.message)


@pytest.fixture(scope="module")
def made(tmp_path_factory, run_env) -> Path:
    """`pytest-wiw make-tiny igen DIR`: DIR/checkpoint-6000/, its card naming the tiny svd base in the cache."""
    out = tmp_path_factory.mktemp("ckpts") / "igen"
    assert make_tiny_cli("igen", out, run_env) == out / "checkpoint-6000"
    return out / "checkpoint-6000"


def _variant(made: Path, dst: Path, **kwargs) -> Path:
    """A checkpoint-N folder of the same tiny base with other action modules (built in this process)."""
    from wrappers.igen import ActionConditionedSVD

    base = open_checkpoint(made).card["base_model"]
    return ActionConditionedSVD.make_tiny("igen", dst, base=Path(base), **kwargs)


def test_default_passes_every_check(tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path), run_env, "--wm", "igen", "--wm", "svd")
    assert run.returncode == 0, run.output[-3000:]
    checks = run.of("igen")
    assert len(checks) == len(CHECK_NAMES), sorted(checks)
    assert checks[f"{NEEDS_REFERENCE}[igen]"].outcome == "skipped"
    assert all(c.outcome == "passed" for t, c in checks.items() if not t.startswith(NEEDS_REFERENCE)), \
        {k: (c.outcome, c.message[:200]) for k, c in checks.items() if c.outcome != "passed"}


def test_make_tiny_checkpoint_passes_with_nothing_else(made, tmp_path, run_env):
    assert (made / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert (made / "optimizer.bin").is_file() and (made / "random_states_0.pkl").is_file()
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "igen", f"--ckpt-path={made}",
                     f"--wm-report={report}")
    assert run.returncode == 0, run.output[-3000:]
    assert_all_passed(run)
    data = json.loads((report / "igen.json").read_text())
    assert "navigation" in json.dumps(data) and "optimizer.bin (accelerate training state: never opened)" in \
        json.dumps(data)


def test_missing_action_proj_fails_checkpoint_loads(made, tmp_path, run_env):
    bad = _variant(made, tmp_path / "bad", drop=("add_action_proj",))
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "igen", f"--ckpt-path={bad}")
    assert run.returncode == 1
    loads = run["test_checkpoint_loads[igen]"]
    assert loads.outcome == "failed" and "add_action_proj" in loads.message and "not an SVD-dagger UNet" in \
        loads.message
    assert run["test_checkpoint_readable[igen]"].outcome == "passed"


def test_ten_channels_are_served_as_manipulation(made, tmp_path, run_env):
    manip = _variant(made, tmp_path / "manip", channels=10)
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "igen", f"--ckpt-path={manip}",
                     f"--wm-report={report}")
    assert run["test_checkpoint_loads[igen]"].outcome == "passed"
    notes = json.dumps(json.loads((report / "igen.json").read_text()))
    assert "action_input_channel 10" in notes and "serves manipulation" in notes
    # The suite draws instruction-only manipulation requests; WIW's igen takes poses: a clear rejection.
    contract = run["test_output_contract[igen]"]
    assert contract.outcome == "failed" and "poses" in contract.message, contract.message
    for check in GENERATION_CHECKS[1:]:  # their inputs never came: blocked by the output contract, naming why
        outcome = run[f"{check}[igen]"]
        assert outcome.outcome == "skipped" and outcome.message.startswith("blocked by output contract: ") \
            and "poses" in outcome.message, (check, outcome.message)


def test_training_state_is_skipped_only_in_a_checkpoint_folder(made, tmp_path):
    import shutil

    renamed = shutil.copytree(made, tmp_path / "not-a-step")
    with pytest.raises(CheckpointError, match="optimizer.bin: pickle weights are refused"):
        open_checkpoint(renamed)
    weights = shutil.copytree(made, tmp_path / "checkpoint-9")
    (weights / "pytorch_model.bin").write_bytes(b"x")  # model weights as a pickle: still refused
    with pytest.raises(CheckpointError, match="pytorch_model.bin: pickle weights are refused"):
        open_checkpoint(weights)
    (weights / "pytorch_model.bin").unlink()
    nested = weights / "unet" / "optimizer.bin"  # only directly beside the models
    nested.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unet/optimizer.bin"):
        open_checkpoint(weights)


def test_keep_only_narrows_what_is_audited(made, tmp_path):
    import shutil

    ckpt = shutil.copytree(made, tmp_path / "checkpoint-5")
    shutil.copytree(ckpt / "unet", ckpt / "unet_ema")
    opened = open_checkpoint(ckpt)
    assert opened.format == "component-folder" and len(opened.files) == 2
    sha = opened.sha256()
    opened.keep_only([ckpt / "unet" / "diffusion_pytorch_model.fp16.safetensors"], reason="igen loads unet/")
    assert [opened.rel(f) for f in opened.files] == ["unet/diffusion_pytorch_model.fp16.safetensors"]
    assert "unet_ema/diffusion_pytorch_model.fp16.safetensors (igen loads unet/)" in opened.describe()["not_opened"]
    assert all(k.startswith("unet/") for k in opened.tensor_index()) and opened.sha256() != sha
    with pytest.raises(CheckpointError, match="not among its weight files"):
        opened.keep_only([tmp_path / "elsewhere.safetensors"], reason="x")
    # Weight files as symlinks into the folder (a hub-cache-like layout) narrow the same way.
    weights = ckpt / "unet_ema" / "diffusion_pytorch_model.fp16.safetensors"
    (ckpt / "blobs").mkdir()
    weights.rename(ckpt / "blobs" / "0123abcd")
    weights.symlink_to(Path("..") / "blobs" / "0123abcd")
    linked = open_checkpoint(ckpt)
    linked.keep_only([weights], reason="ema")
    assert [linked.rel(f) for f in linked.files] == ["unet_ema/diffusion_pytorch_model.fp16.safetensors"]
