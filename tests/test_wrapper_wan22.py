"""wrappers.wan22 / wrappers.wan22_a14b on real tiny models: wan22 (TI2V-5B style), FTwan22 (a LoRA over
it), wan22-14B (two experts) and FTwan22-14B (a LoRA per expert, the low-noise file named *_low_*).

The wrappers are built the way the worker builds them: the registry's spec with the card's
generation overrides applied, the checkpoint opened with open_checkpoint. LoRAs in DiffSynth-Studio
naming (how WIW's FT checkpoints are trained) are written here by renaming the tiny LoRAs' keys.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from wrapper_helpers import (
    assert_batch_items_equal_items_alone,
    build_wrapper,
    fingerprint_mismatches,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
)

from pytest_wiw.api import registry
from pytest_wiw.checkpoints.files import (
    Checkpoint,
    card_generation,
    open_checkpoint,
    read_card,
    read_safetensors_header,
)
from pytest_wiw.checkpoints.fingerprint import compare, fingerprint_tensor
from pytest_wiw.errors import CheckpointError
from pytest_wiw.runtime.settings import effective_generation
from wrappers import wan22, wan22_a14b
from wrappers.wan22 import Wan22TI2V
from wrappers.wan22_a14b import TINY_LORA_FOLDERS, Wan22A14B
from wrappers.wan_lora import write_diffusers_lora_folder

IMAGE_HW = (40, 56)  # not a generation size, so the wrappers' resize runs
ACTIONS = [[4, 1, 2, 1], [4, 3, 3, 1, 2]]
CLASSES = {"wan22": Wan22TI2V, "FTwan22": Wan22TI2V, "wan22-14B": Wan22A14B, "FTwan22-14B": Wan22A14B}
#: The older layout's files (diffusers' naming, side by side); the low-noise one carries ``_low_``, as WIW names them.
OLD_LAYOUT_FILES = {"transformer": "wan22_high_noise_lora.safetensors",
                    "transformer_2": "wan22_low_noise_lora.safetensors"}
HIGH, LOW = OLD_LAYOUT_FILES["transformer"], OLD_LAYOUT_FILES["transformer_2"]


# -- LoRA files in other namings ----------------------------------------------------------------------------
DIFFSYNTH_NAMES = [("attn1.", "self_attn."), ("attn2.", "cross_attn."), ("to_out.0.", "o."), ("to_q.", "q."),
                   ("to_k.", "k."), ("to_v.", "v."), ("ffn.net.0.proj.", "ffn.0."), ("ffn.net.2.", "ffn.2.")]


def diffsynth_key(key: str, prefix: str = "") -> str:
    """``transformer.blocks.0.attn1.to_q.lora_A.weight`` -> ``blocks.0.self_attn.q.lora_A.default.weight``."""
    name = key.removeprefix("transformer.")
    for ours, theirs in DIFFSYNTH_NAMES:
        name = name.replace(ours, theirs)
    return prefix + name.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight",
                                                                                      ".lora_B.default.weight")


def read(file: Path) -> tuple[dict, dict]:
    with safe_open(str(file), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


def write_renamed(src: Path, dst: Path, rename, *, keep_metadata: bool = False, extra: dict | None = None) -> Path:
    tensors, metadata = read(src)
    out = {rename(k): t for k, t in tensors.items()}
    out.update(extra or {})
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dst), metadata=metadata if keep_metadata else None)  # DiffSynth writes no metadata
    return dst


def write_original_with_alpha(src: Path, dst: Path) -> Path:
    """Original-Wan naming (``diffusion_model.`` prefix, lora_down/lora_up) with ``.alpha`` = 2 * rank and
    lora_up halved: the same LoRA, which diffusers' converter would fold into the weights."""
    tensors, _ = read(src)
    out = {}
    for k, t in tensors.items():
        name = diffsynth_key(k, "diffusion_model.").replace(".lora_A.default.", ".lora_down.")
        if ".lora_B.default." in name:
            name, t = name.replace(".lora_B.default.", ".lora_up."), t / 2
        out[name] = t
        if ".lora_down." in name:
            out[name.replace(".lora_down.weight", ".alpha")] = torch.tensor(2.0 * t.shape[0])
    save_file(out, str(dst))
    return dst


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan22")
    p = {"wan22": Wan22TI2V.make_tiny("wan22", root / "wan22", seed=0),
         "wan22-14B": Wan22A14B.make_tiny("wan22-14B", root / "wan22-14B", seed=0)}
    # make_tiny's DiffSynth-Studio epoch folders (what WIW users have) ...
    p["ds-tiny"] = Wan22TI2V.make_tiny("FTwan22", root / "ds-tiny", base=p["wan22"], seed=1)
    p["ds14-tiny"] = Wan22A14B.make_tiny("FTwan22-14B", root / "ds14-tiny", base=p["wan22-14B"], seed=1)
    # ... and the older layout, diffusers' own LoRA naming, which still loads: most tests below use it.
    p["FTwan22"] = write_diffusers_lora_folder(p["wan22"], root / "FTwan22", {"transformer": "pytorch_lora_weights"
                                               ".safetensors"}, 1, b_gain=wan22.TINY_LORA_B_GAIN,
                                               generation=wan22.TINY_GENERATION)
    p["FTwan22-14B"] = write_diffusers_lora_folder(p["wan22-14B"], root / "FTwan22-14B", OLD_LAYOUT_FILES, 1,
                                                   b_gain=wan22_a14b.TINY_LORA_B_GAIN,
                                                   generation=wan22_a14b.TINY_GENERATION)
    lora5 = p["FTwan22"] / "pytorch_lora_weights.safetensors"
    p["lora5"] = lora5
    p["ds5"] = write_renamed(lora5, root / "ds5" / "model.safetensors", diffsynth_key)
    p["ds5-prefixed"] = write_renamed(lora5, root / "ds5p" / "model.safetensors",
                                      lambda k: diffsynth_key(k, "diffusion_model."))
    p["alpha5"] = write_original_with_alpha(lora5, root / "alpha5.safetensors")
    ft14 = p["FTwan22-14B"]
    for name in (HIGH, LOW):
        write_renamed(ft14 / name, root / "ds14" / name, lambda k: diffsynth_key(k, "model."))
    p["ds14"] = root / "ds14"
    (root / "swapped14").mkdir()  # each expert's LoRA under the other's file name
    shutil.copy(ft14 / HIGH, root / "swapped14" / LOW)
    shutil.copy(ft14 / LOW, root / "swapped14" / HIGH)
    p["swapped14"] = root / "swapped14"
    return p


