"""Full-component fine-tunes swapped in over a base diffusers pipeline: ``FTcosmos``, ``FTltx`` and ``igen``.

Such an FT checkpoint is one fine-tuned component (a transformer, a UNet): a component folder
(config.json + weights, format ``component``; its fingerprint keys are bare tensor names), or a
folder holding one (format ``component-folder``, e.g. ``transformer/``; keys ``transformer/<name>``).
The wrapper loads its base pipeline and the component, checks that the component's architecture
fields agree with the base pipeline's, and builds a second pipeline of the base's class that shares
every other module with the base. ``zero_shot()`` runs the base pipeline instead: no reload, and the
base output comes back bitwise.

Each wrapper describes its own pieces in a ``FineTunedComponent`` (which component, how it loads,
which config fields must agree, how the base pipeline loads); the steps they share are here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from pytest_wiw.api import Checkpoint, CheckpointError, WorldModel, lookup_tensor

from .diffusers_setup import write_tiny_card

#: What ``from_pretrained`` raises for a folder it cannot load as the class asked for.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class FineTunedComponent:
    """The model-specific pieces of a full-component fine-tune, as its wrapper describes them."""

    #: The pipeline attribute the fine-tuned module replaces: ``transformer``, ``unet``.
    name: str
    #: How messages call the fine-tuned module: ``fine-tuned transformer``, ``action UNet``.
    label: str
    #: Config fields that must agree between the fine-tuned module and the base pipeline's.
    arch_fields: tuple[str, ...]
    #: ``load(folder, dtype)``: the fine-tuned module (on the CPU), or a CheckpointError.
    load: Callable[[Path, torch.dtype], Any]
    #: ``load_base(base_ckpt, dtype, device)``: the base pipeline on ``device``, or a CheckpointError.
    load_base: Callable[[Checkpoint, torch.dtype, str], Any]
    #: What the FT checkpoint must hold, in the message for a checkpoint of another format (default: label).
    expects: str = ""
    #: What the base checkpoint must be: ``a diffusers <base_folder> folder``.
    base_folder: str = "pipeline"
    #: ``check_folder(folder)``: checks run on the component folder before anything loads (None: none).
    check_folder: Callable[[Path], None] | None = None


class ComponentSwap:
    """The pipeline a wrapper runs: the fine-tuned one, or inside ``zero_shot()`` the base one.

    Built from a base pipeline alone (a zero-shot type), both are the base pipeline.
    """

    def __init__(self, base_pipe, ft_pipe=None, *, ft_module=None, key_prefix: str = "") -> None:
        self.base_pipe = base_pipe
        self.ft_pipe = ft_pipe
        #: The fine-tuned module whose tensors the FT checkpoint's keys name (None for a zero-shot type).
        self.ft_module = ft_module
        #: What the FT checkpoint's keys start with: "" (bare tensor names) or "<folder>/".
        self.key_prefix = key_prefix
        #: The pipeline that runs now.
        self.pipe = ft_pipe if ft_pipe is not None else base_pipe

    @property
    def is_fine_tuned(self) -> bool:
        return self.ft_module is not None

    @contextlib.contextmanager
    def zero_shot(self) -> Iterator[None]:
        """Run the base pipeline inside; whatever ran before comes back after, on an error too."""
        previous = self.pipe
        self.pipe = self.base_pipe
        try:
            yield
        finally:
            self.pipe = previous

    def running_tensor(self, key: str) -> torch.Tensor | None:
        """The fine-tuned module's tensor for an FT checkpoint key (bare name, or ``<folder>/<name>``)."""
        if self.key_prefix:
            if not key.startswith(self.key_prefix):
                return None
            key = key[len(self.key_prefix):]
        return lookup_tensor(self.ft_module, key)


class ComponentSwapModel(WorldModel):
    """A WorldModel whose FT type swaps a fine-tuned component into its base pipeline.

    A subclass sets ``self._swap`` in ``__init__``: ``ComponentSwap(base_pipe)`` for its zero-shot type,
    ``load_component_swap(...)`` for its FT type; it then runs ``self.pipe``.
    """

    _swap: ComponentSwap

    @property
    def pipe(self):
        """The pipeline that runs now: the fine-tuned one, or the base one inside ``zero_shot()``."""
        return self._swap.pipe

    def zero_shot(self):
        """Run the base pipeline's own component inside; a zero-shot type runs it anyway."""
        return self._swap.zero_shot()

    def running_tensor(self, key: str) -> torch.Tensor | None:
        """FT: the fine-tuned module's tensor for a checkpoint key (inside ``zero_shot()`` too)."""
        if not self._swap.is_fine_tuned:
            return super().running_tensor(key)
        return self._swap.running_tensor(key)


