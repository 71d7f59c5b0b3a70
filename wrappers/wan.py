"""Wan 2.1 image-to-video: ``wan21`` (zero-shot) and ``FTwan21`` (a post-train of it), via diffusers.

``wan21`` loads a ``WanImageToVideoPipeline`` folder. ``FTwan21`` loads its base pipeline, then its
post-train, whichever kind the checkpoint is (the registry's ``finetune`` is what WIW ships; the
report names the kind found):

* a LoRA (DiffSynth-Studio's ``<model>_lora_navigation/epoch-N.safetensors``, keys like
  ``blocks.0.self_attn.q.lora_A.default.weight``, or diffusers' own naming): one peft adapter in the
  transformer (``wrappers.wan_lora``); ``zero_shot()`` switches it off (never fused);
* a full fine-tune: DiffSynth's DiT state dict in original-Wan names, or a diffusers ``transformer/``
  folder (``wrappers.wan_finetune``); ``zero_shot()`` runs the base pipeline's own transformer.

A folder of several ``epoch-N.safetensors`` is its highest epoch unless ``--wm-opt epoch=N`` says
otherwise (``pytest_wiw.epochs``, applied when the checkpoint is opened).

Batches run item by item: diffusers 0.42.1's ``WanImageToVideoPipeline`` takes one conditioning
image per call (a list of images is refused; a (B, 3, H, W) tensor gets its CLIP embeddings and VAE
condition repeated per prompt, B*B rows, and fails), so item i of a batch is item i run alone, bitwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

from pytest_wiw.api import Checkpoint, CheckpointError, GenerationRequest, WorldModel

from .common.component_swap import ComponentSwap
from .common.loading import load_pipeline, load_pretrained, ready_to_run
from .common.offload import offload_mode
from .common.sizes import pipeline_sizes
from .common.tiny import TinyPipeline, save_tiny, tiny_generation
from .common.tiny_text import tiny_t5_encoder, tiny_tokenizer
from .wan_finetune import FullFineTune, load_diffusers_folders, load_native_state_dicts
from .wan_lora import AdapterSwitch, LoadedLora, load_wan_lora, save_diffsynth_epochs

#: Name of the peft adapter the FT LoRA is loaded as; running LoRA parameters carry it in their names.
ADAPTER_NAME = "wiw_ft"
#: Generation settings the tiny checkpoints declare in their cards: a call takes ~0.1 s on CPU.
#: Non-square on purpose, so a height/width swap shows; CFG on (> 1) so the negative-prompt path runs.
TINY_GENERATION = tiny_generation(guidance_scale=2.0, width=48, num_frames=5)
#: The tiny LoRA's lora_B is scaled by this (DiffSynth merges at scale 1) so the FT output differs from
#: the base by several uint8 levels.
TINY_LORA_B_GAIN = 4.0
#: The tiny FT's epoch folder, named as DiffSynth-Studio names WIW's (``<model>_lora_<task>``).
TINY_LORA_FOLDER = "Wan2.1-I2V-tiny_lora_navigation"
#: Checkpoint formats of a post-train, as the report names the kind found.
FINE_TUNE_KINDS = {"lora": "LoRA", "safetensors": "full fine-tune (a DiT state dict, DiffSynth / original Wan names)",
                   "component-folder": "full fine-tune (diffusers transformer folders)"}


class WanImageToVideo(TinyPipeline, WorldModel):
    """Wan 2.1 I2V through diffusers; serves ``wan21`` and its post-train ``FTwan21``.

    The Wan 2.2 wrappers subclass it: they say which pipeline config to force, how to check the
    architecture, and which transformer (expert) each post-train file goes to.
    """

    version = "2"
    #: Model name in messages.
    ARCH = "Wan 2.1 I2V"
    #: Pipeline config values passed to from_pretrained (the architecture needs them whatever the folder says).
    PIPELINE_CONFIG: dict = {}
    #: The transformer components a post-train may replace or adapt.
    EXPERTS = ("transformer",)

    def __init__(self, spec, ckpt, *, base_ckpt, device, dtype, options):
        super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)
        pipe_ckpt = self._pipeline_checkpoint()
        pipe = load_pipeline(WanImageToVideoPipeline, pipe_ckpt, spec.base if spec.is_ft else spec.name, dtype=dtype,
                             what=self.ARCH, **self.PIPELINE_CONFIG)
        self._check_architecture(pipe, pipe_ckpt.path)
        pipe = ready_to_run(pipe, device)
        self._swap = ComponentSwap(pipe)
        self.loras: list[LoadedLora] = []
        self.full: FullFineTune | None = None
        if spec.is_ft:
            for note in ckpt.notes:
                self._note(note)
            self._load_fine_tune(pipe, pipe_ckpt.path, dtype, device)
        self._switch = AdapterSwitch([getattr(pipe, c) for c in dict.fromkeys(l.component for l in self.loras)])

    @property
    def pipe(self):
        """The pipeline that runs now: the base one (with any LoRA), or the one holding a full fine-tune."""
        return self._swap.pipe

    # -- loading -----------------------------------------------------------------------------------
    def _check_architecture(self, pipe, path: Path) -> None:
        """CheckpointError when ``pipe`` is not of this wrapper's architecture."""
        if getattr(pipe, "transformer_2", None) is not None:
            raise CheckpointError(f"{path}: a {self.ARCH} pipeline has one transformer, this one has two "
                                  "(a Wan 2.2 A14B pipeline?)")

    def _pipeline_checkpoint(self) -> Checkpoint:
        """The checkpoint the pipeline loads from: an FT type's base, else its own."""
        spec, ckpt = self.spec, self.ckpt
        if spec.is_ft:
            if ckpt.format not in FINE_TUNE_KINDS:
                raise CheckpointError(f"{ckpt.path}: {spec.name} expects a LoRA .safetensors (DiffSynth-Studio's "
                                      "epoch-N.safetensors, or a folder of them), a full DiT state dict "
                                      ".safetensors, or transformer/ folders; found a "
                                      f"{ckpt.format!r} checkpoint")
            if self.base_ckpt is None:
                raise CheckpointError(f"{spec.name} needs its zero-shot {spec.base} pipeline: give "
                                      "--base-ckpt-path or a base_model in the checkpoint's card")
            return self.base_ckpt
        return ckpt

    def _routes(self) -> list[tuple[str, Path]]:
        """(transformer component, file) pairs of the post-train's weight files."""
        if len(self.ckpt.files) != 1:
            raise CheckpointError(f"{self.ckpt.path}: {self.spec.name} takes one weights .safetensors, found "
                                  f"{len(self.ckpt.files)}: {', '.join(self.ckpt.rel(f) for f in self.ckpt.files)}")
        return [("transformer", self.ckpt.files[0])]

    def _key_prefix(self, file: Path) -> str:
        """What the checkpoint's tensor keys of ``file`` start with (pytest_wiw.checkpoint.tensor_key)."""
        if len(self.ckpt.files) > 1 or file.parent != self.ckpt.root:
            return self.ckpt.rel(file) + "/"
        return ""

    def _load_fine_tune(self, pipe, base_path: Path, dtype, device) -> None:
        """Load the post-train, whichever kind it is, and note which kind was found."""
        ckpt, fmt = self.ckpt, self.ckpt.format
        if fmt == "lora":
            for component, file in self._routes():
                self.loras.append(load_wan_lora(pipe, component, file, ADAPTER_NAME, what=f"{self.ARCH} {component}"))
                naming = ("DiffSynth-Studio / original-Wan key names, converted with diffusers' Wan LoRA converter"
                          if self.loras[-1].naming != "diffusers" else "diffusers key names")
                self._note(f"{ckpt.rel(file)}: LoRA ({naming}) loaded into {component}")
        elif fmt == "safetensors":
            routes = [(c, f, self._key_prefix(f)) for c, f in self._routes()]
            self.full = load_native_state_dicts(pipe, routes, what=self.ARCH, dtype=dtype, device=device,
                                                offload=offload_mode(self.options))
            for component, file, _ in routes:
                self._note(f"{ckpt.rel(file)}: full fine-tune of {component} (state dict in DiffSynth / original "
                           "Wan names, mapped to diffusers' with the names of diffusers' Wan conversion)")
        else:
            folders = {f.parent.name: f.parent for f in ckpt.files}
            unknown = sorted(set(folders) - set(self.EXPERTS))
            if unknown:
                raise CheckpointError(f"{ckpt.path}: {', '.join(unknown)}: not a transformer of the {self.ARCH} "
                                      f"pipeline (a full fine-tune holds {' and/or '.join(self.EXPERTS)} folders)")
            self.full = load_diffusers_folders(pipe, folders, what=self.ARCH, base_path=base_path, dtype=dtype,
                                               device=device, offload=offload_mode(self.options))
            for component in folders:
                self._note(f"{component}/: full fine-tune of {component} (diffusers folder)")
        if self.full is not None:
            self._swap = self.full.swap
            for note in self._swap.notes:
                self._note(note)
        self._note(f"post-train detected: {FINE_TUNE_KINDS[fmt]} (the registry declares finetune="
                   f"{self.spec.finetune!r})")
        for component in self.EXPERTS:
            touched = {l.component for l in self.loras} | set(self.full.modules if self.full else ())
            if component not in touched:
                self._note(f"{component}: no post-train weights for it, it runs the base weights")

    # -- generation ------------------------------------------------------------------------------
    def _sizes(self) -> tuple[int, int, int]:
        """Height, width and frame count the pipeline will really use (it rounds them), noted if changed."""
        g = self.generation
        patch = self.pipe.transformer.config.patch_size
        spatial, temporal = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
        n = g.num_frames if (g.num_frames - 1) % temporal == 0 else g.num_frames // temporal * temporal + 1
        sizes = pipeline_sizes(g, multiple=(spatial * patch[1], spatial * patch[2]), num_frames=max(n, 1),
                               temporal=temporal, model="Wan", notes=self.notes)
        return sizes.height, sizes.width, sizes.num_frames

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
        """LoRA: the adapters off; full fine-tune: the base pipeline's own transformers."""
        if not self.spec.is_ft:
            return super().zero_shot()
        return self._swap.zero_shot() if self.full is not None else self._adapter_off()

    def stats(self) -> dict:
        """A full fine-tune's offload figures (wrappers.common.offload); a LoRA has nothing to swap."""
        return self._swap.stats()

    def _adapter_off(self):
        """The context in which the LoRA adapters are off."""
        return self._switch.off()

    # -- running tensors ---------------------------------------------------------------------------
    def components(self) -> dict[str, object]:
        names = ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder")
        return {n: m for n in names if (m := getattr(self.pipe, n, None)) is not None}

    def running_tensor(self, key: str):
        """For FT: a checkpoint key (LoRA in either naming, a DiT state dict key, ``transformer/...``; with
        ``<file>/`` in front when the checkpoint has several files) -> the running tensor it was loaded into."""
        if not self.spec.is_ft:
            return super().running_tensor(key)
        if self.full is not None:
            return self.full.running_tensor(key)
        for lora in self.loras:
            prefix = self._key_prefix(lora.file)
            if key.startswith(prefix):
                return lora.running_tensor(getattr(self.pipe, lora.component), key[len(prefix):])
        return None

    # -- tiny checkpoints ----------------------------------------------------------------------------
    #: Class-level so the Wan 2.2 wrappers give their own.
    TINY_GENERATION = TINY_GENERATION
    TINY_DESCRIPTION = "Tiny random Wan 2.1 image-to-video pipeline for pytest-wiw self-tests."
    TINY_LORA_B_GAIN = TINY_LORA_B_GAIN
    TINY_LORA_FOLDER = TINY_LORA_FOLDER
    #: The tiny FT's DiffSynth epoch folders, by the transformer (expert) each adapts (None: TINY_LORA_FOLDER's
    #: for ``transformer``).
    TINY_LORA_FOLDERS: dict[str, str] | None = None
    #: Where the tiny FT's card goes (None: ``out_dir``, which WIW's runs hold their model folders in, and the
    #: epoch folder, so either path loads with nothing else given).
    TINY_FT_CARDS: tuple[str, ...] | None = None
    TINY_FT_DESCRIPTION = ("Tiny random DiffSynth-Studio LoRA epochs over the tiny {arch} pipeline, for pytest-wiw "
                           "self-tests.")

    @staticmethod
    def tiny_pipeline(seed: int) -> WanImageToVideoPipeline:
        """The tiny zero-shot pipeline (TinyPipeline's make_tiny saves it; seeds torch's global RNG)."""
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

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
        return WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                                       scheduler=scheduler, image_processor=image_processor,
                                       image_encoder=image_encoder, transformer=transformer)

    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        """The tiny zero-shot pipeline, or (given its ``base``) the tiny FT in WIW's layout, with its card."""
        if base is not None:
            return cls._save_tiny_ft(Path(out_dir), Path(base), seed)
        if wm_type.startswith("FT"):
            raise ValueError(f"make_tiny({wm_type!r}) needs base=<path of the tiny zero-shot pipeline>")
        return super().make_tiny(wm_type, out_dir, seed=seed)

    @classmethod
    def _save_tiny_ft(cls, out_dir: Path, base: Path, seed: int) -> Path:
        """DiffSynth-Studio's layout over the pipeline at ``base``: ``out_dir/<folder>/epoch-0.safetensors`` and
        ``epoch-1`` (the one loaded by default) for each folder of TINY_LORA_FOLDERS. One LoRA is drawn from
        ``seed``, several (A14B's experts) from ``seed * 10 + i``. Returns ``out_dir``."""
        folders = cls.TINY_LORA_FOLDERS or {"transformer": cls.TINY_LORA_FOLDER}
        cards = cls.TINY_FT_CARDS or (".", cls.TINY_LORA_FOLDER)
        seeds = [seed] if len(folders) == 1 else [seed * 10 + i for i in range(len(folders))]

        def save(pipe, out: Path) -> None:
            for (component, folder), lora_seed in zip(folders.items(), seeds):
                save_diffsynth_epochs(getattr(pipe, component), out / folder, lora_seed, b_gain=cls.TINY_LORA_B_GAIN)

        return save_tiny(out_dir, lambda _: load_pretrained(WanImageToVideoPipeline, base, what="the tiny base"),
                         seed, base=base, save=save, cards_in=cards, generation=cls.TINY_GENERATION,
                         description=cls.TINY_FT_DESCRIPTION.format(arch=cls.ARCH))
