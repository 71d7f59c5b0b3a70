"""Wan 2.1 image-to-video: ``wan21`` (zero-shot) and ``FTwan21`` (a LoRA on top of it), via diffusers.

``wan21`` loads a ``WanImageToVideoPipeline`` folder. ``FTwan21`` loads its base pipeline and
then the LoRA ``.safetensors`` into the transformer as one peft adapter; ``zero_shot()`` switches
that adapter off (never fused, so the base output comes back bitwise, with no second load).

Batches run item by item: diffusers 0.42.1's ``WanImageToVideoPipeline`` takes one conditioning
image per call (a list of images is refused; a (B, 3, H, W) tensor gets its CLIP embeddings and VAE
condition repeated per prompt, B*B rows, and fails), so item i of a batch is item i run alone, bitwise.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from pytest_wiw.api import Checkpoint, CheckpointError, GenerationRequest, WorldModel

from .diffusers_setup import ready_to_run, variant_kwargs, write_tiny_card

#: Name of the peft adapter the FT LoRA is loaded as; running LoRA parameters carry it in their names.
ADAPTER_NAME = "wiw_ft"
#: Attention projections of every Wan block (self-attention, text and image cross-attention).
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"]
#: Generation settings the tiny checkpoints declare in their cards: a call takes ~0.1 s on CPU.
#: Non-square on purpose, so a height/width swap shows; CFG on (> 1) so the negative-prompt path runs.
TINY_GENERATION = {"height": 32, "width": 48, "out_height": 32, "out_width": 48, "num_frames": 5,
                   "num_output_frames": 4, "steps": 2, "guidance_scale": 2.0}


class WanImageToVideo(WorldModel):
    """Wan 2.1 I2V through diffusers; serves ``wan21`` and its LoRA post-train ``FTwan21``."""

    version = "1"
    #: What an FT checkpoint of this wrapper is, in messages.
    LORA_CHECKPOINT = "a LoRA .safetensors (or a folder holding one)"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self._zero_shot_depth = 0
        pipe_ckpt = self._pipeline_checkpoint()
        try:
            pipe = WanImageToVideoPipeline.from_pretrained(str(pipe_ckpt.path), dtype=dtype, local_files_only=True,
                                                           **variant_kwargs(pipe_ckpt))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{pipe_ckpt.path}: cannot load it as a WanImageToVideoPipeline: {exc}") from exc
        pipe = ready_to_run(pipe, device)
        if spec.is_ft:
            # Diffusers/peft names and the DiffSynth-Studio names WIW's FTwan* LoRAs use both load;
            # a key that matches no module is an error listing it (wrappers.wan_lora).
            from .wan_lora import load_wan_lora

            self.lora = load_wan_lora(pipe, "transformer", ckpt.weight_file, ADAPTER_NAME,
                                      what="Wan 2.1 I2V transformer")
        self.pipe = pipe

    # -- loading -----------------------------------------------------------------------------------
    def _pipeline_kind(self) -> str:
        """The pipeline folder this wrapper loads, as messages name it."""
        return "WanImageToVideoPipeline"

    def _pipeline_checkpoint(self) -> Checkpoint:
        """The checkpoint the pipeline loads from: an FT type's base (its own must be a LoRA), else its own."""
        spec, ckpt = self.spec, self.ckpt
        if spec.is_ft:
            if spec.finetune != "lora":
                raise CheckpointError(f"{spec.name}: this wrapper applies LoRA post-trains only "
                                      f"(finetune='lora'), not finetune={spec.finetune!r}")
            if ckpt.format != "lora":
                raise CheckpointError(f"{ckpt.path}: {spec.name} expects {self.LORA_CHECKPOINT}, found a "
                                      f"{ckpt.format!r} checkpoint")
            if self.base_ckpt is None:
                raise CheckpointError(f"{spec.name} needs its zero-shot {spec.base} pipeline: give "
                                      "--base-ckpt-path or a base_model in the checkpoint's card")
            pipe_ckpt = self.base_ckpt
        else:
            pipe_ckpt = ckpt
        if pipe_ckpt.format != "diffusers":
            raise CheckpointError(f"{pipe_ckpt.path}: expected a diffusers {self._pipeline_kind()} folder "
                                  f"(model_index.json), found a {pipe_ckpt.format!r} checkpoint")
        return pipe_ckpt

    # -- generation ------------------------------------------------------------------------------
    def _sizes(self) -> tuple[int, int, int]:
        """Height, width and frame count the pipeline will really use (it rounds them), noted if changed."""
        g = self.generation
        patch = self.pipe.transformer.config.patch_size
        mh = self.pipe.vae_scale_factor_spatial * patch[1]
        mw = self.pipe.vae_scale_factor_spatial * patch[2]
        h, w = max(g.height // mh * mh, mh), max(g.width // mw * mw, mw)
        temporal = self.pipe.vae_scale_factor_temporal
        n = g.num_frames if (g.num_frames - 1) % temporal == 0 else g.num_frames // temporal * temporal + 1
        n = max(n, 1)
        if (h, w) != (g.height, g.width):
            self._note(f"generation size {g.height}x{g.width} rounded to {h}x{w} (multiples of {mh}x{mw})")
        if n != g.num_frames:
            self._note(f"num_frames {g.num_frames} rounded to {n} (Wan generates {temporal}k+1 frames)")
        return h, w, n

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def generate(self, request: GenerationRequest) -> np.ndarray:
        g = self.generation
        height, width, num_frames = self._sizes()
        prompts = request.prompts()
        images = self.images_as_pil(request, height, width)
        generators = self.generators(request)
        videos = []
        with self._no_grad():
            # One pipeline call per item (see the module docstring): each with its own generator.
            for image, prompt, generator in zip(images, prompts, generators):
                out = self.pipe(image=image, prompt=prompt, height=height, width=width, num_frames=num_frames,
                                num_inference_steps=g.steps, guidance_scale=g.guidance_scale,
                                generator=[generator], output_type="np")
                videos.append(np.asarray(out.frames)[0])  # (T, H, W, 3) float in [0, 1]
        return self.finish_video(np.stack(videos))

    # -- zero-shot baseline (FT only) ------------------------------------------------------------
    def zero_shot(self):
        if not self.spec.is_ft:
            return super().zero_shot()
        return self._adapter_off()

    @contextlib.contextmanager
    def _adapter_off(self) -> Iterator[None]:
        if self._zero_shot_depth == 0:
            self.pipe.disable_lora()
        self._zero_shot_depth += 1
        try:
            yield
        finally:
            self._zero_shot_depth -= 1
            if self._zero_shot_depth == 0:
                self.pipe.enable_lora()

    # -- running tensors ---------------------------------------------------------------------------
    def components(self) -> dict[str, object]:
        names = ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder")
        return {n: m for n in names if (m := getattr(self.pipe, n, None)) is not None}

    def running_tensor(self, key: str):
        """For FT: a LoRA file key (in whichever naming) -> the running peft parameter it was loaded into."""
        if not self.spec.is_ft:
            return super().running_tensor(key)
        return self.lora.running_tensor(self.pipe.transformer, key)

    # -- tiny checkpoints ----------------------------------------------------------------------------
    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        """The tiny zero-shot pipeline, or (given its ``base``) the tiny FT LoRA, with its card."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):  # seeds the builds without touching the caller's RNG
            if base is not None:
                cls._write_tiny_lora(out_dir, Path(base), seed)
            elif wm_type.startswith("FT"):
                raise ValueError(f"make_tiny({wm_type!r}) needs base=<path of the tiny zero-shot pipeline>")
            else:
                cls._write_tiny_pipeline(out_dir, seed)
        return out_dir

    @staticmethod
    def _write_tiny_pipeline(out_dir: Path, seed: int) -> None:
        """Write the tiny zero-shot pipeline and its card into ``out_dir`` (seeds torch's global RNG)."""
        _make_tiny_pipeline(out_dir, seed)

    @staticmethod
    def _write_tiny_lora(out_dir: Path, base: Path, seed: int) -> None:
        """Write the tiny FT LoRA over the pipeline at ``base``, and its card (seeds torch's global RNG)."""
        _make_tiny_lora(out_dir, base, seed)


def _make_tiny_pipeline(out_dir: Path, seed: int) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from .tiny_text import tiny_t5_encoder, tiny_tokenizer

    text_dim, image_dim, heads, head_dim = 16, 8, 2, 8
    torch.manual_seed(seed)
    # As Wan 2.1 I2V: in_channels 36 = 16 noise latents + 4 first-frame mask + 16 image-condition
    # latents; image_dim plus added_kv_proj_dim (= inner dim) give the separate image cross-attention
    # (add_k_proj/add_v_proj), which splits the image tokens off 512 text tokens.
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=36,
        out_channels=16, text_dim=text_dim, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=image_dim,
        added_kv_proj_dim=heads * head_dim)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=image_dim, projection_dim=image_dim, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=16, image_size=32, patch_size=4))
    image_processor = CLIPImageProcessor(crop_size=32, size=32)
    text_encoder = tiny_t5_encoder(d_model=text_dim, seed=seed)
    # Wan 2.1's own scheduler setting: UniPC over flow sigmas.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=3.0)
    pipe = WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                                   scheduler=scheduler, image_processor=image_processor,
                                   image_encoder=image_encoder, transformer=transformer)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    write_tiny_card(out_dir, generation=TINY_GENERATION,
                    description="Tiny random Wan 2.1 image-to-video pipeline for pytest-wiw self-tests.")


def _make_tiny_lora(out_dir: Path, base: Path, seed: int) -> None:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = WanImageToVideoPipeline.from_pretrained(str(base), dtype=torch.float32, local_files_only=True)
    config = LoraConfig(r=4, lora_alpha=16, init_lora_weights=False, target_modules=LORA_TARGET_MODULES)
    torch.manual_seed(seed)
    # init_lora_weights=False keeps nn.Linear's random init for lora_B too, so the adapter is not a no-op.
    pipe.transformer.add_adapter(config)
    WanImageToVideoPipeline.save_lora_weights(
        str(out_dir), transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    write_tiny_card(out_dir, base=base, generation=TINY_GENERATION,
                    description="Tiny random LoRA over the tiny Wan 2.1 pipeline, for pytest-wiw self-tests.")
