"""wrappers.igen (WIW's SVD-dagger) on real tiny checkpoints in WIW's layout, loaded like the worker.

The forward test holds our UNet against a re-statement of WIW's micro_cond arithmetic written here
(WIW's FTsvd unet_spatio_temporal_condition.py forward and embeddings.py ActionEmbedder_), run on a plain
diffusers UNet with the same weights: the action modules are applied by hand, not through our module.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import torch.nn.functional as F  # noqa: E402
from diffusers import UNetSpatioTemporalConditionModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from wrapper_helpers import (  # noqa: E402
    assert_batch_items_equal_items_alone,
    assert_fingerprints_agree,
    assert_fingerprints_catch_base_weights,
    assert_shares_modules_with_base,
    assert_uint8_video,
    assert_zero_shot_restores_on_error,
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    one_thread,  # noqa: F401  (autouse: one torch thread for this module)
    reference_request,
)

from pytest_wiw.checkpoints import files as checkpoint  # noqa: E402
from pytest_wiw.api import CheckpointError, RequestError, SpecError  # noqa: E402
from wrappers.igen import (  # noqa: E402
    MANIPULATION_CHANNELS,
    NAVIGATION_CHANNELS,
    ActionConditionedSVD,
    SVDaggerUNet,
    manipulation_actions,
    navigation_actions,
    navigation_row,
    roll_noise_for_turns,
)
from wrappers.svd import TINY_GENERATION, StableVideoDiffusion  # noqa: E402

NAV = [[4, 1, 1, 2], [4, 3, 3, 1]]
TINY_POSES = [[0.2, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0], [0.3, 0.1, 1.1, 0.0, 0.0, 0.3826834, 0.9238795, 0.0]]


def _load(path, base=None, wm_type="igen", options=None, **generation):
    cls = ActionConditionedSVD if wm_type == "igen" else StableVideoDiffusion
    return load_wrapper(cls, wm_type, path, base, options=options, **generation)


def _request(wm_type="igen", seed=(11, 12), batch=2, actions=None, task="navigation", extra=None):
    if actions is None:
        actions = NAV[:batch] if task == "navigation" else ["pick up the red cup", "open the drawer"][:batch]
    req = reference_request(wm_type, seed, batch, actions=actions, task_type=task)
    if extra:
        req = type(req)(req.images, req.actions, req.task_type, req.seed, req.request_model_name, extra)
    return req


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("igen")
    base = StableVideoDiffusion.make_tiny("svd", root / "svd", seed=0)
    ft = ActionConditionedSVD.make_tiny("igen", root / "igen", base=base, seed=0)
    manip = ActionConditionedSVD.make_tiny("igen", root / "manip", base=base, seed=0, channels=MANIPULATION_CHANNELS)
    return {"base": base, "ft": ft, "manip": manip, "root": root}


@pytest.fixture(scope="module")
def ft_model(tiny):
    return _load(tiny["ft"], tiny["base"])


@pytest.fixture(scope="module")
def ft_out(ft_model):
    return ft_model.generate(_request())


# -- WIW's forward, re-stated ------------------------------------------------------------------------
FREQS = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
FORWARD_CONFIG = dict(  # tiny, but with SVD's addition_time_embed_dim 256: WIW hard-codes that width
    sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
    num_attention_heads=(2, 4), addition_time_embed_dim=256, projection_class_embeddings_input_dim=768)


def _mlp(w, name, x):
    return F.linear(F.silu(F.linear(x, w[f"{name}.linear_1.weight"], w[f"{name}.linear_1.bias"])),
                    w[f"{name}.linear_2.weight"], w[f"{name}.linear_2.bias"])


def wiw_forward(plain, w, sample, t, hidden, time_ids, actions):
    """WIW's micro_cond UNet forward: plain SVD blocks, per-frame emb = time + action + noise augmentation."""
    b, frames = sample.shape[:2]
    emb = plain.time_embedding(plain.time_proj(torch.full((b,), t)).to(sample.dtype))
    # ActionEmbedder_: per element cos/sin at 6 frequencies, stacked last, flattened channel-major.
    feats = torch.stack([f(k * actions) for k in FREQS for f in (torch.cos, torch.sin)], dim=-1)
    feats = feats.view(actions.shape[0], actions.shape[1], -1)
    act = _mlp(w, "add_embedding_action", F.linear(feats, w["add_action_proj.proj.weight"],
                                                   w["add_action_proj.proj.bias"]))
    if not torch.is_grad_enabled():
        act = act.repeat(1, 2, 1)  # WIW: b t c -> b 2t c, for the guidance halves (batch of one item)
    act = act.reshape(-1, act.shape[-1])
    noise = _mlp(w, "add_embedding_noise", plain.add_time_proj(time_ids[:, -1].flatten()))
    emb = emb.repeat_interleave(frames, dim=0) + act + noise.repeat_interleave(frames, dim=0)
    # SVD's blocks, as diffusers runs them.
    x = plain.conv_in(sample.flatten(0, 1))
    hidden = hidden.repeat_interleave(frames, dim=0)
    ind = torch.zeros(b, frames)
    res = (x,)
    for blk in plain.down_blocks:
        kw = {"encoder_hidden_states": hidden} if getattr(blk, "has_cross_attention", False) else {}
        x, r = blk(hidden_states=x, temb=emb, image_only_indicator=ind, **kw)
        res += r
    x = plain.mid_block(hidden_states=x, temb=emb, encoder_hidden_states=hidden, image_only_indicator=ind)
    for blk in plain.up_blocks:
        r, res = res[-len(blk.resnets):], res[: -len(blk.resnets)]
        kw = {"encoder_hidden_states": hidden} if getattr(blk, "has_cross_attention", False) else {}
        x = blk(hidden_states=x, temb=emb, res_hidden_states_tuple=r, image_only_indicator=ind, **kw)
    x = plain.conv_out(F.silu(plain.conv_norm_out(x)))
    return x.reshape(b, frames, *x.shape[1:])


