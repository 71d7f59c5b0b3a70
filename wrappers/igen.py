"""igen: WIW's SVD-dagger (``FTsvd/``), an action-conditioned Stable Video Diffusion: wm_type ``igen``.

The architecture (WIW's ``micro_cond`` action strategy), re-implemented here from WIW's description:
SVD's ``UNetSpatioTemporalConditionModel`` plus three modules,

* ``add_action_proj``: one action vector per frame (``action_input_channel`` wide) expanded to cos and
  sin features at ``ACTION_FREQUENCIES`` (12 per channel, grouped by channel) and projected to 256 by
  ``add_action_proj.proj`` (a Linear, weight ``[256, 12 x channels]``);
* ``add_embedding_action``: a ``TimestepEmbedding(256, time_embed_dim)`` on those features;
* ``add_embedding_noise``: a ``TimestepEmbedding`` on the sinusoidal embedding of the noise-augmentation
  level (the last of SVD's ``added_time_ids``).

Each frame's embedding is time + action + noise augmentation; SVD's ``add_embedding`` (fps, motion
bucket, noise level together) is in the weights but not used, so fps and motion bucket do not reach the
fine-tuned UNet (they do reach the zero-shot SVD).

Checkpoint (what WIW's training leaves, see docs/igen.md): an accelerate ``checkpoint-N/`` folder with
``unet/`` (config.json WITHOUT the action kwargs, weights as ``diffusion_pytorch_model.safetensors`` or
only the fp16 variant), training-state pickles beside it (never opened) and optionally ``unet_ema/``
(not used unless ``--wm-opt unet=ema``); or a bare ``unet/`` folder. ``action_input_channel`` comes
from the shape of ``add_action_proj.proj.weight``, the task from it (14: navigation, 10:
manipulation, else ``--wm-opt task_type=``). The base is an SVD img2vid pipeline folder.

Actions, as WIW's worker and clients build them (``utils/svd_utils.py``, ``solver_base.py``,
``action_igenex_planner.py``):

* navigation: a row of ``action_input_channel`` ids (14): the stop id, the motions, then forward ids up
  to the row's length (WIW's planner pads with forward). Frame i gets the row's first i+1 ids, zeros
  after (``added_action_ids`` is ``(B, 14, 14)``, lower-triangular). The initial latent noise of frame i
  is frame i-1's rolled by a sixteenth of the latent width (22.5 degrees of a panorama) when id i
  turns (2 left: +, 3 right: -), else freshly drawn.
* manipulation: 14 end-effector poses ``[x, y, z, qx, qy, qz, qw, gripper_open]`` per item (WIW's
  planner subsamples its plan to 14), each normalised to 10 values: xyz in WIW's scene bounds, the first
  two columns of the rotation matrix and the gripper, mapped onto +-2pi (xyz) and +-pi (the rest).
  GenerationRequest carries poses in ``extra["poses"]`` (one list of [8 floats] per item); an
  instruction alone is refused: WIW has no instruction-to-action encoding for igen.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device
from safetensors.torch import save_file

from pytest_wiw.api import CheckpointError, GenerationRequest, RequestError, SpecError, read_card

from . import svd
from .common.component_swap import (
    ComponentSwapModel,
    FineTunedComponent,
    check_fits_base,
    pair_pipelines,
    require_base_pipeline,
)
from .common.loading import LOAD_ERRORS, load_pretrained, read_safetensors, safetensors_shapes
from .common.offload import offload_mode
from .common.tiny import save_tiny

# -- WIW's numbers ---------------------------------------------------------------------------------
#: Action vector widths WIW's igen checkpoints take, per task (``--action_input_channel``).
NAVIGATION_CHANNELS = 14
MANIPULATION_CHANNELS = 10
TASK_OF_CHANNELS = {NAVIGATION_CHANNELS: "navigation", MANIPULATION_CHANNELS: "manipulation"}
TASKS = ("navigation", "manipulation")
#: ActionEmbedder_'s cos/sin multipliers: 12 features per action channel.
ACTION_FREQUENCIES = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
FEATURES_PER_CHANNEL = 2 * len(ACTION_FREQUENCIES)
#: ActionEmbedder_'s output width, the input width of add_embedding_action.
ACTION_EMBED_DIM = 256
#: The modules SVD-dagger adds to SVD's UNet (WIW's names: its checkpoints' keys start with them).
ACTION_MODULES = ("add_action_proj", "add_embedding_action", "add_embedding_noise")
ACTION_PROJ_KEY = "add_action_proj.proj.weight"
#: WIW's navigation ids (downstream/api_models IGENEX_ACTION_IDS).
STOP, FORWARD, TURN_LEFT, TURN_RIGHT = 4, 1, 2, 3
#: A turn of 22.5 degrees rolls the panorama-like latent noise by 1/16 of its width.
TURN_ROLL_DIVISOR = 16
#: Manipulation: WIW's workspace (SCENE_BOUNDS: x, y, z minima then maxima, metres) and value ranges.
SCENE_MIN = np.array([-0.3, -0.5, 0.6])
SCENE_MAX = np.array([0.7, 0.5, 1.6])
POSE_WIDTH = 8  # x, y, z, qx, qy, qz, qw, gripper_open
XYZ_RANGE = 2 * math.pi  # xyz onto [-2pi, 2pi]
ROT_GRIP_RANGE = math.pi  # rotation columns and gripper onto [-pi, pi]
#: Weight files of a UNet folder, in WIW's order: full precision first, then the fp16 variant.
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
#: The UNet folders of an accelerate checkpoint-N folder: the trained one, and its EMA copy.
UNET_FOLDERS = {"unet": "unet", "ema": "unet_ema"}
#: Options ``--wm-opt KEY=VALUE`` read here (svd's fps, motion_bucket_id, ... are read by svd.parse_options).
OPT_TASK, OPT_UNET = "task_type", "unet"
#: UNet config fields that must agree between the fine-tuned UNet and the base pipeline's.
ARCH_FIELDS = ("in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
               "addition_time_embed_dim", "projection_class_embeddings_input_dim", "layers_per_block",
               "cross_attention_dim", "transformer_layers_per_block", "num_attention_heads")
#: make_tiny: noise on the copied base UNet, in units of each tensor's std (plus a floor).
TINY_PERTURB_SCALE = 0.1
TINY_PERTURB_FLOOR = 0.01
#: make_tiny: the accelerate step the tiny checkpoint folder is named after, and its training-state files.
TINY_STEP = 6000
TINY_TRAINING_STATE = ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "scaler.pt")


# -- the model -------------------------------------------------------------------------------------
class ActionFeatureProjection(nn.Module):
    """WIW's ``ActionEmbedder_``: (B, T, C) actions -> cos/sin features (12 per channel) -> Linear to 256."""

    def __init__(self, input_channel: int, embed_dim: int = ACTION_EMBED_DIM):
        super().__init__()
        self.input_channel = input_channel
        self.proj = nn.Linear(input_channel * FEATURES_PER_CHANNEL, embed_dim)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        b, t, c = actions.shape
        if c != self.input_channel:
            raise ValueError(f"actions must be (batch, frames, {self.input_channel}), got {tuple(actions.shape)}")
        waves = []
        for f in ACTION_FREQUENCIES:
            waves += [torch.cos(actions * f), torch.sin(actions * f)]
        # (B, T, C, 12) flattened channel-major: channel c's 12 features side by side.
        features = torch.stack(waves, dim=-1).reshape(b, t, c * FEATURES_PER_CHANNEL)
        return self.proj(features.to(self.proj.weight.dtype))