# -- loading -------------------------------------------------------------------------------------
def load_component_swap(spec, ckpt: Checkpoint, base_ckpt: Checkpoint | None, component: FineTunedComponent,
                        *, dtype: torch.dtype, device: str) -> ComponentSwap:
    """Load the base pipeline and the fine-tuned component, check that they fit, and pair them."""
    base_ckpt = require_base_pipeline(spec, ckpt, base_ckpt, component.base_folder)
    folder, key_prefix = component_folder(spec, ckpt, component)
    if component.check_folder is not None:
        component.check_folder(folder)
    base_pipe = component.load_base(base_ckpt, dtype, device)
    ft_module = component.load(folder, dtype)
    check_fits_base(component, ft_module, base_pipe, folder=folder, base_path=base_ckpt.path)
    ft_module.to(device)
    ft_module.eval()
    # Shares every other module with the base pipeline (the scheduler's state is per call, and the two
    # pipelines never run at once).
    ft_pipe = type(base_pipe)(**{**base_pipe.components, component.name: ft_module})
    ft_pipe.set_progress_bar_config(disable=True)
    return ComponentSwap(base_pipe, ft_pipe, ft_module=ft_module, key_prefix=key_prefix)


def require_base_pipeline(spec, ckpt: Checkpoint, base_ckpt: Checkpoint | None,
                          base_folder: str = "pipeline") -> Checkpoint:
    """The FT type's base checkpoint, which must be a diffusers pipeline folder; else a CheckpointError."""
    if base_ckpt is None:
        raise CheckpointError(f"{ckpt.path}: {spec.name} needs its {spec.base} base pipeline: pass "
                              "--base-ckpt-path or name it as base_model in the checkpoint's card")
    if base_ckpt.format != "diffusers":
        raise CheckpointError(f"{base_ckpt.path}: the {spec.base} base must be a diffusers {base_folder} folder "
                              f"(model_index.json), got a {base_ckpt.format!r} checkpoint")
    return base_ckpt


def component_folder(spec, ckpt: Checkpoint, component: FineTunedComponent) -> tuple[Path, str]:
    """The folder holding the component's config.json and weights, and the prefix its checkpoint keys carry."""
    if ckpt.format == "component":
        return ckpt.path, ""
    if ckpt.format == "component-folder":
        folder = ckpt.files[0].parent
        return folder, folder.relative_to(ckpt.root).as_posix() + "/"
    raise CheckpointError(f"{ckpt.path}: {spec.name} expects a {component.expects or component.label}: a folder "
                          "with config.json + diffusion_pytorch_model.safetensors, or a folder holding "
                          f"{component.name}/; got a {ckpt.format!r} checkpoint")


def require_transformer_config(folder: Path) -> Path:
    """The fine-tuned transformer folder's config.json; a CheckpointError when there is none."""
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json beside the transformer weights")
    return config


def load_component(model_cls, folder: Path, dtype: torch.dtype, *, what: str, errors=LOAD_ERRORS):
    """``model_cls`` loaded from ``folder`` (local files only), or a CheckpointError: ``cannot load <what>``."""
    try:
        return model_cls.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except errors as exc:
        raise CheckpointError(f"{folder}: cannot load {what}: {type(exc).__name__}: {exc}") from exc


def check_fits_base(component: FineTunedComponent, ft_module, base_pipe, *, folder: Path, base_path: Path) -> None:
    """A CheckpointError naming every architecture field on which the fine-tuned module and the base differ."""
    base_cfg, ft_cfg = getattr(base_pipe, component.name).config, ft_module.config
    mismatch = [f"{k} {ft_cfg.get(k)!r} (base {base_cfg.get(k)!r})" for k in component.arch_fields
                if _as_list(ft_cfg.get(k)) != _as_list(base_cfg.get(k))]
    if mismatch:
        raise CheckpointError(f"{folder}: the {component.label} does not fit the base pipeline {base_path}: "
                              f"{', '.join(mismatch)}")


def _as_list(value):
    """Tuples and lists compare alike (a config read from JSON has lists where the model's has tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


# -- tiny checkpoints ------------------------------------------------------------------------------
def save_tiny_fine_tune(model_cls, out_dir: Path, base: Path, seed: int, *, noise_scale: float, generation: dict,
                        description: str, component: str = "transformer") -> Path:
    """A tiny "fine-tune": the base pipeline's ``component`` plus seeded noise, saved as ``out_dir/<component>/``
    with its card.

    Each tensor gets noise of ``noise_scale * (mean |w| + 0.02)``, drawn from a generator of its own
    (never the global RNG), in the order of the sorted parameter names.
    """
    module = model_cls.from_pretrained(str(base), subfolder=component, local_files_only=True)
    noise = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            scale = noise_scale * (float(p.abs().mean()) + 0.02)
            p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
    module.save_pretrained(str(out_dir / component), safe_serialization=True)
    write_tiny_card(out_dir, base=base, generation=generation, description=description)
    return out_dir
