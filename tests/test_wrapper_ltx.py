"""wrappers.ltx on real tiny checkpoints (no mocks): ltx and FTltx, built once per module."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import LTXVideoTransformer3DModel  # noqa: E402
from wrapper_helpers import (  # noqa: E402
    assert_batch_items_equal_items_alone,
    assert_component_folder_checkpoint,
    assert_fingerprints_agree,
    assert_flat_component_checkpoint,
    assert_shares_modules_with_base,
    assert_uint8_video,
    assert_zero_shot_restores_on_error,
    copy_component,
    fingerprint_mismatches,
    ft_and_zero_shot_outputs,
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_altered_component,
    tiny_swap_checkpoints,
)

from pytest_wiw.checkpoints import files as checkpoint  # noqa: E402
from pytest_wiw.checkpoints.pipeline_diff import differing_components  # noqa: E402
from pytest_wiw.errors import CheckpointError  # noqa: E402
from wrappers.common.component_swap import save_tiny_fine_tune  # noqa: E402
from wrappers.ltx import _FT_NOISE, TINY_GENERATION, LTXImageToVideo  # noqa: E402

_load = functools.partial(load_wrapper, LTXImageToVideo)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_swap_checkpoints(LTXImageToVideo, tmp_path_factory.mktemp("ltx"), "ltx", "FTltx")


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("ltx", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("FTltx", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def base_out(base_model):
    return base_model.generate(reference_request("ltx"))


def test_tiny_checkpoints_have_the_expected_layout(tiny):
    base = checkpoint.open_checkpoint(tiny["base"])
    assert base.format == "diffusers"
    assert checkpoint.card_generation(base.card) == TINY_GENERATION
    # WIW's FTltx: a whole pipeline folder, its transformer/ fine-tuned, everything else the base's.
    ft = checkpoint.open_checkpoint(tiny["ft"])
    assert ft.format == "diffusers"
    assert ft.card["base_model"] == str(tiny["base"])
    assert checkpoint.card_generation(ft.card) == TINY_GENERATION
    assert sorted(ft.rel(f) for f in ft.files) == sorted(base.rel(f) for f in base.files)
    assert differing_components(ft, base) == differing_components(ft, base, skip=("vae",))
    assert [d.name for d in differing_components(ft, base)] == ["transformer"]
    assert differing_components(ft, base, skip=("transformer",)) == []
    assert checkpoint.open_checkpoint(tiny["same"]).format == "component"


def test_older_transformer_folder_layout_still_loads(tiny, tmp_path):
    """A folder holding transformer/ with its config.json (diffusers' own save of one component) is a real
    layout too: it loads, with the same weights as the whole pipeline's transformer."""
    older = save_tiny_fine_tune(LTXVideoTransformer3DModel, tmp_path / "older", tiny["base"], 0,
                                noise_scale=_FT_NOISE, generation=TINY_GENERATION, description="older layout")
    assert_component_folder_checkpoint(older, "transformer", tiny["base"], TINY_GENERATION)
    model = _load("FTltx", older, base=tiny["base"])
    assert_fingerprints_agree(model)
    whole = checkpoint.open_checkpoint(tiny["ft"])
    assert not differing_components(checkpoint.open_checkpoint(older), whole)  # transformer/ byte-identical


def test_make_tiny_is_seeded_and_leaves_the_global_rng_alone(tiny, tmp_path):
    again = make_tiny_leaving_rng(LTXImageToVideo, "ltx", tmp_path / "ltx", seed=0)
    a, b = checkpoint.open_checkpoint(tiny["base"]), checkpoint.open_checkpoint(again)
    assert a.sha256() == b.sha256()


def test_output_dtype_and_shape(base_model, base_out):
    assert_uint8_video(base_model, base_out, 2, shape=(2, 4, 3, 32, 32))
    assert base_out.std() > 0  # not a constant image
    assert "pipeline returned 9 frames, mapped to 4 (uniform subsample)" in base_model.notes


def test_same_seed_is_bitwise_equal(base_model, base_out):
    assert np.array_equal(base_model.generate(reference_request("ltx")), base_out)
    with base_model.zero_shot():  # a zero-shot type runs its base weights anyway
        assert np.array_equal(base_model.generate(reference_request("ltx")), base_out)


def test_different_seed_differs(base_model, base_out):
    other = base_model.generate(reference_request("ltx", seed=(21, 22)))
    assert mean_abs_diff(other, base_out) >= 1.0


def test_batch_item_equals_item_alone(base_model, base_out):
    assert_batch_items_equal_items_alone(base_model, reference_request("ltx"), base_out)


def test_sizes_are_rounded_and_noted(tiny):
    # 12 frames -> 9 (8k+1, rounding down as the pipeline does); 40x48 -> 32x32 (multiples of 32).
    model = _load("ltx", tiny["base"], num_frames=12, height=40, width=48)
    out = model.generate(reference_request("ltx", batch=1))
    assert out.shape == (1, 4, 3, 32, 32)
    assert "num_frames 12 rounded down to 9 (LTX generates 8k+1 frames)" in model.notes
    assert any(n.startswith("generation size 40x48 rounded down to 32x32") for n in model.notes)


def test_ft_differs_from_zero_shot(ft_model):
    request = reference_request("FTltx")
    ft_out, zs_out = ft_and_zero_shot_outputs(ft_model, request)
    assert mean_abs_diff(ft_out, zs_out) >= 1.0
    # Leaving zero_shot() restores the fine-tuned transformer.
    assert np.array_equal(ft_model.generate(request), ft_out)


def test_zero_shot_equals_base_wrapper(ft_model, base_out):
    with ft_model.zero_shot():
        zs_out = ft_model.generate(reference_request("FTltx"))
    assert np.array_equal(zs_out, base_out)


def test_zero_shot_restores_ft_on_error(ft_model):
    assert_zero_shot_restores_on_error(ft_model, "transformer")


def test_ft_shares_modules_with_base(ft_model):
    assert_shares_modules_with_base(ft_model, "transformer", shared=("vae", "text_encoder"))


def test_fingerprints_agree_with_files(base_model, ft_model):
    for model in (base_model, ft_model):
        assert_fingerprints_agree(model)
    # The whole pipeline's other components are found in the shared (base) modules.
    assert {k.split("/")[0] for k in ft_model.weight_fingerprints()} == {"transformer", "vae", "text_encoder"}
    assert not any("has no config.json" in n for n in ft_model.notes)
    assert any(n.startswith("FT checkpoint is a whole pipeline folder: its transformer/ runs; its scheduler, "
                            "text_encoder, tokenizer, vae are not loaded") for n in ft_model.notes), ft_model.notes


def test_fingerprints_catch_base_weights(tiny):
    """Held against the base pipeline's files, the fine-tuned transformer's fingerprints all disagree; the
    shared components' all agree."""
    model = _load("FTltx", tiny["ft"], base=tiny["base"])
    model.ckpt = checkpoint.open_checkpoint(tiny["base"])
    running = model.weight_fingerprints()
    mismatched = fingerprint_mismatches(model, model.ckpt)
    transformer = {k for k in running if k.startswith("transformer/")}
    assert transformer and set(mismatched) == transformer


def test_identical_ft_equals_zero_shot(tiny, base_out):
    model = _load("FTltx", tiny["same"], base=tiny["base"])
    assert_flat_component_checkpoint(model)
    out, zs = ft_and_zero_shot_outputs(model, reference_request("FTltx"))
    assert np.array_equal(out, zs)
    assert np.array_equal(out, base_out)


def test_ft_without_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("FTltx", tiny["ft"])


def test_ft_transformer_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    bad = save_altered_component(LTXVideoTransformer3DModel, tiny["base"] / "transformer", tmp_path / "FTbad",
                                 card_from=tiny["ft"], num_layers=2)
    with pytest.raises(CheckpointError, match=f"{bad}.*num_layers 2"):
        _load("FTltx", bad, base=tiny["base"])


def test_ft_folder_of_another_component_is_a_checkpoint_error(tiny, tmp_path):
    vae = copy_component(tiny["base"] / "vae", tmp_path / "FTvae", card_from=tiny["ft"])
    with pytest.raises(CheckpointError, match="AutoencoderKLLTXVideo"):
        _load("FTltx", vae, base=tiny["base"])
    assert json.loads((vae / "config.json").read_text())["_class_name"] == "AutoencoderKLLTXVideo"


def test_base_pipeline_given_as_its_own_fine_tune_loads_and_says_so(tiny, base_out):
    model = _load("FTltx", tiny["base"], base=tiny["base"])
    assert f"the base checkpoint is the FT checkpoint itself ({tiny['base']}): FT and zero-shot run the same " \
           "transformer" in model.notes
    out, zs = ft_and_zero_shot_outputs(model, reference_request("FTltx"))
    assert np.array_equal(out, zs) and np.array_equal(out, base_out)


def test_pipeline_folder_without_transformer_is_a_checkpoint_error(tiny, tmp_path):
    broken = tmp_path / "no_transformer"
    shutil.copytree(tiny["ft"], broken)
    shutil.rmtree(broken / "transformer")
    with pytest.raises(CheckpointError, match=f"{broken}: this pipeline folder has no transformer/ weights"):
        _load("FTltx", broken, base=tiny["base"])


def test_config_less_transformer_of_another_class_names_the_users_file(tiny, tmp_path):
    """A config-less transformer whose borrowed config would build another class: the error names the
    user's weights file and the config used, not the temporary folder the load ran in."""
    ft = tmp_path / "ft"
    (ft / "transformer").mkdir(parents=True)
    weights = ft / "transformer" / "diffusion_pytorch_model.safetensors"
    shutil.copy(tiny["ft"] / "transformer" / "diffusion_pytorch_model.safetensors", weights)
    base = tmp_path / "base"
    shutil.copytree(tiny["base"], base)
    config = base / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "CogVideoXTransformer3DModel"}))
    with pytest.raises(CheckpointError) as err:
        _load("FTltx", ft, base=base, **TINY_GENERATION)
    assert str(err.value).startswith(f"{weights} (with config {config}): config.json describes a "
                                     "CogVideoXTransformer3DModel"), str(err.value)
    assert "pytest-wiw-component-" not in str(err.value)