class SVDaggerUNet(UNetSpatioTemporalConditionModel):
    """SVD's UNet with WIW's micro_cond action conditioning; its state dict is WIW's.

    ``action_input_channel`` is a constructor argument, not a config field (WIW's config.json lacks it).
    ``forward`` takes ``added_action_ids`` (B, T, C); a pipeline that does not know about actions
    (diffusers' StableVideoDiffusionPipeline) reaches them through ``bind_actions``.
    """

    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types: tuple[str, ...] = (
            "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int] = 2,
        cross_attention_dim: int | tuple[int] = 1024,
        transformer_layers_per_block: int | tuple[int, tuple[tuple]] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
        action_input_channel: int = NAVIGATION_CHANNELS,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=down_block_types, up_block_types=up_block_types,
            block_out_channels=block_out_channels, addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block, num_attention_heads=num_attention_heads,
            num_frames=num_frames)
        time_embed_dim = block_out_channels[0] * 4
        self.action_input_channel = action_input_channel
        self.add_action_proj = ActionFeatureProjection(action_input_channel)
        self.add_embedding_action = TimestepEmbedding(ACTION_EMBED_DIM, time_embed_dim)
        # WIW writes TimestepEmbedding(256, ...): the width of add_time_proj's output, SVD's
        # addition_time_embed_dim (256 in every released SVD). Taken from the config, so tiny configs work.
        self.add_embedding_noise = TimestepEmbedding(addition_time_embed_dim, time_embed_dim)
        self._bound_actions: torch.Tensor | None = None

    @contextlib.contextmanager
    def bind_actions(self, actions: torch.Tensor) -> Iterator[None]:
        """Within this context, a forward call without ``added_action_ids`` uses these (B, T, C) actions."""
        if self._bound_actions is not None:
            raise RuntimeError("actions are bound already: bind_actions() does not nest")
        self._bound_actions = actions
        try:
            yield
        finally:
            self._bound_actions = None

    def frame_embedding(self, timesteps: torch.Tensor, added_time_ids: torch.Tensor, actions: torch.Tensor,
                        batch_size: int, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
        """(B*T, time_embed_dim), batch-major: time + action + noise-augmentation embedding per frame.

        A sample batch of twice the actions' (classifier-free guidance: unconditional then conditional
        half) gets each item's actions in both halves, as WIW's forward does at inference.
        """
        if actions.ndim != 3 or actions.shape[1] != num_frames:
            raise ValueError(f"added_action_ids must be (batch, {num_frames} frames, "
                             f"{self.action_input_channel}), got {tuple(actions.shape)}")
        if actions.shape[0] != batch_size:
            if batch_size != 2 * actions.shape[0]:
                raise ValueError(f"actions for {actions.shape[0]} items, the sample has a batch of {batch_size}")
            actions = torch.cat([actions, actions])
        time_emb = self.time_embedding(self.time_proj(timesteps).to(dtype=dtype))
        action_emb = self.add_embedding_action(self.add_action_proj(actions.to(device=time_emb.device)))
        noise_emb = self.add_embedding_noise(self.add_time_proj(added_time_ids[:, -1].flatten()).to(dtype))
        emb = time_emb.repeat_interleave(num_frames, dim=0) + action_emb.flatten(0, 1).to(dtype)
        return emb + noise_emb.repeat_interleave(num_frames, dim=0).to(dtype)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        return_dict: bool = True,
        added_action_ids: torch.Tensor | None = None,
    ) -> UNetSpatioTemporalConditionOutput | tuple:
        """diffusers' UNetSpatioTemporalConditionModel.forward (0.42) with WIW's per-frame embedding."""
        actions = added_action_ids if added_action_ids is not None else self._bound_actions
        if actions is None:
            raise ValueError(f"{type(self).__name__} needs added_action_ids (batch, frames, "
                             f"{self.action_input_channel}): pass them or call it inside bind_actions()")
        up_factor = 2**self.num_upsamplers
        forward_upsample_size = any(s % up_factor != 0 for s in sample.shape[-2:])
        upsample_size = None

        timesteps = timestep
        if not torch.is_tensor(timesteps):
            dtype = maybe_adjust_dtype_for_device(
                torch.float64 if isinstance(timestep, float) else torch.int64, sample.device)
            timesteps = torch.tensor([timesteps], dtype=dtype, device=sample.device)
        elif len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(sample.device)
        batch_size, num_frames = sample.shape[:2]
        timesteps = timesteps.expand(batch_size)
        emb = self.frame_embedding(timesteps, added_time_ids, actions, batch_size, num_frames, sample.dtype)

        sample = self.conv_in(sample.flatten(0, 1))
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
        residuals = (sample,)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                                    image_only_indicator=indicator)
            else:
                sample, res = block(hidden_states=sample, temb=emb, image_only_indicator=indicator)
            residuals += res
        sample = self.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                                image_only_indicator=indicator)
        for i, block in enumerate(self.up_blocks):
            res, residuals = residuals[-len(block.resnets):], residuals[: -len(block.resnets)]
            if i < len(self.up_blocks) - 1 and forward_upsample_size:
                upsample_size = residuals[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                               encoder_hidden_states=encoder_hidden_states, upsample_size=upsample_size,
                               image_only_indicator=indicator)
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                               upsample_size=upsample_size, image_only_indicator=indicator)
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
        return UNetSpatioTemporalConditionOutput(sample=sample) if return_dict else (sample,)


