"""LTX-Video image-to-video (diffusers ``LTXImageToVideoPipeline``): ``ltx`` and ``FTltx``.

``ltx`` loads a diffusers pipeline folder. ``FTltx`` loads a fully fine-tuned
``LTXVideoTransformer3DModel`` (a component folder, or a folder holding ``transformer/`` as WIW's
``--ft_dir`` does) on top of its ``ltx`` base pipeline and shares every other module with it;
``zero_shot()`` switches back to the base transformer without a reload.

Call arguments follow WIW's LTX worker: width, height, num_frames and steps (plus the guidance
scale, 3.0 as the pipeline's default), no negative prompt, the pipeline's defaults for the rest.

Sizes the pipeline cannot take are rounded before the call and noted: height and width down to
multiples of 32 (the pipeline refuses others), num_frames down to ``8k+1`` (the pipeline would
round it down anyway: (n - 1) // 8 + 1 latent frames decode to 8k+1 frames).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXVideoTransformer3DModel,
)

from pytest_wiw.api import CheckpointError, GenerationRequest, WorldModel, lookup_tensor, write_card

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


def _load_pipeline(path: Path, dtype: torch.dtype, device: str) -> LTXImageToVideoPipeline:
    try:
        pipe = LTXImageToVideoPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"{path}: cannot load an LTXImageToVideoPipeline from this folder: "
                              f"{type(exc).__name__}: {exc}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class LTXImageToVideo(WorldModel):
    """LTX-Video I2V: the start image is the first latent frame, the prompt conditions the rest."""

    version = "1"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self._ft_transformer: LTXVideoTransformer3DModel | None = None
        self._ft_prefix = ""
        if not spec.is_ft:
            if ckpt.format != "diffusers":
                raise CheckpointError(f"{ckpt.path}: {spec.name} expects a diffusers LTXImageToVideoPipeline "
                                      f"folder (with model_index.json), got a {ckpt.format!r} checkpoint")
            self._base_pipe = _load_pipeline(ckpt.path, dtype, device)
            self._pipe = self._base_pipe
            return

        if spec.finetune != "transformer":
            raise CheckpointError(f"{spec.name}: this wrapper swaps in a fully fine-tuned transformer "
                                  f"(finetune='transformer'), not finetune={spec.finetune!r}")
        if base_ckpt is None:
            raise CheckpointError(f"{ckpt.path}: {spec.name} needs its {spec.base} base pipeline: pass "
                                  "--base-ckpt-path or name it as base_model in the checkpoint's card")
        if base_ckpt.format != "diffusers":
            raise CheckpointError(f"{base_ckpt.path}: the {spec.base} base must be a diffusers pipeline folder "
                                  f"(model_index.json), got a {base_ckpt.format!r} checkpoint")
        if ckpt.format == "component":
            folder = ckpt.path
        elif ckpt.format == "component-folder":
            folder = ckpt.files[0].parent
            self._ft_prefix = folder.relative_to(ckpt.root).as_posix() + "/"
        else:
            raise CheckpointError(f"{ckpt.path}: {spec.name} expects a fine-tuned transformer: a folder with "
                                  "config.json + diffusion_pytorch_model.safetensors, or a folder holding "
                                  f"transformer/; got a {ckpt.format!r} checkpoint")
        _check_transformer_config(folder)

        self._base_pipe = _load_pipeline(base_ckpt.path, dtype, device)
        try:
            ft = LTXVideoTransformer3DModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except _LOAD_ERRORS as exc:
            raise CheckpointError(f"{folder}: cannot load an LTXVideoTransformer3DModel: "
                                  f"{type(exc).__name__}: {exc}") from exc
        base_cfg, ft_cfg = self._base_pipe.transformer.config, ft.config
        mismatch = [f"{k} {ft_cfg.get(k)!r} (base {base_cfg.get(k)!r})" for k in _ARCH_FIELDS
                    if _norm(ft_cfg.get(k)) != _norm(base_cfg.get(k))]
        if mismatch:
            raise CheckpointError(f"{folder}: the fine-tuned transformer does not fit the base pipeline "
                                  f"{base_ckpt.path}: {', '.join(mismatch)}")
        ft.to(device)
        ft.eval()
        self._ft_transformer = ft
        # Shares the text encoder, tokenizer, VAE and scheduler with the base pipeline (the scheduler's
        # state is per call, and the two pipelines never run at once).
        ft_pipe = LTXImageToVideoPipeline(**{**self._base_pipe.components, "transformer": ft})
        ft_pipe.set_progress_bar_config(disable=True)
        self._ft_pipe = ft_pipe
        self._pipe = ft_pipe

    # -- generation ----------------------------------------------------------------------------
    def _sizes(self) -> tuple[int, int, int]:
        """Height, width and frame count the pipeline will really use, noted when they change."""
        g = self.generation
        m = max(_SIZE_MULTIPLE, self._pipe.vae_spatial_compression_ratio)
        h, w = max(g.height // m * m, m), max(g.width // m * m, m)
        temporal = self._pipe.vae_temporal_compression_ratio
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
        prompts = request.prompts()
        images = self.images_as_pil(request, height, width)
        generators = self.generators(request)
        videos = []
        with self._no_grad():
            for image, prompt, generator in zip(images, prompts, generators):
                frames = self._pipe(
                    image=image,
                    prompt=prompt,
                    height=height,
                    width=width,
                    num_frames=num_frames,
                    num_inference_steps=g.steps,
                    guidance_scale=g.guidance_scale,
                    generator=generator,
                    output_type="np",
                ).frames
                videos.append(np.asarray(frames)[0])  # (T, H, W, 3) float in [0, 1]
        return self.finish_video(np.stack(videos))

    @contextlib.contextmanager
    def zero_shot(self) -> Iterator[None]:
        """Run the base transformer inside; a zero-shot type runs it anyway."""
        previous = self._pipe
        self._pipe = self._base_pipe
        try:
            yield
        finally:
            self._pipe = previous

    # -- weights -------------------------------------------------------------------------------
    def components(self) -> dict[str, object]:
        pipe = self._pipe
        return {"transformer": pipe.transformer, "vae": pipe.vae, "text_encoder": pipe.text_encoder}

    def running_tensor(self, key: str) -> torch.Tensor | None:
        if self._ft_transformer is None:
            return super().running_tensor(key)
        # FT checkpoint keys: bare tensor names (component folder) or "transformer/<name>".
        if self._ft_prefix:
            if not key.startswith(self._ft_prefix):
                return None
            key = key[len(self._ft_prefix):]
        return lookup_tensor(self._ft_transformer, key)

    # -- tiny checkpoints ----------------------------------------------------------------------
    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):  # seeds the builds without touching the caller's RNG
            if wm_type == "ltx":
                _tiny_pipeline(seed).save_pretrained(str(out_dir), safe_serialization=True)
                write_card(out_dir, base_model=None, datasets=["none (random tiny weights)"],
                           license="apache-2.0", training_steps=0, generation=dict(TINY_GENERATION),
                           description="Tiny random LTX-Video image-to-video pipeline for pytest-wiw.")
                return out_dir
            if wm_type == "FTltx":
                if base is None:
                    raise CheckpointError("make_tiny('FTltx') needs base=<path of the tiny ltx pipeline>")
                base = Path(base)
                _tiny_ft_transformer(base, seed).save_pretrained(str(out_dir / "transformer"),
                                                                 safe_serialization=True)
                write_card(out_dir, base_model=str(base), datasets=["none (random tiny weights)"],
                           license="apache-2.0", training_steps=0, generation=dict(TINY_GENERATION),
                           description="Tiny 'fine-tuned' LTX-Video transformer: the base with seeded noise.")
                return out_dir
        raise ValueError(f"{cls.__name__}.make_tiny serves ltx and FTltx, not {wm_type!r}")


def _check_transformer_config(folder: Path) -> None:
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json beside the transformer weights")
    try:
        class_name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{config}: not a readable JSON config: {exc}") from exc
    if class_name not in (None, "LTXVideoTransformer3DModel"):
        raise CheckpointError(f"{folder}: config.json describes a {class_name}, not the "
                              "LTXVideoTransformer3DModel a fine-tuned LTX transformer should be")


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


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


def _tiny_ft_transformer(base: Path, seed: int) -> LTXVideoTransformer3DModel:
    transformer = LTXVideoTransformer3DModel.from_pretrained(str(base), subfolder="transformer",
                                                             local_files_only=True)
    noise = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(transformer.named_parameters()):
            scale = _FT_NOISE * (float(p.abs().mean()) + 0.02)
            p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
    return transformer
