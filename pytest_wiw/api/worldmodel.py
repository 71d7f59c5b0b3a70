"""WorldModel: the base class every wrapper fills in, and the helpers it gives them.

A wrapper loads once in ``__init__``, answers ``generate`` with uint8 video, names the running
tensors for ``weight_fingerprints``, and can write a tiny random checkpoint of its architecture
(``make_tiny``). Torch is imported lazily: this module is imported by the plugin too.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterator, Mapping

import numpy as np

from pytest_wiw.api.registry import GenerationDefaults, WMSpec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.checkpoints.files import Checkpoint
from pytest_wiw.checkpoints.fingerprint import Fingerprint, fingerprint_tensor
from pytest_wiw.errors import RequestError

if TYPE_CHECKING:
    import torch

#: The ``options`` key under which the worker passes ``--wm-offload`` to a wrapper.
OFFLOAD_OPTION = "offload"
#: ``--wm-offload`` values: ``pinned`` (default) keeps an FT type's idle component (the base's while the
#: fine-tune runs, the fine-tune's inside ``zero_shot()``) in pinned host memory and swaps it in when needed;
#: ``none`` keeps both on the device. Wrappers with nothing to swap ignore it.
OFFLOAD_MODES = ("pinned", "none")


class WorldModel(ABC):
    """A video world model under test. Subclass it, and name the subclass in ``register_wm``.

    Rules the checks enforce: draw every random number from ``self.generators(request)`` (one
    generator per batch item, built from the request's seeds, never kept across calls); no global
    RNG; no hub downloads; no pickle loading.
    """

    #: Bump when the tiny checkpoint this wrapper writes changes: it keys the embedded-default cache.
    version: str = "1"

    def __init__(self, spec: WMSpec, ckpt: Checkpoint, *, base_ckpt: Checkpoint | None,
                 device: str, dtype: "torch.dtype", options: Mapping[str, str]):
        self.spec = spec
        self.ckpt = ckpt
        self.base_ckpt = base_ckpt
        self.device = device
        self.dtype = dtype
        self.options = dict(options)
        #: Sizes and steps to generate at: the worker passes a spec whose defaults already carry the
        #: checkpoint card's overrides (a tiny checkpoint generates at tiny sizes).
        self.generation: GenerationDefaults = spec.defaults
        #: Sentences for the report about what the wrapper did (frame mapping, resizes).
        self.notes: list[str] = []
        self.nonfinite_seen = False
        #: The tasks this loaded checkpoint serves (a subset of the spec's: an igen checkpoint's UNet
        #: takes navigation or manipulation actions, not both). The suite draws requests from these.
        self.tasks: tuple[str, ...] = tuple(spec.tasks)
        self._worldmodel_initialised = True

    # -- what a wrapper must provide -------------------------------------------------------
    @abstractmethod
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """Generate a video per batch item: uint8 (B, T, 3, H, W), T = num_output_frames."""

    def zero_shot(self) -> ContextManager[None]:
        """Within this context, ``generate`` runs the zero-shot base weights (no second load).

        FT wrappers override it: LoRA adapters off, or the base component swapped back in.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement zero_shot(): an FT wrapper must run its base "
            "weights inside it, e.g. `pipe.disable_lora()` ... `pipe.enable_lora()` in a contextmanager")

    def running_tensor(self, key: str) -> "torch.Tensor | None":
        """The tensor of the running model that checkpoint tensor ``key`` was loaded into.

        The default handles component folders: key ``transformer/blocks.0.weight`` looks up
        ``blocks.0.weight`` in ``self.components()["transformer"]``. Override it for other
        layouts (LoRA files name their tensors differently from peft's modules).
        """
        component, _, name = key.rpartition("/")
        modules = self.components()
        module = modules.get(component or "")
        if module is None:
            return None
        return lookup_tensor(module, name)

    def components(self) -> dict[str, object]:
        """The running torch modules by component name (``transformer``, ``vae``, ...)."""
        return {}

    def stats(self) -> dict:
        """Figures the wrapper measures itself, for the worker's stats and the report: JSON values only.

        Component-swap FT wrappers report their offload here (``{"offload": {"swaps": 2, "swap_seconds":
        0.8, ...}}``, wrappers.common.offload). Default: none.
        """
        return {}

    @classmethod
    def maps_weights(cls) -> bool:
        """Whether the wrapper says where checkpoint tensors run (it overrides components or running_tensor)."""
        return cls.components is not WorldModel.components or cls.running_tensor is not WorldModel.running_tensor

    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        """Write a tiny random checkpoint of this architecture into ``out_dir`` and return its path."""
        raise NotImplementedError(
            f"{cls.__name__}.make_tiny is not implemented: build the model from a tiny config "
            "(e.g. num_layers=1, 8 channels), save it with save_pretrained / save_lora_weights, "
            "write its card with pytest_wiw.api.write_card, and return the path")

    # -- checks the worker runs on every request -------------------------------------------
    def validate_request(self, request: GenerationRequest) -> None:
        """Raise RequestError for a request this model cannot serve (structure is checked already)."""
        if request.request_model_name != self.spec.name:
            raise RequestError("request_model_name", f"{request.request_model_name!r} does not match this "
                               f"worker's wm_type {self.spec.name!r} (the name is compared whole, never per item)")
        if request.task_type not in self.tasks:
            raise RequestError("task_type", f"{self.spec.name} serves {', '.join(self.tasks)}, "
                               f"not {request.task_type}")
        if request.batch_size > self.spec.max_batch:
            raise RequestError("images", f"batch of {request.batch_size} exceeds max_batch {self.spec.max_batch}")
        check_request_limits(request, self.spec)

    # -- fingerprints ------------------------------------------------------------------------
    def weight_fingerprints(self) -> dict[str, Fingerprint]:
        """Fingerprints of the running tensors, keyed by the checkpoint's tensor names.

        Keys the model has no tensor for are left out; the suite reports them as not loaded.
        """
        out = {}
        for key in self.ckpt.fingerprint_keys():
            tensor = self.running_tensor(key)
            if tensor is not None:
                out[key] = fingerprint_tensor(tensor)
        return out

    # -- helpers for wrappers ----------------------------------------------------------------
    def generators(self, request: GenerationRequest) -> list["torch.Generator"]:
        """One fresh CPU generator per batch item, seeded from the request (same noise on any device)."""
        import torch

        return [torch.Generator("cpu").manual_seed(int(s)) for s in request.seeds]

    def images_as_tensor(self, request: GenerationRequest, height: int, width: int) -> "torch.Tensor":
        """The start images as float (B, 3, height, width) in [0, 1], resized bilinearly."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(request.images)).float() / 255.0
        if x.shape[-2:] != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(0, 1)

    def images_as_pil(self, request: GenerationRequest, height: int, width: int) -> list:
        """The start images as PIL images of ``width`` x ``height``."""
        from PIL import Image

        x = self.images_as_tensor(request, height, width)
        arr = (x.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
        return [Image.fromarray(a) for a in arr]

    def generate_item_by_item(self, request: GenerationRequest, height: int, width: int, call) -> np.ndarray:
        """Run ``call(image, prompt, generator)`` once per batch item, each with the item's own generator,
        and finish the stacked frames. Item by item, a batch equals its items run alone bitwise.

        ``call`` returns that item's frames as the pipeline gives them with ``output_type="np"``:
        (1, T, H, W, 3) or (T, H, W, 3), floats in [0, 1].
        """
        images = self.images_as_pil(request, height, width)
        videos = []
        with self._no_grad():
            for image, prompt, generator in zip(images, request.prompts(), self.generators(request)):
                frames = np.asarray(call(image, prompt, generator))
                videos.append(frames[0] if frames.ndim == 5 else frames)
        return self.finish_video(np.stack(videos))

    def finish_video(self, frames) -> np.ndarray:
        """Pipeline output -> uint8 (B, T, 3, out_height, out_width), the WIW way.

        Accepts float frames in [0, 1] shaped (B, T, H, W, 3) (diffusers ``output_type="np"``) or
        (B, T, 3, H, W) as a numpy array or torch tensor. Frames are mapped to
        ``num_output_frames`` by uniform subsampling, padded with the last frame when short.
        """
        import torch

        video = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        video = video.detach().float().cpu()
        if video.ndim != 5:
            raise ValueError(f"finish_video expects 5-D frames (B, T, ...), got shape {tuple(video.shape)}")
        if video.shape[-1] == 3 and video.shape[2] != 3:
            video = video.permute(0, 1, 4, 2, 3)
        if not torch.isfinite(video).all():
            self.nonfinite_seen = True
            video = torch.nan_to_num(video, nan=0.0, posinf=1.0, neginf=0.0)
        return map_video(video, self.generation.num_output_frames,
                         (self.generation.out_height, self.generation.out_width), self.notes)

    @contextlib.contextmanager
    def _no_grad(self) -> Iterator[None]:
        import torch

        with torch.inference_mode():
            yield


#: What WorldModel.__init__ sets: an AttributeError naming one of these means it never ran.
BASE_ATTRIBUTES = ("spec", "ckpt", "base_ckpt", "device", "dtype", "options", "generation", "notes",
                   "nonfinite_seen", "tasks")
SUPER_INIT_CALL = "super().__init__(spec, ckpt, base_ckpt=base_ckpt, device=device, dtype=dtype, options=options)"


def missing_super_init(cls: type, exc: BaseException | None = None, model: object = None) -> str | None:
    """The message for a wrapper whose __init__ never ran WorldModel.__init__, else None."""
    if model is not None and getattr(model, "_worldmodel_initialised", False):
        return None
    if model is None and not (isinstance(exc, AttributeError) and getattr(exc, "name", None) in BASE_ATTRIBUTES):
        return None
    return (f"{cls.__name__}.__init__ does not call {SUPER_INIT_CALL} before using the model: WorldModel's "
            "attributes (spec, generation, notes, ...) are never set")


def map_video(video: "torch.Tensor", num_frames: int, out_hw: tuple[int, int],
              notes: list[str] | None = None) -> np.ndarray:
    """Float video (B, T, 3, H, W) in [0, 1] -> uint8 (B, num_frames, 3, *out_hw): the one mapping of frame
    count (``frame_indices``: uniform subsample, or pad with the last frame) and size (antialiased bilinear)
    that every video of the suite goes through: wrapper outputs, and ground-truth frames (pytest_wiw.checks.ground_truth)."""
    import torch
    import torch.nn.functional as F

    b, t = video.shape[:2]
    video = video[:, frame_indices(t, num_frames, notes)]
    if tuple(video.shape[-2:]) != tuple(out_hw):
        flat = video.reshape(-1, *video.shape[2:])
        flat = F.interpolate(flat, size=tuple(out_hw), mode="bilinear", align_corners=False, antialias=True)
        video = flat.reshape(b, -1, 3, *out_hw)
    return (video.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def zero_shot_context(model: WorldModel) -> ContextManager[None]:
    """``model.zero_shot()``, checked to be a context manager: TypeError naming the fix when it is not (a
    generator function without ``@contextlib.contextmanager``, a method that switches the fine-tune off and
    returns nothing)."""
    import inspect

    context = model.zero_shot()
    if hasattr(context, "__enter__") and hasattr(context, "__exit__"):
        return context
    name = f"{type(model).__name__}.zero_shot()"
    if inspect.isgenerator(context):
        fix = ("it is a generator function without its decorator: put @contextlib.contextmanager above "
               "`def zero_shot(self)`, so that its `yield` is where generate() runs the base weights")
    else:
        fix = ("write it as a @contextlib.contextmanager that switches the fine-tune off, yields, and switches it "
               "back on in a `finally` (docs/writing-a-wrapper.md), or return such a context")
    raise TypeError(f"{name} returned {type(context).__name__}, not a context manager "
                    f"(the suite runs `with model.zero_shot(): model.generate(request)`): {fix}")


def frame_indices(available: int, wanted: int, notes: list[str] | None = None) -> list[int]:
    """Indices mapping ``available`` frames to ``wanted``: uniform subsample, or pad with the last."""
    if available <= 0:
        raise ValueError("the pipeline returned no frames")
    if available >= wanted:
        idx = np.linspace(0, available - 1, wanted).round().astype(int).tolist()
    else:
        idx = list(range(available)) + [available - 1] * (wanted - available)
    if notes is not None and available != wanted:
        note = (f"pipeline returned {available} frames, mapped to {wanted} "
                f"({'uniform subsample' if available > wanted else 'padded with the last frame'})")
        if note not in notes:
            notes.append(note)
    return idx


def lookup_tensor(module, name: str):
    """The parameter or buffer ``name`` of a torch module, or None."""
    try:
        return module.get_parameter(name)
    except AttributeError:
        pass
    try:
        return module.get_buffer(name)
    except AttributeError:
        return None


def check_request_limits(request: GenerationRequest, spec) -> None:
    """RequestError for a start image or action sequence beyond the spec's ``max_image_side``/``max_actions``."""
    height, width = request.images.shape[2:]
    if max(height, width) > spec.max_image_side:
        raise RequestError("images", f"start image of {height}x{width} exceeds {spec.name}'s limit of "
                           f"{spec.max_image_side} pixels a side (max_image_side)")
    if request.task_type == "navigation":
        for i, ids in enumerate(request.actions):
            if len(ids) > spec.max_actions:
                raise RequestError(f"actions[{i}]", f"{len(ids)} action ids exceed {spec.name}'s limit "
                                   f"of {spec.max_actions} (max_actions)")


def saved_state_dict(model) -> dict:
    """The state dict under the names ``save_pretrained`` writes: transformers 5 saves some models under
    legacy names (Qwen2.5-VL's ``model.layers.0...`` runs as ``model.language_model.layers.0...``)."""
    state = model.state_dict(keep_vars=True)
    try:
        from transformers import PreTrainedModel
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:
        return state
    return revert_weight_conversion(model, state) if isinstance(model, PreTrainedModel) else state
