"""Random igen (WIW's SVD-dagger) checkpoints of the real sizes, in WIW's layout, for the GPU benchmark.

    python benchmarks/igen_real_size.py OUT_DIR [--device cuda] [--smoke] [--fp16-only]

Writes, with random weights in the real shapes:

- ``OUT_DIR/svd``: a ``StableVideoDiffusionPipeline`` folder of stabilityai/stable-video-diffusion-img2vid's
  shapes (the UNet of its unet/config.json: blocks 320/640/1280/1280, 2 layers per block, heads 5/10/20/20,
  cross-attention 1024, 14 frames; the temporal-decoder VAE 128/256/512/512; the CLIP ViT-H/14 image
  encoder: 32 layers of 1280, 16 heads, projection 1024), saved as the hub snapshot has it: full-precision
  files and the ``fp16`` variant beside them (``--fp16-only``: the variant alone, as WIW's loader reads it).
- ``OUT_DIR/igen/checkpoint-6000/``: what WIW's training leaves: ``unet/`` (the plain SVD config.json,
  no action kwargs; weights only as ``diffusion_pytorch_model.fp16.safetensors``: the base UNet plus seeded
  noise, and the three action modules for 14-wide navigation actions), stand-ins for accelerate's
  training state beside it, and a card naming ``OUT_DIR/svd`` with WIW's igen settings (1024x576, 14
  frames, 30 steps; fps 7, motion bucket 127 and noise augmentation 0.02 are the wrapper's defaults).

``--smoke`` builds the same structure at CPU size in seconds (tests the script, measures nothing).
Then (svd alongside, for the honest baseline):

    pytest --wm igen --wm svd --ckpt-path=igen=OUT_DIR/igen/checkpoint-6000 --ckpt-path=svd=OUT_DIR/svd \
           --wm-opt=variant=fp16 --wm-device=cuda --wm-dtype=float16 --wm-max-examples=1 --wm-report=OUT_DIR/report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

#: WIW's igen generation (FTsvd/eval_inference.py: 1024x576, 14 frames, 30 steps; the pipeline's default
#: guidance ramp 1 -> 3), and the same structure at CPU size.
WIW_GENERATION = {"height": 576, "width": 1024, "out_height": 576, "out_width": 1024, "num_frames": 14,
                  "num_output_frames": 14, "steps": 30, "guidance_scale": 3.0}
SMOKE_GENERATION = {"height": 32, "width": 32, "out_height": 32, "out_width": 32, "num_frames": 14,
                    "num_output_frames": 4, "steps": 2, "guidance_scale": 3.0}

SVD_UNET = dict(sample_size=96, in_channels=8, out_channels=4,
                down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
                up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
                block_out_channels=(320, 640, 1280, 1280), addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=768, layers_per_block=2, cross_attention_dim=1024,
                transformer_layers_per_block=1, num_attention_heads=(5, 10, 20, 20), num_frames=14)
SVD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
               block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=768,
               scaling_factor=0.18215, force_upcast=True)
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
SMOKE = {
    "unet": dict(sample_size=16, down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                 up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
                 block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, num_attention_heads=(2, 4)),
    "vae": dict(down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                sample_size=32),
    "clip": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, patch_size=32,
                 projection_dim=32),
}
STEP = 6000
SEED = 0
NAVIGATION_CHANNELS = 14


def shape(name: str, real: dict, smoke: bool) -> dict:
    return {**real, **SMOKE[name]} if smoke else dict(real)


def build(module_fn, device: str):
    """A module built on ``device`` (its random init runs there), in float32, eval mode."""
    with torch.device(device):
        return module_fn().eval()


def build_base(out: Path, device: str, smoke: bool, fp16_only: bool, generation: dict) -> tuple[Path, dict]:
    """The SVD img2vid pipeline folder, with a card giving igen's settings (so that svd run as its own
    wm_type generates as igen's zero-shot does: honest baseline); returns it and the UNet's state dict."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from wrappers.common.tiny import write_tiny_card
    from wrappers.svd import SVD_SCHEDULER_CONFIG

    torch.manual_seed(SEED)
    unet = build(lambda: UNetSpatioTemporalConditionModel(**shape("unet", SVD_UNET, smoke)), device)
    vae = build(lambda: AutoencoderKLTemporalDecoder(**shape("vae", SVD_VAE, smoke)), device)
    encoder = build(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**shape("clip", CLIP_VIT_H, smoke))), device)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet,
                                        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG),
                                        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))
    folder = out / "svd"
    if not fp16_only:
        pipe.save_pretrained(str(folder), safe_serialization=True)
    state = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    pipe.to(torch.float16).save_pretrained(str(folder), safe_serialization=True, variant="fp16")
    write_tiny_card(folder, generation=generation,
                    description="Random SVD img2vid pipeline of the real size (pytest-wiw benchmark).")
    return folder, {"config": {k: v for k, v in unet.config.items() if not k.startswith("_")}, "state": state}


