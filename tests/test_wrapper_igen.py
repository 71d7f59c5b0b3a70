"""wrappers.igen on real tiny checkpoints (no mocks): the action UNet over a tiny svd base, loaded like the worker."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_wiw import checkpoint  # noqa: E402
from pytest_wiw.api import CheckpointError, RequestError, write_card  # noqa: E402
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
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
    save_altered_component,
)
from wrappers.igen import (  # noqa: E402
    MANIPULATION_CHANNELS,
    NAVIGATION_CHANNELS,
    ActionConditionedSVD,
    ActionUNetSpatioTemporalConditionModel,
    manipulation_actions,
    navigation_actions,
    tiny_action_unet,
)
from wrappers.svd import TINY_GENERATION, StableVideoDiffusion  # noqa: E402

NAV = [[4, 1, 1, 2], [4, 3, 3, 1]]


def _load(wm_type, path, base=None, **generation):
    """The igen wrapper, or for wm_type svd the svd one, built the way the worker builds them."""
    cls = ActionConditionedSVD if wm_type == "igen" else StableVideoDiffusion
    return load_wrapper(cls, wm_type, path, base, **generation)


def _request(wm_type="igen", seed=(11, 12), batch=2, actions=None, task="navigation"):
    if actions is None:
        actions = NAV[:batch] if task == "navigation" else ["pick up the red cup", "open the drawer"][:batch]
    return reference_request(wm_type, seed, batch, actions=actions, task_type=task)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("igen")
    base = StableVideoDiffusion.make_tiny("svd", root / "svd", seed=0)
    ft = ActionConditionedSVD.make_tiny("igen", root / "igen", base=base, seed=0)
    # The same action UNet in the flat "component" layout (config.json at the top, bare tensor names).
    flat = copy_component(ft / "unet", root / "igen-flat", card_from=ft)
    # A manipulation checkpoint: 10-wide actions.
    manip = root / "igen-manip"
    with torch.random.fork_rng(devices=[]):
        tiny_action_unet(base, seed=0, action_input_channel=MANIPULATION_CHANNELS).save_pretrained(
            str(manip / "unet"), safe_serialization=True)
    write_card(manip, base_model=str(base), datasets=["none"], license="apache-2.0", training_steps=0,
               generation=dict(TINY_GENERATION))
    return {"base": base, "ft": ft, "flat": flat, "manip": manip}


@pytest.fixture(scope="module")
def base_model(tiny):
    return _load("svd", tiny["base"])


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load("igen", tiny["ft"], base=tiny["base"])


@pytest.fixture(scope="module")
def ft_out(ft_model):
    return ft_model.generate(_request())


# -- the checkpoint and the action UNet ----------------------------------------------------------

def test_tiny_checkpoint_layout(tiny, ft_model):
    assert_component_folder_checkpoint(tiny["ft"], "unet", tiny["base"], TINY_GENERATION)
    ft = checkpoint.open_checkpoint(tiny["ft"])
    config = json.loads((tiny["ft"] / "unet" / "config.json").read_text())
    assert config["_class_name"] == "ActionUNetSpatioTemporalConditionModel"
    assert config["action_input_channel"] == NAVIGATION_CHANNELS
    assert any(k.startswith("unet/action_embedding.") for k in ft.tensor_index())
    g = ft_model.generation
    assert (g.height, g.width, g.num_frames, g.num_output_frames, g.steps) == (32, 32, 4, 4, 2)
    assert type(ft_model).version == "1"


def test_action_unet_round_trip(tiny, ft_model, tmp_path):
    unet = ft_model.components()["unet"]
    assert isinstance(unet, ActionUNetSpatioTemporalConditionModel)
    unet.save_pretrained(str(tmp_path / "unet"), safe_serialization=True)
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json",
                                                                     "diffusion_pytorch_model.safetensors"]
    again = ActionUNetSpatioTemporalConditionModel.from_pretrained(str(tmp_path / "unet"), local_files_only=True)
    assert type(again) is ActionUNetSpatioTemporalConditionModel
    assert again.config.action_input_channel == NAVIGATION_CHANNELS
    ours, theirs = unet.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # The same forward on both.
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 4, 4, generator=g)
    hidden = torch.randn(1, 1, 32, generator=g)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    actions = torch.from_numpy(navigation_actions([4, 1, 2], 4))[None]
    with torch.inference_mode():
        a = unet(sample, 10.0, hidden, time_ids, actions=actions).sample
        b = again(sample, 10.0, hidden, time_ids, actions=actions).sample
    assert a.shape == sample[:, :, :4].shape
    assert torch.equal(a, b)


def test_action_unet_forward_contract(ft_model):
    unet = ft_model.components()["unet"]
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 4, 4, generator=g)
    hidden = torch.randn(1, 1, 32, generator=g)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    left = torch.from_numpy(navigation_actions([4, 2, 2], 4))[None]
    right = torch.from_numpy(navigation_actions([4, 3, 3], 4))[None]
    with torch.inference_mode():
        out_left = unet(sample, 10.0, hidden, time_ids, actions=left).sample
        out_right = unet(sample, 10.0, hidden, time_ids, actions=right).sample
        assert (out_left - out_right).abs().mean() > 1e-3, "the actions do not reach the UNet's output"
        with unet.bind_actions(left):  # the pipeline's way in: bound for one call
            assert torch.equal(unet(sample, 10.0, hidden, time_ids).sample, out_left)
        assert unet._bound_actions is None
        # Classifier-free guidance doubles the batch: both halves get the item's actions.
        doubled = unet(torch.cat([sample] * 2), 10.0, torch.cat([hidden] * 2), torch.cat([time_ids] * 2),
                       actions=left).sample
        explicit = unet(torch.cat([sample] * 2), 10.0, torch.cat([hidden] * 2), torch.cat([time_ids] * 2),
                        actions=torch.cat([left] * 2)).sample
        assert torch.equal(doubled, explicit)
        with pytest.raises(ValueError, match="needs actions"):
            unet(sample, 10.0, hidden, time_ids)
        with pytest.raises(ValueError, match="14"):
            unet(sample, 10.0, hidden, time_ids, actions=torch.zeros(1, 4, 10))
        with pytest.raises(ValueError, match="frames"):
            unet(sample, 10.0, hidden, time_ids, actions=torch.zeros(1, 3, 14))
    with pytest.raises(RuntimeError, match="boom"):
        with unet.bind_actions(left):
            raise RuntimeError("boom")
    assert unet._bound_actions is None


# -- action encoding --------------------------------------------------------------------------------

def test_navigation_encoding():
    # The row-opening stop is dropped; ids are one-hot channels; L ids dividing T frames repeat.
    enc = navigation_actions([4, 1, 2], 4)
    assert enc.shape == (4, NAVIGATION_CHANNELS) and enc.dtype == np.float32
    assert enc.argmax(1).tolist() == [1, 1, 2, 2] and np.allclose(enc.sum(1), 1.0)
    assert not enc[:, 5:].any()
    # More ids than frames: every id still contributes (area weights), each frame sums to 1.
    enc = navigation_actions([4, 1, 1, 2, 1, 3, 1], 4)
    assert np.allclose(enc.sum(1), 1.0) and (enc.sum(0)[[1, 2, 3]] > 0).all()
    assert np.allclose(enc.sum(0) * 6 / 4, [0, 4, 1, 1] + [0] * 10)
    # A stop that does not open the row stays; an empty row is all zero.
    assert navigation_actions([1, 4], 2).argmax(1).tolist() == [1, 4]
    assert not navigation_actions([4], 3).any()


def test_manipulation_encoding():
    a = manipulation_actions("Pick up the red cup.", 4)
    assert a.shape == (4, MANIPULATION_CHANNELS) and a.dtype == np.float32
    assert np.array_equal(a, manipulation_actions("pick up the red cup", 4))  # case and punctuation
    assert (a == a[0]).all() and np.isclose(np.linalg.norm(a[0]), 1.0)
    assert not np.allclose(a, manipulation_actions("open the drawer", 4))


# -- generation ------------------------------------------------------------------------------------

def test_output_dtype_and_shape(ft_model, ft_out):
    assert_uint8_video(ft_model, ft_out, 2, shape=(2, 4, 3, 32, 32))
    assert ft_out.std() > 5.0 and len(np.unique(ft_out)) > 32


def test_same_seed_is_bitwise_equal(ft_model, ft_out):
    assert np.array_equal(ft_model.generate(_request()), ft_out)
    assert ft_model.components()["unet"]._bound_actions is None  # no actions left behind


def test_different_seed_differs(ft_model, ft_out):
    other = ft_model.generate(_request(seed=(21, 22)))
    assert mean_abs_diff(other, ft_out) >= 1.0


def test_batch_item_equals_item_alone(ft_model, ft_out):
    # The items carry different actions, so this also checks each item gets its own.
    assert_batch_items_equal_items_alone(ft_model, _request(), ft_out)


def test_actions_change_the_output(ft_model, ft_out):
    # Item 0 of ft_out is NAV[0] with seed 11: the same image and seed with other actions.
    other = ft_model.generate(_request(seed=11, batch=1, actions=[[4, 3, 3, 3]]))
    assert mean_abs_diff(other[0], ft_out[0]) >= 1.0
    # Only the ids after the row-opening stop count.
    assert np.array_equal(ft_model.generate(_request(seed=11, batch=1, actions=[[1, 1, 2]])), ft_out[:1])


def test_ft_differs_from_zero_shot(ft_model, ft_out):
    request = _request()
    with ft_model.zero_shot():
        zero = ft_model.generate(request)
    assert mean_abs_diff(ft_out, zero) >= 2.0  # the suite asks for 1
    assert np.array_equal(ft_model.generate(request), ft_out)  # the action UNet is back


def test_zero_shot_equals_svd_wrapper(ft_model, base_model):
    request = _request()
    with ft_model.zero_shot():
        zero = ft_model.generate(request)
        # The base UNet takes no actions: other actions give the same video.
        assert np.array_equal(ft_model.generate(_request(actions=[[4, 2], [4, 2]])), zero)
    svd_request = _request("svd")
    assert np.array_equal(zero, base_model.generate(svd_request))


def test_zero_shot_restores_on_error(ft_model):
    assert_zero_shot_restores_on_error(ft_model, "unet")


def test_shares_modules_with_base(ft_model):
    assert_shares_modules_with_base(ft_model, "unet", shared=("vae", "image_encoder"))


def test_classifier_free_guidance(tiny):
    # guidance_scale > 1 doubles the UNet batch; actions still reach (and change) the output.
    model = _load("igen", tiny["ft"], base=tiny["base"], guidance_scale=2.5)
    a = model.generate(_request(seed=3, batch=1, actions=[[4, 1, 1]]))
    b = model.generate(_request(seed=3, batch=1, actions=[[4, 2, 2]]))
    assert not model.nonfinite_seen and mean_abs_diff(a, b) >= 1.0


def test_no_global_rng(ft_model):
    state = torch.get_rng_state()
    ft_model.generate(_request(seed=9, batch=1))
    assert torch.equal(state, torch.get_rng_state())


# -- tasks -----------------------------------------------------------------------------------------

def test_manipulation_checkpoint(tiny, ft_model):
    model = _load("igen", tiny["manip"], base=tiny["base"])
    assert model.task == "manipulation" and model.action_channels == MANIPULATION_CHANNELS
    request = _request(task="manipulation", seed=5)
    model.validate_request(request)
    out = model.generate(request)
    assert out.shape == (2, 4, 3, 32, 32)
    assert mean_abs_diff(out[0], out[1]) >= 1.0  # same seed, other instruction
    with pytest.raises(RequestError, match="^task_type: .*action_input_channel 14"):
        model.validate_request(_request())
    with pytest.raises(RequestError, match="^task_type: .*action_input_channel 10"):
        ft_model.validate_request(_request(task="manipulation"))


# -- weights ---------------------------------------------------------------------------------------

def test_fingerprints_agree_with_files(ft_model):
    assert_fingerprints_agree(ft_model)
    running = ft_model.weight_fingerprints()
    assert all(k.startswith("unet/") for k in running)
    # Inside zero_shot() the fingerprints still name the loaded action UNet (the checkpoint under test).
    with ft_model.zero_shot():
        assert ft_model.weight_fingerprints().keys() == running.keys()


def test_flat_component_layout(tiny, ft_out):
    model = _load("igen", tiny["flat"], base=tiny["base"])
    assert_flat_component_checkpoint(model)
    assert np.array_equal(model.generate(_request()), ft_out)


def test_fingerprints_catch_the_base_unet(tiny):
    # The running action UNet held against the base pipeline's unet/ files must disagree.
    model = _load("igen", tiny["ft"], base=tiny["base"])
    assert_fingerprints_catch_base_weights(model, tiny["base"], "unet")


# -- make_tiny and bad checkpoints -----------------------------------------------------------------

def test_make_tiny_is_reproducible(tiny, tmp_path):
    again = make_tiny_leaving_rng(ActionConditionedSVD, "igen", tmp_path / "again", base=tiny["base"], seed=0)
    first = checkpoint.open_checkpoint(tiny["ft"])
    assert checkpoint.open_checkpoint(again).sha256() == first.sha256()
    other = ActionConditionedSVD.make_tiny("igen", tmp_path / "other", base=tiny["base"], seed=1)
    assert checkpoint.open_checkpoint(other).sha256() != first.sha256()
    with pytest.raises(CheckpointError, match="base"):
        ActionConditionedSVD.make_tiny("igen", tmp_path / "nobase")


def test_plain_svd_unet_is_a_checkpoint_error(tiny, tmp_path):
    plain = copy_component(tiny["base"] / "unet", tmp_path / "plain", card_from=tiny["ft"])
    with pytest.raises(CheckpointError, match="action_input_channel"):
        _load("igen", plain, base=tiny["base"])


def test_missing_base_or_pipeline_as_unet_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load("igen", tiny["ft"])
    with pytest.raises(CheckpointError, match="action UNet"):
        _load("igen", tiny["base"], base=tiny["base"])


def test_unet_that_does_not_fit_the_base_is_a_checkpoint_error(tiny, tmp_path):
    bad = save_altered_component(ActionUNetSpatioTemporalConditionModel, tiny["ft"] / "unet", tmp_path / "bad",
                                 card_from=tiny["ft"], subfolder="unet", cross_attention_dim=16)
    with pytest.raises(CheckpointError, match="cross_attention_dim 16"):
        _load("igen", bad, base=tiny["base"])


def test_action_unet_without_embedder_weights_is_a_checkpoint_error(tiny, tmp_path):
    # An action config over the base UNet's weights: diffusers would initialise the embedder at random.
    bad = tmp_path / "noembed"
    (bad / "unet").mkdir(parents=True)
    shutil.copy(tiny["ft"] / "unet" / "config.json", bad / "unet" / "config.json")
    shutil.copy(tiny["base"] / "unet" / "diffusion_pytorch_model.safetensors", bad / "unet")
    shutil.copy(tiny["ft"] / "README.md", bad / "README.md")
    with pytest.raises(CheckpointError, match="missing from the weights"):
        _load("igen", bad, base=tiny["base"])
