"""HunyuanVideo-I2V (diffusers ``HunyuanVideoImageToVideoPipeline``, zero-shot): wm_type ``hunyuan``.

The start image conditions the video twice: its VAE latent is concatenated to every noisy latent frame
(``image_condition_type="latent_concat"``), and the Llava text encoder sees it beside the prompt. The
prompt reaches the model through the Llava encoder (cropped to the user turn, the image tokens in front)
and through CLIP's pooled embedding.

Prompt template: diffusers' default assumes the released Llava-Llama-3 tokenizer (the user turn starts
at token 103, the image token at 5 expands to 576 CLIP-336 patch features). A checkpoint whose vision
tower gives 576 features gets that default; any other (the tiny one) gets a short Llama-3-shaped
template whose offsets are computed from its own tokenizer and vision config when it loads.

Frames: the latent-concat variant decodes ``4 * ((num_frames - 1) // 4) + 1`` frames and drops the
first 4 (they re-encode the start image), so ``num_frames`` 4k+1 returns 4k-3 frames and 4 or fewer
return none. A ``num_frames`` that returns fewer frames than ``num_output_frames`` is refused when the
model loads, with the minimum that fits.

Checkpoint: a diffusers ``HunyuanVideoImageToVideoPipeline`` folder (model_index.json, safetensors).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoImageToVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

from pytest_wiw.api import CheckpointError, GenerationRequest, SpecError, WorldModel, lookup_tensor, saved_state_dict

from .common.loading import load_pipeline, ready_to_run
from .common.sizes import require_size_multiple
from .common.tiny import TinyPipeline, tiny_generation

WM = "hunyuan"
# Frames the latent-concat variant drops from the front of the decoded video.
DROPPED_FRAMES = 4
TEMPORAL_COMPRESSION = 4  # of every HunyuanVideo VAE (and the tiny one)

# Generation settings of the tiny checkpoint (carried in its card): 9 frames -> 3 latent frames ->
# 9 decoded -> 5 returned, mapped to 4. Well under a second per call on one CPU thread.
TINY_GENERATION = tiny_generation(guidance_scale=1.0)

# The tiny tokenizer's Llama-3-shaped chat markers and the Llava image placeholder.
HEADER_START, HEADER_END, TURN_END, IMAGE_TOKEN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"
# Same layout as diffusers' default (system turn holding the image, user turn holding the prompt, an
# empty assistant header), in words the tiny tokenizer splits on whitespace.
TINY_TEMPLATE = (f"{HEADER_START} system {HEADER_END} {IMAGE_TOKEN} describe the video : {TURN_END} "
                 f"{HEADER_START} user {HEADER_END} {{}} {TURN_END} {HEADER_START} assistant {HEADER_END}")


class HunyuanImageToVideo(TinyPipeline, WorldModel):
    """HunyuanVideo image-to-video through diffusers' HunyuanVideoImageToVideoPipeline."""

    version = "1"
    TINY_TYPES = (WM,)
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random HunyuanVideo-I2V pipeline for pytest-wiw (seed {seed}); its outputs mean nothing."

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        g = self.generation
        require_size_multiple(WM, g, 16)
        check_frame_count(g.num_frames, g.num_output_frames)
        pipe = load_pipeline(HunyuanVideoImageToVideoPipeline, ckpt, WM, dtype=dtype, check_index=True)
        if pipe.transformer.config.image_condition_type != "latent_concat":
            raise CheckpointError(f"{ckpt.path}: the transformer's image_condition_type is "
                                  f"{pipe.transformer.config.image_condition_type!r}; this wrapper serves the "
                                  "latent_concat HunyuanVideo-I2V (its frame accounting assumes it)")
        self.pipe = ready_to_run(pipe, device)
        self._saved_names: dict[str, dict] = {}
        self.prompt_template = prompt_template_for(pipe)
        self.notes.append(f"HunyuanVideo-I2V decodes {decoded_frames(g.num_frames)} frames for num_frames="
                          f"{g.num_frames} and drops the first {DROPPED_FRAMES}: "
                          f"{returned_frames(g.num_frames)} frames returned")

    def components(self) -> dict[str, object]:
        p = self.pipe
        return {"transformer": p.transformer, "vae": p.vae, "text_encoder": p.text_encoder,
                "text_encoder_2": p.text_encoder_2}

    def running_tensor(self, key: str) -> torch.Tensor | None:
        return running_tensor_by_saved_name(self.components(), key, self._saved_names)

    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per batch item, each with its own generator (a batch equals its items bitwise)."""
        g = self.generation

        def one_item(image, prompt, generator):
            frames = np.asarray(self.pipe(
                image=image, prompt=prompt, height=g.height, width=g.width, num_frames=g.num_frames,
                num_inference_steps=g.steps, guidance_scale=g.guidance_scale, generator=generator,
                prompt_template=self.prompt_template, output_type="np").frames)
            if frames.ndim != 5 or frames.shape[1] == 0:  # never hand on an empty video
                raise RuntimeError(f"HunyuanVideo-I2V returned frames of shape {frames.shape} for "
                                   f"num_frames={g.num_frames}")
            return frames

        return self.generate_item_by_item(request, g.height, g.width, one_item)

    # -- tiny checkpoint (make_tiny: TinyPipeline's) ----------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> HunyuanVideoImageToVideoPipeline:
        from transformers import (
            CLIPImageProcessor,
            CLIPTextConfig,
            CLIPTextModel,
            CLIPVisionConfig,
            LlamaConfig,
            LlavaConfig,
            LlavaForConditionalGeneration,
        )

        tokenizer = _tiny_tokenizer()
        vocab = len(tokenizer)
        pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        d_text, d_pooled = 16, 8

        torch.manual_seed(seed)
        transformer = HunyuanVideoTransformer3DModel(
            in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
            num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1,
            guidance_embeds=False, text_embed_dim=d_text, pooled_projection_dim=d_pooled, rope_axes_dim=(2, 2, 4),
            image_condition_type="latent_concat",
        )
        torch.manual_seed(seed)
        vae = AutoencoderKLHunyuanVideo(
            in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("HunyuanVideoDownBlock3D",) * 4, up_block_types=("HunyuanVideoUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8), layers_per_block=1, act_fn="silu", norm_num_groups=4,
            scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=TEMPORAL_COMPRESSION,
            mid_block_add_attention=True,
        )
        # Llava: a 224-pixel CLIP tower (patch 32: 49 image features) feeding a 3-layer Llama. The pipeline
        # reads hidden_states[-3], so three layers make the first one count.
        torch.manual_seed(seed)
        text_encoder = LlavaForConditionalGeneration(LlavaConfig(
            vision_config=CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                           num_hidden_layers=2, image_size=224, patch_size=32, projection_dim=8),
            text_config=LlamaConfig(vocab_size=vocab, hidden_size=d_text, intermediate_size=32, num_hidden_layers=3,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                    pad_token_id=pad_id, bos_token_id=pad_id, eos_token_id=eos_id),
            image_token_index=image_id, image_seq_length=49, pad_token_id=pad_id,
        )).eval()
        torch.manual_seed(seed)
        text_encoder_2 = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab, hidden_size=d_pooled, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
            max_position_embeddings=77, pad_token_id=pad_id, bos_token_id=pad_id, eos_token_id=eos_id,
            projection_dim=d_pooled,
        )).eval()
        # Without torchvision transformers falls back to (and saves) CLIPImageProcessorPil; it loads back the same way.
        image_processor = CLIPImageProcessor(
            crop_size=224, size=224, do_center_crop=True, do_normalize=True, do_resize=True, resample=3,
            image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        )
        scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
        return HunyuanVideoImageToVideoPipeline(
            text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae, scheduler=scheduler,
            text_encoder_2=text_encoder_2, tokenizer_2=_tiny_tokenizer(), image_processor=image_processor,
        )


# -- fingerprints -------------------------------------------------------------------------------
def running_tensor_by_saved_name(modules: dict, key: str, cache: dict) -> torch.Tensor | None:
    """The running tensor of checkpoint key ``component/name``, for diffusers and transformers components.

    transformers 5 saves some models under their legacy tensor names (Llava's
    ``language_model.model.layers.0...`` is ``model.language_model.layers.0...`` in the running module;
    Qwen2.5-VL's ``model.layers.0...`` is ``model.language_model.layers.0...``). A name the module does not
    have is looked up in the module's state dict as save_pretrained writes it (transformers' own reverse
    renaming, applied to the running tensors), built once per component.
    """
    component, _, name = key.rpartition("/")
    module = modules.get(component or "")
    if module is None:
        return None
    tensor = lookup_tensor(module, name)
    if tensor is not None:
        return tensor
    if component not in cache:
        cache[component] = saved_state_dict(module)
    return cache[component].get(name)


# -- frame accounting ---------------------------------------------------------------------------
def decoded_frames(num_frames: int) -> int:
    """Frames the VAE decodes for ``num_frames``: whole latent frames, rounded down."""
    return max(num_frames - 1, 0) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1


def returned_frames(num_frames: int) -> int:
    """Frames the latent-concat pipeline returns: the decoded ones less the first DROPPED_FRAMES."""
    return max(decoded_frames(num_frames) - DROPPED_FRAMES, 0)


def min_num_frames(num_output_frames: int) -> int:
    """The smallest num_frames whose returned frames cover ``num_output_frames`` (at least one)."""
    need = max(num_output_frames, 1)
    n = 1
    while returned_frames(n) < need:
        n += TEMPORAL_COMPRESSION
    return n


def check_frame_count(num_frames: int, num_output_frames: int) -> None:
    """SpecError when the pipeline would return fewer frames than the output needs (or none at all)."""
    got = returned_frames(num_frames)
    if got >= max(num_output_frames, 1):
        return
    need = min_num_frames(num_output_frames)
    raise SpecError(
        f"hunyuan: num_frames={num_frames} is too few: HunyuanVideo-I2V decodes {_frames(decoded_frames(num_frames))} "
        f"and drops the first {DROPPED_FRAMES}, returning {got} "
        f"({'an empty video' if got == 0 else f'fewer than num_output_frames={num_output_frames}'}); "
        f"the minimum is num_frames={need} (4k+1 values waste none)")


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


# -- prompt template ----------------------------------------------------------------------------
def image_feature_count(text_encoder) -> int:
    """How many features the Llava vision tower puts in place of the one image token."""
    cfg = text_encoder.config
    vision = cfg.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    return n + 1 if getattr(cfg, "vision_feature_select_strategy", "default") == "full" else n


def prompt_template_for(pipe: HunyuanVideoImageToVideoPipeline) -> dict:
    """diffusers' default template for the released encoder (576 image features), else the tiny one.

    The tiny template's offsets come from its own tokenizer: where the image token sits, and where the
    user turn starts (after the second end-of-header marker). The pipeline crops the Llava output to
    the user turn and drops the 4 tokens of the assistant header; it finds that header by the last
    ``<|end_header_id|>``.
    """
    n_image = image_feature_count(pipe.text_encoder)
    if n_image == DEFAULT_PROMPT_TEMPLATE["image_emb_len"]:
        return dict(DEFAULT_PROMPT_TEMPLATE)
    tok = pipe.tokenizer
    ids = tok(TINY_TEMPLATE.format(""), add_special_tokens=True)["input_ids"]
    image_id = pipe.text_encoder.config.image_token_index
    header_end = tok.convert_tokens_to_ids(HEADER_END)
    ends = [i for i, t in enumerate(ids) if t == header_end]
    if ids.count(image_id) != 1 or len(ends) != 3:
        raise CheckpointError(
            f"the tokenizer does not tokenize the prompt template into one image token (id {image_id}) and "
            f"three {HEADER_END} markers (got {ids.count(image_id)} and {len(ends)}): it has {n_image} image "
            f"features, not the released {DEFAULT_PROMPT_TEMPLATE['image_emb_len']}, so it needs the tiny template")
    start = ids.index(image_id)
    return {"template": TINY_TEMPLATE, "crop_start": ends[1] + 1, "image_emb_start": start,
            "image_emb_end": start + n_image, "image_emb_len": n_image}


# -- tiny pipeline ------------------------------------------------------------------------------
def _tiny_tokenizer():
    from .common.tiny_text import tiny_tokenizer

    tok = tiny_tokenizer(model_max_length=512)
    tok.add_special_tokens({"additional_special_tokens": [HEADER_START, HEADER_END, TURN_END, IMAGE_TOKEN]})
    return tok