def build_ft(out: Path, base: Path, unet: dict, device: str, smoke: bool, generation: dict) -> Path:
    """checkpoint-6000/unet/ of WIW's SVD-dagger over ``base``: fp16 variant only, plain config.json."""
    from diffusers import UNetSpatioTemporalConditionModel
    from safetensors.torch import save_file

    from wrappers.common.tiny import write_tiny_card
    from wrappers.igen import TINY_TRAINING_STATE, SVDaggerUNet

    ckpt = out / "igen" / f"checkpoint-{STEP}"
    (ckpt / "unet").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED + 1)
    ft = build(lambda: SVDaggerUNet(**unet["config"], action_input_channel=NAVIGATION_CHANNELS), device)
    ft.load_state_dict(unet["state"], strict=False)
    noise = torch.Generator().manual_seed(SEED)  # on the CPU: the same noise whatever the device
    with torch.no_grad():
        for name, p in ft.named_parameters():
            if not name.startswith("add_") or name.startswith("add_embedding."):
                std = float(p.std()) if p.numel() > 1 else 0.0
                p.add_(torch.randn(p.shape, generator=noise).to(p.device, p.dtype) * (0.02 * std + 1e-3))
    UNetSpatioTemporalConditionModel.from_config(unet["config"]).save_config(str(ckpt / "unet"))
    save_file({k: v.to(torch.float16).contiguous().cpu() for k, v in ft.state_dict().items()},
              str(ckpt / "unet" / "diffusion_pytorch_model.fp16.safetensors"), metadata={"format": "pt"})
    for name in TINY_TRAINING_STATE:
        (ckpt / name).write_bytes(b"stand-in for accelerate's training state (never opened)\n")
    write_tiny_card(ckpt, base=base, generation=generation,
                    description="Random SVD-dagger UNet of the real size (pytest-wiw benchmark): outputs mean nothing.")
    return ckpt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="the same structure at CPU size")
    ap.add_argument("--fp16-only", action="store_true", help="the base as fp16 variant files alone")
    ap.add_argument("--steps", type=int, default=None,
                    help="denoising steps written into the cards (default: WIW's 30); fewer keep a benchmark's "
                         "suite/floor pairs inside one command's time")
    args = ap.parse_args(argv)
    generation = dict(SMOKE_GENERATION if args.smoke else WIW_GENERATION)
    if args.steps is not None:
        generation["steps"] = args.steps
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    t0 = time.perf_counter()
    base, unet = build_base(args.out_dir, args.device, args.smoke, args.fp16_only, generation)
    summary["svd"] = {"path": str(base), "seconds": round(time.perf_counter() - t0, 1),
                      "unet_parameters": sum(v.numel() for v in unet["state"].values())}
    t0 = time.perf_counter()
    ckpt = build_ft(args.out_dir, base, unet, args.device, args.smoke, generation)
    summary["igen"] = {"path": str(ckpt), "seconds": round(time.perf_counter() - t0, 1),
                       "bytes": sum(f.stat().st_size for f in ckpt.rglob("*.safetensors"))}
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, info in summary.items():
        print(name, json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