def open_ckpt(path: Path) -> Checkpoint:
    """open_checkpoint; for a folder of two LoRA files, which pytest_wiw.checkpoints.files does not accept yet ("cannot
    tell the format"), the Checkpoint it is to return: format lora, both files."""
    try:
        return open_checkpoint(path)
    except CheckpointError as exc:
        if "cannot tell the format" not in str(exc):
            raise
        root = Path(path).resolve()
        return Checkpoint(path=root, format="lora", files=tuple(sorted(root.glob("*.safetensors"))),
                          card=read_card(root))


def load(name, path, base=None):
    ckpt = open_ckpt(path)
    base_ckpt = open_checkpoint(base) if base is not None else None
    spec = registry.get_spec(name)  # the base's card, then the FT's (a renamed LoRA has none), as the worker does
    spec = dataclasses.replace(spec, defaults=effective_generation(spec.defaults, [base_ckpt, ckpt], {}))
    return build_wrapper(CLASSES[name], spec, ckpt, base_ckpt)


@pytest.fixture(scope="module")
def wms(paths):
    return {"wan22": load("wan22", paths["wan22"]),
            "FTwan22": load("FTwan22", paths["FTwan22"], paths["wan22"]),
            "wan22-14B": load("wan22-14B", paths["wan22-14B"]),
            "FTwan22-14B": load("FTwan22-14B", paths["FTwan22-14B"], paths["wan22-14B"])}


def request(name, seed=(7, 11), batch=2):
    return reference_request(name, seed, batch, actions=ACTIONS[:batch], image_hw=IMAGE_HW, image_seed=123)


