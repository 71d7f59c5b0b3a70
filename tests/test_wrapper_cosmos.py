"""wrappers.cosmos on real tiny checkpoints (no mocks): cosmos20 and FTcosmos, built once per module."""

from __future__ import annotations

import functools

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
    ft_and_zero_shot_outputs,
    load_wrapper,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_altered_component,
    tiny_swap_checkpoints,
)
from wrappers.cosmos import TINY_GENERATION, Cosmos2VideoToWorld  # noqa: E402

_load = functools.partial(load_wrapper, Cosmos2VideoToWorld)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_swap_checkpoints(Cosmos2VideoToWorld, tmp_path_factory.mktemp("cosmos"), "cosmos20", "FTcosmos")


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("cosmos20", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("FTcosmos", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def base_out(base_model):
    return base_model.generate(reference_request("cosmos20"))


def test_tiny_checkpoints_have_the_expected_layout(tiny):
    base = checkpoint.open_checkpoint(tiny["base"])
    assert base.format == "diffusers"
    assert checkpoint.card_generation(base.card) == TINY_GENERATION
    assert_component_folder_checkpoint(tiny["ft"], "transformer", tiny["base"], TINY_GENERATION)
    assert checkpoint.open_checkpoint(tiny["same"]).format == "component"


def test_output_dtype_and_shape(base_model, base_out):
    assert_uint8_video(base_model, base_out, 2, shape=(2, 4, 3, 32, 32))
    assert base_out.std() > 0  # not a constant image


def test_same_seed_is_bitwise_equal(base_model, base_out):
    assert np.array_equal(base_model.generate(reference_request("cosmos20")), base_out)
    with base_model.zero_shot():  # a zero-shot type runs its base weights anyway
        assert np.array_equal(base_model.generate(reference_request("cosmos20")), base_out)


def test_different_seed_differs(base_model, base_out):
    other = base_model.generate(reference_request("cosmos20", seed=(21, 22)))
    assert mean_abs_diff(other, base_out) > 0.5


def test_batch_item_equals_item_alone(base_model, base_out):
    assert_batch_items_equal_items_alone(base_model, reference_request("cosmos20"), base_out)


def test_ft_differs_from_zero_shot(ft_model):
    request = reference_request("FTcosmos")
    ft_out, zs_out = ft_and_zero_shot_outputs(ft_model, request)
    assert mean_abs_diff(ft_out, zs_out) > 0.2
    # Leaving zero_shot() restores the fine-tuned transformer.
    assert np.array_equal(ft_model.generate(request), ft_out)


def test_zero_shot_equals_base_wrapper(ft_model, base_out):
    with ft_model.zero_shot():
        zs_out = ft_model.generate(reference_request("FTcosmos"))
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
    model = _load("FTcosmos", tiny["ft"], base=tiny["base"])
    assert_fingerprints_catch_base_weights(model, tiny["base"], "transformer")


def test_identical_ft_equals_zero_shot(tiny, base_out):
    model = _load("FTcosmos", tiny["same"], base=tiny["base"])
    assert_flat_component_checkpoint(model)
    out, zs = ft_and_zero_shot_outputs(model, reference_request("FTcosmos"))
    assert np.array_equal(out, zs)
    assert np.array_equal(out, base_out)


def test_ft_without_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("FTcosmos", tiny["ft"])


def test_ft_transformer_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    from diffusers import CosmosTransformer3DModel

    bad = save_altered_component(CosmosTransformer3DModel, tiny["base"] / "transformer", tmp_path / "FTbad",
                                 card_from=tiny["ft"], num_layers=2)
    with pytest.raises(CheckpointError, match="num_layers 2"):
        _load("FTcosmos", bad, base=tiny["base"])


def test_ft_rejects_a_pipeline_folder_as_transformer(tiny):
    with pytest.raises(CheckpointError, match="fine-tuned transformer"):
        _load("FTcosmos", tiny["base"], base=tiny["base"])


def test_transformer_needing_torchvision_without_it_is_a_checkpoint_error(tiny, tmp_path):
    """Real Cosmos-Predict2 transformers (concat_padding_mask=True) need torchvision: say so at load, not
    with a NameError at the first generation."""
    import shutil

    from diffusers import CosmosTransformer3DModel

    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision is installed here: the transformer loads")
    except ImportError:
        pass
    real_like = tmp_path / "cosmos20"
    shutil.copytree(tiny["base"], real_like)
    save_altered_component(CosmosTransformer3DModel, tiny["base"] / "transformer", real_like, card_from=tiny["base"],
                           subfolder="transformer", concat_padding_mask=True)
    with pytest.raises(CheckpointError, match="concat_padding_mask=True, which needs torchvision"):
        _load("cosmos20", real_like)
