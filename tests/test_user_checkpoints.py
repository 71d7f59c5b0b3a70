"""A user's own checkpoint through --ckpt-path: one from `pytest-wiw make-tiny`, then damaged copies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import make_checks_dir, make_tiny_cli, run_checks
from safetensors.torch import load_file, save_file


@pytest.fixture(scope="module")
def ft_ckpt(tmp_path_factory, run_env) -> Path:
    """An FTwan21 LoRA written by the CLI in DiffSynth-Studio's layout (an epoch folder inside ``out``), its card
    (in ``out``) naming the tiny base it built into the cache."""
    out = tmp_path_factory.mktemp("ckpts") / "ft_wan21"
    assert make_tiny_cli("FTwan21", out, run_env) == out
    return out


def lora_file(folder: Path) -> Path:
    """The epoch file the DiffSynth epoch folder inside ``folder`` loads by default: its highest epoch."""
    return max(folder.rglob("epoch-*.safetensors"), key=lambda f: int(f.stem.split("-")[1]))


def copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_make_tiny_writes_lora_and_card(ft_ckpt):
    assert lora_file(ft_ckpt).stat().st_size > 0
    card = (ft_ckpt / "README.md").read_text()
    assert "base_model:" in card and "license:" in card and "training_steps:" in card


def test_make_tiny_refuses_non_empty_folder(ft_ckpt, run_env):
    proc = subprocess.run([sys.executable, "-m", "pytest_wiw.cli", "make-tiny", "FTwan21", str(ft_ckpt)],
                          env=run_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not empty" in proc.stderr


def test_user_checkpoint_passes(ft_ckpt, tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path), run_env, "--wm", "FTwan21", "--ckpt-path", str(ft_ckpt))
    assert run.returncode == 0, run.output[-3000:]
    assert run["test_differs_from_zero_shot[FTwan21]"].outcome == "passed"
    assert run["test_checkpoint_applied[FTwan21]"].outcome == "passed"
    assert float(run["test_differs_from_zero_shot[FTwan21]"].properties["baseline_diff_mean_abs"]) >= 1.0


def test_zero_lora_b_fails_differs_from_zero_shot(ft_ckpt, tmp_path, run_env):
    ckpt = copy_ckpt(ft_ckpt, tmp_path / "zero_b")
    file = lora_file(ckpt)
    tensors = load_file(file)
    zeroed = {k: (v.zero_() if "lora_B" in k else v) for k, v in tensors.items()}
    save_file(zeroed, file, metadata={"format": "pt"})
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", "--ckpt-path", str(ckpt))
    verdict = run["test_differs_from_zero_shot[FTwan21]"]
    assert verdict.outcome == "failed"
    assert "all 18432 values identical" in verdict.message, verdict.message
    assert float(verdict.properties["baseline_diff_mean_abs"]) == 0.0
    assert run["test_checkpoint_applied[FTwan21]"].outcome == "passed"  # loaded and applied, just no effect
    assert run.returncode == 1


def test_truncated_safetensors_fails_checkpoint_checks(ft_ckpt, tmp_path, run_env):
    ckpt = copy_ckpt(ft_ckpt, tmp_path / "truncated")
    file = lora_file(ckpt)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", f"--ckpt-path={ckpt}")
    assert run.returncode == 1, run.output[-3000:]
    assert "INTERNALERROR" not in run.output
    readable = run["test_checkpoint_readable[FTwan21]"]
    assert readable.outcome == "failed" and str(file) in readable.message and "truncated" in readable.message
    for check in ("test_checkpoint_loads", "test_checkpoint_applied", "test_output_contract"):
        verdict = run[f"{check}[FTwan21]"]  # no worker is started for it: the rest is blocked, naming the file
        assert verdict.outcome == "skipped" and verdict.message.startswith("blocked by checkpoint readable: "), check
        assert str(file) in verdict.message and "truncated" in verdict.message, verdict.message


def test_missing_path_fails_with_its_name(tmp_path, run_env):
    missing = tmp_path / "nowhere"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", "--ckpt-path", str(missing))
    assert run.returncode == 1
    assert f"{missing}: no such file or folder" in run["test_checkpoint_readable[svd]"].message


def test_pickle_checkpoint_refused(tmp_path, run_env):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", "--ckpt-path", str(ckpt))
    assert "pickle checkpoints are refused" in run["test_checkpoint_readable[svd]"].message


def test_checkpoint_of_another_architecture(ft_ckpt, tmp_path, run_env):
    """A Wan LoRA given to svd: the load fails with a message naming the checkpoint."""
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", "--ckpt-path", str(ft_ckpt))
    verdict = run["test_checkpoint_loads[svd]"]
    assert verdict.outcome == "failed"
    assert str(ft_ckpt) in verdict.message


def test_no_worker_outlives_the_session(ft_ckpt, tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21,wan21", "-n", "2")
    assert run.returncode == 0, run.output[-3000:]
    pids = {int(c.properties["worker_pid"]) for c in run.checks.values() if "worker_pid" in c.properties}
    assert len(pids) == 2, run.checks
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive
