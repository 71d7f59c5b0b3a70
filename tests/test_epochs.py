"""pytest_wiw.checkpoints.epochs and what open_checkpoint / --ckpt-path make of it: DiffSynth epoch folders, A,B lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pytest_wiw.api.registry import load_registry
from pytest_wiw.checkpoints.epochs import pick_epochs, split_path_list
from pytest_wiw.checkpoints.files import open_checkpoint, tensor_key
from pytest_wiw.errors import CheckpointError, UsageError
from pytest_wiw.plugin.selection import parse_paths

LORA = {"blocks.0.self_attn.q.lora_A.default.weight": torch.zeros(2, 4),
        "blocks.0.self_attn.q.lora_B.default.weight": torch.zeros(4, 2)}
FULL = {"blocks.0.self_attn.q.weight": torch.zeros(4, 4)}


def write(path: Path, tensors=LORA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def epochs(folder: Path, numbers, tensors=LORA) -> Path:
    for n in numbers:
        write(folder / f"epoch-{n}.safetensors", tensors)
    return folder


def test_highest_epoch_by_default_numerically_not_by_name(tmp_path):
    folder = epochs(tmp_path / "Wan2.1_lora_navigation", [0, 2, 10])
    ckpt = open_checkpoint(folder)
    assert ckpt.format == "lora" and [f.name for f in ckpt.files] == ["epoch-10.safetensors"]
    assert ckpt.notes == ["Wan2.1_lora_navigation/epoch-10.safetensors loaded (the highest of epochs 0, 2, 10; "
                          "--wm-opt epoch=N picks another)"]
    assert tensor_key(ckpt, ckpt.files[0], "x") == "x"


def test_epoch_option_picks_one_or_fails_listing_them(tmp_path):
    folder = epochs(tmp_path / "ft", [0, 1])
    assert [f.name for f in open_checkpoint(folder, epoch="0").files] == ["epoch-0.safetensors"]
    with pytest.raises(CheckpointError, match=r"ft: no epoch-7.safetensors \(asked for by --wm-opt epoch=7\); "
                                              r"this folder holds epochs 0, 1"):
        open_checkpoint(folder, epoch="7")
    with pytest.raises(CheckpointError, match="epoch='x': expected a whole number"):
        open_checkpoint(folder, epoch="x")


def test_epoch_option_leaves_pipelines_and_files_alone(tmp_path):
    file = write(tmp_path / "one" / "epoch-3.safetensors")
    assert open_checkpoint(file, epoch="7").files == (file.resolve(),)
    assert pick_epochs([tmp_path / "a.safetensors"], 7) == ([tmp_path / "a.safetensors"], [])


def test_full_fine_tune_epoch_folder_is_a_bare_state_dict(tmp_path):
    ckpt = open_checkpoint(epochs(tmp_path / "Wan2.2_full_navigation", [0, 1], FULL))
    assert ckpt.format == "safetensors" and [f.name for f in ckpt.files] == ["epoch-1.safetensors"]


def test_a14b_parent_of_two_epoch_folders(tmp_path):
    epochs(tmp_path / "x_high_noise_lora", [0, 1])
    epochs(tmp_path / "x_low_noise_lora", [0, 1, 2])
    ckpt = open_checkpoint(tmp_path, epoch=None)
    assert ckpt.format == "lora"
    assert [ckpt.rel(f) for f in ckpt.files] == ["x_high_noise_lora/epoch-1.safetensors",
                                                 "x_low_noise_lora/epoch-2.safetensors"]
    assert tensor_key(ckpt, ckpt.files[1], "k") == "x_low_noise_lora/epoch-2.safetensors/k"
    with pytest.raises(CheckpointError, match="x_high_noise_lora: no epoch-2.safetensors"):
        open_checkpoint(tmp_path, epoch="2")


def test_diffusers_expert_folders_are_one_component_folder_checkpoint(tmp_path):
    for component in ("transformer", "transformer_2"):
        write(tmp_path / component / "diffusion_pytorch_model.safetensors", FULL)
        (tmp_path / component / "config.json").write_text("{}")
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.format == "component-folder" and len(ckpt.files) == 2
    assert tensor_key(ckpt, ckpt.files[1], "w") == "transformer_2/w"


def test_path_list_of_files_or_folders(tmp_path):
    high = write(tmp_path / "a" / "x_high_noise_lora" / "epoch-0.safetensors")
    low = epochs(tmp_path / "b" / "x_low_noise_lora", [0, 1])
    ckpt = open_checkpoint(f"{high},{low}")
    assert ckpt.format == "lora" and ckpt.path == tmp_path.resolve()
    assert [ckpt.rel(f) for f in ckpt.files] == ["a/x_high_noise_lora/epoch-0.safetensors",
                                                 "b/x_low_noise_lora/epoch-1.safetensors"]
    assert any("epoch-1.safetensors loaded" in n for n in ckpt.notes)


def test_path_list_errors_name_the_member(tmp_path):
    lora = write(tmp_path / "l.safetensors")
    full = write(tmp_path / "f.safetensors", FULL)
    with pytest.raises(CheckpointError, match=f"{tmp_path}/nowhere: no such file or folder .a member of the path list"):
        open_checkpoint(f"{lora},{tmp_path / 'nowhere'}")
    with pytest.raises(CheckpointError, match="f.safetensors: a path list takes LoRA"):
        open_checkpoint(f"{lora},{full}")
    with pytest.raises(CheckpointError, match="names one LoRA file twice"):
        open_checkpoint(f"{lora},{lora}")
    with pytest.raises(CheckpointError, match="an empty member"):
        split_path_list(f"{lora},")


def test_a_path_with_a_comma_that_exists_is_one_path(tmp_path):
    file = write(tmp_path / "a,b" / "lora.safetensors")
    assert split_path_list(str(file)) is None
    assert open_checkpoint(file.parent).files == (file.resolve(),)


def test_ckpt_path_list_members_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    option = ["FTwan22-14B=a/x_high_noise_lora,b/x_low_noise_lora"]
    paths = parse_paths("--ckpt-path", option, ["FTwan22-14B"], load_registry())
    assert paths == {"FTwan22-14B": f"{tmp_path}/a/x_high_noise_lora,{tmp_path}/b/x_low_noise_lora"}
    with pytest.raises(UsageError, match="an empty member"):
        parse_paths("--ckpt-path", ["FTwan22-14B=a,"], ["FTwan22-14B"], load_registry())