# -- checkpoints ----------------------------------------------------------------------------------------------
def test_tiny_checkpoints_have_the_real_layouts(paths):
    base = open_checkpoint(paths["wan22"])
    assert base.format == "diffusers" and card_generation(base.card) == wan22.TINY_GENERATION
    index = json.loads((paths["wan22"] / "model_index.json").read_text())
    assert index["expand_timesteps"] is True and index["boundary_ratio"] is None
    assert index["image_encoder"] == [None, None] and index["transformer_2"] == [None, None]
    vae = json.loads((paths["wan22"] / "vae" / "config.json").read_text())
    assert (vae["z_dim"], vae["is_residual"], vae["patch_size"], vae["scale_factor_spatial"]) == (48, True, 2, 16)
    assert json.loads((paths["wan22"] / "transformer" / "config.json").read_text())["in_channels"] == 48

    ft = open_checkpoint(paths["FTwan22"])
    assert sorted(p.name for p in paths["FTwan22"].iterdir()) == ["README.md", "pytorch_lora_weights.safetensors"]
    assert ft.format == "lora" and ft.card["base_model"] == str(paths["wan22"])

    base14 = open_checkpoint(paths["wan22-14B"])
    index14 = json.loads((paths["wan22-14B"] / "model_index.json").read_text())
    assert base14.format == "diffusers" and card_generation(base14.card) == wan22_a14b.TINY_GENERATION
    assert index14["boundary_ratio"] == 0.9 and index14["transformer_2"][1] == "WanTransformer3DModel"
    assert index14["image_encoder"] == [None, None]
    assert sorted(p.name for p in paths["FTwan22-14B"].iterdir()) == ["README.md", HIGH, LOW]
    assert "_low_" in LOW and "_low_" not in HIGH
    ft14 = open_ckpt(paths["FTwan22-14B"])
    assert ft14.card["base_model"] == str(paths["wan22-14B"])
    assert card_generation(ft14.card) == wan22_a14b.TINY_GENERATION


def test_make_tiny_writes_diffsynth_epoch_folders(paths):
    assert sorted(p.name for p in paths["ds-tiny"].iterdir()) == ["README.md", wan22.TINY_LORA_FOLDER]
    ds = paths["ds-tiny"] / wan22.TINY_LORA_FOLDER
    assert ds.name.endswith("_lora_navigation")
    assert sorted(p.name for p in ds.iterdir()) == ["README.md", "epoch-0.safetensors", "epoch-1.safetensors"]
    ckpt = open_checkpoint(ds)
    assert ckpt.format == "lora" and [f.name for f in ckpt.files] == ["epoch-1.safetensors"]
    assert ckpt.card["base_model"] == str(paths["wan22"])
    keys = read_safetensors_header(ds / "epoch-0.safetensors")
    assert "blocks.0.self_attn.q.lora_A.default.weight" in keys and all(".default." in k for k in keys)
    ds14 = paths["ds14-tiny"]
    assert sorted(p.name for p in ds14.iterdir()) == sorted(["README.md", *TINY_LORA_FOLDERS.values()])
    assert "_low_" in TINY_LORA_FOLDERS["transformer_2"] and "_low_" not in TINY_LORA_FOLDERS["transformer"]
    ckpt14 = open_checkpoint(ds14)
    assert [ckpt14.rel(f) for f in ckpt14.files] == [f"{TINY_LORA_FOLDERS[c]}/epoch-1.safetensors"
                                                      for c in ("transformer", "transformer_2")]
    assert ckpt14.card["base_model"] == str(paths["wan22-14B"])


@pytest.mark.parametrize("which, name", [("ds-tiny", "FTwan22"), ("ds14-tiny", "FTwan22-14B")])
def test_diffsynth_epoch_folders_load_and_are_fingerprinted(which, name, paths, wms):
    wm = load(name, paths[which], paths[name.removeprefix("FT")])
    assert all(lora.naming == "wan" for lora in wm.loras)
    assert fingerprint_mismatches(wm, wm.ckpt) == {}
    assert mean_abs_diff(wm.generate(request(name)), wms[name].generate(request(name))) > 0
    with wm.zero_shot():
        assert np.array_equal(wm.generate(request(name)), wms[name.removeprefix("FT")].generate(request(
            name.removeprefix("FT"))))


