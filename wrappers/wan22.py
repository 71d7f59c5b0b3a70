"""Wan 2.2 TI2V-5B image-to-video: ``wan22`` (zero-shot) and ``FTwan22`` (a post-train of it), via diffusers.

``wan22`` loads a diffusers ``WanImageToVideoPipeline`` folder the way diffusers 0.42.1 runs Wan 2.2
TI2V-5B: ``expand_timesteps=True`` (the start image's latents replace the first latent frame, whose
timestep is 0, instead of being concatenated as extra channels), no CLIP image encoder, the z_dim-48
Wan 2.2 VAE (residual blocks, 2x2 patchified input, 16x spatial compression), and a transformer whose
in/out channels equal that z_dim. ``FTwan22`` loads its base pipeline, then its post-train the way
``wrappers.wan.WanImageToVideo`` does for FTwan21 (DiffSynth-Studio LoRA epochs or full DiT state
dict, or diffusers' own layouts).

Loading and generation are ``WanImageToVideo``'s: one pipeline call per batch item with its own
generator, sizes rounded as the pipeline would round them (multiples of 32 here) and noted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from pytest_wiw.api import CheckpointError

from .common.tiny import tiny_generation
from .common.tiny_text import tiny_t5_encoder, tiny_tokenizer
from .wan import WanImageToVideo

#: Generation settings the tiny checkpoints declare in their cards: a call takes well under 0.1 s on CPU.
#: Non-square (64x32, multiples of 32), 9 frames = 3 latent frames (the first is the start image's),
#: CFG on (> 1) so the negative-prompt path runs.
TINY_GENERATION = tiny_generation(guidance_scale=2.0, width=64)
#: The tiny LoRA's lora_B is scaled by this so the FT output differs from the base by several uint8 levels.
TINY_LORA_B_GAIN = 2.0
#: The tiny FT's DiffSynth epoch folder (``<model>_lora_<task>``).
TINY_LORA_FOLDER = "Wan2.2-TI2V-tiny_lora_navigation"


class Wan22TI2V(WanImageToVideo):
    """Wan 2.2 TI2V-5B through diffusers; serves ``wan22`` and its post-train ``FTwan22``."""

    version = "2"
    ARCH = "Wan 2.2 TI2V-5B"
    PIPELINE_CONFIG = {"expand_timesteps": True}
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random Wan 2.2 TI2V-5B-style image-to-video pipeline for pytest-wiw self-tests."
    TINY_LORA_B_GAIN = TINY_LORA_B_GAIN
    TINY_LORA_FOLDER = TINY_LORA_FOLDER

    def _check_architecture(self, pipe, path: Path) -> None:
        t, vae = pipe.transformer, pipe.vae
        if t is None or getattr(pipe, "transformer_2", None) is not None:
            raise CheckpointError(f"{path}: a {self.ARCH} pipeline has one transformer, this one has "
                                  f"{'none' if t is None else 'two (an A14B pipeline?)'}")
        z = vae.config.z_dim
        if t.config.in_channels != z or t.config.out_channels != z:
            raise CheckpointError(f"{path}: not a {self.ARCH} pipeline: its transformer takes {t.config.in_channels} "
                                  f"channels for a z_dim-{z} VAE (TI2V: both equal, 48; a Wan 2.1 / A14B I2V "
                                  "pipeline concatenates mask and image latents instead)")

    @staticmethod
    def tiny_pipeline(seed: int) -> WanImageToVideoPipeline:
        vae = tiny_wan22_vae(seed)
        z = vae.config.z_dim
        torch.manual_seed(seed)
        # As TI2V-5B: in = out = z_dim latent channels, no image cross-attention (image_dim None).
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=z, out_channels=z,
            text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32)
        text_encoder = tiny_t5_encoder(d_model=16, seed=seed)
        # Wan 2.2's scheduler setting: UniPC over flow sigmas, shift 5.
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            num_train_timesteps=1000, flow_shift=5.0)
        return WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                                       scheduler=scheduler, transformer=transformer, expand_timesteps=True)


def tiny_wan22_vae(seed: int) -> AutoencoderKLWan:
    """The Wan 2.2 VAE, tiny: z_dim 48, residual blocks, 2x2 patchified RGB (12 channels), 16x spatial."""
    z = 48
    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=4, decoder_base_dim=8, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                            out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                            latents_mean=[0.0] * z, latents_std=[1.0] * z)
