"""LTX-Video image-to-video (diffusers ``LTXImageToVideoPipeline``): ``ltx`` and ``FTltx``.

``ltx`` loads a diffusers pipeline folder. ``FTltx`` loads a fully fine-tuned
``LTXVideoTransformer3DModel`` on top of its ``ltx`` base pipeline and shares every other module with it;
``zero_shot()`` switches back to the base transformer without a reload. WIW's own FTltx checkpoint is a
whole LTX pipeline folder (its ``--ft_dir``; WIW reads ``ft_dir/transformer``): its ``transformer/`` is the
fine-tune, its other components must equal the base's (``checkpoint applied`` names any that differ). A
folder holding ``transformer/``, a component folder and a bare ``.safetensors`` load too
(wrappers.component_swap).

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

from .component_swap import (
    WHOLE_PIPELINE,
    ComponentSwap,
    ComponentSwapModel,
    FineTunedComponent,
    load_component,
    load_component_swap,
    require_transformer_config,
    save_tiny_fine_tune,
)
from .diffusers_setup import ready_to_run, variant_kwargs, write_tiny_card
from .offload import offload_mode

#: Generation settings the tiny checkpoints declare in their cards: a pipeline call takes ~25 ms on one CPU
#: thread (latents 8 x 2 x 4 x 4; the 9 decoded frames are subsampled to 4).
#: CFG on (> 1) so the negative-prompt path runs, as with LTX's default 3.0.
TINY_GENERATION = {
    "height": 32, "width": 32, "out_height": 32, "out_width": 32,
    "num_frames": 9, "num_output_frames": 4, "steps": 2, "guidance_scale": 3.0,
}
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
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def _load_pipeline(ckpt: Checkpoint, dtype: torch.dtype, device: str) -> LTXImageToVideoPipeline:
    path = Path(ckpt.path)
    try:
        pipe = LTXImageToVideoPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                                       **variant_kwargs(ckpt))
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"{path}: cannot load an LTXImageToVideoPipeline from this folder: "
                              f"{type(exc).__name__}: {exc}") from exc
    return ready_to_run(pipe, device)


def _load_transformer(folder: Path, dtype: torch.dtype) -> LTXVideoTransformer3DModel:
    return load_component(LTXVideoTransformer3DModel, folder, dtype, what="an LTXVideoTransformer3DModel",
                          errors=_LOAD_ERRORS)


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
    name="transformer", label="fine-tuned transformer", arch_fields=_ARCH_FIELDS, load=_load_transformer,
    load_base=_load_pipeline, check_folder=_check_transformer_config, model_cls=LTXVideoTransformer3DModel,
    takes_pipeline=True)


class LTXImageToVideo(ComponentSwapModel):
    """LTX-Video I2V: the start image is the first latent frame, the prompt conditions the rest."""

    #: 2: the tiny FTltx is WIW's layout (a whole pipeline folder whose transformer/ is fine-tuned).
    version = "2"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        if spec.is_ft:
            if spec.finetune != "transformer":
                raise CheckpointError(f"{spec.name}: this wrapper swaps in a fully fine-tuned transformer "
                                      f"(finetune='transformer'), not finetune={spec.finetune!r}")
            self._swap = load_component_swap(spec, ckpt, base_ckpt, FT_TRANSFORMER, dtype=dtype, device=device,
                                             offload=offload_mode(self.options))
            return
        if ckpt.format != "diffusers":
            raise CheckpointError(f"{ckpt.path}: {spec.name} expects a diffusers LTXImageToVideoPipeline "
                                  f"folder (with model_index.json), got a {ckpt.format!r} checkpoint")
        self._swap = ComponentSwap(_load_pipeline(ckpt, dtype, device))

    # -- generation ----------------------------------------------------------------------------
    def _sizes(self) -> tuple[int, int, int]:
        """Height, width and frame count the pipeline will really use, noted when they change."""
        g = self.generation
        m = max(_SIZE_MULTIPLE, self.pipe.vae_spatial_compression_ratio)
        h, w = max(g.height // m * m, m), max(g.width // m * m, m)
        temporal = self.pipe.vae_temporal_compression_ratio
        n = max((g.num_frames - 1) // temporal * temporal + 1, 1)
        if (h, w) != (g.height, g.width):
            self._note(f"generation size {g.height}x{g.width} rounded down to {h}x{w} "
                       f"(LTX takes multiples of {m})")
        if n != g.num_frames:
            self._note(f"num_frames {g.num_frames} rounded down to {n} (LTX generates {temporal}k+1 frames)")
        return h, w, n

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

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

    # -- weights -------------------------------------------------------------------------------
    def components(self) -> dict[str, object]:
        pipe = self.pipe
        return {"transformer": pipe.transformer, "vae": pipe.vae, "text_encoder": pipe.text_encoder}

    # -- tiny checkpoints ----------------------------------------------------------------------
    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):  # seeds the builds without touching the caller's RNG
            if wm_type == "ltx":
                _tiny_pipeline(seed).save_pretrained(str(out_dir), safe_serialization=True)
                write_tiny_card(out_dir, generation=TINY_GENERATION,
                                description="Tiny random LTX-Video image-to-video pipeline for pytest-wiw.")
                return out_dir
            if wm_type == "FTltx":
                if base is None:
                    raise CheckpointError("make_tiny('FTltx') needs base=<path of the tiny ltx pipeline>")
                return save_tiny_fine_tune(
                    LTXVideoTransformer3DModel, out_dir, Path(base), seed, noise_scale=_FT_NOISE,
                    generation=TINY_GENERATION, layout=WHOLE_PIPELINE,
                    description="Tiny 'fine-tuned' LTX-Video pipeline as World-in-World's FTltx checkpoint is laid "
                                "out: a whole LTXImageToVideoPipeline folder whose transformer/ is the base's with "
                                "seeded noise, every other component identical to the base's.")
        raise ValueError(f"{cls.__name__}.make_tiny serves ltx and FTltx, not {wm_type!r}")


def _tiny_pipeline(seed: int) -> LTXImageToVideoPipeline:
    from .tiny_text import tiny_t5_encoder, tiny_tokenizer

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
