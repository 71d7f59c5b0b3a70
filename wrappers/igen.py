"""igen: WIW's SVD-dagger, an action-conditioned Stable Video Diffusion: wm_type ``igen``.

The model is SVD whose UNet takes one action vector per frame. ``ActionUNetSpatioTemporalConditionModel``
is diffusers' ``UNetSpatioTemporalConditionModel`` plus an action embedder: each frame's action vector
(``action_input_channel`` wide) goes through a Linear to 256 and a diffusers ``TimestepEmbedding``
(256 -> the time-embedding width), and is added to that frame's time embedding, next to SVD's own
micro-conditioning (fps, motion bucket, noise augmentation): WIW's ``micro_cond`` action strategy.

Checkpoint: the fine-tuned action UNet alone, a component folder (``unet/`` holding config.json and
diffusion_pytorch_model.safetensors, or that folder itself), on top of its ``svd`` base, a diffusers
``StableVideoDiffusionPipeline`` folder. The VAE, image encoder, feature extractor and scheduler are the
base pipeline's, shared; ``zero_shot()`` runs the base pipeline's own UNet (no actions), no reload.

Actions, per batch item, become a (T, action_input_channel) tensor, T = the generation's ``num_frames``:

* navigation (``action_input_channel`` 14): WIW's row-opening stop (a leading 4) is dropped; each
  remaining id i in 0..4 is a one-hot vector with a 1 in channel i (channels 5..13 stay 0). The L ids
  are resampled onto the T frames by area: frame t covers the span [t*L/T, (t+1)*L/T) of the id
  sequence and averages the one-hots it overlaps, weighted by the overlap. So when L divides T each id
  is held for T/L frames (a plain repeat), and when L > T no id is lost (a frame blends the ids in its
  span). An id list that is empty after the dropped stop gives all-zero vectors.
* manipulation (``action_input_channel`` 10): real WIW feeds continuous arm deltas per frame, which
  GenerationRequest does not carry (it carries the instruction only). Until it does, the instruction is
  hashed into a fixed 10-wide vector, the same for every frame: each lower-cased word adds +-1 to one
  channel (both from the word's sha256), and the sum is scaled to unit length. Deterministic across
  processes (no Python ``hash``), different for different instructions.

A checkpoint's UNet serves the task its ``action_input_channel`` encodes; a request for the other task is
rejected with a RequestError naming ``task_type``.

With classifier-free guidance (``guidance_scale`` > 1) the pipeline runs the UNet on the unconditional
and conditional halves at once; like SVD's micro-conditioning (``added_time_ids``) the actions are not
dropped for the unconditional half: both halves get the item's actions (the WIW worker passes
micro_cond actions once per item and leaves the doubling to the pipeline).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device

from pytest_wiw.api import CheckpointError, GenerationRequest, RequestError
from pytest_wiw.request import STOP_ID

from . import svd
from .component_swap import ComponentSwapModel, FineTunedComponent, load_component_swap
from .diffusers_setup import write_tiny_card

# Action vector widths WIW's igen checkpoints take, per task.
NAVIGATION_CHANNELS = 14
MANIPULATION_CHANNELS = 10
TASK_CHANNELS = {"navigation": NAVIGATION_CHANNELS, "manipulation": MANIPULATION_CHANNELS}
# Width of the action projection in front of the TimestepEmbedding (WIW's embedder).
ACTION_PROJ_DIM = 256
# UNet config fields that must agree between the action UNet and the base pipeline's UNet.
_ARCH_FIELDS = ("in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
                "addition_time_embed_dim", "projection_class_embeddings_input_dim", "layers_per_block",
                "cross_attention_dim", "transformer_layers_per_block", "num_attention_heads")
# How make_tiny perturbs the copied base UNet: noise of this many times each tensor's own std (plus a floor).
TINY_PERTURB_SCALE = 0.1
TINY_PERTURB_FLOOR = 0.01


# -- the model ----------------------------------------------------------------------------------------

class ActionUNetSpatioTemporalConditionModel(UNetSpatioTemporalConditionModel):
    """SVD's spatio-temporal UNet with a per-frame action embedder added to the time embedding.

    ``forward`` takes ``actions`` (B, T, action_input_channel) besides SVD's inputs. A pipeline that
    does not know about actions (diffusers' StableVideoDiffusionPipeline) reaches them through
    ``bind_actions``: the actions bound for the duration of one pipeline call, cleared after it.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        up_block_types: tuple[str, ...] = (
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
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
            num_frames=num_frames,
        )
        time_embed_dim = block_out_channels[0] * 4
        self.action_proj = nn.Linear(action_input_channel, ACTION_PROJ_DIM)
        self.action_embedding = TimestepEmbedding(ACTION_PROJ_DIM, time_embed_dim)
        self._bound_actions: torch.Tensor | None = None

    @contextlib.contextmanager
    def bind_actions(self, actions: torch.Tensor) -> Iterator[None]:
        """Within this context, a forward call without ``actions`` uses these (B, T, C) actions."""
        if self._bound_actions is not None:
            raise RuntimeError("actions are bound already: bind_actions() does not nest")
        self._bound_actions = actions
        try:
            yield
        finally:
            self._bound_actions = None

    def embed_actions(self, actions: torch.Tensor, batch_size: int, num_frames: int,
                      dtype: torch.dtype) -> torch.Tensor:
        """(B, T, C) actions -> (B*T, time_embed_dim), batch-major like the flattened sample.

        A batch of twice the actions' (classifier-free guidance: unconditional and conditional
        halves) gets the actions in both halves.
        """
        width = self.config.action_input_channel
        if actions.ndim != 3 or actions.shape[-1] != width:
            raise ValueError(f"actions must be (batch, frames, {width}), got {tuple(actions.shape)}")
        if actions.shape[1] != num_frames:
            raise ValueError(f"actions cover {actions.shape[1]} frames, the sample has {num_frames}")
        if actions.shape[0] != batch_size:
            if batch_size % actions.shape[0]:
                raise ValueError(f"actions for {actions.shape[0]} items, the sample has a batch of {batch_size}")
            actions = actions.repeat(batch_size // actions.shape[0], 1, 1)
        actions = actions.to(device=self.action_proj.weight.device, dtype=dtype).flatten(0, 1)
        return self.action_embedding(self.action_proj(actions))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        actions: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNetSpatioTemporalConditionOutput | tuple:
        """diffusers' UNetSpatioTemporalConditionModel.forward (0.42) plus ``actions`` (B, T, C).

        Identical to the parent but for one line: each frame's action embedding is added to its
        (repeated) time embedding before the blocks see it.
        """
        if actions is None:
            actions = self._bound_actions
        if actions is None:
            raise ValueError(f"{type(self).__name__} needs actions (batch, frames, "
                             f"{self.config.action_input_channel}): pass actions= or call it inside bind_actions()")

        default_overall_up_factor = 2**self.num_upsamplers
        forward_upsample_size = False
        upsample_size = None
        if any(s % default_overall_up_factor != 0 for s in sample.shape[-2:]):
            forward_upsample_size = True

        # 1. time
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            dtype = maybe_adjust_dtype_for_device(
                torch.float64 if isinstance(timestep, float) else torch.int64, sample.device
            )
            timesteps = torch.tensor([timesteps], dtype=dtype, device=sample.device)
        elif len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(sample.device)

        batch_size, num_frames = sample.shape[:2]
        timesteps = timesteps.expand(batch_size)

        t_emb = self.time_proj(timesteps)
        t_emb = t_emb.to(dtype=sample.dtype)
        emb = self.time_embedding(t_emb)

        time_embeds = self.add_time_proj(added_time_ids.flatten())
        time_embeds = time_embeds.reshape((batch_size, -1))
        time_embeds = time_embeds.to(emb.dtype)
        aug_emb = self.add_embedding(time_embeds)
        emb = emb + aug_emb

        sample = sample.flatten(0, 1)
        emb = emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)
        # The action conditioning: one embedding per frame, added to that frame's time embedding.
        emb = emb + self.embed_actions(actions, batch_size, num_frames, emb.dtype)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(
            num_frames, dim=0, output_size=encoder_hidden_states.shape[0] * num_frames
        )

        # 2. pre-process
        sample = self.conv_in(sample)
        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)

        down_block_res_samples = (sample,)
        for downsample_block in self.down_blocks:
            if hasattr(downsample_block, "has_cross_attention") and downsample_block.has_cross_attention:
                sample, res_samples = downsample_block(
                    hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                    image_only_indicator=image_only_indicator,
                )
            else:
                sample, res_samples = downsample_block(
                    hidden_states=sample, temb=emb, image_only_indicator=image_only_indicator,
                )
            down_block_res_samples += res_samples

        # 4. mid
        sample = self.mid_block(
            hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
            image_only_indicator=image_only_indicator,
        )

        # 5. up
        for i, upsample_block in enumerate(self.up_blocks):
            is_final_block = i == len(self.up_blocks) - 1
            res_samples = down_block_res_samples[-len(upsample_block.resnets):]
            down_block_res_samples = down_block_res_samples[: -len(upsample_block.resnets)]
            if not is_final_block and forward_upsample_size:
                upsample_size = down_block_res_samples[-1].shape[2:]
            if hasattr(upsample_block, "has_cross_attention") and upsample_block.has_cross_attention:
                sample = upsample_block(
                    hidden_states=sample, temb=emb, res_hidden_states_tuple=res_samples,
                    encoder_hidden_states=encoder_hidden_states, upsample_size=upsample_size,
                    image_only_indicator=image_only_indicator,
                )
            else:
                sample = upsample_block(
                    hidden_states=sample, temb=emb, res_hidden_states_tuple=res_samples,
                    upsample_size=upsample_size, image_only_indicator=image_only_indicator,
                )

        # 6. post-process
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)

        # 7. Reshape back to original shape
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
        if not return_dict:
            return (sample,)
        return UNetSpatioTemporalConditionOutput(sample=sample)


