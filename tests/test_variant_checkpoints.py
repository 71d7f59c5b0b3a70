"""diffusers weight variants (``unet/diffusion_pytorch_model.fp16.safetensors``...), as WIW's SVD snapshots hold them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_checks_dir, make_tiny_cli, run_checks
from hub_cache import hub_snapshot

from pytest_wiw.checkpoints.files import open_checkpoint, weight_variant
from pytest_wiw.errors import CheckpointError

FP16_FILES = ("unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
              "image_encoder/model.fp16.safetensors")
PLAIN_UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def plain_svd(tmp_path_factory, run_env) -> Path:
    out = tmp_path_factory.mktemp("variants") / "plain"
    make_tiny_cli("svd", out, run_env)
    return out


def save_fp16(src: Path, dest: Path) -> Path:
    """The pipeline at ``src`` saved as diffusers saves a variant: float16 tensors in ``*.fp16.safetensors``."""
    import torch
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(str(src))
    pipe.to(torch.float16)
    pipe.save_pretrained(str(dest), variant="fp16", safe_serialization=True)
    shutil.copy(src / "README.md", dest / "README.md")  # the card: its tiny generation settings
    return dest


@pytest.fixture(scope="module")
def fp16_svd(plain_svd) -> Path:
    return save_fp16(plain_svd, plain_svd.parent / "fp16")


@pytest.fixture(scope="module")
def both_svd(plain_svd, fp16_svd) -> Path:
    both = plain_svd.parent / "both"
    shutil.copytree(plain_svd, both)
    for rel in FP16_FILES:
        shutil.copy(fp16_svd / rel, both / rel)
    return both


def test_variant_file_names():
    names = {"diffusion_pytorch_model.fp16.safetensors": "fp16", "model.fp16.safetensors": "fp16",
             "diffusion_pytorch_model.bf16-00001-of-00002.safetensors": "bf16",
             "diffusion_pytorch_model.safetensors": None, "model-00001-of-00003.safetensors": None,
             "pytorch_lora_weights.safetensors": None, "epoch-0.safetensors": None, "my.fp16.safetensors": None}
    assert {name: weight_variant(Path(name)) for name in names} == names


def test_fp16_only_folder_opens_as_fp16_with_the_plain_keys(plain_svd, fp16_svd):
    plain, fp16 = open_checkpoint(plain_svd), open_checkpoint(fp16_svd)
    assert (plain.variant, fp16.variant) == (None, "fp16")
    assert sorted(fp16.rel(f) for f in fp16.files) == sorted(FP16_FILES)
    assert set(fp16.tensor_index()) == set(plain.tensor_index())  # unet/..., vae/..., image_encoder/...
    assert fp16.describe()["variant"] == "fp16"


def test_several_variants_ask_which(both_svd):
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(both_svd)
    message = str(exc.value)
    assert "several diffusers variants" in message and "--wm-opt variant=fp16" in message
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in message and "variant=none" in message


def test_the_option_picks_a_variant(both_svd, plain_svd):
    fp16 = open_checkpoint(both_svd, "fp16")
    assert fp16.variant == "fp16" and sorted(fp16.rel(f) for f in fp16.files) == sorted(FP16_FILES)
    plain = open_checkpoint(both_svd, "none")
    assert plain.variant is None and set(plain.tensor_index()) == set(open_checkpoint(plain_svd).tensor_index())
    with pytest.raises(CheckpointError, match="variant=bf16: no weights of that variant"):
        open_checkpoint(both_svd, "bf16")


def test_a_component_lacking_the_variant_is_named(both_svd, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(both_svd, partial)
    (partial / "vae/diffusion_pytorch_model.fp16.safetensors").unlink()
    with pytest.raises(CheckpointError, match="variant=fp16: vae holds no weights of that variant"):
        open_checkpoint(partial, "fp16")


# -- real plugin runs ------------------------------------------------------------------------------
def passes_every_check(run) -> None:
    bad = {k: (v.outcome, v.message[:300]) for k, v in run.of("svd").items() if v.outcome not in ("passed", "skipped")}
    assert run.returncode == 0 and not bad, (bad, run.output[-3000:])
    assert run["test_checkpoint_applied[svd]"].outcome == "passed"


def test_fp16_only_folder_passes_every_check(fp16_svd, tmp_path, run_env):
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={fp16_svd}",
                     f"--wm-report={report}")
    passes_every_check(run)
    assert json.loads((report / "svd.json").read_text())["checkpoint"]["variant"] == "fp16"


def test_both_variants_fail_readable_naming_the_option(both_svd, tmp_path, run_env):
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={both_svd}")
    assert run.returncode == 1 and "INTERNALERROR" not in run.output
    readable, loads = run["test_checkpoint_readable[svd]"], run["test_checkpoint_loads[svd]"]
    assert readable.outcome == "failed" and "--wm-opt variant=" in readable.message, readable.message
    assert loads.outcome == "skipped" and loads.message.startswith("blocked by checkpoint readable: ") \
        and "--wm-opt variant=" in loads.message, loads.message  # no worker is started for it


@pytest.mark.parametrize("variant", ["fp16", "none"])
def test_both_variants_pass_with_the_option(both_svd, tmp_path, run_env, variant):
    """checkpoint applied compares the running weights with the chosen files: the float16 ones differ from the
    float32 ones by their rounding, so a wrapper that loaded the other variant would fail it."""
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={both_svd}",
                     f"--wm-opt=variant={variant}", f"--wm-report={report}")
    passes_every_check(run)
    expected = None if variant == "none" else variant
    assert json.loads((report / "svd.json").read_text())["checkpoint"].get("variant") == expected


def test_fp16_only_hub_snapshot_passes_every_check(fp16_svd, tmp_path, run_env):
    """What WIW users have for SVD: a hub cache snapshot of the fp16 files (workers_cfg.py, svd_model.py)."""
    snapshot = hub_snapshot(fp16_svd, tmp_path / "cache", "stabilityai/stable-video-diffusion-img2vid")
    report = tmp_path / "report"
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "svd", f"--ckpt-path={snapshot}",
                     f"--wm-report={report}")
    passes_every_check(run)
    described = json.loads((report / "svd.json").read_text())["checkpoint"]
    assert described["variant"] == "fp16" and described["hub_snapshot"]["revision"] == snapshot.name