def test_wrong_checkpoint_kinds_are_refused(paths):
    with pytest.raises(CheckpointError, match="not a Wan 2.2 TI2V-5B pipeline|two"):
        load("wan22", paths["wan22-14B"])
    with pytest.raises(CheckpointError, match="two experts"):
        load("wan22-14B", paths["wan22"])
    with pytest.raises(CheckpointError, match="LoRA"):
        load("FTwan22", paths["wan22"], paths["wan22"])
    with pytest.raises(CheckpointError, match="diffusers Wan 2.2 TI2V-5B"):
        load("wan22", paths["FTwan22"])
    with pytest.raises(CheckpointError, match="base"):
        load("FTwan22-14B", paths["FTwan22-14B"])


# -- generation (all four types) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CLASSES))
def test_output_is_uint8_video_of_the_card_sizes(name, wms):
    wm = wms[name]
    g = wm.generation
    tiny = wan22.TINY_GENERATION if "14B" not in name else wan22_a14b.TINY_GENERATION
    assert (g.height, g.width, g.num_output_frames) == (tiny["height"], tiny["width"], tiny["num_output_frames"])
    out = wm.generate(request(name))
    assert out.dtype == np.uint8
    assert out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width)
    assert out.std() > 0


@pytest.mark.parametrize("name", list(CLASSES))
def test_same_seed_is_bitwise_equal_and_another_seed_differs(name, wms):
    wm = wms[name]
    a = wm.generate(request(name))
    assert np.array_equal(a, wm.generate(request(name)))
    assert mean_abs_diff(a, wm.generate(request(name, seed=(8, 12)))) >= 2.0


@pytest.mark.parametrize("name", list(CLASSES))
def test_batch_item_equals_the_item_alone(name, wms):
    wm, req = wms[name], request(name)
    assert_batch_items_equal_items_alone(wm, req, wm.generate(req), within_tolerance=False)


# -- LoRA and the zero-shot baseline ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["FTwan22", "FTwan22-14B"])
def test_ft_differs_from_zero_shot_which_equals_the_base(name, wms):
    wm, base = wms[name], wms[name.removeprefix("FT")]
    ft = wm.generate(request(name))
    with wm.zero_shot():
        zero = wm.generate(request(name))
        with wm.zero_shot():  # nesting keeps the adapters off until the outer exit
            pass
        assert np.array_equal(zero, wm.generate(request(name)))
    assert mean_abs_diff(ft, zero) >= 2.0
    assert np.array_equal(zero, base.generate(request(base.spec.name)))
    assert np.array_equal(ft, wm.generate(request(name)))  # adapters back on after the context


def test_zero_shot_is_restored_after_an_error(wms):
    wm = wms["FTwan22-14B"]
    ft = wm.generate(request("FTwan22-14B", batch=1))
    with pytest.raises(RuntimeError):
        with wm.zero_shot():
            raise RuntimeError("boom")
    assert np.array_equal(ft, wm.generate(request("FTwan22-14B", batch=1)))


@pytest.mark.parametrize("name", ["wan22", "wan22-14B"])
def test_zero_shot_type_has_no_zero_shot_context(name, wms):
    with pytest.raises(NotImplementedError):
        wms[name].zero_shot()


# -- fingerprints ---------------------------------------------------------------------------------------------------
def lora_mismatches(wm):
    """Every tensor of every LoRA file against its running tensor, keyed as the checkpoint keys them: the bare
    name for one file, ``<file>/<name>`` for several (how pytest_wiw.checkpoints.files is to key a multi-file LoRA)."""
    files = wm.ckpt.files
    bad = {}
    for f in files:
        tensors, _ = read(f)
        for name, tensor in tensors.items():
            key = name if len(files) == 1 else f"{wm.ckpt.rel(f)}/{name}"
            running = wm.running_tensor(key)
            assert running is not None, key
            if msg := compare(key, fingerprint_tensor(running), fingerprint_tensor(tensor.to(running.dtype))):
                bad[key] = msg
    return bad


@pytest.mark.parametrize("name", list(CLASSES))
def test_running_fingerprints_agree_with_the_files(name, wms):
    wm = wms[name]
    if len(wm.ckpt.tensor_index()) == sum(len(read_safetensors_header(f)) for f in wm.ckpt.files):
        # (two LoRA files' keys collide until checkpoint.py keys them apart)
        assert fingerprint_mismatches(wm, wm.ckpt) == {}
    if wm.spec.is_ft:
        assert lora_mismatches(wm) == {}


