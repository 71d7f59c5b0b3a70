"""Wan 2.2 A14B image-to-video: ``wan22-14B`` (zero-shot) and ``FTwan22-14B`` (LoRAs on its two experts).

``wan22-14B`` loads a diffusers ``WanImageToVideoPipeline`` folder of the A14B I2V kind: two
transformers of one architecture, ``transformer`` (the high-noise expert, timesteps at or above
``boundary_ratio * 1000``) and ``transformer_2`` (the low-noise expert, below it), Wan 2.1-style I2V
input (noise latents + first-frame mask + image-condition latents, 36 channels for the z_dim-16 VAE),
no CLIP image encoder.

``FTwan22-14B`` takes WIW's layouts (DiffSynth-Studio's, as ``wan_model_diffsynth.py`` loads them):

* LoRAs, one per expert: two folders ``..._high_noise_lora/epoch-N.safetensors`` and
  ``..._low_noise_lora/epoch-N.safetensors`` under one parent (the checkpoint path), or the two given
  as ``--ckpt-path FTwan22-14B=A,B``, or one LoRA alone. WIW's rule routes them: a file whose path
  contains ``_low_`` goes to the low-noise expert (DiffSynth's ``dit2``, diffusers' ``transformer_2``),
  the other to the high-noise one (``dit``, ``transformer``). The rule reads the path below the
  checkpoint's folder (so a ``_low_`` in a parent folder shared by both files routes neither), or the
  whole path of a single file, as WIW does. An expert with no LoRA runs its base weights (noted).
* full fine-tunes: diffusers ``transformer/`` + ``transformer_2/`` folders (``wan22_i2v_model.py
  --ft_dir``), or a DiffSynth DiT state dict (routed like a LoRA).

Keys may use diffusers or DiffSynth-Studio names (``wrappers.wan_lora``). ``zero_shot()`` switches the
adapters of both experts off (never fused), or runs the base experts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from pytest_wiw.api import CheckpointError

from .common.tiny import tiny_generation
from .common.tiny_text import tiny_t5_encoder, tiny_tokenizer
from .wan import WanImageToVideo

#: Generation settings the tiny checkpoints declare in their cards. With 2 steps at shift 5 the
#: timesteps are 999 and 833: one step per expert at boundary_ratio 0.9, so both experts run.
TINY_GENERATION = tiny_generation(guidance_scale=2.0, width=48, num_frames=5)
#: Wan 2.2 A14B I2V's expert boundary (the real pipeline's model_index.json says 0.9 too).
TINY_BOUNDARY_RATIO = 0.9
#: The tiny FT's two DiffSynth epoch folders, by expert; the low-noise one carries ``_low_``, as WIW's do.
TINY_LORA_FOLDERS = {"transformer": "Wan2.2-I2V-A14B-tiny_high_noise_lora",
                     "transformer_2": "Wan2.2-I2V-A14B-tiny_low_noise_lora"}
TINY_LORA_B_GAIN = 3.0
LOW_NOISE_MARK = "_low_"
EXPERT_ROLE = {"transformer": "high-noise expert", "transformer_2": "low-noise expert"}


def expert_of(route: str) -> str:
    """The expert a post-train file is for, by WIW's rule: ``transformer_2`` (low noise) when ``route``
    (its path, see ``Wan22A14B._route_text``) contains ``_low_``, else ``transformer``."""
    return "transformer_2" if LOW_NOISE_MARK in route else "transformer"


class Wan22A14B(WanImageToVideo):
    """Wan 2.2 A14B I2V through diffusers; serves ``wan22-14B`` and its post-train ``FTwan22-14B``."""

    version = "2"
    ARCH = "Wan 2.2 A14B I2V"
    PIPELINE_CONFIG = {"expand_timesteps": False}
    EXPERTS = ("transformer", "transformer_2")
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = ("Tiny random Wan 2.2 A14B-style (two-expert) image-to-video pipeline for pytest-wiw "
                        "self-tests.")
    TINY_LORA_B_GAIN = TINY_LORA_B_GAIN
    #: Two epoch folders, one per expert (seeds ``seed * 10 + i``); the card only in ``out_dir``, their parent.
    TINY_LORA_FOLDERS = TINY_LORA_FOLDERS
    TINY_FT_CARDS = (".",)
    TINY_FT_DESCRIPTION = ("Tiny random DiffSynth-Studio LoRA epochs (high- and low-noise expert) over the tiny "
                           "Wan 2.2 A14B I2V pipeline, for pytest-wiw self-tests.")

    def _check_architecture(self, pipe, path: Path) -> None:
        t, t2 = pipe.transformer, getattr(pipe, "transformer_2", None)
        if t is None or t2 is None or pipe.config.boundary_ratio is None:
            raise CheckpointError(f"{path}: not a {self.ARCH} pipeline: it needs two experts (transformer, "
                                  "transformer_2) and a boundary_ratio; found "
                                  f"transformer={'yes' if t is not None else 'no'}, "
                                  f"transformer_2={'yes' if t2 is not None else 'no'}, "
                                  f"boundary_ratio={pipe.config.boundary_ratio}")
        z = pipe.vae.config.z_dim
        for name, m in (("transformer", t), ("transformer_2", t2)):
            if m.config.in_channels != 2 * z + 4:
                raise CheckpointError(f"{path}: not a {self.ARCH} pipeline: {name} takes {m.config.in_channels} "
                                      f"channels, an I2V expert takes {2 * z + 4} (z_dim-{z} noise + 4 mask + "
                                      f"{z} image latents)")
        self._note(f"two experts: transformer for timesteps >= {pipe.config.boundary_ratio * 1000:g}, "
                   "transformer_2 below")

    def _route_text(self, file: Path) -> str:
        """The path WIW's ``_low_`` rule reads: below the checkpoint's folder, or whole for a lone file."""
        return str(file) if len(self.ckpt.files) == 1 else self.ckpt.rel(file)

    def _routes(self) -> list[tuple[str, Path]]:
        files = list(self.ckpt.files)
        if not 1 <= len(files) <= 2:
            raise CheckpointError(f"{self.ckpt.path}: {self.spec.name} takes one or two post-train .safetensors "
                                  f"(one per expert, the low-noise one's path containing {LOW_NOISE_MARK!r}), found "
                                  f"{len(files)}: {', '.join(self.ckpt.rel(f) for f in files)}")
        routes = [(expert_of(self._route_text(f)), f) for f in files]
        if len(files) == 2 and routes[0][0] == routes[1][0]:
            component = routes[0][0]
            what = "contain" if component == "transformer_2" else "lack"
            raise CheckpointError(f"{self.ckpt.path}: two {EXPERT_ROLE[component]} files, both would go to "
                                  f"{component}: {self.ckpt.rel(files[0])} and {self.ckpt.rel(files[1])} both {what} "
                                  f"{LOW_NOISE_MARK!r} in their paths (WIW's rule: the low-noise expert's file "
                                  f"has {LOW_NOISE_MARK!r} in its path, e.g. ..._low_noise_lora/epoch-N.safetensors)")
        for component, file in routes:
            self._note(f"{self.ckpt.rel(file)} -> {component} ({EXPERT_ROLE[component]})")
        return routes

    # -- tiny checkpoints (make_tiny: WanImageToVideo's) -------------------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> WanImageToVideoPipeline:
        from diffusers import AutoencoderKLWan

        experts = []
        for i in range(2):
            torch.manual_seed(seed * 1000 + i)
            # As A14B I2V: 36 = 16 noise latents + 4 first-frame mask + 16 image-condition latents, no image
            # cross-attention. Inner dim 24 (not the TI2V tiny's 16), so a LoRA of one does not fit the other.
            experts.append(WanTransformer3DModel(
                patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
                text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", rope_max_seq_len=32))
        torch.manual_seed(seed)
        # The Wan 2.1 VAE A14B uses; base_dim 8 (not 4) makes the tiny output sensitive enough to noise and LoRA.
        vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        text_encoder = tiny_t5_encoder(d_model=16, seed=seed)
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            num_train_timesteps=1000, flow_shift=5.0)
        return WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                                       scheduler=scheduler, transformer=experts[0], transformer_2=experts[1],
                                       boundary_ratio=TINY_BOUNDARY_RATIO)
