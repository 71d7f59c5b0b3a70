"""Full-component fine-tunes swapped in over a base diffusers pipeline: ``FTcosmos``, ``FTltx`` and ``igen``.

Such an FT checkpoint holds one fine-tuned component (a transformer, a UNet), in any of these layouts:

- a component folder (config.json + weights, format ``component``; fingerprint keys are bare tensor names);
- a folder holding one (format ``component-folder``, e.g. ``transformer/``; keys ``transformer/<name>``),
  its ``config.json`` optional: WIW's Cosmos converter (``utils/pt_to_safetensors_cosmos.py``) writes the
  weights alone, and the config is then taken from the base's same component when every tensor fits it;
- a bare ``.safetensors`` of the component (format ``safetensors``; config from the base likewise);
- a whole diffusers pipeline folder (format ``diffusers``, WIW's FTltx): its component folder is the
  fine-tune; its other components are not loaded (the base's run), and ``checkpoint applied`` names
  those that differ from the base's (pytest_wiw.pipeline_diff).

The wrapper loads its base pipeline and the component, checks that the component's architecture
fields agree with the base pipeline's, and builds a second pipeline of the base's class that shares
every other module with the base. ``zero_shot()`` runs the base pipeline instead: no reload, and the
base output comes back bitwise. With ``--wm-offload pinned`` (the default) the component that does not
run waits in host memory and is swapped in when it is needed (wrappers.common.offload).

Each wrapper describes its own pieces in a ``FineTunedComponent`` (which component, how it loads,
which config fields must agree, how the base pipeline loads); the steps they share are here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from pytest_wiw.api import Checkpoint, CheckpointError, WorldModel, lookup_tensor

from .loading import load_pretrained, model_config
from .offload import PINNED, ModuleOffload, offload_mode
from .tiny import TinyPipeline, save_pretrained_layout, save_tiny

#: The file name diffusers' ``from_pretrained`` reads a component's weights from.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
#: Tensor names a misfit message lists before it counts the rest.
LIST_AT_MOST = 3
#: ``save_tiny_fine_tune`` layouts: ``out_dir/<component>/`` with its config.json (diffusers' own save) ...
COMPONENT_FOLDER = "component-folder"
#: ... the same without config.json (the weights alone, as WIW's Cosmos converter writes them) ...
CONFIG_LESS = "config-less"
#: ... or a copy of the whole base pipeline whose ``<component>/`` is the fine-tune (WIW's FTltx).
WHOLE_PIPELINE = "whole-pipeline"


@dataclass(frozen=True)
class FineTunedComponent:
    """The model-specific pieces of a full-component fine-tune, as its wrapper describes them."""

    #: The pipeline attribute the fine-tuned module replaces: ``transformer``, ``unet``.
    name: str
    #: How messages call the fine-tuned module: ``fine-tuned transformer``, ``action UNet``.
    label: str
    #: Config fields that must agree between the fine-tuned module and the base pipeline's.
    arch_fields: tuple[str, ...]
    #: ``load_base(base_ckpt, dtype, device)``: the base pipeline on ``device``, or a CheckpointError.
    load_base: Callable[[Checkpoint, torch.dtype, str], Any] | None
    #: ``load(folder, dtype)``: the fine-tuned module (on the CPU), or a CheckpointError (None: ``model_cls``
    #: loaded with wrappers.common.loading's ``load_pretrained``).
    load: Callable[[Path, torch.dtype], Any] | None = None
    #: What the FT checkpoint must hold, in the message for a checkpoint of another format (default: label).
    expects: str = ""
    #: What the base checkpoint must be: ``a diffusers <base_folder> folder``.
    base_folder: str = "pipeline"
    #: ``check_folder(folder)``: checks run on the component folder before anything loads (None: none).
    check_folder: Callable[[Path], None] | None = None
    #: The component's model class: a fine-tune without a config.json is built from the base's config when
    #: every tensor fits it (None: a config.json is required).
    model_cls: Any = None
    #: A whole pipeline folder is taken as the FT checkpoint (its ``<name>/`` runs). Off: such a folder is
    #: refused, as for a type whose real checkpoints are never one.
    takes_pipeline: bool = False

    def load_module(self, folder: Path, dtype: torch.dtype):
        """The fine-tuned module of ``folder``, on the CPU; a CheckpointError when it does not load."""
        if self.load is not None:
            return self.load(folder, dtype)
        return load_pretrained(self.model_cls, folder, dtype=dtype, what=self.label)


class ComponentSwap:
    """The pipeline a wrapper runs: the fine-tuned one, or inside ``zero_shot()`` the base one.

    Built from a base pipeline alone (a zero-shot type), both are the base pipeline.
    """

    #: ModuleOffload's names of the two versions of the swapped component.
    BASE, FINE_TUNED = "base", "fine-tuned"

    def __init__(self, base_pipe, ft_pipe=None, *, ft_module=None, key_prefix: str = "",
                 whole_pipeline: bool = False, notes: list[str] | None = None,
                 offload: ModuleOffload | None = None) -> None:
        self.base_pipe = base_pipe
        self.ft_pipe = ft_pipe
        #: The fine-tuned module whose tensors the FT checkpoint's keys name (None for a zero-shot type).
        self.ft_module = ft_module
        #: What the FT checkpoint's keys start with: "" (bare tensor names) or "<folder>/".
        self.key_prefix = key_prefix
        #: The FT checkpoint is a whole pipeline: its keys outside ``key_prefix`` name the shared modules.
        self.whole_pipeline = whole_pipeline
        #: Sentences for the report on how the FT checkpoint was read (the wrapper adds them to its notes).
        self.notes = list(notes or [])
        #: Which version of the component is on the device, the other in host memory (None: both on it).
        self.offload = offload
        #: The pipeline that runs now.
        self.pipe = ft_pipe if ft_pipe is not None else base_pipe

    @property
    def is_fine_tuned(self) -> bool:
        return self.ft_module is not None

    @contextlib.contextmanager
    def zero_shot(self) -> Iterator[None]:
        """Run the base pipeline inside; whatever ran before comes back after, on an error too."""
        previous = self.pipe
        self._place(self.base_pipe)
        self.pipe = self.base_pipe
        try:
            yield
        finally:
            self._place(previous)
            self.pipe = previous

    def _place(self, pipe) -> None:
        """With offload, the component of ``pipe`` swapped onto the device."""
        if self.offload is not None:
            self.offload.activate(self.BASE if pipe is self.base_pipe else self.FINE_TUNED)

    def stats(self) -> dict:
        """What offloading cost so far (swaps, seconds), or that it is off; {} for a zero-shot type."""
        if self.ft_pipe is None:
            return {}
        return {"offload": self.offload.stats() if self.offload is not None else {"mode": "none"}}

    def running_tensor(self, key: str) -> torch.Tensor | None:
        """The fine-tuned module's tensor for an FT checkpoint key (bare name, or ``<folder>/<name>``)."""
        if self.key_prefix:
            if not key.startswith(self.key_prefix):
                return None
            key = key[len(self.key_prefix):]
        return lookup_tensor(self.ft_module, key)


