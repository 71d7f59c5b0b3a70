"""Cosmos-Predict2.5 (diffusers ``Cosmos2_5_PredictBasePipeline``, zero-shot): wm_type ``cosmos25``.

Image2World: the start image is encoded into the first latent frame, which stays fixed while the rest is
denoised; the prompt reaches the transformer through the Qwen2.5-VL text encoder (every layer's hidden
state, normalised and concatenated, then projected by the transformer).

Image input without torchvision: the pipeline's ``image=`` path calls ``torchvision.transforms.functional
.to_tensor``. This wrapper converts the image itself (the same ``uint8 / 255``) and hands it to the
pipeline's ``video=`` path as a one-frame video with ``num_latent_conditional_frames=1``, preprocessed by
the pipeline's own video processor. That path pads the clip with copies of the image where the image path
pads with black; only the first latent frame is used as the condition, and the Wan VAE encodes it from the
first frame alone (causally), so the two paths agree (checked bitwise against a to_tensor stand-in).

The pipeline needs a safety checker; without ``cosmos_guardrail`` this module passes the no-op checker of
``wrappers.cosmos`` to every ``from_pretrained``.

Checkpoint: a diffusers ``Cosmos2_5_PredictBasePipeline`` folder (model_index.json, safetensors).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    Cosmos2_5_PredictBasePipeline,
    CosmosTransformer3DModel,
    UniPCMultistepScheduler,
)

from pytest_wiw.api import CheckpointError, GenerationRequest, SpecError, WorldModel

from .common.loading import load_pipeline, ready_to_run
from .common.sizes import require_size_multiple
from .common.tiny import TinyPipeline, tiny_generation
from .cosmos import NoOpSafetyChecker
from .hunyuan import running_tensor_by_saved_name

WM = "cosmos25"

# Generation settings of the tiny checkpoint (carried in its card): 9 frames = 3 latent frames, 9 decoded,
# mapped to 4. Well under a second per call on one CPU thread.
TINY_GENERATION = tiny_generation(guidance_scale=7.0)

# A minimal chat template for the tiny tokenizer: role, then the text parts of each message. The pipeline
# renders a system and a user message through ``apply_chat_template`` and pads to max_sequence_length.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : "
    "{% for part in message['content'] %}{{ part['text'] }} {% endfor %}{% endfor %}"
)

# The tiny VAE's output-conv gain (see tiny_pipeline): makes the seed visible in the pixels.
VAE_OUT_GAIN = 2.0
# Released Cosmos-Predict2.5's scheduler (diffusers' conversion script): UniPC over flow-matching sigmas.
SCHEDULER_CONFIG = dict(use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction",
                        sigma_max=200.0, sigma_min=0.01)


class Cosmos25Predict(TinyPipeline, WorldModel):
    """Cosmos-Predict2.5 Image2World through diffusers' Cosmos2_5_PredictBasePipeline."""

    version = "1"
    TINY_TYPES = (WM,)
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random Cosmos-Predict2.5 pipeline for pytest-wiw (seed {seed}); its outputs mean nothing."

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        g = self.generation
        require_size_multiple(WM, g, 16)
        if g.num_frames < 1:
            raise SpecError(f"cosmos25 needs num_frames >= 1, got {g.num_frames}")
        pipe = load_pipeline(Cosmos2_5_PredictBasePipeline, ckpt, WM, dtype=dtype, check_index=True,
                             safety_checker=NoOpSafetyChecker())
        _check_no_torchvision_needed(pipe, ckpt.path)
        self.pipe = ready_to_run(pipe, device)
        self._saved_names: dict[str, dict] = {}
        temporal = pipe.vae_scale_factor_temporal
        decoded = (g.num_frames - 1) // temporal * temporal + 1
        if decoded != g.num_frames:
            self.notes.append(f"Cosmos-Predict2.5 decodes {decoded} frames for num_frames={g.num_frames} "
                              f"(whole latent frames of {temporal}) and stretches them back to {g.num_frames}")

    def components(self) -> dict[str, object]:
        p = self.pipe
        return {"transformer": p.transformer, "vae": p.vae, "text_encoder": p.text_encoder}

    def running_tensor(self, key: str) -> torch.Tensor | None:
        # The Qwen2.5-VL encoder is saved under transformers' legacy names: look those up too.
        return running_tensor_by_saved_name(self.components(), key, self._saved_names)

    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per batch item, each with its own generator (a batch equals its items bitwise)."""
        g = self.generation
        return self.generate_item_by_item(request, g.height, g.width, lambda image, prompt, generator: self.pipe(
            video=self._conditioning_clip(image), num_latent_conditional_frames=1, prompt=prompt,
            height=g.height, width=g.width, num_frames=g.num_frames, num_inference_steps=g.steps,
            guidance_scale=g.guidance_scale, generator=generator, output_type="np").frames)

    def _conditioning_clip(self, image) -> torch.Tensor:
        """The start image as a one-frame clip (1, 3, 1, H, W) in [-1, 1], without torchvision.

        ``uint8 / 255`` in CHW order is what ``torchvision.transforms.functional.to_tensor`` gives for an
        RGB PIL image; the pipeline's own video processor then scales it exactly as the image path does.
        """
        g = self.generation
        frame = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        clip = self.pipe.video_processor.preprocess_video(frame[None, None], g.height, g.width)
        return clip.to(self.device, self.pipe.vae.dtype)

    # -- tiny checkpoint (make_tiny: TinyPipeline's) ----------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> Cosmos2_5_PredictBasePipeline:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        from .common.tiny_text import tiny_tokenizer

        tokenizer = tiny_tokenizer(model_max_length=512, chat_template=TINY_CHAT_TEMPLATE)
        vocab = len(tokenizer)
        d_text, n_text_layers = 16, 2
        # Qwen2.5-VL: a 2-layer text model on the tiny vocabulary (mrope sections sum to head_dim / 2) and a
        # 1-block vision tower the pipeline never calls. Its image/video ids sit past the tokenizer's ids.
        torch.manual_seed(seed)
        text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
            text_config=dict(vocab_size=vocab + 3, hidden_size=d_text, intermediate_size=32,
                             num_hidden_layers=n_text_layers, num_attention_heads=2, num_key_value_heads=2,
                             max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                              "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=d_text,
                               fullatt_block_indexes=[0]),
            image_token_id=vocab, video_token_id=vocab + 1, vision_start_token_id=vocab + 2,
        )).eval()
        torch.manual_seed(seed)
        # The pipeline hands the transformer every layer's hidden state concatenated (n_layers * d_text); the
        # transformer projects it to its cross-attention width, as the released one does (100352 -> 1024).
        transformer = CosmosTransformer3DModel(
            in_channels=16 + 1, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=1,
            mlp_ratio=2.0, text_embed_dim=16, adaln_lora_dim=4, max_size=(8, 16, 16), patch_size=(1, 2, 2),
            rope_scale=(1.0, 1.0, 1.0), concat_padding_mask=False, extra_pos_embed_type=None,
            use_crossattn_projection=True, crossattn_proj_in_channels=n_text_layers * d_text,
            encoder_hidden_states_channels=16,
        )
        # A random Wan decoder barely passes its latents on: at base_dim 4 two seeds differed by ~1.4 uint8
        # levels (the pixels are mostly its fixed bias pattern). base_dim 8 with the output conv's weights
        # doubled gave 4.6 to 9.6 levels over checkpoint seeds 0-4 (14% of pixels saturated).
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        with torch.no_grad():
            vae.decoder.conv_out.weight.mul_(VAE_OUT_GAIN)
        scheduler = UniPCMultistepScheduler(**SCHEDULER_CONFIG)
        return Cosmos2_5_PredictBasePipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                                             vae=vae, scheduler=scheduler, safety_checker=NoOpSafetyChecker())


def _check_no_torchvision_needed(pipe: Cosmos2_5_PredictBasePipeline, path) -> None:
    """The transformer's padding-mask input resizes with torchvision: refuse it at load, not mid-generation."""
    from diffusers.utils import is_torchvision_available

    if pipe.transformer.config.concat_padding_mask and not is_torchvision_available():
        raise CheckpointError(
            f"{path}: the transformer has concat_padding_mask=True, whose forward pass resizes the padding mask "
            "with torchvision, and torchvision is not importable here (it is not installed beside the CPU torch)")