class SVDaggerPipeline(StableVideoDiffusionPipeline):
    """diffusers' SVD pipeline whose initial latent noise follows the bound navigation turns, as WIW's does."""

    _turn_ids: Sequence[int] | None = None

    @contextlib.contextmanager
    def bind_turns(self, row: Sequence[int] | None) -> Iterator[None]:
        """Within this context (one single-item call), frame i's noise is frame i-1's rolled when row[i] turns."""
        self._turn_ids = row
        try:
            yield
        finally:
            self._turn_ids = None

    def prepare_latents(self, *args, **kwargs):
        latents = super().prepare_latents(*args, **kwargs)
        if self._turn_ids is not None:
            latents = roll_noise_for_turns(latents, self._turn_ids)
        return latents


def roll_noise_for_turns(noise: torch.Tensor, row: Sequence[int]) -> torch.Tensor:
    """(1, T, C, H, W) noise: frame i becomes frame i-1 rolled by W/16 (+ left, - right) where row[i] turns.

    Frames are processed in order, so a run of turns keeps rolling the same draw (WIW's sample_latent_noise).
    """
    width = noise.shape[-1]
    if width % TURN_ROLL_DIVISOR:
        raise ValueError(f"latent width {width} is not divisible by {TURN_ROLL_DIVISOR}: a 22.5-degree turn "
                         "rolls the noise by a sixteenth of it")
    shift = {TURN_LEFT: width // TURN_ROLL_DIVISOR, TURN_RIGHT: -(width // TURN_ROLL_DIVISOR)}
    noise = noise.clone()
    for i in range(1, min(len(row), noise.shape[1])):
        if row[i] in shift:
            noise[:, i] = torch.roll(noise[:, i - 1], shifts=shift[row[i]], dims=-1)
    return noise


# -- action encoding -------------------------------------------------------------------------------
def navigation_row(ids: Sequence[int], channels: int = NAVIGATION_CHANNELS) -> list[int]:
    """A request's ids as WIW's row: the stop, the motions (a leading stop dropped), forward up to ``channels``."""
    motions = [int(i) for i in ids]
    if motions and motions[0] == STOP:
        motions = motions[1:]
    if len(motions) > channels - 1:
        raise ValueError(f"{len(motions)} motions after the stop; a WIW igen row holds {channels - 1} "
                         f"(action_input_channel {channels} ids, the stop first)")
    return [STOP] + motions + [FORWARD] * (channels - 1 - len(motions))


def navigation_actions(ids: Sequence[int], channels: int = NAVIGATION_CHANNELS) -> np.ndarray:
    """WIW's ``added_action_ids`` for one item: float32 (channels, channels), row i = the first i+1 ids."""
    row = np.array(navigation_row(ids, channels), dtype=np.float32)
    return np.tril(np.broadcast_to(row, (channels, channels)))


def manipulation_actions(poses: Sequence[Sequence[float]], num_frames: int) -> np.ndarray:
    """WIW's ``added_action_ids`` for one item: end-effector poses -> float32 (num_frames, 10).

    Poses are [x, y, z, qx, qy, qz, qw, gripper_open]; a plan of another length is subsampled to
    ``num_frames`` as WIW's planner does (``np.linspace(0, n - 1, 14).astype(int)``).
    """
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != POSE_WIDTH or len(arr) == 0:
        raise ValueError(f"poses must be (steps, {POSE_WIDTH}) [x, y, z, qx, qy, qz, qw, gripper_open], "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("poses hold NaN or Inf")
    if len(arr) != num_frames:
        arr = arr[np.linspace(0, len(arr) - 1, num_frames).astype(int)]
    centre = 0.5 * (SCENE_MIN + SCENE_MAX)
    xyz01 = (np.clip(2.0 * (arr[:, :3] - centre) / (SCENE_MAX - SCENE_MIN), -1.0, 1.0) + 1.0) / 2.0
    rot = quaternion_matrices(arr[:, 3:7])[:, :, :2].reshape(-1, 6)  # first two columns, row by row
    rot01 = (np.clip(rot, -1.0, 1.0) + 1.0) / 2.0
    grip01 = np.clip(arr[:, 7:8], 0.0, 1.0)
    out = np.concatenate([xyz01 * 2 * XYZ_RANGE - XYZ_RANGE, rot01 * 2 * ROT_GRIP_RANGE - ROT_GRIP_RANGE,
                          grip01 * 2 * ROT_GRIP_RANGE - ROT_GRIP_RANGE], axis=1)
    return out.astype(np.float32)


def quaternion_matrices(quats: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (x, y, z, w; normalised here) -> (N, 3, 3) rotation matrices."""
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError("a pose's quaternion is all zero")
    x, y, z, w = (quats / norm).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=1)


# -- the checkpoint --------------------------------------------------------------------------------
def unet_weight_files(folder: Path) -> list[Path]:
    """The UNet folder's weights in WIW's order: the full-precision file, else the fp16 variant (sharded
    index files followed too). Implemented here; wrappers.common.loading's variant handling may fold it later."""
    for name in WEIGHT_NAMES:
        single, index = folder / name, folder / (name + ".index.json")
        if single.is_file():
            return [single]
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, json.JSONDecodeError, KeyError, AttributeError) as exc:
                raise CheckpointError(f"{index}: cannot read the shard index: {exc}") from exc
            return [folder / s for s in shards]
    raise CheckpointError(f"{folder}: no UNet weights: expected {' or '.join(WEIGHT_NAMES)}")


def choose_unet_folder(ckpt, option: str | None) -> tuple[Path, str]:
    """The UNet folder to load and the prefix its fingerprint keys carry; ``option`` is ``--wm-opt unet``."""
    if option is not None and option not in UNET_FOLDERS:
        raise SpecError(f"igen option unet={option!r}: expected one of {', '.join(UNET_FOLDERS)}")
    if ckpt.format == "component":  # a bare unet/ (or unet_ema/) folder: config.json beside the weights
        if option is not None:
            raise CheckpointError(f"{ckpt.path}: --wm-opt unet={option} picks a folder inside a checkpoint-N "
                                  "folder; this path is a UNet folder itself")
        return ckpt.path, ""
    if ckpt.format != "component-folder":
        raise CheckpointError(f"{ckpt.path}: igen expects WIW's training checkpoint: a checkpoint-N folder "
                              f"holding unet/ (or that unet/ folder); got a {ckpt.format!r} checkpoint")
    name = UNET_FOLDERS[option or "unet"]
    folder = ckpt.path / name
    if not (folder / "config.json").is_file():
        present = sorted(p.name for p in ckpt.path.iterdir() if (p / "config.json").is_file())
        raise CheckpointError(f"{ckpt.path}: no {name}/ folder with config.json "
                              f"(found: {', '.join(present) or 'none'})")
    return folder, f"{name}/"


def read_action_channels(folder: Path, files: Sequence[Path]) -> int:
    """``action_input_channel`` from the shape of add_action_proj.proj.weight; a CheckpointError naming the
    action modules the weights lack (a plain SVD UNet lacks all three)."""
    shapes = {}
    for f in files:
        shapes.update(safetensors_shapes(f))
    names, shape = set(shapes), shapes.get(ACTION_PROJ_KEY)
    missing = [m for m in ACTION_MODULES if not any(n.startswith(m + ".") for n in names)]
    if missing:
        raise CheckpointError(f"{folder}: not an SVD-dagger UNet: the weights lack {', '.join(missing)} "
                              "(WIW's action modules); a plain SVD UNet has no action conditioning")
    if len(shape) != 2 or shape[1] % FEATURES_PER_CHANNEL:
        raise CheckpointError(f"{folder}: {ACTION_PROJ_KEY} has shape {list(shape)}; WIW's is "
                              f"[{ACTION_EMBED_DIM}, {FEATURES_PER_CHANNEL} x action_input_channel]")
    return shape[1] // FEATURES_PER_CHANNEL


def resolve_task(channels: int, option: str | None, where: Path) -> tuple[str, str]:
    """The task a UNet of ``channels`` serves, and how it was decided (for the report)."""
    inferred = TASK_OF_CHANNELS.get(channels)
    if option is not None and option not in TASKS:
        raise SpecError(f"igen option task_type={option!r}: expected navigation or manipulation")
    if option is None:
        if inferred is None:
            raise CheckpointError(f"{where}: action_input_channel {channels} is neither navigation's "
                                  f"{NAVIGATION_CHANNELS} nor manipulation's {MANIPULATION_CHANNELS}: give "
                                  "--wm-opt task_type=navigation or task_type=manipulation")
        return inferred, "inferred from it (no --wm-opt task_type given)"
    if option == "manipulation" and channels != MANIPULATION_CHANNELS:
        raise CheckpointError(f"{where}: task_type=manipulation needs action_input_channel "
                              f"{MANIPULATION_CHANNELS} (WIW's pose encoding), the UNet takes {channels}")
    if inferred is not None and inferred != option:
        raise CheckpointError(f"{where}: --wm-opt task_type={option}, but action_input_channel {channels} "
                              f"is a {inferred} UNet")
    return option, f"as --wm-opt task_type={option} says"


def load_svdagger_unet(folder: Path, files: Sequence[Path], channels: int, dtype: torch.dtype) -> SVDaggerUNet:
    """The SVD-dagger UNet of ``folder`` (its config.json plus ``files``) with ``channels``-wide actions."""
    try:
        config = SVDaggerUNet.load_config(str(folder))
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{folder / 'config.json'}: cannot read the UNet config: {exc}") from exc
    with torch.device("meta"):
        try:
            unet = SVDaggerUNet.from_config(config, action_input_channel=channels)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{folder / 'config.json'}: not an SVD UNet config: {exc}") from exc
    state = {}
    for f in files:
        state.update(read_safetensors(f)[0])
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or misshapen:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if v]
        raise CheckpointError(f"{folder}: the weights do not fit an SVD-dagger UNet of its config: "
                              + "; ".join(parts))
    unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    left = [n for n, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if left:  # a tensor no state dict fills (a non-persistent buffer of a newer diffusers)
        raise CheckpointError(f"{folder}: {len(left)} UNet tensors were not filled by the weights: {left[:3]}")
    unet.eval()
    return unet


# -- the wrapper -----------------------------------------------------------------------------------
def _load_unet_folder(folder: Path, dtype: torch.dtype) -> SVDaggerUNet:
    """A UNet folder on its own (the channel count read from its weights), as FineTunedComponent loads one."""
    files = unet_weight_files(folder)
    return load_svdagger_unet(folder, files, read_action_channels(folder, files), dtype)


#: The SVD-dagger UNet over its svd base (loaded as wrappers.svd loads it, so zero-shot equals svd bitwise).
SVDAGGER_UNET = FineTunedComponent(
    name="unet", label="SVD-dagger UNet", expects="SVD-dagger checkpoint-N folder", arch_fields=ARCH_FIELDS,
    load=_load_unet_folder, load_base=svd.load_pipeline, base_folder="StableVideoDiffusionPipeline")


class ActionConditionedSVD(ComponentSwapModel):
    """igen: the SVD-dagger UNet swapped into its svd base; each item's actions reach it every step.

    Inside ``zero_shot()`` the base SVD runs with the same settings and conditioning (no actions, plain
    noise); the SVD-dagger UNet comes back after.
    """

    version = "2"
    COMPONENTS = ("unet", "vae", "image_encoder")

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self.settings = svd.parse_options(self.options)
        svd.check_generation(spec.name, self.generation)
        base_ckpt = require_base_pipeline(spec, ckpt, base_ckpt, SVDAGGER_UNET.base_folder)
        folder, prefix = choose_unet_folder(ckpt, self.options.get(OPT_UNET))
        files = unet_weight_files(folder)
        self._describe_checkpoint(ckpt, folder, files)
        # The worker audits and fingerprints what this wrapper loads: the chosen folder's chosen files.
        ckpt.keep_only(files, reason=f"igen loads {folder.name}/{files[0].name}"
                                     + (f" (+{len(files) - 1} shards)" if len(files) > 1 else ""))
        channels = read_action_channels(folder, files)
        self.task, how = resolve_task(channels, self.options.get(OPT_TASK), folder)
        self.action_channels = channels
        self.tasks = (self.task,)
        base_pipe = svd.load_pipeline(base_ckpt, dtype, device)
        self._check_frames(base_pipe.vae_scale_factor)
        unet = load_svdagger_unet(folder, files, channels, dtype)
        check_fits_base(SVDAGGER_UNET, unet.config, base_pipe, folder=folder, base_path=base_ckpt.path)
        ft_pipe = SVDaggerPipeline(**{**base_pipe.components, "unet": unet})
        self._swap = pair_pipelines(base_pipe, ft_pipe, "unet", device=device, offload=offload_mode(self.options),
                                    key_prefix=prefix)
        self.notes.append(f"action_input_channel {channels} (add_action_proj.proj.weight), serves {self.task}: "
                          f"{how}")

    def _describe_checkpoint(self, ckpt, folder: Path, files: list[Path]) -> None:
        note = f"UNet from {folder.name}/{files[0].name}"
        if files[0].name.endswith(".fp16.safetensors"):
            note += " (the fp16 variant: no full-precision file, WIW's fallback)"
        self.notes.append(note)
        ema = ckpt.path / UNET_FOLDERS["ema"]
        if ckpt.format == "component-folder" and ema.is_dir() and folder != ema:
            self.notes.append(f"{UNET_FOLDERS['ema']}/ is present and not used (WIW's inference reads unet/; "
                              "--wm-opt unet=ema picks it)")
        if not read_card(ckpt.root) and ckpt.format == "component":
            self.notes.append("no card beside the UNet folder (WIW writes none): the base comes from --base-ckpt-path")

    def _check_frames(self, vae_scale_factor: int) -> None:
        """SpecError unless WIW's navigation encoding fits the generation settings."""
        if self.task != "navigation":
            return
        frames = self.generation.num_frames
        if frames != self.action_channels:
            raise SpecError(f"igen navigation generates one frame per id of its {self.action_channels}-id rows "
                            f"(action_input_channel): num_frames must be {self.action_channels}, not {frames}")
        latent_width = self.generation.width // vae_scale_factor
        if latent_width % TURN_ROLL_DIVISOR:
            raise SpecError(f"igen navigation rolls the latent noise by 1/{TURN_ROLL_DIVISOR} of its width: "
                            f"width {self.generation.width} gives a latent width of {latent_width}")

    # -- requests ----------------------------------------------------------------------------------
    def validate_request(self, request: GenerationRequest) -> None:
        if request.task_type != self.task:  # before the generic check: this message says which checkpoint fits
            raise RequestError("task_type", f"this {self.spec.name} checkpoint's UNet takes "
                               f"{self.action_channels}-wide {self.task} actions (action_input_channel), not "
                               f"{request.task_type}")
        super().validate_request(request)
        self.action_rows(request)  # every encoding error is a RequestError before anything runs

    def action_rows(self, request: GenerationRequest) -> list[np.ndarray]:
        """Each item's ``added_action_ids``, (num_frames, action_input_channel) float32."""
        if self.task == "navigation":
            rows = []
            for i, ids in enumerate(request.actions):
                try:
                    rows.append(navigation_actions(ids, self.action_channels))
                except ValueError as exc:
                    raise RequestError(f"actions[{i}]", str(exc)) from None
            return rows
        poses = request.extra.get("poses")
        if poses is None:
            raise RequestError("actions", "igen's manipulation UNet takes end-effector poses, not instructions: "
                               "give extra['poses'], one list of [x, y, z, qx, qy, qz, qw, gripper_open] per item "
                               "(what WIW's planner sends); WIW has no encoding of an instruction for igen")
        if not isinstance(poses, list) or len(poses) != request.batch_size:
            raise RequestError("extra", f"poses: one pose list per batch item ({request.batch_size}) expected")
        rows = []
        for i, item in enumerate(poses):
            try:
                rows.append(manipulation_actions(item, self.generation.num_frames))
            except (ValueError, TypeError) as exc:
                raise RequestError(f"extra.poses[{i}]", str(exc)) from None
        return rows

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per item with its own generator and actions: a batch equals its items bitwise."""
        g = self.generation
        images = self.images_as_pil(request, g.height, g.width)
        generators = self.generators(request)
        rows = self.action_rows(request) if self.pipe is self._swap.ft_pipe else [None] * request.batch_size
        videos = []
        with torch.inference_mode():
            for image, generator, row in zip(images, generators, rows):
                with self._bound(row):
                    # wrappers.svd's call: the same settings and conditioning for FT and zero-shot.
                    videos.append(svd.generate_one(self.pipe, image, generator, g, self.settings))
        return self.finish_video(np.concatenate(videos, axis=0))

    @contextlib.contextmanager
    def _bound(self, row: np.ndarray | None) -> Iterator[None]:
        """The item's actions bound to the SVD-dagger UNet (and its turns to the noise) for one call."""
        if row is None:  # zero-shot: the base SVD takes no actions
            yield
            return
        pipe = self.pipe
        actions = torch.from_numpy(row)[None].to(device=self.device, dtype=self.dtype)
        turns = [int(v) for v in np.diagonal(row)] if self.task == "navigation" else None
        with pipe.unet.bind_actions(actions), pipe.bind_turns(turns):
            yield

    # -- tiny checkpoint ---------------------------------------------------------------------------
    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0,
                  channels: int = NAVIGATION_CHANNELS, drop: Sequence[str] = ()) -> Path:
        """``out_dir/checkpoint-6000/`` as WIW's training leaves it: unet/ (config.json without the action
        kwargs, fp16-variant weights only), dummy training-state files beside it, a card naming the base.

        ``channels`` and ``drop`` (action modules to leave out) build the variants the tests need.
        """
        if base is None:
            raise CheckpointError(f"make_tiny({wm_type!r}) needs base=<path of the tiny svd pipeline>")

        def build(seed: int):
            base_unet, state = tiny_svdagger_state(Path(base), seed, channels)
            return base_unet, {k: v for k, v in state.items() if not k.startswith(tuple(m + "." for m in drop))}

        def save(built, ckpt: Path) -> None:
            base_unet, state = built
            (ckpt / "unet").mkdir(exist_ok=True)
            base_unet.save_config(str(ckpt / "unet"))  # the plain SVD UNet config: no action kwargs, as WIW's
            save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()},
                      str(ckpt / "unet" / WEIGHT_NAMES[1]), metadata={"format": "pt"})
            for name in TINY_TRAINING_STATE:  # never opened: junk bytes say so if anything ever does
                (ckpt / name).write_bytes(b"not a pickle: a stand-in for accelerate's training state\n")

        return save_tiny(Path(out_dir) / f"checkpoint-{TINY_STEP}", build, seed, base=base, save=save,
                         generation=svd.TINY_GENERATION,
                         description=f"Tiny 'fine-tuned' SVD-dagger UNet for pytest-wiw ({wm_type}, seed {seed}, "
                                     f"{channels}-wide actions): the base UNet with seeded noise and random action "
                                     "modules, in WIW's accelerate checkpoint layout; its outputs mean nothing.")