@pytest.mark.parametrize("channels", [NAVIGATION_CHANNELS, MANIPULATION_CHANNELS])
def test_forward_equals_wiw_arithmetic(channels):
    torch.manual_seed(3)
    ours = SVDaggerUNet(**FORWARD_CONFIG, action_input_channel=channels).eval()
    with torch.no_grad():  # random action modules big enough to matter
        for name, p in ours.named_parameters():
            if name.startswith("add_"):
                p.copy_(torch.randn_like(p) * 0.2)
    weights = ours.state_dict()
    plain = UNetSpatioTemporalConditionModel(**FORWARD_CONFIG).eval()
    plain.load_state_dict({k: v for k, v in weights.items() if not k.startswith(("add_action", "add_embedding_a",
                                                                                  "add_embedding_n"))})
    g = torch.Generator().manual_seed(0)
    frames = 14
    if channels == NAVIGATION_CHANNELS:
        actions = torch.from_numpy(navigation_actions([4, 1, 2, 3, 1]))[None]
    else:
        actions = torch.from_numpy(manipulation_actions(TINY_POSES, frames))[None]
    time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    for batch in (1, 2):  # 1: WIW's training arithmetic (grad on); 2: inference with guidance (grad off)
        sample = torch.randn(batch, frames, 8, 8, 8, generator=g)
        hidden = torch.randn(batch, 1, 32, generator=g)
        ids = time_ids.repeat(batch, 1)
        grad = torch.enable_grad() if batch == 1 else torch.no_grad()
        with grad:
            got = ours(sample, 20.0, hidden, ids, added_action_ids=actions).sample
            want = wiw_forward(plain, weights, sample, 20.0, hidden, ids, actions)
        assert got.shape == sample[:, :, :4].shape
        assert (got - want).abs().max().item() < 1e-5
        # The action and noise paths carry weight: other actions move the output.
        with grad:
            other = ours(sample, 20.0, hidden, ids, added_action_ids=actions * 0.5).sample
        assert (other - got).abs().max().item() > 1e-3
    assert ours.add_action_proj.proj.weight.shape == (256, 12 * channels)


