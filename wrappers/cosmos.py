"""Cosmos-Predict2 Video2World (diffusers ``Cosmos2VideoToWorldPipeline``): ``cosmos20`` and ``FTcosmos``.

``cosmos20`` loads a diffusers pipeline folder. ``FTcosmos`` loads a fully fine-tuned transformer on top
of its ``cosmos20`` base pipeline, and shares every other module with it; ``zero_shot()`` switches back to
the base transformer without a reload. WIW's own FTcosmos checkpoint is the ``--ft_dir`` folder its
converter ``utils/pt_to_safetensors_cosmos.py`` fills: ``transformer/`` holding one ``.safetensors`` in
diffusers names and no ``config.json`` (the config is then the base's, when every tensor fits it). A
``transformer/`` folder with its config, a bare ``.safetensors`` and a whole pipeline folder load too
(wrappers.common.component_swap). A raw training checkpoint (``net.blocks.N...`` names) is refused with the
converter's command.

Without the ``cosmos_guardrail`` package the pipeline cannot be built, so this module brings a
no-op safety checker and passes it to the constructor and to every ``from_pretrained``. The
pipeline's checker path quantises the decoded video to 1/255 (it round-trips through uint8), which
WIW's uint8 output does anyway.
"""

from __future__ import annotations

import re
from pathlib import Path

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

from pytest_wiw.api import Checkpoint, CheckpointError, GenerationRequest

from .common.component_swap import CONFIG_LESS, ComponentSwapModel, FineTunedComponent, require_transformer_config
from .common.loading import load_pipeline, load_pretrained, ready_to_run, safetensors_shapes
from .common.tiny import tiny_generation
from .common.tiny_text import tiny_t5_encoder, tiny_tokenizer

# Generation settings of the tiny checkpoints make_tiny writes (carried in their cards).
TINY_GENERATION = tiny_generation(guidance_scale=7.0)
# Transformer config fields that must agree between a fine-tuned transformer and its base pipeline.
_ARCH_FIELDS = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers",
                "text_embed_dim", "patch_size", "concat_padding_mask")
#: Scale of the seeded noise make_tiny('FTcosmos') adds to each base weight, relative to its mean |w|.
_FT_NOISE = 1.5


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


def _load_pipeline(ckpt: Checkpoint, dtype: torch.dtype, device: str) -> Cosmos2VideoToWorldPipeline:
    pipe = load_pipeline(Cosmos2VideoToWorldPipeline, ckpt, "cosmos20", dtype=dtype, safety_checker=NoOpSafetyChecker())
    require_torchvision_if_needed(pipe.transformer, ckpt.path / "transformer")
    return ready_to_run(pipe, device)


def _load_transformer(folder: Path, dtype: torch.dtype) -> CosmosTransformer3DModel:
    transformer = load_pretrained(CosmosTransformer3DModel, folder, dtype=dtype, what="fine-tuned transformer")
    return require_torchvision_if_needed(transformer, folder)


def require_torchvision_if_needed(transformer: CosmosTransformer3DModel, folder: Path) -> CosmosTransformer3DModel:
    """The transformer, or CheckpointError when it needs torchvision and the worker's environment lacks it.

    Real Cosmos-Predict2 transformers have ``concat_padding_mask=True``: diffusers resizes their padding
    mask with torchvision, and without it the first generation dies with ``NameError: transforms``.
    """
    if transformer.config.concat_padding_mask:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            raise CheckpointError(
                f"{folder}: this Cosmos transformer has concat_padding_mask=True, which needs torchvision in the "
                "worker's environment (not installed): install the torchvision paired with its torch "
                "(wrappers/envs/diffusers-0.42.txt pins torchvision==0.28.0 for torch 2.13.0)") from None
    return transformer


#: Tensor names of a Cosmos-Predict2 training checkpoint (WIW's converter maps them to diffusers names).
_TRAINING_KEY = re.compile(r"^(?:[^.]+\.)?net\.blocks\.\d+\.")
#: The converter's command, for a checkpoint still in training names.
CONVERTER_HINT = ("convert it with World-in-World's converter first: python utils/pt_to_safetensors_cosmos.py "
                  "--src_pt TRAINING.pt --ref_safetensors BASE/transformer/diffusion_pytorch_model.safetensors "
                  "--out FT_DIR/transformer/diffusion_pytorch_model.safetensors, then "
                  "pytest --wm FTcosmos --ckpt-path=FT_DIR --base-ckpt-path=BASE")


def _check_transformer_folder(folder: Path) -> None:
    """The folder has a config.json and its weights are in diffusers names, not Cosmos training names."""
    require_transformer_config(folder)
    for file in sorted(folder.glob("*.safetensors")):
        training = next((k for k in safetensors_shapes(file) if _TRAINING_KEY.match(k)), None)
        if training is not None:
            raise CheckpointError(f"{file.resolve()}: tensor {training} is in Cosmos training names "
                                  f"(net.blocks.N...), not the diffusers names FTcosmos loads: {CONVERTER_HINT}")


#: The fine-tuned transformer of FTcosmos. The FT pipeline shares the text encoder, tokenizer, VAE, scheduler
#: and safety checker with the base pipeline.
FT_TRANSFORMER = FineTunedComponent(
    name="transformer", label="fine-tuned transformer", arch_fields=_ARCH_FIELDS, load_base=_load_pipeline,
    load=_load_transformer, check_folder=_check_transformer_folder, model_cls=CosmosTransformer3DModel,
    takes_pipeline=True)


class Cosmos2VideoToWorld(ComponentSwapModel):
    """Cosmos-Predict2 Video2World: the start image conditions the first latent frame, the prompt the rest."""

    #: 2: the tiny FTcosmos is WIW's converted layout (transformer/ without config.json).
    version = "2"
    FT_COMPONENT = FT_TRANSFORMER
    TINY_TYPES = ("cosmos20", "FTcosmos")
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random Cosmos-Predict2 Video2World pipeline for pytest-wiw."
    TINY_FT_NOISE, TINY_FT_LAYOUT = _FT_NOISE, CONFIG_LESS
    TINY_FT_DESCRIPTION = ("Tiny 'fine-tuned' Cosmos-Predict2 transformer (the base with seeded noise), laid out as "
                           "World-in-World's converter utils/pt_to_safetensors_cosmos.py writes it: "
                           "transformer/diffusion_pytorch_model.safetensors in diffusers names, no config.json.")

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        self._load_swap()

    # -- generation ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """One pipeline call per batch item, each with its own generator.

        A batched call (generator=[...]) draws the same noise, but the batched transformer rounds
        differently from a batch of one: measured on CPU, the final latents moved by ~3e-5 and an item
        then differed from itself alone by up to 1 uint8 level. Item by item, a batch equals its items
        run alone bitwise.
        """
        g = self.generation
        return self.generate_item_by_item(request, g.height, g.width, lambda image, prompt, generator: self.pipe(
            image=image, prompt=prompt, height=g.height, width=g.width, num_frames=g.num_frames,
            num_inference_steps=g.steps, guidance_scale=g.guidance_scale, generator=generator,
            output_type="np").frames)

    # -- tiny checkpoints (make_tiny: ComponentSwapModel's) ------------------------------------
    @staticmethod
    def tiny_pipeline(seed: int) -> Cosmos2VideoToWorldPipeline:
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