def test_ft_keys_map_to_the_peft_parameters_of_their_expert(wms):
    wm5, wm14 = wms["FTwan22"], wms["FTwan22-14B"]
    t = wm5.running_tensor("transformer.blocks.0.attn1.to_q.lora_A.weight")
    assert t is wm5.pipe.transformer.get_parameter("blocks.0.attn1.to_q.lora_A.wiw_ft.weight")
    high = wm14.running_tensor(f"{HIGH}/transformer.blocks.1.ffn.net.2.lora_B.weight")
    low = wm14.running_tensor(f"{LOW}/transformer.blocks.1.ffn.net.2.lora_B.weight")
    assert high is wm14.pipe.transformer.get_parameter("blocks.1.ffn.net.2.lora_B.wiw_ft.weight")
    assert low is wm14.pipe.transformer_2.get_parameter("blocks.1.ffn.net.2.lora_B.wiw_ft.weight")
    assert wm14.running_tensor("transformer.blocks.1.ffn.net.2.lora_B.weight") is None  # which file? ambiguous
    assert wm5.running_tensor("transformer.blocks.9.attn1.to_q.lora_A.weight") is None
    assert wm5.running_tensor("transformer.blocks.0.attn1.to_q.weight") is None


# -- LoRA namings ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["ds5", "ds5-prefixed", "alpha5"])
def test_diffsynth_and_original_names_load_the_same_lora(which, paths, wms):
    wm = load("FTwan22", paths[which], paths["wan22"])
    assert wm.loras[0].naming == "wan"
    assert np.array_equal(wm.generate(request("FTwan22")), wms["FTwan22"].generate(request("FTwan22")))
    # The file's own tensors run, alphas included (not folded into the weights): the suite's check agrees.
    assert fingerprint_mismatches(wm, wm.ckpt) == {}
    keys = wm.ckpt.fingerprint_keys()
    assert any(".self_attn.q.lora_" in k for k in keys) and any(".ffn.2.lora_" in k for k in keys)
    if which == "alpha5":
        alpha = wm.running_tensor("diffusion_model.blocks.0.self_attn.q.alpha")
        assert float(alpha) == 8.0 and wm.pipe.transformer.blocks[0].attn1.to_q.scaling["wiw_ft"] == 2.0


def test_diffsynth_top_level_modules_load(paths, wms, tmp_path):
    """Keys outside the blocks (head.head, time_projection.1, text_embedding.0) go through the converter too."""
    tensors, _ = read(paths["lora5"])
    out = {diffsynth_key(k, "diffusion_model."): t for k, t in tensors.items()}
    t = wms["wan22"].pipe.transformer
    g = torch.Generator().manual_seed(0)
    for theirs, ours in [("head.head", t.proj_out), ("time_projection.1", t.condition_embedder.time_proj),
                         ("text_embedding.0", t.condition_embedder.text_embedder.linear_1)]:
        out[f"diffusion_model.{theirs}.lora_A.weight"] = torch.randn(4, ours.in_features, generator=g)
        out[f"diffusion_model.{theirs}.lora_B.weight"] = torch.randn(ours.out_features, 4, generator=g)
    save_file(out, str(tmp_path / "top.safetensors"))
    wm = load("FTwan22", tmp_path / "top.safetensors", paths["wan22"])
    assert wm.loras[0].params["diffusion_model.head.head.lora_B.weight"] == "proj_out.lora_B.weight"
    assert fingerprint_mismatches(wm, wm.ckpt) == {}
    assert not np.array_equal(wm.generate(request("FTwan22", batch=1)),
                              wms["FTwan22"].generate(request("FTwan22", batch=1)))


def test_diffsynth_names_load_into_both_experts(paths, wms):
    wm = load("FTwan22-14B", paths["ds14"], paths["wan22-14B"])
    assert [lora.naming for lora in wm.loras] == ["wan", "wan"]
    assert np.array_equal(wm.generate(request("FTwan22-14B")), wms["FTwan22-14B"].generate(request("FTwan22-14B")))
    assert lora_mismatches(wm) == {}