class ComponentSwapModel(TinyPipeline, WorldModel):
    """A WorldModel whose FT type swaps a fine-tuned component into its base pipeline.

    A subclass describes that component in ``FT_COMPONENT`` and calls ``self._load_swap()`` in ``__init__``
    (or sets ``self._swap`` itself: ``ComponentSwap(base_pipe)`` for its zero-shot type,
    ``load_component_swap(...)`` for its FT type); it then runs ``self.pipe``. Setting it adds the swap's
    notes (how the checkpoint was read) to the wrapper's.

    ``make_tiny`` writes the zero-shot type's tiny pipeline (``tiny_pipeline(seed)``, wrappers.common.tiny's
    TinyPipeline) and the FT type's tiny fine-tune (``save_tiny_fine_tune`` over it) from the ``TINY_*``
    attributes a subclass sets. ``components()`` are the pipeline's ``COMPONENTS``.
    """

    #: The FT type's fine-tuned component; its ``load_base`` also loads the zero-shot type's pipeline.
    FT_COMPONENT: FineTunedComponent | None = None
    #: The pipeline's modules ``components()`` names, for the fingerprints and the weights audit.
    COMPONENTS: tuple[str, ...] = ("transformer", "vae", "text_encoder")
    #: make_tiny: the zero-shot and the FT wm_type this wrapper serves (TINY_GENERATION and TINY_DESCRIPTION
    #: are TinyPipeline's, for both tiny checkpoints' cards); the card's description of the tiny fine-tune.
    TINY_TYPES: tuple[str, str] = ("", "")
    TINY_FT_DESCRIPTION = ""
    #: make_tiny: the seeded noise added to each base weight of the tiny fine-tune, relative to its mean |w|,
    #: and the layout it is saved in (``save_tiny_fine_tune``'s).
    TINY_FT_NOISE = 1.5
    TINY_FT_LAYOUT = COMPONENT_FOLDER

    def _load_swap(self) -> None:
        """FT type: ``FT_COMPONENT`` swapped into its base pipeline; zero-shot type: the checkpoint's pipeline."""
        component = self.FT_COMPONENT
        if self.spec.is_ft:
            self._swap = load_component_swap(self.spec, self.ckpt, self.base_ckpt, component, dtype=self.dtype,
                                             device=self.device, offload=offload_mode(self.options))
        else:
            self._swap = ComponentSwap(component.load_base(self.ckpt, self.dtype, self.device))

    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        """The zero-shot type's tiny pipeline, or (given its ``base``) the FT type's tiny fine-tune, with its card."""
        zero_shot, fine_tuned = cls.TINY_TYPES
        if wm_type != fine_tuned:
            return super().make_tiny(wm_type, out_dir, seed=seed)
        if base is None:
            raise CheckpointError(f"make_tiny({wm_type!r}) needs base=<path of the tiny {zero_shot} pipeline>")
        component = cls.FT_COMPONENT
        return save_tiny_fine_tune(component.model_cls, out_dir, Path(base), seed, noise_scale=cls.TINY_FT_NOISE,
                                   generation=cls.TINY_GENERATION, layout=cls.TINY_FT_LAYOUT, component=component.name,
                                   description=cls.TINY_FT_DESCRIPTION)

    def components(self) -> dict[str, object]:
        return {name: getattr(self.pipe, name) for name in self.COMPONENTS}

    @property
    def _swap(self) -> ComponentSwap:
        return self.__dict__["_component_swap"]

    @_swap.setter
    def _swap(self, swap: ComponentSwap) -> None:
        self.__dict__["_component_swap"] = swap
        self.notes.extend(n for n in swap.notes if n not in self.notes)

    @property
    def pipe(self):
        """The pipeline that runs now: the fine-tuned one, or the base one inside ``zero_shot()``."""
        return self._swap.pipe

    def zero_shot(self):
        """Run the base pipeline's own component inside; a zero-shot type runs it anyway."""
        return self._swap.zero_shot()

    def stats(self) -> dict:
        """The component swap's offload figures (wrappers.common.offload), for the worker's stats and the report."""
        return self._swap.stats()

    def running_tensor(self, key: str) -> torch.Tensor | None:
        """FT: the fine-tuned module's tensor for a checkpoint key (inside ``zero_shot()`` too)."""
        if not self._swap.is_fine_tuned:
            return super().running_tensor(key)
        tensor = self._swap.running_tensor(key)
        if tensor is None and self._swap.whole_pipeline:  # the FT folder's vae/, text_encoder/...: shared ones
            return super().running_tensor(key)
        return tensor