# -- action encoding ---------------------------------------------------------------------------------

def navigation_actions(ids: Sequence[int], num_frames: int, channels: int = NAVIGATION_CHANNELS) -> np.ndarray:
    """WIW navigation ids -> float32 (num_frames, channels): one-hot ids resampled onto the frames by area."""
    ids = [int(i) for i in ids]
    if ids and ids[0] == STOP_ID:
        ids = ids[1:]
    out = np.zeros((num_frames, channels), dtype=np.float32)
    n = len(ids)
    if n == 0:
        return out
    if max(ids) >= channels:
        raise ValueError(f"navigation id {max(ids)} does not fit a {channels}-wide action vector")
    # In units of 1/(n*T) of the sequence: frame t spans [t*n, (t+1)*n), id j spans [j*T, (j+1)*T).
    for t in range(num_frames):
        lo, hi = t * n, (t + 1) * n
        for j in range(lo // num_frames, min(n, -(-hi // num_frames))):
            overlap = min(hi, (j + 1) * num_frames) - max(lo, j * num_frames)
            if overlap > 0:
                out[t, ids[j]] += overlap / n
    return out


def manipulation_actions(instruction: str, num_frames: int, channels: int = MANIPULATION_CHANNELS) -> np.ndarray:
    """An instruction -> float32 (num_frames, channels): a unit-length hash of its words, every frame alike."""
    vec = np.zeros(channels, dtype=np.float64)
    for word in re.findall(r"\w+", instruction.lower()):
        digest = hashlib.sha256(word.encode("utf-8")).digest()
        vec[int.from_bytes(digest[:4], "little") % channels] += 1.0 if digest[4] & 1 else -1.0
    norm = np.linalg.norm(vec)
    if norm > 0:
        vec /= norm
    return np.repeat(vec.astype(np.float32)[None], num_frames, axis=0)


def encode_actions(task_type: str, action, num_frames: int, channels: int) -> np.ndarray:
    """One batch item's action (id list or instruction) as float32 (num_frames, channels)."""
    if task_type == "navigation":
        return navigation_actions(action, num_frames, channels)
    if task_type == "manipulation":
        return manipulation_actions(action, num_frames, channels)
    raise ValueError(f"igen encodes navigation and manipulation actions, not {task_type!r}")


# -- the wrapper -------------------------------------------------------------------------------------

def _load_action_unet(folder: Path, dtype: torch.dtype) -> ActionUNetSpatioTemporalConditionModel:
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_file}: cannot read the UNet config: {exc}") from exc
    if "action_input_channel" not in config:
        raise CheckpointError(f"{config_file}: a {config.get('_class_name', 'UNet')} without action_input_channel: "
                              "igen needs the fine-tuned action-conditioned UNet, not a plain SVD UNet")
    if config["action_input_channel"] not in TASK_CHANNELS.values():
        raise CheckpointError(f"{config_file}: action_input_channel {config['action_input_channel']!r}; igen encodes "
                              f"navigation ({NAVIGATION_CHANNELS}) or manipulation ({MANIPULATION_CHANNELS}) actions")
    try:
        unet, info = ActionUNetSpatioTemporalConditionModel.from_pretrained(
            str(folder), dtype=dtype, use_safetensors=True, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: cannot load an action-conditioned SVD UNet: "
                              f"{type(exc).__name__}: {exc}") from exc
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"{folder}: {len(missing)} UNet tensors are missing from the weights "
                              f"(e.g. {', '.join(sorted(missing)[:3])})")
    return unet