# -- refused LoRAs ---------------------------------------------------------------------------------------------------
def test_lora_keys_that_match_no_module_are_refused_listing_them(paths, tmp_path):
    diffusers_bad = write_renamed(paths["lora5"], tmp_path / "a" / "lora.safetensors", lambda k: k, keep_metadata=True,
                                  extra={"transformer.blocks.0.attn1.to_zz.lora_A.weight": torch.zeros(4, 16)})
    with pytest.raises(CheckpointError) as info:
        load("FTwan22", diffusers_bad, paths["wan22"])
    msg = str(info.value)
    assert "1 of 41 LoRA tensors match no module" in msg and "transformer.blocks.0.attn1.to_zz.lora_A.weight" in msg

    diffsynth_bad = write_renamed(paths["lora5"], tmp_path / "b" / "lora.safetensors", diffsynth_key,
                                  extra={"blocks.0.self_attn.zz.lora_A.default.weight": torch.zeros(4, 16),
                                         "blocks.7.cross_attn.q.lora_A.default.weight": torch.zeros(4, 16)})
    with pytest.raises(CheckpointError) as info:
        load("FTwan22", diffsynth_bad, paths["wan22"])
    msg = str(info.value)
    assert "2 of 42" in msg and "blocks.0.self_attn.zz.lora_A.default.weight" in msg
    assert "blocks.7.cross_attn.q.lora_A.default.weight (no module blocks.7.attn2.to_q)" in msg


def test_a_lora_for_another_architecture_is_refused_saying_so(paths, tmp_path):
    # The TI2V-5B LoRA on the A14B experts: the same key names, shapes of another model.
    with pytest.raises(CheckpointError, match="a checkpoint for another model: none of its 40 LoRA tensors"):
        load("FTwan22-14B", paths["lora5"], paths["wan22-14B"])
    # Another transformer's names (transformer_blocks.N: LTX, CogVideoX, ...).
    other = write_renamed(paths["lora5"], tmp_path / "other" / "lora.safetensors",
                          lambda k: k.replace("transformer.blocks.", "transformer.transformer_blocks."))
    with pytest.raises(CheckpointError, match="a checkpoint for another model"):
        load("FTwan22", other, paths["wan22"])


# -- A14B: which file goes to which expert ---------------------------------------------------------------------------
def test_low_file_goes_to_the_low_noise_expert(paths, wms):
    wm = wms["FTwan22-14B"]
    assert {lora.file.name: lora.component for lora in wm.loras} == {HIGH: "transformer", LOW: "transformer_2"}
    ft = wm.generate(request("FTwan22-14B"))
    swapped = load("FTwan22-14B", paths["swapped14"], paths["wan22-14B"])
    assert mean_abs_diff(ft, swapped.generate(request("FTwan22-14B"))) >= 1.0


@pytest.mark.parametrize("which", [HIGH, LOW])
def test_one_file_loads_into_its_expert_only(which, paths, wms):
    wm = load("FTwan22-14B", paths["FTwan22-14B"] / which, paths["wan22-14B"])
    expert = "transformer_2" if which == LOW else "transformer"
    other = "transformer" if which == LOW else "transformer_2"
    assert [lora.component for lora in wm.loras] == [expert]
    assert f"{other}: no post-train weights for it, it runs the base weights" in wm.notes, wm.notes
    assert getattr(wm.pipe, expert).peft_config and not getattr(getattr(wm.pipe, other), "peft_config", None)
    out = wm.generate(request("FTwan22-14B", batch=1))
    assert not np.array_equal(out, wms["FTwan22-14B"].generate(request("FTwan22-14B", batch=1)))
    with wm.zero_shot():
        assert np.array_equal(wm.generate(request("FTwan22-14B", batch=1)),
                              wms["wan22-14B"].generate(request("wan22-14B", batch=1)))
    assert fingerprint_mismatches(wm, wm.ckpt) == {}


def test_two_files_for_one_expert_are_refused(paths, tmp_path):
    folder = tmp_path / "both_high"
    folder.mkdir()
    shutil.copy(paths["FTwan22-14B"] / HIGH, folder / "a_high.safetensors")
    shutil.copy(paths["FTwan22-14B"] / LOW, folder / "b_high.safetensors")
    with pytest.raises(CheckpointError, match="both would go to transformer"):
        load("FTwan22-14B", folder, paths["wan22-14B"])
