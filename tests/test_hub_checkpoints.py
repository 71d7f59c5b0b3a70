"""Checkpoints in a Hugging Face hub cache (snapshots of symlinks into blobs/), as WIW's workers_cfg.py names them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import make_checks_dir, make_tiny_cli, run_checks
from hub_cache import REVISION, hub_snapshot

from pytest_wiw.checkpoints.files import open_checkpoint
from pytest_wiw.errors import CheckpointError

SVD_REPO = "stabilityai/stable-video-diffusion-img2vid"
WAN_REPO = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


make_tiny = make_tiny_cli


@pytest.fixture(scope="module")
def svd_snapshot(tmp_path_factory, run_env) -> Path:
    root = tmp_path_factory.mktemp("hub")
    return hub_snapshot(make_tiny("svd", root / "svd", run_env), root / "cache", SVD_REPO)


def all_passed(run, wm_type: str) -> None:
    checks = run.of(wm_type)
    bad = {k: (v.outcome, v.message[:300]) for k, v in checks.items() if v.outcome not in ("passed", "skipped")}
    assert run.returncode == 0 and not bad, (bad, run.output[-3000:])
    assert checks[f"test_checkpoint_applied[{wm_type}]"].outcome == "passed"


# -- the checkpoint side, without a worker --------------------------------------------------------
def test_snapshot_files_are_links_into_blobs(svd_snapshot):
    link = svd_snapshot / UNET_FILE
    assert link.is_symlink() and link.resolve().parent.name == "blobs"


def test_snapshot_opens_and_names_repo_and_revision(svd_snapshot):
    ckpt = open_checkpoint(svd_snapshot)
    assert ckpt.format == "diffusers" and UNET_FILE in [ckpt.rel(f) for f in ckpt.files]
    hub = ckpt.describe()["hub_snapshot"]
    assert (hub["repo_id"], hub["revision"], hub["refs"]) == (SVD_REPO, REVISION, ["main"])
    assert ckpt.tensor_index()  # every header read through its link


def test_a_file_of_a_snapshot_opens_by_its_own_name(svd_snapshot):
    ckpt = open_checkpoint(svd_snapshot / UNET_FILE)
    assert ckpt.path.name == "diffusion_pytorch_model.safetensors" and ckpt.hub.repo_id == SVD_REPO


def test_plain_folder_has_no_hub_snapshot(tmp_path, run_env):
    ckpt = open_checkpoint(make_tiny("svd", tmp_path / "svd", run_env))
    assert ckpt.hub is None and "hub_snapshot" not in ckpt.describe()


def damaged_copy(snapshot: Path, dest: Path) -> tuple[Path, Path]:
    """A copy of the snapshot's repository whose unet weights link to a file outside it."""
    repo = snapshot.parent.parent
    copy_repo = dest / repo.name
    subprocess.run(["cp", "-a", str(repo), str(copy_repo)], check=True)
    copy = copy_repo / "snapshots" / snapshot.name
    outside = dest / "elsewhere.safetensors"
    outside.write_bytes((copy / UNET_FILE).read_bytes())
    (copy / UNET_FILE).unlink()
    os.symlink(os.path.relpath(outside, (copy / UNET_FILE).parent), copy / UNET_FILE)
    return copy, outside


def test_link_leaving_the_repository_is_refused(svd_snapshot, tmp_path):
    copy, outside = damaged_copy(svd_snapshot, tmp_path)
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(copy)
    message = str(exc.value)
    assert str(copy / UNET_FILE) in message and str(outside) in message
    assert "outside the hub cache repository folder" in message


def test_link_to_a_missing_blob_is_refused(svd_snapshot, tmp_path):
    repo = tmp_path / svd_snapshot.parent.parent.name
    subprocess.run(["cp", "-a", str(svd_snapshot.parent.parent), str(repo)], check=True)
    copy = repo / "snapshots" / REVISION
    (copy / UNET_FILE).resolve().unlink()
    with pytest.raises(CheckpointError, match="does not exist .*interrupted download"):
        open_checkpoint(copy)


def test_link_leaving_a_plain_folder_is_still_refused(tmp_path, run_env):
    folder = make_tiny("svd", tmp_path / "svd", run_env)
    outside = tmp_path / "weights.safetensors"
    (folder / UNET_FILE).rename(outside)
    os.symlink(outside, folder / UNET_FILE)
    with pytest.raises(CheckpointError, match="symlink leads outside the checkpoint folder"):
        open_checkpoint(folder)


# -- real plugin runs ------------------------------------------------------------------------------
def test_svd_snapshot_passes_every_check(svd_snapshot, tmp_path, run_env):
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={svd_snapshot}",
                     f"--wm-report={report}")
    all_passed(run, "svd")
    described = json.loads((report / "svd.json").read_text())["checkpoint"]
    assert described["hub_snapshot"]["repo_id"] == SVD_REPO and described["hub_snapshot"]["revision"] == REVISION
    assert f"{SVD_REPO}@{REVISION[:12]}" in (report / "report.md").read_text()


def test_ft_with_a_snapshot_as_base_passes_every_check(tmp_path, run_env):
    """FTwan21's LoRA (made for the tiny wan21 of seed 0) on that same wan21 laid out as a hub snapshot."""
    base = hub_snapshot(make_tiny("wan21", tmp_path / "wan21", run_env), tmp_path / "cache", WAN_REPO)
    lora = make_tiny("FTwan21", tmp_path / "ft", run_env)
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", f"--ckpt-path={lora}",
                     f"--base-ckpt-path={base}", f"--wm-report={report}")
    all_passed(run, "FTwan21")
    assert run["test_differs_from_zero_shot[FTwan21]"].outcome == "passed"
    described = json.loads((report / "FTwan21.json").read_text())["base_checkpoint"]
    assert described["hub_snapshot"]["repo_id"] == WAN_REPO


def test_damaged_snapshot_fails_checkpoint_readable(svd_snapshot, tmp_path, run_env):
    copy, outside = damaged_copy(svd_snapshot, tmp_path)
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={copy}")
    verdict = run["test_checkpoint_readable[svd]"]
    assert run.returncode == 1 and verdict.outcome == "failed"
    assert str(copy / UNET_FILE) in verdict.message and "outside the hub cache repository folder" in verdict.message
    assert "INTERNALERROR" not in run.output


def test_a_linked_file_outside_a_hub_cache_is_followed(tmp_path):
    """A user's own link to a LoRA file elsewhere: the file named is the file read, as before."""
    import torch
    from safetensors.torch import save_file

    real = tmp_path / "data" / "lora.safetensors"
    real.parent.mkdir()
    save_file({"blocks.0.lora_A.weight": torch.ones(2, 2)}, real)
    link = tmp_path / "ckpts" / "ft.safetensors"
    link.parent.mkdir()
    os.symlink(real, link)
    ckpt = open_checkpoint(link)
    assert ckpt.path == real and ckpt.hub is None and ckpt.format == "lora"
