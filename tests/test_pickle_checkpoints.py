"""Pickle checkpoints: refused by default; with --wm-allow-pickle converted through torch.load(weights_only=True).

A malicious pickle (one whose unpickling would run a command) never runs, with or without the flag:
each test that feeds one checks the command's marker file was never created.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_checks_dir, run_checks
from safetensors.torch import load_file

from pytest_wiw.api.registry import get_spec
from pytest_wiw.checkpoints.pickles import convert_pickles
from pytest_wiw.errors import CheckpointError
from pytest_wiw.runtime.tiny import ensure_tiny


class RunsACommand:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def pickled_lora(tmp_path_factory, tiny_cache) -> Path:
    """The tiny FTwan21 LoRA folder with its (last epoch's) weights saved by torch.save as pytorch_lora_weights.bin."""
    ft, _ = ensure_tiny(get_spec("FTwan21"), get_spec("wan21"), tiny_cache)
    folder = tmp_path_factory.mktemp("pickled") / "ft_lora"
    shutil.copytree(ft, folder)
    epochs = sorted(folder.rglob("epoch-*.safetensors"))  # make_tiny writes DiffSynth epochs: keep the last one
    torch.save(load_file(epochs[-1]), folder / "pytorch_lora_weights.bin")
    for weights in epochs:
        weights.unlink()
    return folder


def malicious(folder: Path, *, via_torch_save: bool) -> tuple[Path, Path]:
    """A LoRA folder whose .bin would run ``touch marker``; (folder, marker)."""
    folder.mkdir(parents=True)
    marker = folder.parent / f"{folder.name}-RAN"
    payload = {"transformer.blocks.0.attn1.to_q.lora_A.weight": RunsACommand(marker)}
    if via_torch_save:
        torch.save(payload, folder / "pytorch_lora_weights.bin")
    else:
        (folder / "pytorch_lora_weights.bin").write_bytes(pickle.dumps(payload))
    return folder, marker


def test_conversion_keeps_every_tensor_and_the_card_and_leaves_the_folder_alone(pickled_lora, tmp_path):
    before = sorted(p.name for p in pickled_lora.iterdir())
    converted = Path(convert_pickles(pickled_lora, tmp_path))
    assert sorted(p.name for p in pickled_lora.iterdir()) == before
    original = torch.load(pickled_lora / "pytorch_lora_weights.bin", weights_only=True)
    tensors = load_file(converted / "pytorch_lora_weights.safetensors")
    assert tensors.keys() == original.keys()
    assert all(torch.equal(tensors[k], original[k]) for k in original)
    assert (converted / "README.md").read_text() == (pickled_lora / "README.md").read_text()
    assert convert_pickles(pickled_lora, tmp_path) == str(converted)  # converted once


def test_a_checkpoint_without_pickles_is_used_as_it_is(tmp_path, tiny_cache):
    wan, _ = ensure_tiny(get_spec("wan21"), None, tiny_cache)
    assert convert_pickles(wan, tmp_path) == str(wan)


@pytest.mark.parametrize("via_torch_save", [True, False], ids=["torch.save", "pickle.dumps"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, via_torch_save):
    folder, marker = malicious(tmp_path / "evil", via_torch_save=via_torch_save)
    with pytest.raises(CheckpointError) as refused:
        convert_pickles(folder, tmp_path / "cache")
    assert "pytorch_lora_weights.bin" in str(refused.value) and "not a plain pickle of tensors" in str(refused.value)
    assert not marker.exists()


def test_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    folder = tmp_path / "list"
    folder.mkdir()
    torch.save([torch.zeros(2)], folder / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt: holds a list, not a dict of tensors"):
        convert_pickles(folder, tmp_path / "cache")


def test_plugin_refuses_pickle_by_default_and_checks_it_with_the_flag(pickled_lora, tmp_path, run_env):
    refused = run_checks(make_checks_dir(tmp_path / "refused"), run_env, "--wm", "FTwan21",
                         "--ckpt-path", str(pickled_lora))
    readable = refused["test_checkpoint_readable[FTwan21]"]
    assert refused.returncode == 1 and readable.outcome == "failed"
    assert "pytorch_lora_weights.bin" in readable.message and "--wm-allow-pickle" in readable.message
    allowed = run_checks(make_checks_dir(tmp_path / "allowed"), run_env, "--wm", "FTwan21",
                         "--ckpt-path", str(pickled_lora), "--wm-allow-pickle", "--wm-max-examples", "0")
    assert allowed.returncode == 0, allowed.output[-3000:]
    assert allowed["test_checkpoint_applied[FTwan21]"].outcome == "passed"
    assert allowed["test_differs_from_zero_shot[FTwan21]"].outcome == "passed"


def test_plugin_with_the_flag_refuses_a_malicious_pickle_without_running_it(tmp_path, run_env):
    folder, marker = malicious(tmp_path / "evil", via_torch_save=True)
    run = run_checks(make_checks_dir(tmp_path / "run"), run_env, "--wm", "FTwan21", "--ckpt-path", str(folder),
                     "--wm-allow-pickle")
    readable = run["test_checkpoint_readable[FTwan21]"]
    assert run.returncode == 1 and "INTERNALERROR" not in run.output
    assert readable.outcome == "failed" and "pytorch_lora_weights.bin" in readable.message
    assert "not a plain pickle of tensors" in readable.message
    assert not marker.exists()
