"""Cosmos-Predict2 Video2World (diffusers ``Cosmos2VideoToWorldPipeline``): ``cosmos20`` and ``FTcosmos``.

``cosmos20`` loads a diffusers pipeline folder. ``FTcosmos`` loads a fully fine-tuned transformer (a
component folder, or a folder holding ``transformer/``) on top of its ``cosmos20`` base pipeline, and
shares every other module with it; ``zero_shot()`` switches back to the base transformer without a
reload.

Without the ``cosmos_guardrail`` package the pipeline cannot be built, so this module brings a
no-op safety checker and passes it to the constructor and to every ``from_pretrained``. The
pipeline's checker path quantises the decoded video to 1/255 (it round-trips through uint8), which
WIW's uint8 output does anyway.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    Cosmos2VideoToWorldPipeline,
    CosmosTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from pytest_wiw.api import CheckpointError, GenerationRequest, WorldModel, lookup_tensor, write_card

# Generation settings of the tiny checkpoints make_tiny writes (carried in their cards).
TINY_GENERATION = {
    "height": 32, "width": 32, "out_height": 32, "out_width": 32,
    "num_frames": 9, "num_output_frames": 4, "steps": 2, "guidance_scale": 7.0,
}
# Transformer config fields that must agree between a fine-tuned transformer and its base pipeline.
_ARCH_FIELDS = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers",
                "text_embed_dim", "patch_size", "concat_padding_mask")


class NoOpSafetyChecker(ModelMixin, ConfigMixin):
    """Stands in for cosmos_guardrail's CosmosSafetyChecker: every prompt passes, videos come back unchanged.

    It has no weights; a non-persistent buffer tells the pipeline which device it sits on.
    """

    @register_to_config
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_device_tracker", torch.zeros(1), persistent=False)

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames

    @property
    def device(self) -> torch.device:
        return self._device_tracker.device

    @property
    def dtype(self) -> torch.dtype:
        return self._device_tracker.dtype


def _load_pipeline(path: Path, dtype: torch.dtype, device: str) -> Cosmos2VideoToWorldPipeline:
    try:
        pipe = Cosmos2VideoToWorldPipeline.from_pretrained(
            str(path), safety_checker=NoOpSafetyChecker(), dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot load a Cosmos2VideoToWorldPipeline from this folder: "
                              f"{type(exc).__name__}: {exc}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Cosmos2VideoToWorld(WorldModel):
    """Cosmos-Predict2 Video2World: the start image conditions the first latent frame, the prompt the rest."""

    version = "1"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self._ft_transformer: CosmosTransformer3DModel | None = None
        self._ft_prefix = ""
        if not spec.is_ft:
            if ckpt.format != "diffusers":
                raise CheckpointError(f"{ckpt.path}: {spec.name} expects a diffusers Cosmos2VideoToWorldPipeline "
                                      f"folder (with model_index.json), got a {ckpt.format!r} checkpoint")
            self._base_pipe = _load_pipeline(ckpt.path, dtype, device)
            self._pipe = self._base_pipe
            return

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
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: no config.json beside the transformer weights")

        self._base_pipe = _load_pipeline(base_ckpt.path, dtype, device)
        try:
            ft = CosmosTransformer3DModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{folder}: cannot load a CosmosTransformer3DModel: "
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
        # Shares the text encoder, tokenizer, VAE, scheduler and safety checker with the base pipeline.
        ft_pipe = Cosmos2VideoToWorldPipeline(**{**self._base_pipe.components, "transformer": ft})
        ft_pipe.set_progress_bar_config(disable=True)
        self._ft_pipe = ft_pipe
        self._pipe = ft_pipe

    # -- generation ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per batch item, each with its own generator.

        A batched call (generator=[...]) draws the same noise, but the batched transformer rounds
        differently from a batch of one: measured on CPU, the final latents moved by ~3e-5 and an item
        then differed from itself alone by up to 1 uint8 level. Item by item, a batch equals its items
        run alone bitwise.
        """
        g = self.generation
        prompts = request.prompts()
        images = self.images_as_pil(request, g.height, g.width)
        generators = self.generators(request)
        videos = []
        with self._no_grad():
            for image, prompt, generator in zip(images, prompts, generators):
                frames = self._pipe(
                    image=image,
                    prompt=prompt,
                    height=g.height,
                    width=g.width,
                    num_frames=g.num_frames,
                    num_inference_steps=g.steps,
                    guidance_scale=g.guidance_scale,
                    generator=generator,
                    output_type="np",
                ).frames
                videos.append(np.asarray(frames)[0])
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
        if wm_type == "cosmos20":
            _tiny_pipeline(seed).save_pretrained(str(out_dir), safe_serialization=True)
            write_card(out_dir, base_model=None, datasets=["none (random tiny weights)"], license="apache-2.0",
                       training_steps=0, generation=dict(TINY_GENERATION),
                       description="Tiny random Cosmos-Predict2 Video2World pipeline for pytest-wiw.")
            return out_dir
        if wm_type == "FTcosmos":
            if base is None:
                raise CheckpointError("make_tiny('FTcosmos') needs base=<path of the tiny cosmos20 pipeline>")
            base = Path(base)
            transformer = CosmosTransformer3DModel.from_pretrained(str(base), subfolder="transformer",
                                                                   local_files_only=True)
            noise = torch.Generator("cpu").manual_seed(seed)
            with torch.no_grad():
                for name, p in sorted(transformer.named_parameters()):
                    scale = 1.5 * (float(p.abs().mean()) + 0.02)
                    p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
            transformer.save_pretrained(str(out_dir / "transformer"), safe_serialization=True)
            write_card(out_dir, base_model=str(base), datasets=["none (random tiny weights)"],
                       license="apache-2.0", training_steps=0, generation=dict(TINY_GENERATION),
                       description="Tiny 'fine-tuned' Cosmos-Predict2 transformer: the base with seeded noise.")
            return out_dir
        raise ValueError(f"{cls.__name__}.make_tiny serves cosmos20 and FTcosmos, not {wm_type!r}")


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _tiny_pipeline(seed: int) -> Cosmos2VideoToWorldPipeline:
    from .tiny_text import tiny_t5_encoder, tiny_tokenizer

    d_text = 16
    torch.manual_seed(seed)
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=1,
        mlp_ratio=2.0, text_embed_dim=d_text, adaln_lora_dim=4, max_size=(8, 16, 16), patch_size=(1, 2, 2),
        rope_scale=(1.0, 1.0, 1.0), concat_padding_mask=False, extra_pos_embed_type=None,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(seed)
    text_encoder = tiny_t5_encoder(d_model=d_text, seed=seed)
    tokenizer = tiny_tokenizer(model_max_length=512)
    scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True, shift=1.0)
    return Cosmos2VideoToWorldPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                                       vae=vae, scheduler=scheduler, safety_checker=NoOpSafetyChecker())
