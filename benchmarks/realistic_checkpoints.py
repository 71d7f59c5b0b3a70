"""Random checkpoints of real shapes, in the real on-disk formats, for the GPU benchmarks of issue 6.

    python benchmarks/realistic_checkpoints.py OUT_DIR [--device cuda] [--smoke]

Writes four checkpoints (bfloat16 safetensors, random weights, cards with generation settings):

- ``OUT_DIR/wan21``: a ``WanImageToVideoPipeline`` of Wan 2.1 I2V 1.3B's shapes: the 1.3B transformer
  (dim 1536, 30 layers, 12 heads, ffn 8960) with the I2V input (36 channels) and image cross-attention,
  the UMT5-XXL text encoder (24 layers, d_model 4096), the CLIP ViT-H/14 image encoder and the Wan VAE.
- ``OUT_DIR/FTwan21``: a rank-32 LoRA over every attention projection of that transformer.
- ``OUT_DIR/cosmos20``: a ``Cosmos2VideoToWorldPipeline`` with Cosmos-Predict2 2B's transformer (28 layers,
  16 heads of 128), the T5-11B text encoder (24 layers, d_model 1024, d_ff 65536) and the Wan VAE.
- ``OUT_DIR/FTcosmos``: a "fine-tuned" transformer folder: the base's transformer plus seeded noise.
- ``OUT_DIR/ltx``: an ``LTXImageToVideoPipeline`` of LTX-Video 2B's shapes (0.9.x: 28 layers, 32 heads of 64,
  128 latent channels), the T5-XXL text encoder (24 layers, d_model 4096) and the LTX VAE (diffusers'
  defaults, 0.9.0's).
- ``OUT_DIR/FTltx``: WIW's FTltx layout, a whole pipeline folder whose ``transformer/`` is the base's plus
  seeded noise; its other components are hard links to the base's files (the same bytes, no extra disk).

igen (SVD-dagger) at its real size is built by ``benchmarks/igen_real_size.py``.

The tokenizers are the tiny offline WordLevel ones (the real vocabularies cannot be fetched here); token
ids stay inside the real embedding tables. ``--smoke`` shrinks every width and depth so the same code runs
on a CPU in seconds (tests the script, measures nothing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

#: Settings written into the cards: real frame sizes, few frames and steps, so a generation takes seconds.
WAN_GENERATION = {"height": 480, "width": 832, "out_height": 480, "out_width": 832, "num_frames": 17,
                  "num_output_frames": 17, "steps": 8, "guidance_scale": 5.0}
COSMOS_GENERATION = {"height": 480, "width": 832, "out_height": 480, "out_width": 832, "num_frames": 17,
                     "num_output_frames": 17, "steps": 8, "guidance_scale": 7.0}
LTX_GENERATION = {"height": 480, "width": 704, "out_height": 480, "out_width": 704, "num_frames": 17,
                  "num_output_frames": 17, "steps": 8, "guidance_scale": 3.0}
SMOKE_GENERATION = {"height": 32, "width": 48, "out_height": 32, "out_width": 48, "num_frames": 5,
                    "num_output_frames": 4, "steps": 2}

WAN_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36,
                       out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                       cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280,
                       added_kv_proj_dim=1536, rope_max_seq_len=1024)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", tie_word_embeddings=False)
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
COSMOS_2B_TRANSFORMER = dict(in_channels=17, out_channels=16, num_attention_heads=16, attention_head_dim=128,
                             num_layers=28, mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256,
                             max_size=(128, 240, 240), patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0),
                             concat_padding_mask=True, extra_pos_embed_type=None)
T5_11B = dict(vocab_size=32128, d_model=1024, d_kv=128, d_ff=65536, num_layers=24, num_heads=128,
              relative_attention_num_buckets=32, feed_forward_proj="relu", tie_word_embeddings=False)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
#: diffusers' LTXVideoTransformer3DModel defaults are LTX-Video 2B's; named here so the shapes are on the page.
LTX_2B_TRANSFORMER = dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                          attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096)
LORA_RANK = 32

# --smoke: the same structure at CPU size.
SMOKE = {
    "wan_transformer": dict(num_attention_heads=2, attention_head_dim=8, text_dim=16, freq_dim=32, ffn_dim=32,
                            num_layers=2, image_dim=8, added_kv_proj_dim=16, rope_max_seq_len=32),
    "umt5": dict(vocab_size=128, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
    "clip": dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                 patch_size=4, projection_dim=8),
    "cosmos_transformer": dict(num_attention_heads=2, attention_head_dim=16, num_layers=1, mlp_ratio=2.0,
                               text_embed_dim=16, adaln_lora_dim=4, max_size=(8, 16, 16),
                               concat_padding_mask=False),  # True needs torchvision
    "t5": dict(vocab_size=128, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
    "vae": dict(base_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
    "ltx_transformer": dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=16,
                            cross_attention_dim=32, num_layers=1, caption_channels=16),
    "t5xxl": dict(vocab_size=128, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
    "ltx_vae": dict(latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1)),
}


def shape(name: str, real: dict, smoke: bool) -> dict:
    """The real config ``real``, or with --smoke its CPU-sized overrides."""
    return {**real, **SMOKE[name]} if smoke else dict(real)


def build(module_fn, device: str):
    """Build a module directly on ``device`` (its random init runs there), in bfloat16."""
    with torch.device(device):
        module = module_fn()
    return module.to(torch.bfloat16).eval()


def save_pipeline(pipe, out: Path, generation: dict, description: str) -> Path:
    """Save ``pipe`` as a diffusers folder (safetensors) with a card carrying its generation settings."""
    from wrappers.common.tiny import write_tiny_card

    pipe.save_pretrained(str(out), safe_serialization=True)
    write_tiny_card(out, generation=generation, description=description)
    return out


def wan_vae(smoke: bool):
    from diffusers import AutoencoderKLWan

    # AutoencoderKLWan's defaults are the Wan 2.1 VAE (base_dim 96, z_dim 16, dim_mult 1,2,4,4).
    return AutoencoderKLWan(**(SMOKE["vae"] if smoke else {}))


def write_wan21(out: Path, device: str, smoke: bool) -> Path:
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from wrappers.common.tiny_text import tiny_tokenizer

    clip = shape("clip", CLIP_VIT_H, smoke)
    pipe = WanImageToVideoPipeline(
        tokenizer=tiny_tokenizer(model_max_length=512),
        text_encoder=build(lambda: UMT5EncoderModel(UMT5Config(**shape("umt5", UMT5_XXL, smoke))), device),
        image_encoder=build(lambda: CLIPVisionModel(CLIPVisionConfig(**clip)), device),
        image_processor=CLIPImageProcessor(crop_size=clip["image_size"], size=clip["image_size"]),
        transformer=build(lambda: WanTransformer3DModel(**shape("wan_transformer", WAN_TRANSFORMER, smoke)), device),
        vae=build(lambda: wan_vae(smoke), device),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                          num_train_timesteps=1000, flow_shift=3.0))
    return save_pipeline(pipe, out, SMOKE_GENERATION if smoke else WAN_GENERATION,
                         "Random Wan 2.1 I2V pipeline of the 1.3B shapes (pytest-wiw benchmarks).")


def write_ftwan21(out: Path, base: Path, device: str, smoke: bool) -> Path:
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from wrappers.common.tiny import write_tiny_card
    from wrappers.wan_lora import LORA_TARGET_MODULES

    transformer = WanTransformer3DModel.from_pretrained(str(base), subfolder="transformer", dtype=torch.bfloat16)
    transformer.to(device)
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights="gaussian",
                        target_modules=LORA_TARGET_MODULES)
    transformer.add_adapter(config)
    with torch.no_grad():  # gaussian init leaves lora_B at zero (a no-op); give it weight as training would
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    WanImageToVideoPipeline.save_lora_weights(
        str(out), transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    write_tiny_card(out, base=base, generation=SMOKE_GENERATION if smoke else WAN_GENERATION,
                    description=f"Random rank-{LORA_RANK} LoRA over the 1.3B-shape Wan 2.1 pipeline.")
    return out


def write_cosmos20(out: Path, device: str, smoke: bool) -> Path:
    from diffusers import Cosmos2VideoToWorldPipeline, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    from wrappers.common.tiny_text import tiny_tokenizer
    from wrappers.cosmos import NoOpSafetyChecker

    pipe = Cosmos2VideoToWorldPipeline(
        text_encoder=build(lambda: T5EncoderModel(T5Config(**shape("t5", T5_11B, smoke))), device),
        tokenizer=tiny_tokenizer(model_max_length=512),
        transformer=build(lambda: CosmosTransformer3DModel(
            **shape("cosmos_transformer", COSMOS_2B_TRANSFORMER, smoke)), device),
        vae=build(lambda: wan_vae(smoke), device),
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True, shift=1.0),
        safety_checker=NoOpSafetyChecker())
    return save_pipeline(pipe, out, SMOKE_GENERATION if smoke else COSMOS_GENERATION,
                         "Random Cosmos-Predict2 Video2World pipeline with the 2B transformer's shapes.")


def write_ftcosmos(out: Path, base: Path, device: str, smoke: bool) -> Path:
    from diffusers import CosmosTransformer3DModel

    from wrappers.common.tiny import write_tiny_card

    transformer = CosmosTransformer3DModel.from_pretrained(str(base), subfolder="transformer", dtype=torch.bfloat16)
    add_seeded_noise(transformer.to(device), device)
    transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
    write_tiny_card(out, base=base, generation=SMOKE_GENERATION if smoke else COSMOS_GENERATION,
                    description="Random 'fine-tuned' 2B-shape Cosmos-Predict2 transformer.")
    return out


def write_ltx(out: Path, device: str, smoke: bool) -> Path:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from wrappers.common.tiny_text import tiny_tokenizer

    pipe = LTXImageToVideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                  base_image_seq_len=1024, max_image_seq_len=4096,
                                                  shift_terminal=0.1),
        vae=build(lambda: AutoencoderKLLTXVideo(**(SMOKE["ltx_vae"] if smoke else {})), device),
        text_encoder=build(lambda: T5EncoderModel(T5Config(**shape("t5xxl", T5_XXL, smoke))), device),
        tokenizer=tiny_tokenizer(model_max_length=128),
        transformer=build(lambda: LTXVideoTransformer3DModel(**shape("ltx_transformer", LTX_2B_TRANSFORMER, smoke)),
                          device))
    return save_pipeline(pipe, out, SMOKE_GENERATION if smoke else LTX_GENERATION,
                         "Random LTX-Video I2V pipeline of the 2B shapes (pytest-wiw benchmarks).")


def write_ftltx(out: Path, base: Path, device: str, smoke: bool) -> Path:
    """WIW's FTltx: the whole pipeline folder, its transformer/ fine-tuned, the rest the base's bytes."""
    import os
    import shutil

    from diffusers import LTXVideoTransformer3DModel

    from wrappers.common.tiny import write_tiny_card

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(base, out, ignore=shutil.ignore_patterns("README.md", "transformer"),
                    copy_function=link_or_copy, dirs_exist_ok=True)
    transformer = LTXVideoTransformer3DModel.from_pretrained(str(base), subfolder="transformer", dtype=torch.bfloat16)
    add_seeded_noise(transformer.to(device), device)
    transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
    write_tiny_card(out, base=base, generation=SMOKE_GENERATION if smoke else LTX_GENERATION,
                    description="Random 'fine-tuned' LTX-Video 2B pipeline folder (WIW's FTltx layout).")
    return out


def add_seeded_noise(module, device: str, scale: float = 1.0) -> None:
    """Each parameter plus noise of ``scale * (mean |w| + 0.02)``, from a seeded generator of its own."""
    noise = torch.Generator(device).manual_seed(1)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters()):
            amount = scale * (float(param.abs().float().mean()) + 0.02)
            param.add_(torch.randn(param.shape, generator=noise, device=device, dtype=param.dtype) * amount)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized shapes: tests the script only")
    parser.add_argument("--only", default="wan21,FTwan21,cosmos20,FTcosmos,ltx,FTltx",
                        help="comma list; an FT type needs its base in OUT_DIR (built in the same call or before)")
    args = parser.parse_args()
    out, only = args.out, args.only.split(",")
    steps = [("wan21", lambda p: write_wan21(p, args.device, args.smoke)),
             ("FTwan21", lambda p: write_ftwan21(p, out / "wan21", args.device, args.smoke)),
             ("cosmos20", lambda p: write_cosmos20(p, args.device, args.smoke)),
             ("FTcosmos", lambda p: write_ftcosmos(p, out / "cosmos20", args.device, args.smoke)),
             ("ltx", lambda p: write_ltx(p, args.device, args.smoke)),
             ("FTltx", lambda p: write_ftltx(p, out / "ltx", args.device, args.smoke))]
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    for name, write in steps:
        if name not in only:
            continue
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            path = write(out / name)
        summary[name] = {"path": str(path), "bytes": folder_bytes(path),
                         "seconds_to_build": round(time.perf_counter() - start, 1)}
        print(name, json.dumps(summary[name]), flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
