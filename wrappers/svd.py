"""Stable Video Diffusion (image-to-video, zero-shot): wm_type ``svd``.

SVD is conditioned on the start image alone (CLIP image embedding plus VAE latents of the image);
the request's actions and prompts do not reach the model, so they do not change the output.

Checkpoint: a diffusers ``StableVideoDiffusionPipeline`` folder (model_index.json, safetensors).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from pytest_wiw.api import Checkpoint, GenerationDefaults, GenerationRequest, SpecError, WorldModel

from .common import loading
from .common.sizes import require_size_multiple
from .common.tiny import TinyPipeline, tiny_generation

# SVD's micro-conditioning, as in diffusers' defaults (and the released checkpoints' examples).
DEFAULT_FPS = 7
DEFAULT_MOTION_BUCKET_ID = 127
DEFAULT_NOISE_AUG_STRENGTH = 0.02
# SVD's frame-wise guidance ramps from min to max across the frames; max comes from the
# generation settings (``guidance_scale``), min is diffusers' default 1.0 (never above max).
DEFAULT_MIN_GUIDANCE = 1.0
# Frames per call of the temporal VAE decoder. Its temporal layers see one chunk at a time, so the
# chunk size changes the frames: the default decodes all frames at once (diffusers' and Stability's
# default); ``--wm-opt decode_chunk_size=N`` trades that for memory.
DEFAULT_DECODE_CHUNK = None
MIN_FRAMES = 2  # SVD's temporal layers need at least two frames

# The options ``--wm-opt KEY=VALUE`` may set, and how each is parsed.
OPTIONS = {
    "fps": int,
    "motion_bucket_id": int,
    "noise_aug_strength": float,
    "min_guidance_scale": float,
    "decode_chunk_size": int,
}

# Released SVD's scheduler configuration (EDM-style Karras sigmas, v-prediction).
SVD_SCHEDULER_CONFIG = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
    num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
    steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
)

# A generation the tiny checkpoint declares on its card: well under a second on a CPU. 14 frames, as
# WIW's igen (SVD-dagger) needs (one frame per id of its 14-id action rows) and igen's zero-shot is this
# svd at the same settings (honest baseline).
TINY_GENERATION = tiny_generation(guidance_scale=1.0, num_frames=14)


class StableVideoDiffusion(TinyPipeline, WorldModel):
    """SVD image-to-video through diffusers' StableVideoDiffusionPipeline."""

    version = "2"
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random Stable Video Diffusion pipeline for pytest-wiw ({wm_type}, seed {seed}); its " \
                       "outputs mean nothing."

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self.settings = parse_options(self.options)
        check_generation("svd", self.generation)
        self.pipe = load_pipeline(ckpt, dtype, device)
        self.notes.append("image-only conditioning: the actions and prompts do not reach SVD")

    def components(self) -> dict[str, object]:
        return {"unet": self.pipe.unet, "vae": self.pipe.vae, "image_encoder": self.pipe.image_encoder}

    def generate(self, request: GenerationRequest) -> np.ndarray:
        g = self.generation
        images = self.images_as_pil(request, g.height, g.width)
        generators = self.generators(request)
        # Items run one by one, each with its own generator: the pipeline draws the item's
        # noise-augmentation noise and then its initial latents from it. A batched call would be
        # within a level or so, not bitwise: on CPU the CLIP encoder, VAE and UNet each sum in
        # another order for a batch of two than for one (~1e-6), so item i of a batch would not
        # equal item i alone. SVD's UNet already sees num_frames images per item, so batching
        # items buys little.
        with torch.inference_mode():
            videos = [generate_one(self.pipe, image, generator, self.generation, self.settings)
                      for image, generator in zip(images, generators)]
        return self.finish_video(np.concatenate(videos, axis=0))

    # -- tiny checkpoint (make_tiny: TinyPipeline's) ----------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> StableVideoDiffusionPipeline:
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            sample_size=16, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
            num_attention_heads=(2, 4), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
            num_frames=TINY_GENERATION["num_frames"],
        )
        torch.manual_seed(seed)
        vae = AutoencoderKLTemporalDecoder(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, sample_size=32,
        )
        torch.manual_seed(seed)
        # SVD resizes the conditioning image to 224x224 for CLIP, so the tiny encoder takes 224 (patch 32).
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, projection_dim=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=37, image_size=224, patch_size=32,
        ))
        # Without torchvision, transformers falls back to (and saves) CLIPImageProcessorPil; a real
        # SVD folder naming CLIPImageProcessor loads through the same fallback.
        feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
        scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)
        return StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                                            feature_extractor=feature_extractor)


# -- what igen's action-conditioned SVD shares ----------------------------------------------------
def check_generation(wm_name: str, generation: GenerationDefaults) -> None:
    """SpecError unless SVD can generate at these settings: sizes divisible by 8, at least MIN_FRAMES frames."""
    require_size_multiple(wm_name, generation, 8)
    if generation.num_frames < MIN_FRAMES:
        raise SpecError(f"{wm_name} needs num_frames >= {MIN_FRAMES}, got {generation.num_frames}")


def load_pipeline(ckpt: Checkpoint, dtype: torch.dtype, device: str) -> StableVideoDiffusionPipeline:
    """The checkpoint's StableVideoDiffusionPipeline folder, on ``device``; a CheckpointError if it is none."""
    pipe = loading.load_pipeline(StableVideoDiffusionPipeline, ckpt, "svd", dtype=dtype, check_index=True)
    return loading.ready_to_run(pipe, device)


def generate_one(pipe, image, generator: torch.Generator, generation: GenerationDefaults,
                 settings: dict) -> np.ndarray:
    """One SVD pipeline call for one item: float frames (1, T, H, W, 3) in [0, 1]."""
    g = generation
    max_guidance = float(g.guidance_scale)
    chunk = settings["decode_chunk_size"] or g.num_frames
    return pipe(
        image=[image],
        height=g.height,
        width=g.width,
        num_frames=g.num_frames,
        num_inference_steps=g.steps,
        min_guidance_scale=min(settings["min_guidance_scale"], max_guidance),
        max_guidance_scale=max_guidance,
        fps=settings["fps"],
        motion_bucket_id=settings["motion_bucket_id"],
        noise_aug_strength=settings["noise_aug_strength"],
        decode_chunk_size=min(chunk, g.num_frames),
        generator=[generator],
        output_type="np",
    ).frames


def parse_options(options: dict[str, str]) -> dict:
    """The SVD call settings: diffusers' defaults, with the ``--wm-opt`` values of OPTIONS parsed over them."""
    settings = {"fps": DEFAULT_FPS, "motion_bucket_id": DEFAULT_MOTION_BUCKET_ID,
                "noise_aug_strength": DEFAULT_NOISE_AUG_STRENGTH, "min_guidance_scale": DEFAULT_MIN_GUIDANCE,
                "decode_chunk_size": DEFAULT_DECODE_CHUNK}
    for key, value in options.items():
        if key not in OPTIONS:
            continue  # options meant for other layers (the worker, generation settings) pass through
        try:
            settings[key] = OPTIONS[key](value)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"svd option {key}={value!r}: expected {OPTIONS[key].__name__}") from exc
    if settings["decode_chunk_size"] is not None and settings["decode_chunk_size"] < 1:
        raise SpecError("svd option decode_chunk_size must be at least 1")
    return settings
