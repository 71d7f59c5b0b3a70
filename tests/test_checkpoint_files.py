"""Unit tests of checkpoint files on disk (pytest_wiw.checkpoints.files): safetensors headers, formats, cards.

Small real files are written with safetensors.numpy; nothing here needs torch.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from pytest_wiw.checkpoints.files import (
    CARD_NAME,
    MAX_FINGERPRINT_TENSORS,
    MAX_HEADER_BYTES,
    Checkpoint,
    TensorInfo,
    card_generation,
    open_checkpoint,
    read_card,
    read_safetensors_header,
    tensor_key,
    write_card,
)
from pytest_wiw.errors import CheckpointError


def _save(path: Path, tensors: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors if tensors is not None else {"blocks.0.weight": np.ones((2, 3), np.float32)}, str(path))
    return path


def _raw(path: Path, header: bytes | dict, data: bytes = b"", header_len: int | None = None) -> Path:
    """A safetensors-like file written by hand: u64 LE header length, header, data."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(head) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + head + data)
    return path


def _lora_tensors() -> dict:
    return {"blocks.0.attn.to_q.lora_A.weight": np.ones((4, 8), np.float32),
            "blocks.0.attn.to_q.lora_B.weight": np.zeros((8, 4), np.float32)}


def _errmsg(fn, *args, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        fn(*args, **kw)
    return str(info.value)


# -- read_safetensors_header ------------------------------------------------------------------------

def test_read_header_of_a_real_file_gives_dtypes_shapes_and_offsets(tmp_path):
    f = _save(tmp_path / "w.safetensors", {"a": np.zeros((2, 3), np.float32), "b": np.arange(5, dtype=np.int64),
                                            "c": np.zeros((), np.float16)})
    header = read_safetensors_header(f)
    assert set(header) == {"a", "b", "c"}
    assert header["a"].dtype == "F32" and header["a"].shape == (2, 3)
    assert header["b"].dtype == "I64" and header["b"].shape == (5,)
    assert header["c"].dtype == "F16" and header["c"].shape == ()
    assert header["a"].offsets[1] - header["a"].offsets[0] == 24
    assert header["b"].offsets[1] - header["b"].offsets[0] == 40


def test_read_header_skips_metadata(tmp_path):
    f = tmp_path / "m.safetensors"
    save_file({"a": np.zeros(2, np.float32)}, str(f), metadata={"format": "pt"})
    assert list(read_safetensors_header(f)) == ["a"]


def test_file_shorter_than_eight_bytes_is_truncated(tmp_path):
    f = tmp_path / "short.safetensors"
    f.write_bytes(b"\x01\x02\x03\x04\x05")
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and "truncated: 5 bytes, shorter than a safetensors header" in msg


def test_header_length_beyond_the_file_is_refused(tmp_path):
    f = _raw(tmp_path / "cut.safetensors", b'{"a":1}', header_len=1000)
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg
    assert "header claims 1000 bytes but the file has 15" in msg and "truncated or not a safetensors file" in msg


def test_header_length_above_max_on_a_small_file_is_refused(tmp_path):
    f = _raw(tmp_path / "huge.safetensors", b"{}", header_len=MAX_HEADER_BYTES * 1000)
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and f"header claims {MAX_HEADER_BYTES * 1000} bytes" in msg


def test_header_length_above_max_is_refused_even_when_the_file_is_that_large(tmp_path):
    f = _raw(tmp_path / "sparse.safetensors", b"{}", header_len=MAX_HEADER_BYTES + 1)
    with open(f, "r+b") as fh:
        fh.truncate(MAX_HEADER_BYTES + 100)  # sparse: no disk or memory spent
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and f"header claims {MAX_HEADER_BYTES + 1} bytes" in msg


def test_header_that_is_not_json_is_refused(tmp_path):
    f = _raw(tmp_path / "bad.safetensors", b"{not json at all}")
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and "header is not valid JSON" in msg


def test_header_that_is_not_utf8_is_refused(tmp_path):
    f = _raw(tmp_path / "bytes.safetensors", b"\xff\xfe\xfd")
    assert "header is not valid JSON" in _errmsg(read_safetensors_header, f)


def test_header_that_is_a_json_list_is_refused(tmp_path):
    f = _raw(tmp_path / "list.safetensors", b"[1, 2]")
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and "header is not a JSON object" in msg


def test_truncated_real_file_names_the_file_the_tensor_and_says_truncated(tmp_path):
    f = _save(tmp_path / "copy.safetensors", {"a": np.ones(4, np.float32), "z": np.ones(16, np.float32)})
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.truncate(size - 10)
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg
    assert "tensor 'z' ends at byte 80" in msg and "the file is truncated" in msg


def test_unknown_dtype_is_refused_naming_tensor_and_dtype(tmp_path):
    f = _raw(tmp_path / "dt.safetensors", {"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}},
             b"\x00" * 16)
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg and "tensor 'w' has unknown dtype 'F128'" in msg


def test_non_string_dtype_is_refused_as_malformed(tmp_path):
    f = _raw(tmp_path / "dtl.safetensors", {"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}},
             b"\x00" * 4)
    assert "tensor 'w'" in _errmsg(read_safetensors_header, f)


@pytest.mark.parametrize("offsets", [[0, 8], [0, 16], [4, 8], [-4, 8]])
def test_offsets_that_do_not_match_shape_times_itemsize_are_refused(tmp_path, offsets):
    f = _raw(tmp_path / "off.safetensors", {"w": {"dtype": "F32", "shape": [3], "data_offsets": offsets}},
             b"\x00" * 16)
    msg = _errmsg(read_safetensors_header, f)
    assert str(f) in msg
    assert f"tensor 'w' (F32 [3]) has offsets {offsets[0]}..{offsets[1]}, which do not fit its 12 bytes" in msg


@pytest.mark.parametrize("entry", [{"dtype": "F32", "shape": [1]}, {"dtype": "F32", "shape": [1], "data_offsets": [0]},
                                   "not a dict"])
def test_malformed_entry_is_refused_naming_the_tensor(tmp_path, entry):
    f = _raw(tmp_path / "mal.safetensors", {"w": entry}, b"\x00" * 4)
    assert "tensor 'w' has a malformed header entry" in _errmsg(read_safetensors_header, f)


@pytest.mark.parametrize("shape", [[-1], [1.5], ["2"]])
def test_invalid_shape_is_refused(tmp_path, shape):
    f = _raw(tmp_path / "shape.safetensors", {"w": {"dtype": "U8", "shape": shape, "data_offsets": [0, 1]}}, b"\x00")
    assert "tensor 'w' has an invalid shape" in _errmsg(read_safetensors_header, f)


# -- open_checkpoint: formats -----------------------------------------------------------------------

def test_missing_path_is_refused_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "model.safetensors"
    msg = _errmsg(open_checkpoint, missing)
    assert str(missing) in msg and "no such file" in msg and "--ckpt-path" in msg


def test_empty_folder_has_no_safetensors(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _errmsg(open_checkpoint, tmp_path / "empty")
    assert str(tmp_path / "empty") in msg and "no .safetensors" in msg


def test_diffusers_folder(tmp_path):
    root = tmp_path / "pipe"
    _save(root / "transformer" / "diffusion_pytorch_model.safetensors")
    _save(root / "vae" / "diffusion_pytorch_model.safetensors")
    (root / "model_index.json").write_text("{}")
    ckpt = open_checkpoint(root)
    assert ckpt.format == "diffusers"
    assert ckpt.path == root.resolve() and ckpt.root == root.resolve()
    assert [ckpt.rel(f) for f in ckpt.files] == ["transformer/diffusion_pytorch_model.safetensors",
                                                 "vae/diffusion_pytorch_model.safetensors"]


def test_component_folder_with_config_and_weights(tmp_path):
    root = tmp_path / "transformer"
    _save(root / "diffusion_pytorch_model.safetensors")
    (root / "config.json").write_text("{}")
    ckpt = open_checkpoint(root)
    assert ckpt.format == "component"
    assert [f.name for f in ckpt.files] == ["diffusion_pytorch_model.safetensors"]


def test_folder_holding_a_transformer_folder_is_component_folder(tmp_path):
    root = tmp_path / "ft"
    _save(root / "transformer" / "diffusion_pytorch_model.safetensors")
    (root / "transformer" / "config.json").write_text("{}")
    assert open_checkpoint(root).format == "component-folder"


def test_lora_file(tmp_path):
    f = _save(tmp_path / "adapter.safetensors", _lora_tensors())
    ckpt = open_checkpoint(f)
    assert ckpt.format == "lora"
    assert ckpt.weight_file == f.resolve() and ckpt.root == tmp_path.resolve()


def test_folder_holding_one_lora_file(tmp_path):
    _save(tmp_path / "lora" / "pytorch_lora_weights.safetensors", _lora_tensors())
    ckpt = open_checkpoint(tmp_path / "lora")
    assert ckpt.format == "lora"
    assert ckpt.weight_file.name == "pytorch_lora_weights.safetensors"


def test_bare_safetensors_without_lora_names(tmp_path):
    f = _save(tmp_path / "model.safetensors")
    ckpt = open_checkpoint(f)
    assert ckpt.format == "safetensors" and ckpt.files == (f.resolve(),)


def test_folder_of_unrelated_weight_files_is_refused_listing_them(tmp_path):
    _save(tmp_path / "m" / "a.safetensors")
    _save(tmp_path / "m" / "b.safetensors")
    msg = _errmsg(open_checkpoint, tmp_path / "m")
    assert "cannot tell the format" in msg and "a.safetensors, b.safetensors" in msg


def test_file_that_is_not_safetensors_is_refused(tmp_path):
    f = tmp_path / "weights.npz"
    f.write_bytes(b"PK")
    msg = _errmsg(open_checkpoint, f)
    assert str(f.resolve()) in msg and "not a .safetensors file" in msg


# -- open_checkpoint: pickle and symlinks ------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickle_file_is_refused_pointing_at_the_option(tmp_path, suffix):
    f = tmp_path / f"model{suffix}"
    f.write_bytes(b"\x80\x04not really")
    msg = _errmsg(open_checkpoint, f)
    assert str(f.resolve()) in msg and "pickle" in msg and "convert" in msg and "--wm-allow-pickle" in msg


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickle_file_inside_a_folder_is_refused_naming_it(tmp_path, suffix):
    root = tmp_path / "pipe"
    _save(root / "unet" / "diffusion_pytorch_model.safetensors")
    (root / "model_index.json").write_text("{}")
    bad = root / "text_encoder" / f"pytorch_model{suffix}"
    bad.parent.mkdir()
    bad.write_bytes(b"\x80\x04")
    msg = _errmsg(open_checkpoint, root)
    assert str(bad.resolve()) in msg and "pickle" in msg and "convert" in msg


def test_symlink_to_a_file_outside_the_folder_is_refused_naming_the_link(tmp_path):
    outside = _save(tmp_path / "elsewhere" / "secret.safetensors")
    root = tmp_path / "ck"
    _save(root / "transformer" / "diffusion_pytorch_model.safetensors")
    (root / "model_index.json").write_text("{}")
    link = root / "vae" / "diffusion_pytorch_model.safetensors"
    link.parent.mkdir()
    link.symlink_to(outside)
    msg = _errmsg(open_checkpoint, root)
    assert msg.startswith(f"{root.resolve() / 'vae' / link.name}: ")  # the link, not its target
    assert "symlink leads outside the checkpoint folder" in msg and str(outside.resolve()) in msg


def test_symlink_inside_the_folder_is_accepted(tmp_path):
    root = tmp_path / "ck"
    real = _save(root / "weights" / "model.safetensors")
    (root / "config.json").write_text("{}")
    (root / "alias.safetensors").symlink_to(real)
    assert open_checkpoint(root).format == "component"


def test_symlinked_folder_leading_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "transformer"
    _save(outside / "diffusion_pytorch_model.safetensors")
    root = tmp_path / "ck"
    _save(root / "vae" / "diffusion_pytorch_model.safetensors")
    (root / "model_index.json").write_text("{}")
    (root / "transformer").symlink_to(outside, target_is_directory=True)
    assert "symlink leads outside" in _errmsg(open_checkpoint, root)


# -- tensor keys and fingerprints ------------------------------------------------------------------------

def test_tensor_keys_of_a_component_folder_are_prefixed_by_the_component(tmp_path):
    root = tmp_path / "ft"
    f = _save(root / "transformer" / "diffusion_pytorch_model.safetensors",
              {"blocks.0.ff.weight": np.ones(3, np.float32)})
    ckpt = open_checkpoint(root)
    index = ckpt.tensor_index()
    assert list(index) == ["transformer/blocks.0.ff.weight"]
    file, name, info = index["transformer/blocks.0.ff.weight"]
    assert file == f.resolve() and name == "blocks.0.ff.weight"
    assert info == TensorInfo(dtype="F32", shape=(3,), offsets=(0, 12))
    assert tensor_key(ckpt, f.resolve(), "x") == "transformer/x"


def test_tensor_keys_of_a_single_file_are_the_tensor_names(tmp_path):
    f = _save(tmp_path / "adapter.safetensors", _lora_tensors())
    ckpt = open_checkpoint(f)
    assert set(ckpt.tensor_index()) == set(_lora_tensors())
    assert tensor_key(ckpt, ckpt.weight_file, "x") == "x"


def test_tensor_keys_of_a_top_level_component_are_not_prefixed(tmp_path):
    root = tmp_path / "transformer"
    _save(root / "diffusion_pytorch_model.safetensors", {"w": np.ones(2, np.float32)})
    (root / "config.json").write_text("{}")
    assert list(open_checkpoint(root).tensor_index()) == ["w"]


def test_fingerprint_keys_are_all_float_keys_when_few(tmp_path):
    f = _save(tmp_path / "few.safetensors", {"c": np.ones(2, np.float32), "a": np.ones(2, np.float16),
                                             "b": np.ones(2, np.float64), "steps": np.ones(1, np.int64),
                                             "mask": np.ones(2, np.uint8)})
    assert open_checkpoint(f).fingerprint_keys() == ["a", "b", "c"]


def test_fingerprint_keys_are_an_even_sample_when_many(tmp_path):
    tensors = {f"blocks.{i:03d}.weight": np.full(2, i, np.float32) for i in range(100)}
    tensors["step_counter"] = np.zeros(1, np.int64)
    f = _save(tmp_path / "many.safetensors", tensors)
    keys = open_checkpoint(f).fingerprint_keys()
    floats = sorted(k for k in tensors if k != "step_counter")
    assert len(keys) == MAX_FINGERPRINT_TENSORS == len(set(keys))
    assert keys == sorted(keys)
    assert keys[0] == floats[0] and keys[-1] == floats[-1]
    positions = [floats.index(k) for k in keys]
    gaps = {b - a for a, b in zip(positions, positions[1:])}
    assert gaps <= {2, 3}  # 99 / 47 = 2.1: spread evenly, no clumps or holes
    assert "step_counter" not in keys


# -- sha256 ------------------------------------------------------------------------------------------

def test_sha256_is_stable_across_opens(tmp_path):
    f = _save(tmp_path / "w.safetensors")
    first = open_checkpoint(f).sha256()
    assert len(first) == 64 and open_checkpoint(f).sha256() == first


def test_sha256_changes_when_one_byte_changes(tmp_path):
    f = _save(tmp_path / "w.safetensors")
    before = open_checkpoint(f).sha256()
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01
    f.write_bytes(bytes(data))
    assert open_checkpoint(f).sha256() != before


def test_sha256_covers_every_file_of_a_folder(tmp_path):
    root = tmp_path / "pipe"
    _save(root / "unet" / "w.safetensors")
    vae = _save(root / "vae" / "w.safetensors")
    (root / "model_index.json").write_text("{}")
    before = open_checkpoint(root).sha256()
    _save(vae, {"blocks.0.weight": np.full((2, 3), 2, np.float32)})
    assert open_checkpoint(root).sha256() != before


def test_size_and_describe(tmp_path):
    f = _save(tmp_path / "w.safetensors")
    ckpt = open_checkpoint(f)
    assert ckpt.describe() == {"path": str(f.resolve()), "format": "safetensors", "files": ["w.safetensors"],
                               "size_bytes": f.stat().st_size}


# -- cards ---------------------------------------------------------------------------------------------

def test_write_card_then_read_card_round_trip_with_generation(tmp_path):
    path = write_card(tmp_path, base_model="wan21", datasets=["wiw-nav"], license="apache-2.0",
                      training_steps=500, generation={"steps": 4, "guidance_scale": 2.5}, description="tuned")
    assert path == tmp_path / CARD_NAME
    card = read_card(tmp_path)
    assert card == {"license": "apache-2.0", "datasets": ["wiw-nav"], "training_steps": 500,
                    "base_model": "wan21", "pytest_wiw": {"generation": {"steps": 4, "guidance_scale": 2.5}}}
    assert card_generation(card) == {"steps": 4, "guidance_scale": 2.5}
    assert "tuned" in path.read_text()


def test_card_without_base_or_generation(tmp_path):
    write_card(tmp_path, base_model=None, datasets=[], license="mit", training_steps=0)
    card = read_card(tmp_path)
    assert "base_model" not in card and "pytest_wiw" not in card
    assert card_generation(card) == {}


def test_open_checkpoint_reads_the_card_of_a_folder_and_of_a_files_folder(tmp_path):
    f = _save(tmp_path / "lora" / "adapter.safetensors", _lora_tensors())
    write_card(tmp_path / "lora", base_model="wan21", datasets=[], license="mit", training_steps=1,
               generation={"num_frames": 9})
    assert card_generation(open_checkpoint(tmp_path / "lora").card) == {"num_frames": 9}
    assert open_checkpoint(f).card["base_model"] == "wan21"


def test_no_card_or_no_front_matter_reads_as_empty(tmp_path):
    assert read_card(tmp_path) == {}
    (tmp_path / CARD_NAME).write_text("# Just a readme\n")
    assert read_card(tmp_path) == {}


def test_unclosed_front_matter_is_refused_naming_the_card(tmp_path):
    (tmp_path / CARD_NAME).write_text("---\nbase_model: wan21\n\n# no closing fence\n")
    msg = _errmsg(read_card, tmp_path)
    assert str(tmp_path / CARD_NAME) in msg and "never closed" in msg


def test_invalid_yaml_front_matter_is_refused_naming_the_card(tmp_path):
    (tmp_path / CARD_NAME).write_text("---\nbase_model: [unclosed\n---\n")
    msg = _errmsg(read_card, tmp_path)
    assert "README.md" in msg and "not valid YAML" in msg


@pytest.mark.parametrize("card", [{}, {"pytest_wiw": None}, {"pytest_wiw": "text"}, {"pytest_wiw": {"other": 1}}])
def test_card_generation_is_empty_without_a_generation_section(card):
    assert card_generation(card) == {}


def test_checkpoint_dataclass_for_a_file_has_the_files_parent_as_root(tmp_path):
    f = _save(tmp_path / "w.safetensors")
    ckpt = Checkpoint(path=f, format="safetensors", files=(f,))
    assert ckpt.root == tmp_path and ckpt.rel(f) == "w.safetensors"
    assert os.fspath(ckpt.weight_file) == os.fspath(f)