# -- loading -------------------------------------------------------------------------------------
@dataclass
class ComponentSource:
    """Where the fine-tuned component's files are, as read from the FT checkpoint."""

    #: The weight files of the component.
    weights: list[Path]
    #: Its config.json: its own, or the base's same component's when it has none.
    config: Path
    #: What the FT checkpoint's keys start with: "" (bare tensor names) or "<folder>/".
    key_prefix: str
    #: The FT checkpoint is a whole pipeline folder.
    whole_pipeline: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def config_borrowed(self) -> bool:
        return self.config.parent != self.weights[0].parent


def load_component_swap(spec, ckpt: Checkpoint, base_ckpt: Checkpoint | None, component: FineTunedComponent,
                        *, dtype: torch.dtype, device: str, offload: str = PINNED) -> ComponentSwap:
    """Load the base pipeline and the fine-tuned component, check that they fit, and pair them (with the
    ``offload`` mode of wrappers.common.offload)."""
    base_ckpt = require_base_pipeline(spec, ckpt, base_ckpt, component.base_folder)
    source = component_source(spec, ckpt, base_ckpt, component)
    with staged_component(source) as folder:
        if component.check_folder is not None:
            component.check_folder(folder)
        if source.config_borrowed:
            check_weights_fit_config(component, source, ckpt)
        base_pipe = component.load_base(base_ckpt, dtype, device)
        where = source.weights[0].parent
        if component.model_cls is not None:  # the architecture before the weights: a misfit is named as one
            check_fits_base(component, model_config(component.model_cls, folder), base_pipe, folder=where,
                            base_path=base_ckpt.path)
        ft_module = component.load_module(folder, dtype)
    check_fits_base(component, ft_module.config, base_pipe, folder=where, base_path=base_ckpt.path)
    ft_module.eval()
    ft_pipe = type(base_pipe)(**{**base_pipe.components, component.name: ft_module})
    return pair_pipelines(base_pipe, ft_pipe, component.name, device=device, offload=offload,
                          key_prefix=source.key_prefix, whole_pipeline=source.whole_pipeline, notes=source.notes)