# -- action encoding --------------------------------------------------------------------------------
def test_navigation_encoding_is_wiws_prefix_rows():
    enc = navigation_actions([4, 1, 2, 3])
    row = [4, 1, 2, 3] + [1] * 10  # WIW's planner pads with forward to 14 ids
    assert navigation_row([4, 1, 2, 3]) == row and navigation_row([1, 2, 3]) == row  # a leading stop is dropped
    want = np.zeros((14, 14), np.float32)
    for i in range(14):  # action_ids_idx_encode: frame i holds the first i+1 ids (the first forced to stop)
        want[i, : i + 1] = row[: i + 1]
    assert enc.dtype == np.float32 and np.array_equal(enc, want)
    assert np.array_equal(np.diagonal(enc), row)
    with pytest.raises(ValueError, match="13"):
        navigation_row([4] + [1] * 14)


def test_manipulation_encoding_matches_wiws_normalisation():
    from scipy.spatial.transform import Rotation

    poses = np.array(TINY_POSES)
    enc = manipulation_actions(poses, 2)
    centre, span = np.array([0.2, 0.0, 1.1]), np.ones(3)
    xyz = ((np.clip(2 * (poses[:, :3] - centre) / span, -1, 1) + 1) / 2) * 4 * np.pi - 2 * np.pi
    r6 = Rotation.from_quat(poses[:, 3:7]).as_matrix()[:, :, :2].reshape(-1, 6)
    rot = ((np.clip(r6, -1, 1) + 1) / 2) * 2 * np.pi - np.pi
    grip = np.clip(poses[:, 7:], 0, 1) * 2 * np.pi - np.pi
    assert enc.shape == (2, 10) and np.allclose(enc, np.concatenate([xyz, rot, grip], 1), atol=1e-6)
    # A plan of another length: WIW's planner's uniform subsample (linspace, truncated).
    plan = np.array([TINY_POSES[0]] * 20)
    plan[:, 0] = np.linspace(-0.3, 0.7, 20)
    sub = manipulation_actions(plan, 14)
    assert np.allclose(sub, manipulation_actions(plan[np.linspace(0, 19, 14).astype(int)], 14))
    with pytest.raises(ValueError, match="8"):
        manipulation_actions([[0.0] * 7], 14)


def test_turns_roll_the_noise():
    noise = torch.arange(2 * 4 * 16, dtype=torch.float32).reshape(1, 4, 2, 1, 16)
    rolled = roll_noise_for_turns(noise, [4, 2, 3, 1])
    assert torch.equal(rolled[:, 0], noise[:, 0]) and torch.equal(rolled[:, 3], noise[:, 3])
    assert torch.equal(rolled[:, 1], torch.roll(noise[:, 0], 1, dims=-1))  # left: +1/16 of the width
    assert torch.equal(rolled[:, 2], noise[:, 0])  # right after left: back where frame 0 was
    with pytest.raises(ValueError, match="16"):
        roll_noise_for_turns(torch.zeros(1, 2, 1, 1, 12), [4, 2])