def tiny_svdagger_state(base: Path, seed: int, channels: int) -> tuple[UNetSpatioTemporalConditionModel, dict]:
    """The base pipeline's UNet and an SVD-dagger state dict over it: base weights plus seeded noise,
    seeded random action modules. Seeds torch's global RNG (module construction draws from it)."""
    base_unet = load_pretrained(UNetSpatioTemporalConditionModel, base, subfolder="unet", what="the tiny base's unet")
    config = {k: v for k, v in base_unet.config.items() if not k.startswith("_")}
    torch.manual_seed(seed)
    unet = SVDaggerUNet(**config, action_input_channel=channels)
    unet.load_state_dict(base_unet.state_dict(), strict=False)
    noise = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(unet.named_parameters()):
            if name.startswith(ACTION_MODULES):
                # Strong enough that actions move the output: unit-scale features in, He-scaled after.
                std = 0.1 if p.ndim == 1 else (2.0 / p.shape[1]) ** 0.5 * (4.0 if name.startswith(ACTION_MODULES[0])
                                                                            else 1.0)
                p.copy_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * std)
            else:
                scale = TINY_PERTURB_SCALE * (float(p.std()) if p.numel() > 1 else 0.0) + TINY_PERTURB_FLOOR
                p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
    return base_unet, unet.state_dict()