def pair_pipelines(base_pipe, ft_pipe, names, *, device: str, offload: str, key_prefix: str = "",
                   whole_pipeline: bool = False, notes: list[str] | None = None, ft_module=None) -> ComponentSwap:
    """The ComponentSwap of a base pipeline and an FT pipeline that differ in component(s) ``names`` (the FT's
    still on the CPU as they loaded): the FT's are placed on ``device``, and with ``offload`` pinned the base's
    go to host memory until ``zero_shot()`` needs them (wrappers.common.offload).

    The FT pipeline shares every other module with the base pipeline (the scheduler's state is per call, and
    the two pipelines never run at once). ``ft_module`` (default: the one component of ``names``) is the
    module whose tensors the FT checkpoint's keys name.
    """
    names = [names] if isinstance(names, str) else list(names)
    ft_modules = [getattr(ft_pipe, n) for n in names]
    if ft_module is None and len(names) == 1:
        ft_module = ft_modules[0]
    ft_pipe.set_progress_bar_config(disable=True)
    notes = list(notes or [])
    modules = None
    if offload == PINNED:
        modules = ModuleOffload({ComponentSwap.BASE: [getattr(base_pipe, n) for n in names],
                                 ComponentSwap.FINE_TUNED: ft_modules}, device, resident=ComponentSwap.FINE_TUNED)
        notes.append(offload_note(" and ".join(names), modules))
    else:
        for module in ft_modules:
            module.to(device)
    return ComponentSwap(base_pipe, ft_pipe, ft_module=ft_module, key_prefix=key_prefix,
                         whole_pipeline=whole_pipeline, notes=notes, offload=modules)


def offload_note(name: str, modules: ModuleOffload) -> str:
    """The report's sentence on where the idle version of the component waits."""
    if modules.device.type == "cpu":
        return (f"--wm-offload pinned: the device is the CPU, so the idle {name} is in host memory anyway (no copy, "
                "no pinning); zero_shot() swaps which one runs without moving weights")
    where = "pinned host memory" if modules.pinned else "host memory"
    return (f"--wm-offload pinned: one {name} on {modules.device} at a time; the idle one waits in {where} "
            f"({modules.host_bytes() / 2**30:.2f} GiB for both versions) and zero_shot() copies the base's in and "
            "back out (--wm-offload none keeps both on the device)")