# -- the checkpoint ---------------------------------------------------------------------------------
def test_tiny_checkpoint_is_wiws_layout(tiny, ft_model):
    ckpt = tiny["ft"]
    assert ckpt.name == "checkpoint-6000"
    assert sorted(p.name for p in (ckpt / "unet").iterdir()) == ["config.json",
                                                                 "diffusion_pytorch_model.fp16.safetensors"]
    config = json.loads((ckpt / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNetSpatioTemporalConditionModel"
    assert not {"action_input_channel", "task_type", "action_strategy"} & set(config)
    keys = load_file(str(ckpt / "unet" / "diffusion_pytorch_model.fp16.safetensors"))
    assert keys["add_action_proj.proj.weight"].shape == (256, 12 * 14) and keys["conv_in.weight"].dtype == torch.float16
    assert any(k.startswith("add_embedding_noise.") for k in keys) and any(k.startswith("add_embedding.") for k in keys)
    opened = checkpoint.open_checkpoint(ckpt)
    assert opened.format == "component-folder" and opened.card["base_model"] == str(tiny["base"])
    assert sorted(n.split(" ")[0] for n in opened.not_opened) == ["optimizer.bin", "random_states_0.pkl", "scaler.pt",
                                                                  "scheduler.bin"]
    assert checkpoint.card_generation(opened.card) == TINY_GENERATION
    assert ft_model.task == "navigation" and ft_model.tasks == ("navigation",)
    assert any("action_input_channel 14" in n and "navigation" in n for n in ft_model.notes)
    assert type(ft_model).version == "2"


def test_unet_ema_is_reported_and_picked_by_option(tiny, ft_out, tmp_path):
    ckpt = shutil.copytree(tiny["ft"], tmp_path / "checkpoint-7000")
    shutil.copytree(ckpt / "unet", ckpt / "unet_ema")
    f = ckpt / "unet_ema" / "diffusion_pytorch_model.fp16.safetensors"
    state = load_file(str(f))
    save_file({k: v * 0.9 for k, v in state.items()}, str(f), metadata={"format": "pt"})
    model = _load(ckpt, tiny["base"])
    assert any("unet_ema/ is present and not used" in n for n in model.notes)
    assert [model.ckpt.rel(p) for p in model.ckpt.files] == ["unet/diffusion_pytorch_model.fp16.safetensors"]
    assert any(n.startswith("unet_ema/") for n in model.ckpt.not_opened)
    assert_fingerprints_agree(model)
    assert np.array_equal(model.generate(_request()), ft_out)
    ema = _load(ckpt, tiny["base"], options={"unet": "ema"})
    assert [ema.ckpt.rel(p) for p in ema.ckpt.files] == ["unet_ema/diffusion_pytorch_model.fp16.safetensors"]
    assert_fingerprints_agree(ema)
    assert mean_abs_diff(ema.generate(_request()), ft_out) > 0.5
    with pytest.raises(SpecError, match="unet='best'"):
        _load(ckpt, tiny["base"], options={"unet": "best"})


def test_bare_unet_folder_and_full_precision_first(tiny, ft_out, tmp_path):
    bare = shutil.copytree(tiny["ft"] / "unet", tmp_path / "unet")
    model = _load(bare, tiny["base"], **TINY_GENERATION)
    assert model.ckpt.format == "component" and np.array_equal(model.generate(_request()), ft_out)
    assert_fingerprints_agree(model)
    # Both files: the user says which (WIW's loader takes the full-precision one: variant=none).
    state = load_file(str(bare / "diffusion_pytorch_model.fp16.safetensors"))
    save_file({k: v.float() * 1.1 for k, v in state.items()}, str(bare / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="--wm-opt variant=NAME"):
        _load(bare, tiny["base"], **TINY_GENERATION)
    both = _load(bare, tiny["base"], options={"variant": "none"}, **TINY_GENERATION)
    assert any("unet/diffusion_pytorch_model.safetensors" in n for n in both.notes)
    assert [both.ckpt.rel(p) for p in both.ckpt.files] == ["diffusion_pytorch_model.safetensors"]
    assert_fingerprints_agree(both)


def test_sharded_fp16_weights(tiny, ft_out, tmp_path):
    ckpt = shutil.copytree(tiny["ft"], tmp_path / "checkpoint-8")
    single = ckpt / "unet" / "diffusion_pytorch_model.fp16.safetensors"
    state = load_file(str(single))
    single.unlink()
    keys = sorted(state)
    shards = {f"diffusion_pytorch_model.fp16-0000{i + 1}-of-00002.safetensors": keys[i::2] for i in range(2)}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(ckpt / "unet" / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (ckpt / "unet" / "diffusion_pytorch_model.fp16.safetensors.index.json").write_text(json.dumps(index))
    model = _load(ckpt, tiny["base"])
    assert len(model.ckpt.files) == 2 and np.array_equal(model.generate(_request()), ft_out)
    assert_fingerprints_agree(model)


def test_missing_action_modules_name_them(tiny, tmp_path):
    bad = ActionConditionedSVD.make_tiny("igen", tmp_path / "bad", base=tiny["base"], drop=("add_action_proj",))
    with pytest.raises(CheckpointError, match="lack add_action_proj"):
        _load(bad, tiny["base"])
    plain = ActionConditionedSVD.make_tiny("igen", tmp_path / "plain", base=tiny["base"],
                                           drop=("add_action_proj", "add_embedding_action", "add_embedding_noise"))
    with pytest.raises(CheckpointError, match="add_action_proj, add_embedding_action, add_embedding_noise"):
        _load(plain, tiny["base"])


def test_channel_count_decides_the_task(tiny, tmp_path):
    odd = ActionConditionedSVD.make_tiny("igen", tmp_path / "odd", base=tiny["base"], channels=12)
    with pytest.raises(CheckpointError, match="task_type"):
        _load(odd, tiny["base"])
    with pytest.raises(SpecError, match="num_frames must be 12"):
        _load(odd, tiny["base"], options={"task_type": "navigation"})
    with pytest.raises(CheckpointError, match="manipulation needs action_input_channel 10"):
        _load(odd, tiny["base"], options={"task_type": "manipulation"})
    with pytest.raises(CheckpointError, match="the UNet takes 14"):
        _load(tiny["ft"], tiny["base"], options={"task_type": "manipulation"})


def test_pipeline_folder_or_missing_base_is_a_checkpoint_error(tiny):
    with pytest.raises(CheckpointError, match="base"):
        _load(tiny["ft"])
    with pytest.raises(CheckpointError, match="checkpoint-N"):
        _load(tiny["base"], tiny["base"])


# -- generation ------------------------------------------------------------------------------------
def test_output_and_determinism(ft_model, ft_out):
    assert_uint8_video(ft_model, ft_out, 2, shape=(2, 4, 3, 32, 32))
    assert np.array_equal(ft_model.generate(_request()), ft_out)
    assert mean_abs_diff(ft_model.generate(_request(seed=(21, 22))), ft_out) >= 1.0
    assert ft_model.components()["unet"]._bound_actions is None and ft_model.pipe._turn_ids is None


def test_batch_item_equals_item_alone(ft_model, ft_out):
    assert_batch_items_equal_items_alone(ft_model, _request(), ft_out)


def test_actions_change_the_output(ft_model, ft_out):
    other = ft_model.generate(_request(seed=11, batch=1, actions=[[4, 3, 3, 3]]))
    assert mean_abs_diff(other[0], ft_out[0]) >= 1.0
    # Only the ids after the row-opening stop count; WIW pads a short row with forward.
    assert np.array_equal(ft_model.generate(_request(seed=11, batch=1, actions=[[1, 1, 2]])), ft_out[:1])
    assert np.array_equal(ft_model.generate(_request(seed=11, batch=1, actions=[[4, 1, 1, 2, 1]])), ft_out[:1])


def test_turns_reach_the_initial_noise(ft_model):
    pipe = ft_model.pipe
    args = (1, 14, 8, 32, 32, torch.float32, "cpu")
    plain = pipe.prepare_latents(*args, torch.Generator().manual_seed(5))
    with pipe.bind_turns(navigation_row([4, 2, 3, 1])):
        turned = pipe.prepare_latents(*args, torch.Generator().manual_seed(5))
    assert torch.equal(turned[:, 1], torch.roll(plain[:, 0], 1, dims=-1)) and torch.equal(turned[:, 3], plain[:, 3])


def test_zero_shot_is_svd_at_the_same_settings(tiny, ft_model, ft_out):
    with ft_model.zero_shot():
        zero = ft_model.generate(_request())
        assert np.array_equal(ft_model.generate(_request(actions=[[4, 2], [4, 2]])), zero)  # no actions reach SVD
    assert mean_abs_diff(ft_out, zero) >= 2.0
    assert np.array_equal(ft_model.generate(_request()), ft_out)  # the SVD-dagger UNet is back
    assert np.array_equal(zero, _load(tiny["base"], wm_type="svd").generate(_request("svd")))


def test_zero_shot_restores_and_shares_modules(ft_model):
    assert_zero_shot_restores_on_error(ft_model, "unet")
    assert_shares_modules_with_base(ft_model, "unet", shared=("vae", "image_encoder"))


def test_fingerprints(tiny, ft_model):
    assert_fingerprints_agree(ft_model)
    assert all(k.startswith("unet/") for k in ft_model.weight_fingerprints())
    assert_fingerprints_catch_base_weights(_load(tiny["ft"], tiny["base"]), tiny["base"], "unet")


def test_options_reach_the_zero_shot_svd(tiny, ft_model):
    # fps and motion bucket go through SVD's add_embedding, which SVD-dagger does not use.
    request = _request(batch=1, seed=4)
    other = _load(tiny["ft"], tiny["base"], options={"fps": "3", "motion_bucket_id": "40"})
    assert np.array_equal(other.generate(request), ft_model.generate(request))
    with other.zero_shot(), ft_model.zero_shot():
        assert mean_abs_diff(other.generate(request), ft_model.generate(request)) > 0.1
    noisier = _load(tiny["ft"], tiny["base"], options={"noise_aug_strength": "0.5"})
    assert mean_abs_diff(noisier.generate(request), ft_model.generate(request)) > 0.1


def test_no_global_rng(ft_model):
    state = torch.get_rng_state()
    ft_model.generate(_request(seed=9, batch=1))
    assert torch.equal(state, torch.get_rng_state())


def test_make_tiny_is_reproducible(tiny, tmp_path):
    again = make_tiny_leaving_rng(ActionConditionedSVD, "igen", tmp_path / "again", base=tiny["base"], seed=0)
    assert checkpoint.open_checkpoint(again).sha256() == checkpoint.open_checkpoint(tiny["ft"]).sha256()
    other = ActionConditionedSVD.make_tiny("igen", tmp_path / "other", base=tiny["base"], seed=1)
    assert checkpoint.open_checkpoint(other).sha256() != checkpoint.open_checkpoint(tiny["ft"]).sha256()
    with pytest.raises(CheckpointError, match="base"):
        ActionConditionedSVD.make_tiny("igen", tmp_path / "nobase")


# -- manipulation ----------------------------------------------------------------------------------
def test_manipulation_checkpoint_takes_poses(tiny, ft_model):
    model = _load(tiny["manip"], tiny["base"])
    assert model.task == "manipulation" and model.tasks == ("manipulation",)
    assert any("serves manipulation" in n and "no --wm-opt task_type" in n for n in model.notes)
    with pytest.raises(RequestError, match="^actions: .*poses"):
        model.validate_request(_request(task="manipulation"))
    with pytest.raises(RequestError, match="^task_type: .*navigation"):
        ft_model.validate_request(_request(task="manipulation"))
    with pytest.raises(RequestError, match="^task_type: .*manipulation"):
        model.validate_request(_request())
    with pytest.raises(RequestError, match=r"^extra.poses\[0\]"):
        model.validate_request(_request(task="manipulation", extra={"poses": [[[0.0] * 5], TINY_POSES]}))
    a = _request(task="manipulation", seed=5, extra={"poses": [TINY_POSES, TINY_POSES]})
    b = _request(task="manipulation", seed=5, extra={"poses": [TINY_POSES, TINY_POSES[::-1]]})
    model.validate_request(a)
    out_a, out_b = model.generate(a), model.generate(b)
    assert out_a.shape == (2, 4, 3, 32, 32)
    assert np.array_equal(out_a[0], out_b[0]) and mean_abs_diff(out_a[1], out_b[1]) >= 0.5
