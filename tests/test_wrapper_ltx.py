"""wrappers.ltx on real tiny checkpoints (no mocks): ltx and FTltx, built once per module."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint  # noqa: E402
from pytest_wiw.errors import CheckpointError  # noqa: E402
from wrapper_helpers import (  # noqa: E402
    assert_batch_items_equal_items_alone,
    assert_component_folder_checkpoint,
    assert_fingerprints_agree,
    assert_fingerprints_catch_base_weights,
    assert_flat_component_checkpoint,
    assert_shares_modules_with_base,
    assert_uint8_video,
    assert_zero_shot_restores_on_error,
    copy_component,
    ft_and_zero_shot_outputs,
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_altered_component,
    tiny_swap_checkpoints,
)
from wrappers.ltx import TINY_GENERATION, LTXImageToVideo  # noqa: E402

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
    assert_component_folder_checkpoint(tiny["ft"], "transformer", tiny["base"], TINY_GENERATION)
    assert checkpoint.open_checkpoint(tiny["same"]).format == "component"


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
    assert all(k.startswith("transformer/") for k in ft_model.weight_fingerprints())


def test_fingerprints_catch_base_weights(tiny):
    model = _load("FTltx", tiny["ft"], base=tiny["base"])
    assert_fingerprints_catch_base_weights(model, tiny["base"], "transformer")


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
    from diffusers import LTXVideoTransformer3DModel

    bad = save_altered_component(LTXVideoTransformer3DModel, tiny["base"] / "transformer", tmp_path / "FTbad",
                                 card_from=tiny["ft"], num_layers=2)
    with pytest.raises(CheckpointError, match=f"{bad}.*num_layers 2"):
        _load("FTltx", bad, base=tiny["base"])


def test_ft_folder_of_another_component_is_a_checkpoint_error(tiny, tmp_path):
    vae = copy_component(tiny["base"] / "vae", tmp_path / "FTvae", card_from=tiny["ft"])
    with pytest.raises(CheckpointError, match="AutoencoderKLLTXVideo"):
        _load("FTltx", vae, base=tiny["base"])
    assert json.loads((vae / "config.json").read_text())["_class_name"] == "AutoencoderKLLTXVideo"


def test_ft_rejects_a_pipeline_folder_as_transformer(tiny):
    with pytest.raises(CheckpointError, match="fine-tuned transformer"):
        _load("FTltx", tiny["base"], base=tiny["base"])