def component_source(spec, ckpt: Checkpoint, base_ckpt: Checkpoint, component: FineTunedComponent) -> ComponentSource:
    """The fine-tuned component's weights and config in any layout the module docstring lists; else a
    CheckpointError saying which layouts are taken."""
    notes = []
    if ckpt.format == "diffusers" and component.takes_pipeline:
        folder = ckpt.path / component.name
        weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if not weights:
            raise CheckpointError(f"{ckpt.path}: this pipeline folder has no {component.name}/ weights, where "
                                  f"{spec.name} takes its {component.label}")
        others = sorted(p.name for p in ckpt.path.iterdir()
                        if p.is_dir() and p.name != component.name and not p.name.startswith("."))
        notes.append(f"FT checkpoint is a whole pipeline folder: its {component.name}/ runs; "
                     + (f"its {', '.join(others)} are not loaded (the base's run; 'checkpoint applied' names any "
                        "that differ from the base's)" if others else "it holds no other component"))
        prefix, whole = component.name + "/", True
    elif ckpt.format == "safetensors":
        folder, weights, prefix, whole = ckpt.files[0].parent, list(ckpt.files), "", False
    else:
        (folder, prefix), weights, whole = component_folder(spec, ckpt, component), list(ckpt.files), False
    if base_ckpt.path.resolve() == ckpt.path.resolve():
        notes.append(f"the base checkpoint is the FT checkpoint itself ({ckpt.path}): FT and zero-shot run the "
                     f"same {component.name}")
    config = folder / "config.json"
    if not config.is_file():
        config = borrowed_config(spec, ckpt, base_ckpt, component, weights)
        notes.append(f"{ckpt.rel(weights[0])} has no config.json beside it (as WIW's converter "
                     f"utils/pt_to_safetensors_cosmos.py writes it): config taken from the base's "
                     f"{component.name}/config.json ({config}), every tensor's shape fits it")
    return ComponentSource(weights=weights, config=config, key_prefix=prefix, whole_pipeline=whole, notes=notes)


def borrowed_config(spec, ckpt: Checkpoint, base_ckpt: Checkpoint, component: FineTunedComponent,
                    weights: list[Path]) -> Path:
    """The base's ``<component>/config.json`` for FT weights that came without one; else a CheckpointError."""
    where = weights[0].parent
    if component.model_cls is None:
        raise CheckpointError(f"{where}: no config.json beside the {component.label} weights")
    config = base_ckpt.path / component.name / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{where}: no config.json beside the {component.label} weights, and the base "
                              f"{base_ckpt.path} has no {component.name}/config.json to take one from")
    return config