#: The fine-tuned action UNet, swapped into its svd base pipeline; the base is loaded as wrappers.svd loads
#: it, so that zero-shot equals svd bitwise.
ACTION_UNET = FineTunedComponent(
    name="unet", label="action UNet", expects="fine-tuned action UNet", arch_fields=_ARCH_FIELDS,
    load=_load_action_unet, load_base=svd.load_pipeline, base_folder="StableVideoDiffusionPipeline")


class ActionConditionedSVD(ComponentSwapModel):
    """igen: SVD with the fine-tuned action UNet swapped in; each item's actions reach it every step.

    Inside ``zero_shot()`` the base SVD UNet runs (the actions do not reach it); the action UNet comes back after.
    """

    version = "1"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self.settings = svd.parse_options(self.options)
        svd.check_generation(spec.name, self.generation)
        # Shares the VAE, image encoder, feature extractor and scheduler with the base pipeline.
        self._swap = load_component_swap(spec, ckpt, base_ckpt, ACTION_UNET, dtype=dtype, device=device)
        self.action_channels = int(self._swap.ft_module.config.action_input_channel)
        self.task = next(t for t, c in TASK_CHANNELS.items() if c == self.action_channels)
        self.tasks = (self.task,)  # the suite draws requests for this checkpoint's task only
        how = ("one-hot ids resampled onto the frames by area" if self.task == "navigation"
               else "a hash of the instruction's words: GenerationRequest carries no arm deltas")
        self.notes.append(f"{self.task} actions as {self.action_channels}-wide vectors per frame ({how})")

    # -- requests ----------------------------------------------------------------------------------
    def validate_request(self, request: GenerationRequest) -> None:
        if request.task_type != self.task:  # before the generic check: this message says which checkpoint fits
            raise RequestError("task_type", f"this {self.spec.name} checkpoint's UNet takes {self.action_channels}-"
                                            f"wide {self.task} actions (action_input_channel), not "
                                            f"{request.task_type}; a {request.task_type} checkpoint has "
                                            f"action_input_channel {TASK_CHANNELS[request.task_type]}")
        super().validate_request(request)

    def actions_tensor(self, request: GenerationRequest) -> torch.Tensor:
        """The request's actions as float (B, num_frames, action_input_channel), in the model's dtype."""
        frames = self.generation.num_frames
        arr = np.stack([encode_actions(request.task_type, a, frames, self.action_channels) for a in request.actions])
        return torch.from_numpy(arr).to(device=self.device, dtype=self.dtype)

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per item with that item's generator and actions: a batch equals its items bitwise.

        (A batched call sums in another order on CPU than a batch of one; see wrappers.svd.)
        """
        g = self.generation
        images = self.images_as_pil(request, g.height, g.width)
        generators = self.generators(request)
        actions = self.actions_tensor(request)
        pipe = self.pipe
        with torch.inference_mode():
            videos = []
            for i, (image, generator) in enumerate(zip(images, generators)):
                with self._bound(pipe, actions[i : i + 1]):
                    # The arguments of wrappers.svd's call, so that zero_shot() reproduces svd bitwise.
                    videos.append(svd.generate_one(pipe, image, generator, self.generation, self.settings))
        return self.finish_video(np.concatenate(videos, axis=0))

    @contextlib.contextmanager
    def _bound(self, pipe, actions: torch.Tensor) -> Iterator[None]:
        """The item's actions bound to the pipeline's UNet for one call; the base UNet takes none."""
        if isinstance(pipe.unet, ActionUNetSpatioTemporalConditionModel):
            with pipe.unet.bind_actions(actions):
                yield
        else:
            yield

    # -- weights -----------------------------------------------------------------------------------
    def components(self) -> dict[str, object]:
        pipe = self.pipe
        return {"unet": pipe.unet, "vae": pipe.vae, "image_encoder": pipe.image_encoder}

    # -- tiny checkpoint ---------------------------------------------------------------------------
    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        if base is None:
            raise CheckpointError(f"make_tiny({wm_type!r}) needs base=<path of the tiny svd pipeline>")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            unet = tiny_action_unet(Path(base), seed)
        unet.save_pretrained(str(out_dir / "unet"), safe_serialization=True)
        write_tiny_card(out_dir, base=base, generation=svd.TINY_GENERATION,
                        description=f"Tiny 'fine-tuned' action-conditioned SVD UNet for pytest-wiw ({wm_type}, seed "
                                    f"{seed}): the base UNet with seeded noise and a random action embedder; its "
                                    "outputs mean nothing.")
        return out_dir


def tiny_action_unet(base: Path, seed: int, action_input_channel: int = NAVIGATION_CHANNELS
                     ) -> ActionUNetSpatioTemporalConditionModel:
    """The base pipeline's UNet as an action UNet: its weights plus seeded noise, a seeded random embedder.

    Seeds torch's global RNG (module construction draws from it): call it under fork_rng.
    """
    base_unet = UNetSpatioTemporalConditionModel.from_pretrained(
        str(base), subfolder="unet", use_safetensors=True, local_files_only=True)
    config = {k: v for k, v in base_unet.config.items() if not k.startswith("_")}
    torch.manual_seed(seed)
    unet = ActionUNetSpatioTemporalConditionModel(**config, action_input_channel=action_input_channel)
    missing, unexpected = unet.load_state_dict(base_unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("action_proj.", "action_embedding.")) for k in missing):
        raise RuntimeError(f"the action UNet does not extend the base UNet: missing {missing}, unexpected {unexpected}")
    noise = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(unet.named_parameters()):
            if name.startswith(("action_proj.", "action_embedding.")):
                # A random embedder: unit-scale columns for the (one-hot) action inputs, He-scaled
                # weights after them, small biases; strong enough that actions move the output.
                if p.ndim == 1:
                    std = 0.1
                elif name.startswith("action_proj."):
                    std = 1.0
                else:
                    std = (2.0 / p.shape[1]) ** 0.5
                p.copy_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * std)
            else:
                scale = TINY_PERTURB_SCALE * (float(p.std()) if p.numel() > 1 else 0.0) + TINY_PERTURB_FLOOR
                p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
    return unet
