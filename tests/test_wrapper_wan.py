"""wrappers.wan on real tiny models: wan21 (a diffusers pipeline folder) and FTwan21 (a LoRA over it).

The wrappers are built the way the worker builds them: the registry's spec with the card's
generation overrides applied, the checkpoint opened with open_checkpoint.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from wrapper_helpers import (
    assert_batch_items_equal_items_alone,
    fingerprint_mismatches,
    load_wrapper,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_diffsynth_full_fine_tune,
)

from pytest_wiw.checkpoints.files import card_generation, open_checkpoint
from pytest_wiw.errors import CheckpointError
from wrappers.wan import TINY_GENERATION, TINY_LORA_B_GAIN, TINY_LORA_FOLDER, WanImageToVideo
from wrappers.wan_lora import write_diffusers_lora_folder

IMAGE_HW = (40, 56)  # not the generation size, so the wrapper's resize runs
ACTIONS = [[4, 1, 2, 1], [4, 3, 3, 1, 2]]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan")
    base = WanImageToVideo.make_tiny("wan21", root / "wan21", seed=0)
    # The older layout (diffusers' own LoRA naming) still loads: most tests below use it.
    ft = write_diffusers_lora_folder(base, root / "FTwan21", {"transformer": "pytorch_lora_weights.safetensors"}, 1,
                                     b_gain=TINY_LORA_B_GAIN, generation=TINY_GENERATION)
    # make_tiny writes DiffSynth-Studio's epoch folder, as WIW's FTwan21 checkpoints are.
    diffsynth = WanImageToVideo.make_tiny("FTwan21", root / "ds", base=base, seed=1)
    full = save_diffsynth_full_fine_tune(root, base, TINY_GENERATION)
    # The same LoRA with every lora_B zeroed: applying it must change nothing.
    (lora_file,) = ft.glob("*.safetensors")
    zero = root / "FTwan21-zero-B"
    zero.mkdir()
    with safe_open(str(lora_file), framework="pt") as fh:
        metadata = fh.metadata()
        tensors = {k: (torch.zeros_like(t) if ".lora_B." in k else t)
                   for k in fh.keys() for t in [fh.get_tensor(k)]}
    save_file(tensors, str(zero / lora_file.name), metadata=metadata)
    shutil.copy(ft / "README.md", zero / "README.md")
    return {"base": base, "ft": ft, "zero": zero, "lora_file": lora_file, "diffsynth": diffsynth, "full": full,
            "dfull": root / "dfull"}


def load(name, path, base=None):
    return load_wrapper(WanImageToVideo, name, path, base)


@pytest.fixture(scope="module")
def base_wm(paths):
    return load("wan21", paths["base"])


@pytest.fixture(scope="module")
def ft_wm(paths):
    return load("FTwan21", paths["ft"], paths["base"])


@pytest.fixture(scope="module")
def zero_wm(paths):
    return load("FTwan21", paths["zero"], paths["base"])


def request(name, seed=(7, 11), batch=2):
    return reference_request(name, seed, batch, actions=ACTIONS[:batch], image_hw=IMAGE_HW, image_seed=123)


# -- checkpoints ------------------------------------------------------------------------------------
def test_tiny_checkpoints_have_the_real_layouts(paths):
    base = open_checkpoint(paths["base"])
    assert base.format == "diffusers"
    assert card_generation(base.card) == TINY_GENERATION
    assert sorted(p.name for p in paths["ft"].iterdir()) == ["README.md", "pytorch_lora_weights.safetensors"]
    ft = open_checkpoint(paths["ft"])
    assert ft.format == "lora" and ft.weight_file == paths["lora_file"].resolve()
    assert ft.card["base_model"] == str(paths["base"])
    assert card_generation(ft.card) == TINY_GENERATION
    assert open_checkpoint(paths["lora_file"]).format == "lora"


def test_wrong_checkpoint_kinds_are_refused(paths):
    with pytest.raises(CheckpointError, match="expects a LoRA .safetensors .*found a 'diffusers' checkpoint"):
        load("FTwan21", paths["base"], paths["base"])
    with pytest.raises(CheckpointError, match="diffusers Wan 2.1 I2V WanImageToVideoPipeline"):
        load("wan21", paths["ft"])
    with pytest.raises(CheckpointError, match="base"):
        load("FTwan21", paths["ft"])


# -- generation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["base", "ft"])
def test_output_is_uint8_video_of_the_effective_sizes(which, base_wm, ft_wm):
    wm = {"base": base_wm, "ft": ft_wm}[which]
    g = wm.generation
    assert (g.height, g.width, g.num_output_frames) == (32, 48, 4)  # the card's overrides took effect
    out = wm.generate(request(wm.spec.name))
    assert out.dtype == np.uint8
    assert out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width)
    assert out.std() > 0


def test_same_seed_is_bitwise_equal_and_another_seed_differs(base_wm):
    a = base_wm.generate(request("wan21"))
    assert np.array_equal(a, base_wm.generate(request("wan21")))
    c = base_wm.generate(request("wan21", seed=(8, 12)))
    assert mean_abs_diff(a, c) > 0.5


def test_batch_item_equals_the_item_alone(ft_wm):
    req = request("FTwan21")
    assert_batch_items_equal_items_alone(ft_wm, req, ft_wm.generate(req), bitwise=False)


def test_items_of_one_seed_differ_by_their_image_and_actions(base_wm):
    out = base_wm.generate(request("wan21", seed=(5, 5)))
    assert not np.array_equal(out[0], out[1])


# -- LoRA and the zero-shot baseline ----------------------------------------------------------------------
def test_ft_differs_from_zero_shot_which_equals_the_base(base_wm, ft_wm):
    ft = ft_wm.generate(request("FTwan21"))
    with ft_wm.zero_shot():
        zero = ft_wm.generate(request("FTwan21"))
        with ft_wm.zero_shot():  # nesting keeps the adapter off until the outer exit
            pass
        assert np.array_equal(zero, ft_wm.generate(request("FTwan21")))
    assert mean_abs_diff(ft, zero) > 0.1
    assert np.array_equal(zero, base_wm.generate(request("wan21")))
    assert np.array_equal(ft, ft_wm.generate(request("FTwan21")))  # adapter back on after the context


def test_zero_shot_is_restored_after_an_error(ft_wm):
    ft = ft_wm.generate(request("FTwan21", batch=1))
    with pytest.raises(RuntimeError):
        with ft_wm.zero_shot():
            raise RuntimeError("boom")
    assert np.array_equal(ft, ft_wm.generate(request("FTwan21", batch=1)))


def test_zero_shot_type_has_no_zero_shot_context(base_wm):
    with pytest.raises(NotImplementedError):
        base_wm.zero_shot()


def test_lora_with_zero_b_changes_nothing(base_wm, zero_wm):
    out = zero_wm.generate(request("FTwan21"))
    assert np.array_equal(out, base_wm.generate(request("wan21")))
    with zero_wm.zero_shot():
        assert np.array_equal(out, zero_wm.generate(request("FTwan21")))


# -- fingerprints -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["base", "ft", "zero"])
def test_running_fingerprints_agree_with_the_files(which, base_wm, ft_wm, zero_wm):
    wm = {"base": base_wm, "ft": ft_wm, "zero": zero_wm}[which]
    assert fingerprint_mismatches(wm, wm.ckpt) == {}


def test_ft_fingerprint_keys_are_lora_tensors(ft_wm):
    keys = ft_wm.ckpt.fingerprint_keys()
    assert keys and all(k.startswith("transformer.blocks.") and ".lora_" in k for k in keys)
    t = ft_wm.running_tensor("transformer.blocks.0.attn1.to_q.lora_A.weight")
    assert t is ft_wm.pipe.transformer.get_parameter("blocks.0.attn1.to_q.lora_A.wiw_ft.weight")


def test_fingerprints_catch_a_different_lora(zero_wm, paths):
    # The zero-B model against the real LoRA file: lora_A agrees, every sampled lora_B differs.
    bad = fingerprint_mismatches(zero_wm, open_checkpoint(paths["ft"]))
    assert bad and all(".lora_B." in k for k in bad)
    assert set(bad) == {k for k in open_checkpoint(paths["ft"]).fingerprint_keys() if ".lora_B." in k}


def test_unknown_keys_have_no_running_tensor(ft_wm):
    assert ft_wm.running_tensor("transformer.blocks.0.attn1.to_q.lora_A.bias") is None
    assert ft_wm.running_tensor("transformer.blocks.9.attn1.to_q.lora_A.weight") is None
    assert ft_wm.running_tensor("text_encoder.encoder.block.0.lora_A.weight") is None
    assert ft_wm.running_tensor("transformer.blocks.0.attn1.to_q.weight") is None


# -- WIW's layouts: DiffSynth-Studio LoRA epochs, full fine-tunes ------------------------------------------------
def test_diffsynth_epoch_folder_loads_its_highest_epoch(paths, base_wm):
    assert sorted(p.name for p in paths["diffsynth"].iterdir()) == ["README.md", TINY_LORA_FOLDER]
    ds = paths["diffsynth"] / TINY_LORA_FOLDER
    assert sorted(p.name for p in ds.iterdir()) == ["README.md", "epoch-0.safetensors", "epoch-1.safetensors"]
    parent = load("FTwan21", paths["diffsynth"], paths["base"])  # the parent loads the same epoch
    assert parent.ckpt.card["base_model"] == open_checkpoint(ds).card["base_model"] == str(paths["base"])
    assert [parent.ckpt.rel(f) for f in parent.ckpt.files] == [f"{TINY_LORA_FOLDER}/epoch-1.safetensors"]
    assert fingerprint_mismatches(parent, parent.ckpt) == {}
    wm = load("FTwan21", ds, paths["base"])
    assert wm.ckpt.files == (ds.resolve() / "epoch-1.safetensors",) and wm.loras[0].naming == "wan"
    assert any("epoch-1.safetensors loaded (the highest of epochs 0, 1" in n for n in wm.notes), wm.notes
    assert fingerprint_mismatches(wm, wm.ckpt) == {}
    t = wm.running_tensor("blocks.0.self_attn.q.lora_A.default.weight")
    assert t is wm.pipe.transformer.get_parameter("blocks.0.attn1.to_q.lora_A.wiw_ft.weight")
    # The other epoch is another LoRA: the fingerprints of epoch 0 do not match what runs.
    epoch0 = open_checkpoint(ds / "epoch-0.safetensors")
    assert fingerprint_mismatches(wm, epoch0)
    assert mean_abs_diff(wm.generate(request("FTwan21")), base_wm.generate(request("wan21"))) > 0.5


@pytest.mark.parametrize("which", ["full", "dfull"])
def test_full_fine_tunes_swap_the_transformer_and_zero_shot_swaps_it_back(which, paths, base_wm):
    wm = load("FTwan21", paths[which], paths["base"])
    kind = "a DiT state dict" if which == "full" else "diffusers transformer folders"
    assert any(n.startswith("post-train detected: full fine-tune") and kind in n for n in wm.notes), wm.notes
    assert wm.pipe.transformer is not base_wm.pipe.transformer
    assert fingerprint_mismatches(wm, wm.ckpt) == {}
    if which == "full":
        t = wm.running_tensor("blocks.1.cross_attn.k_img.weight")
        assert t is wm.pipe.transformer.get_parameter("blocks.1.attn2.add_k_proj.weight")
        assert wm.running_tensor("head.modulation") is wm.pipe.transformer.get_parameter("scale_shift_table")
    ft = wm.generate(request("FTwan21"))
    with wm.zero_shot():
        assert np.array_equal(wm.generate(request("FTwan21")), base_wm.generate(request("wan21")))
    assert mean_abs_diff(ft, base_wm.generate(request("wan21"))) > 0.5
    assert np.array_equal(ft, wm.generate(request("FTwan21")))


def test_full_state_dict_missing_a_parameter_is_refused_listing_it(paths, tmp_path):
    tensors = load_file(str(paths["full"] / "epoch-0.safetensors"))
    tensors.pop("blocks.0.norm3.weight")
    (tmp_path / "f").mkdir()
    save_file(tensors, str(tmp_path / "f" / "epoch-0.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 are missing:\n  - blocks.0.norm2.weight"):
        load("FTwan21", tmp_path / "f", paths["base"])
