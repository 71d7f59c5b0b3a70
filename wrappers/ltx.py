"""LTX-Video image-to-video (diffusers ``LTXImageToVideoPipeline``): ``ltx`` and ``FTltx``.

``ltx`` loads a diffusers pipeline folder. ``FTltx`` loads a fully fine-tuned
``LTXVideoTransformer3DModel`` on top of its ``ltx`` base pipeline and shares every other module with it;
``zero_shot()`` switches back to the base transformer without a reload. WIW's own FTltx checkpoint is a
whole LTX pipeline folder (its ``--ft_dir``; WIW reads ``ft_dir/transformer``): its ``transformer/`` is the
fine-tune, its other components must equal the base's (``checkpoint applied`` names any that differ). A
folder holding ``transformer/``, a component folder and a bare ``.safetensors`` load too
(wrappers.common.component_swap).

Call arguments follow WIW's LTX worker: width, height, num_frames and steps (plus the guidance
scale, 3.0 as the pipeline's default), no negative prompt, the pipeline's defaults for the rest.

Sizes the pipeline cannot take are rounded before the call and noted: height and width down to
multiples of 32 (the pipeline refuses others), num_frames down to ``8k+1`` (the pipeline would
round it down anyway: (n - 1) // 8 + 1 latent frames decode to 8k+1 frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXVideoTransformer3DModel,
)

from pytest_wiw.api import Checkpoint, CheckpointError, GenerationRequest

from .common.component_swap import WHOLE_PIPELINE, ComponentSwapModel, FineTunedComponent, require_transformer_config
from .common.loading import load_pipeline, ready_to_run
from .common.sizes import pipeline_sizes
from .common.tiny import tiny_generation
from .common.tiny_text import tiny_t5_encoder, tiny_tokenizer

#: Generation settings the tiny checkpoints declare in their cards: a pipeline call takes ~25 ms on one CPU thread
#: (latents 8 x 2 x 4 x 4; the 9 decoded frames are subsampled to 4).
#: CFG on (> 1) so the negative-prompt path runs, as with LTX's default 3.0.
TINY_GENERATION = tiny_generation(guidance_scale=3.0)
#: Transformer config fields that must agree between a fine-tuned transformer and its base pipeline.
_ARCH_FIELDS = ("in_channels", "out_channels", "patch_size", "patch_size_t", "num_attention_heads",
                "attention_head_dim", "cross_attention_dim", "num_layers", "caption_channels", "qk_norm",
                "activation_fn", "norm_elementwise_affine", "attention_bias", "attention_out_bias")
#: The pipeline refuses a height or width that is not a multiple of this.
_SIZE_MULTIPLE = 32
#: Scale of the seeded noise make_tiny('FTltx') adds to each base weight, relative to its mean |w|.
#: Measured on the tiny pipeline (seed 0, the test requests): FT and base outputs differ by a mean of
#: ~30 uint8 levels, and two request seeds by ~37; the suite's threshold is 1.
_FT_NOISE = 1.5


def _load_pipeline(ckpt: Checkpoint, dtype: torch.dtype, device: str) -> LTXImageToVideoPipeline:
    return ready_to_run(load_pipeline(LTXImageToVideoPipeline, ckpt, "ltx", dtype=dtype), device)


def _check_transformer_config(folder: Path) -> None:
    """The folder's config.json must exist and, when it names a class, name LTX's transformer."""
    config = require_transformer_config(folder)
    try:
        class_name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{config}: not a readable JSON config: {exc}") from exc
    if class_name not in (None, "LTXVideoTransformer3DModel"):
        raise CheckpointError(f"{folder}: config.json describes a {class_name}, not the "
                              "LTXVideoTransformer3DModel a fine-tuned LTX transformer should be")


#: The fine-tuned transformer of FTltx. The FT pipeline shares the text encoder, tokenizer, VAE and scheduler
#: with the base pipeline.
FT_TRANSFORMER = FineTunedComponent(
    name="transformer", label="fine-tuned transformer", arch_fields=_ARCH_FIELDS, load_base=_load_pipeline,
    check_folder=_check_transformer_config, model_cls=LTXVideoTransformer3DModel, takes_pipeline=True)


class LTXImageToVideo(ComponentSwapModel):
    """LTX-Video I2V: the start image is the first latent frame, the prompt conditions the rest."""

    #: 2: the tiny FTltx is WIW's layout (a whole pipeline folder whose transformer/ is fine-tuned).
    version = "2"
    FT_COMPONENT = FT_TRANSFORMER
    TINY_TYPES = ("ltx", "FTltx")
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random LTX-Video image-to-video pipeline for pytest-wiw."
    TINY_FT_NOISE, TINY_FT_LAYOUT = _FT_NOISE, WHOLE_PIPELINE
    TINY_FT_DESCRIPTION = ("Tiny 'fine-tuned' LTX-Video pipeline as World-in-World's FTltx checkpoint is laid out: a "
                           "whole LTXImageToVideoPipeline folder whose transformer/ is the base's with seeded noise, "
                           "every other component identical to the base's.")

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        if spec.is_ft and spec.finetune != "transformer":
            raise CheckpointError(f"{spec.name}: this wrapper swaps in a fully fine-tuned transformer "
                                  f"(finetune='transformer'), not finetune={spec.finetune!r}")
        self._load_swap()

    # -- generation ----------------------------------------------------------------------------
    def _sizes(self) -> tuple[int, int, int]:
        """Height, width and frame count the pipeline will really use, noted when they change."""
        g = self.generation
        m = max(_SIZE_MULTIPLE, self.pipe.vae_spatial_compression_ratio)
        temporal = self.pipe.vae_temporal_compression_ratio
        sizes = pipeline_sizes(g, multiple=(m, m), num_frames=max((g.num_frames - 1) // temporal * temporal + 1, 1),
                               temporal=temporal, model="LTX", notes=self.notes)
        return sizes.height, sizes.width, sizes.num_frames

    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per batch item, each with its own generator.

        Item by item, a batch equals its items run alone bitwise. A single generator (not a list)
        is passed: with ``timestep_conditioning`` VAEs the pipeline draws its decode noise with
        ``torch.randn(..., generator=generator)``, which takes one generator only.
        """
        g = self.generation
        height, width, num_frames = self._sizes()
        return self.generate_item_by_item(request, height, width, lambda image, prompt, generator: self.pipe(
            image=image, prompt=prompt, height=height, width=width, num_frames=num_frames,
            num_inference_steps=g.steps, guidance_scale=g.guidance_scale, generator=generator,
            output_type="np").frames)

    # -- tiny checkpoints (make_tiny: ComponentSwapModel's) ------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> LTXImageToVideoPipeline:
        d_text, latent = 16, 8
        torch.manual_seed(seed)
        transformer = LTXVideoTransformer3DModel(
            in_channels=latent, out_channels=latent, patch_size=1, patch_size_t=1, num_attention_heads=2,
            attention_head_dim=16, cross_attention_dim=32, num_layers=1, caption_channels=d_text)
        torch.manual_seed(seed)
        # Three spatio-temporal downsamplings: 8x spatial and, as the real LTX VAE, 8x temporal (so 8k+1
        # frames); the real one also patchifies 4x4 for 32x spatial.
        vae = AutoencoderKLLTXVideo(
            in_channels=3, out_channels=3, latent_channels=latent, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1), timestep_conditioning=False, patch_size=1, patch_size_t=1,
            encoder_causal=True, decoder_causal=False)
        text_encoder = tiny_t5_encoder(d_model=d_text, seed=seed)
        tokenizer = tiny_tokenizer(model_max_length=128)
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                    base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
        return LTXImageToVideoPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       transformer=transformer)
