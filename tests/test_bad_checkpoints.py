"""Issue 5's acceptance for checkpoints: every bad checkpoint given with --ckpt-path fails its check.

One ``pytest -n 2`` session checks a damaged copy of the tiny wan21 pipeline (or FTwan21 LoRA) per
fault, each under its own registered wm_type (``wan21-<fault>``), so a single run shows the session
surviving all of them together: pytest exits 1 (failed checks, no internal error), the failing check
names the file and the cause, every report is written, and no worker process remains.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import pytest
import torch
from conftest import make_checks_dir, run_checks
from safetensors.torch import load_file, save_file

from pytest_wiw.api.registry import get_spec
from pytest_wiw.runtime.tiny import ensure_tiny

CONFTEST = '''
from pytest_wiw.api.registry import get_spec, register_wm

for name in {names!r}:
    spec = get_spec(name.split("-")[0])
    register_wm(name, wrapper=spec.wrapper, category=spec.category, base=spec.base, finetune=spec.finetune,
                tasks=spec.tasks, defaults=spec.defaults, env=str(spec.env_path()))
'''


@dataclass(frozen=True)
class Fault:
    """A damaged checkpoint: how to make it from a copy of the tiny one, the check that must fail, and
    what its message must say (the file's name and the cause)."""

    name: str
    of: str  # wan21 or FTwan21
    damage: Callable[[Path], Path]  # the copy's folder -> the path to give --ckpt-path
    check: str
    says: tuple[str, ...]


def _tensors(folder: Path, component: str = "transformer"):
    file = next((folder / component).glob("*.safetensors")) if component else next(folder.glob("*.safetensors"))
    return file, load_file(file)


def _edit(component: str, edit) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        file, tensors = _tensors(folder, component)
        key = sorted(k for k, t in tensors.items() if t.ndim >= 2)[0]
        edit(tensors, key)
        save_file(tensors, file)
        return folder
    return damage


def _truncate(folder: Path) -> Path:
    file, _ = _tensors(folder)
    file.write_bytes(file.read_bytes()[:-100])
    return folder


def _header_length(length: int) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        file, _ = _tensors(folder)
        raw = file.read_bytes()
        file.write_bytes(struct.pack("<Q", length) + raw[8:])
        return folder
    return damage


def _empty(folder: Path) -> Path:
    shutil.rmtree(folder)
    folder.mkdir()
    return folder


def _missing(folder: Path) -> Path:
    shutil.rmtree(folder)
    return folder


def _symlink_outside(folder: Path) -> Path:
    file, _ = _tensors(folder)
    outside = folder.parent / f"{folder.name}-outside.safetensors"
    file.rename(outside)
    file.symlink_to(outside)
    return folder


def _pickle(folder: Path) -> Path:
    (folder / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    return folder


def _lora_for_nothing(folder: Path) -> Path:
    file = max(folder.rglob("epoch-*.safetensors"))  # the tiny FTwan21 holds a DiffSynth epoch folder: its last loads
    tensors = load_file(file)
    save_file({k.replace("blocks.", "no_such_blocks.", 1): t for k, t in tensors.items()}, file)
    return folder


def _other_architecture(folder: Path) -> Path:
    """A fine-tuned Cosmos transformer folder (its card still naming the wan21 base) where FTwan21 expects
    a fine-tune of its own transformer."""
    for file in folder.rglob("*.safetensors"):
        file.unlink()
    shutil.copytree(folder.parent / "cosmos-transformer", folder / "transformer")
    return folder


FAULTS = [
    Fault("missingpath", "wan21", _missing, "checkpoint readable", ("no such file or folder",)),
    Fault("emptyfolder", "wan21", _empty, "checkpoint readable", ("holds no .safetensors",)),
    Fault("truncated", "wan21", _truncate, "checkpoint readable", ("diffusion_pytorch_model.safetensors", "truncated")),
    Fault("headerbeyondfile", "wan21", _header_length(10**6), "checkpoint readable",
          ("diffusion_pytorch_model.safetensors", "header claims")),
    Fault("absurdheader", "wan21", _header_length(2**62), "checkpoint readable",
          ("diffusion_pytorch_model.safetensors", "header claims")),
    Fault("symlinkout", "wan21", _symlink_outside, "checkpoint readable",
          ("diffusion_pytorch_model.safetensors", "symlink leads outside")),
    Fault("pickle", "wan21", _pickle, "checkpoint readable", ("diffusion_pytorch_model.bin", "pickle")),
    Fault("missingkey", "wan21", _edit("transformer", lambda t, k: t.pop(k)), "checkpoint loads",
          ("transformer/", "missing from the files", "blocks.0.attn1.to_k.weight")),
    Fault("missingtextkey", "wan21", _edit("text_encoder", lambda t, k: t.pop(k)), "checkpoint loads",
          ("text_encoder/encoder.block.0.layer.0.SelfAttention.k.weight", "random initialisation")),
    Fault("unexpectedkey", "wan21", _edit("transformer", lambda t, k: t.update(bogus=torch.zeros(2))),
          "checkpoint loads", ("transformer/bogus", "no counterpart")),
    Fault("misshapen", "wan21",
          _edit("transformer", lambda t, k: t.update({k: torch.zeros(t[k].shape[0] + 1, t[k].shape[1])})),
          "checkpoint loads", ("diffusion_pytorch_model.safetensors", "of another shape", "[17, 16]")),
    Fault("nan", "wan21", _edit("transformer", lambda t, k: t[k].view(-1)[:3].fill_(float("nan"))),
          "checkpoint loads", ("transformer/diffusion_pytorch_model.safetensors", "3 of 256 values are NaN or Inf")),
    Fault("inf", "wan21", _edit("vae", lambda t, k: t[k].view(-1)[:1].fill_(float("inf"))),
          "checkpoint loads", ("vae/diffusion_pytorch_model.safetensors", "NaN or Inf")),
    Fault("intdtype", "wan21", _edit("transformer", lambda t, k: t.update({k: t[k].to(torch.int64)})),
          "checkpoint loads", ("diffusion_pytorch_model.safetensors", "stored as I64")),
    Fault("lorafornothing", "FTwan21", _lora_for_nothing, "checkpoint loads",
          ("epoch-1.safetensors", "no_such_blocks")),
    Fault("otherarchitecture", "FTwan21", _other_architecture, "checkpoint loads",
          ("otherarchitecture/transformer", "does not fit the base pipeline", "in_channels 17 (base 36)")),
]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, run_env, tiny_cache):
    """One -n 2 session over every fault; (run, {wm_type: checkpoint path}, report folder, workdir)."""
    root = tmp_path_factory.mktemp("bad")
    wan, _ = ensure_tiny(get_spec("wan21"), None, tiny_cache)
    ft, _ = ensure_tiny(get_spec("FTwan21"), get_spec("wan21"), tiny_cache)
    cosmos, _ = ensure_tiny(get_spec("cosmos20"), None, tiny_cache)
    shutil.copytree(cosmos / "transformer", root / "cosmos-transformer")
    paths = {}
    for fault in FAULTS:
        copy = root / fault.name
        shutil.copytree(wan if fault.of == "wan21" else ft, copy)
        paths[f"{fault.of}-{fault.name}"] = fault.damage(copy)
    workdir = make_checks_dir(root / "run")
    (workdir / "conftest.py").write_text(CONFTEST.format(names=sorted(paths)))
    report = root / "report"
    args = ["-n", "2", "--wm", ",".join(sorted(paths)), "--wm-report", str(report), "--wm-max-examples", "0"]
    for name, path in paths.items():
        args += ["--ckpt-path", f"{name}={path}"]
    return run_checks(workdir, run_env, *args), paths, report, root


def test_session_exits_1_without_internal_error(bad_run):
    run, *_ = bad_run
    assert run.returncode == 1, run.output[-3000:]
    assert "INTERNALERROR" not in run.output


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_bad_checkpoint_fails_its_check_naming_file_and_cause(bad_run, fault):
    run, *_ = bad_run
    test_id = f"test_{fault.check.replace(' ', '_')}[{fault.of}-{fault.name}]"
    verdict = run[test_id]
    assert verdict.outcome == "failed", (test_id, verdict)
    for fragment in fault.says:
        assert fragment in verdict.message, (fragment, verdict.message[:3000])


def test_every_report_is_written(bad_run):
    run, paths, report, _ = bad_run
    written = {p.stem for p in report.glob("*.json")}
    assert written == set(paths), run.output[-2000:]
    assert (report / "report.md").is_file()


def test_no_worker_process_remains(bad_run):
    _, _, _, root = bad_run
    leftovers = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "pytest_wiw.worker" in cmdline and str(root) in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
            leftovers.append(proc.pid)
    assert not leftovers