@contextlib.contextmanager
def staged_component(source: ComponentSource) -> Iterator[Path]:
    """A folder ``from_pretrained`` can load the component from: its own folder when it is one already, else
    a temporary folder of links (config.json + the weights under diffusers' file name), removed after."""
    folder = source.weights[0].parent
    if not source.config_borrowed and (len(source.weights) > 1 or source.weights[0].name == WEIGHTS_NAME):
        yield folder
        return
    if len(source.weights) > 1:
        raise CheckpointError(f"{folder}: {len(source.weights)} weight files without a config.json or an index "
                              "of their shards: expected one .safetensors (as WIW's converter writes it)")
    staging = Path(tempfile.mkdtemp(prefix="pytest-wiw-component-"))
    try:
        shutil.copyfile(source.config, staging / "config.json")
        os.symlink(source.weights[0].resolve(), staging / WEIGHTS_NAME)
        yield staging
    except CheckpointError as exc:  # name the user's file, not the temporary folder
        raise CheckpointError(str(exc).replace(str(staging), f"{source.weights[0]} (with config {source.config})")) \
            from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_weights_fit_config(component: FineTunedComponent, source: ComponentSource, ckpt: Checkpoint) -> None:
    """CheckpointError unless the FT weights hold exactly the tensors, in the shapes, of the model that the
    borrowed config describes (built on the meta device: no memory, no weights)."""
    try:
        config = json.loads(source.config.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{source.config}: cannot read the config the {component.label} weights borrow: "
                              f"{exc}") from exc
    with torch.device("meta"):
        model = component.model_cls.from_config(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    file = source.weights[0]
    stored = {name: info.shape for f, name, info in ckpt.tensor_index().values() if f == file}
    where = f"{file} (config from the base: {source.config})"
    for name in sorted(set(stored) & set(expected)):
        if tuple(stored[name]) != expected[name]:
            raise CheckpointError(f"{where}: tensor {name} has shape {list(stored[name])} in the file, "
                                  f"{list(expected[name])} in the base's {component.name}: this "
                                  f"{component.label} is not of the base's architecture (another model size?)")
    for names, what in ((sorted(set(stored) - set(expected)), "not in the base's"),
                        (sorted(set(expected) - set(stored)), "missing from the file, present in the base's")):
        if names:
            more = f" and {len(names) - LIST_AT_MOST} more" if len(names) > LIST_AT_MOST else ""
            raise CheckpointError(f"{where}: {len(names)} tensor(s) {what} {component.name} "
                                  f"({', '.join(names[:LIST_AT_MOST])}{more})")


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
    """The folder of a ``component`` or ``component-folder`` checkpoint, and the prefix its keys carry;
    a CheckpointError naming the layouts taken for any other format."""
    if ckpt.format == "component":
        return ckpt.path, ""
    if ckpt.format == "component-folder":
        folder = ckpt.files[0].parent
        return folder, folder.relative_to(ckpt.root).as_posix() + "/"
    optional = " (its config.json optional)" if component.model_cls is not None else ""
    pipeline = ", or a whole pipeline folder" if component.takes_pipeline else ""
    raise CheckpointError(f"{ckpt.path}: {spec.name} expects a {component.expects or component.label}: a folder "
                          "with config.json + diffusion_pytorch_model.safetensors, or a folder holding "
                          f"{component.name}/{optional}{pipeline}; got a {ckpt.format!r} checkpoint")


def require_transformer_config(folder: Path) -> Path:
    """The fine-tuned transformer folder's config.json; a CheckpointError when there is none."""
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json beside the transformer weights")
    return config


def check_fits_base(component: FineTunedComponent, ft_config, base_pipe, *, folder: Path, base_path: Path) -> None:
    """A CheckpointError naming every architecture field on which the fine-tuned module's config and the base
    pipeline's module's differ."""
    base_cfg, ft_cfg = getattr(base_pipe, component.name).config, ft_config
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
                        description: str, component: str = "transformer", layout: str = COMPONENT_FOLDER) -> Path:
    """A tiny "fine-tune": the base pipeline's ``component`` plus seeded noise, saved as ``out_dir/<component>/``
    in ``layout``, with its card naming ``base``.

    Each tensor gets noise of ``noise_scale * (mean |w| + 0.02)``, drawn from a generator of its own
    (never the global RNG), in the order of the sorted parameter names.
    """
    if layout not in (COMPONENT_FOLDER, CONFIG_LESS, WHOLE_PIPELINE):
        raise ValueError(f"unknown tiny fine-tune layout {layout!r}")

    def noised(seed: int):
        module = load_pretrained(model_cls, base, subfolder=component, what=f"the tiny base's {component}")
        noise = torch.Generator("cpu").manual_seed(seed)
        with torch.no_grad():
            for _, p in sorted(module.named_parameters()):
                scale = noise_scale * (float(p.abs().mean()) + 0.02)
                p.add_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * scale)
        return module

    def save(module, out: Path) -> None:
        if layout == WHOLE_PIPELINE:  # every other component identical to the base's, byte for byte
            shutil.copytree(base, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
            shutil.rmtree(out / component)
        save_pretrained_layout(module, out / component)
        if layout == CONFIG_LESS:
            (out / component / "config.json").unlink()

    return save_tiny(out_dir, noised, seed, generation=generation, description=description, base=base, save=save)
