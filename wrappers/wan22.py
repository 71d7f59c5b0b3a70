"""Wan 2.2 TI2V-5B image-to-video: ``wan22`` (zero-shot) and ``FTwan22`` (a LoRA on top of it), via diffusers.

``wan22`` loads a diffusers ``WanImageToVideoPipeline`` folder the way diffusers 0.42.1 runs Wan 2.2
TI2V-5B: ``expand_timesteps=True`` (the start image's latents replace the first latent frame, whose
timestep is 0, instead of being concatenated as extra channels), no CLIP image encoder, the z_dim-48
Wan 2.2 VAE (residual blocks, 2x2 patchified input, 16x spatial compression), and a transformer whose
in/out channels equal that z_dim. ``FTwan22`` loads its base pipeline, then the LoRA ``.safetensors``
(diffusers or DiffSynth-Studio key names, see ``wrappers.wan_lora``) into the transformer as one peft
adapter; ``zero_shot()`` switches it off (never fused: the base output comes back bitwise).

Generation is ``wrappers.wan.WanImageToVideo``'s: one pipeline call per batch item with its own
generator, sizes rounded as the pipeline would round them (multiples of 32 here) and noted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from pytest_wiw.api import CheckpointError, WorldModel

from .diffusers_setup import ready_to_run, variant_kwargs, write_tiny_card
from .wan import ADAPTER_NAME, WanImageToVideo
from .wan_lora import AdapterSwitch, LoadedLora, load_wan_lora, save_random_lora

#: Generation settings the tiny checkpoints declare in their cards: a call takes well under 0.1 s on CPU.
#: Non-square (64x32, multiples of 32), 9 frames = 3 latent frames (the first is the start image's),
#: CFG on (> 1) so the negative-prompt path runs.
TINY_GENERATION = {"height": 32, "width": 64, "out_height": 32, "out_width": 64, "num_frames": 9,
                   "num_output_frames": 4, "steps": 2, "guidance_scale": 2.0}
#: The tiny LoRA's lora_B is scaled by this so the FT output differs from the base by several uint8 levels.
TINY_LORA_B_GAIN = 2.0


class Wan22Base(WanImageToVideo):
    """What both Wan 2.2 wrappers share: checkpoint checks, pipeline load, LoRA adapters, zero-shot.

    Subclasses say which pipeline config to force, how to check the architecture, and which
    transformer each LoRA file goes to.
    """

    #: Model name in messages.
    ARCH = "Wan 2.2"
    #: Pipeline config values passed to from_pretrained (the architecture needs them whatever the folder says).
    PIPELINE_CONFIG: dict = {}
    LORA_CHECKPOINT = "a LoRA .safetensors (or a folder holding it)"

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        # WanImageToVideo.__init__ loads a Wan 2.1 pipeline with diffusers' file-based LoRA loader; this
        # class loads its own way and keeps the generation half (generate, _sizes, components).
        WorldModel.__init__(self, spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        pipe_ckpt = self._pipeline_checkpoint()
        try:
            pipe = WanImageToVideoPipeline.from_pretrained(str(pipe_ckpt.path), dtype=dtype, local_files_only=True,
                                                           **variant_kwargs(pipe_ckpt), **self.PIPELINE_CONFIG)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{pipe_ckpt.path}: cannot load it as a {self.ARCH} WanImageToVideoPipeline: "
                                  f"{exc}") from exc
        self._check_architecture(pipe, pipe_ckpt.path)
        self.pipe = ready_to_run(pipe, device)
        self.loras: list[LoadedLora] = []
        if spec.is_ft:
            for component, file in self._lora_routes():
                self.loras.append(load_wan_lora(pipe, component, file, ADAPTER_NAME,
                                                what=f"{self.ARCH} {component}"))
                if self.loras[-1].naming != "diffusers":
                    self._note(f"{file.name}: original-Wan / DiffSynth-Studio LoRA key names, converted to "
                               f"diffusers' with its Wan LoRA converter, loaded into {component}")
        self._switch = AdapterSwitch([getattr(pipe, c) for c in dict.fromkeys(l.component for l in self.loras)])

    # -- loading -----------------------------------------------------------------------------------
    def _pipeline_kind(self) -> str:
        return f"{self.ARCH} WanImageToVideoPipeline"

    def _check_architecture(self, pipe, path: Path) -> None:
        raise NotImplementedError

    def _lora_routes(self) -> list[tuple[str, Path]]:
        """(transformer component, LoRA file) pairs to load."""
        raise NotImplementedError

    # -- zero-shot baseline (FT only) ------------------------------------------------------------------
    def zero_shot(self):
        if not self.spec.is_ft:
            return WorldModel.zero_shot(self)
        return self._switch.off()

    # -- running tensors ---------------------------------------------------------------------------------
    def running_tensor(self, key: str):
        """For FT: a LoRA file key (diffusers or DiffSynth naming; ``<file>/<key>`` when the checkpoint has
        several files) -> the running peft parameter it was loaded into (``...lora_A.wiw_ft.weight``)."""
        if not self.spec.is_ft:
            return WorldModel.running_tensor(self, key)
        for lora in self.loras:
            prefix = self.ckpt.rel(lora.file) + "/"
            if key.startswith(prefix):
                return lora.running_tensor(getattr(self.pipe, lora.component), key[len(prefix):])
        if len(self.loras) == 1:
            lora = self.loras[0]
            return lora.running_tensor(getattr(self.pipe, lora.component), key)
        return None


class Wan22TI2V(Wan22Base):
    """Wan 2.2 TI2V-5B through diffusers; serves ``wan22`` and its LoRA post-train ``FTwan22``."""

    version = "1"
    ARCH = "Wan 2.2 TI2V-5B"
    PIPELINE_CONFIG = {"expand_timesteps": True}

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

    def _lora_routes(self) -> list[tuple[str, Path]]:
        if len(self.ckpt.files) != 1:
            raise CheckpointError(f"{self.ckpt.path}: {self.spec.name} takes one LoRA .safetensors, found "
                                  f"{len(self.ckpt.files)}: {', '.join(f.name for f in self.ckpt.files)}")
        return [("transformer", self.ckpt.weight_file)]

    # -- tiny checkpoints (make_tiny: WanImageToVideo's) -------------------------------------------------
    @staticmethod
    def _write_tiny_pipeline(out_dir: Path, seed: int) -> None:
        _make_tiny_pipeline(out_dir, seed)

    @staticmethod
    def _write_tiny_lora(out_dir: Path, base: Path, seed: int) -> None:
        pipe = WanImageToVideoPipeline.from_pretrained(str(base), dtype=torch.float32, local_files_only=True)
        save_random_lora(WanImageToVideoPipeline, pipe.transformer, out_dir,
                         "pytorch_lora_weights.safetensors", seed, b_gain=TINY_LORA_B_GAIN)
        write_tiny_card(out_dir, base=base, generation=TINY_GENERATION,
                        description="Tiny random LoRA over the tiny Wan 2.2 TI2V pipeline, for pytest-wiw self-tests.")


def tiny_wan22_vae(seed: int) -> AutoencoderKLWan:
    """The Wan 2.2 VAE, tiny: z_dim 48, residual blocks, 2x2 patchified RGB (12 channels), 16x spatial."""
    z = 48
    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=4, decoder_base_dim=8, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                            out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                            latents_mean=[0.0] * z, latents_std=[1.0] * z)


def _make_tiny_pipeline(out_dir: Path, seed: int) -> None:
    from .tiny_text import tiny_t5_encoder, tiny_tokenizer

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
    pipe = WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                                   scheduler=scheduler, transformer=transformer, expand_timesteps=True)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    write_tiny_card(out_dir, generation=TINY_GENERATION,
                    description="Tiny random Wan 2.2 TI2V-5B-style image-to-video pipeline for pytest-wiw self-tests.")
