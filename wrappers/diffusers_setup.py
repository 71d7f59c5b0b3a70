"""Setup steps several diffusers wrappers share: size checks, loading a pipeline folder, tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from pytest_wiw.api import Checkpoint, CheckpointError, GenerationDefaults, SpecError, write_card

#: What ``from_pretrained`` raises for a pipeline folder it cannot load.
PIPELINE_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def require_size_multiple(wm_name: str, generation: GenerationDefaults, multiple: int) -> None:
    """SpecError unless the generation height and width are multiples of ``multiple``."""
    if generation.height % multiple or generation.width % multiple:
        raise SpecError(f"{wm_name} generates at sizes divisible by {multiple}, got "
                        f"{generation.height}x{generation.width}: fix the card's or --wm-opt generation sizes")


def require_pipeline_folder(ckpt: Checkpoint, wm_name: str, pipeline_cls) -> None:
    """CheckpointError unless the checkpoint is a diffusers pipeline folder."""
    if ckpt.format != "diffusers":
        raise CheckpointError(f"{ckpt.path}: {wm_name} needs a diffusers {pipeline_cls.__name__} folder "
                              f"(model_index.json), got a {ckpt.format!r} checkpoint")


def check_pipeline_class(path: Path, pipeline_cls, wm_name: str) -> None:
    """CheckpointError unless the folder's model_index.json names ``pipeline_cls``."""
    index = path / "model_index.json"
    try:
        cls_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index}: cannot read the pipeline index: {exc}") from exc
    if cls_name != pipeline_cls.__name__:
        raise CheckpointError(f"{index}: names pipeline {cls_name!r}; {wm_name} needs a {pipeline_cls.__name__}")


def variant_kwargs(ckpt: Checkpoint) -> dict:
    """The ``from_pretrained`` arguments that load the checkpoint's diffusers weight variant.

    ``open_checkpoint`` found it: the only variant the folder holds (``variant="fp16"`` for a folder of
    ``*.fp16.safetensors`` files, as WIW's SVD snapshots are), or the one ``--wm-opt variant=`` picked.
    Every wrapper's ``from_pretrained`` of a checkpoint folder passes these.
    """
    return {"variant": ckpt.variant} if ckpt.variant else {}


def load_pipeline_folder(pipeline_cls, ckpt: Checkpoint, wm_name: str, *, dtype: torch.dtype,
                         errors=PIPELINE_LOAD_ERRORS, **from_pretrained_kwargs):
    """The checkpoint's pipeline folder (its index must name ``pipeline_cls``), loaded from safetensors.

    The pipeline stays on the CPU; a folder that does not load is a CheckpointError.
    """
    path = Path(ckpt.path)
    check_pipeline_class(path, pipeline_cls, wm_name)
    try:
        return pipeline_cls.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                            **variant_kwargs(ckpt), **from_pretrained_kwargs)
    except errors as exc:
        raise CheckpointError(f"{path}: cannot load it as a {pipeline_cls.__name__}: "
                              f"{type(exc).__name__}: {exc}") from exc


def ready_to_run(pipe, device: str):
    """The pipeline moved to ``device``, its progress bars off."""
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- tiny checkpoints ------------------------------------------------------------------------------
def write_tiny_card(out_dir: Path, *, generation: dict, description: str, base: Path | None = None) -> Path:
    """The card of a tiny checkpoint: random weights, its generation settings, its base (FT types)."""
    return write_card(out_dir, base_model=str(base) if base is not None else None,
                      datasets=["none (random tiny weights)"], license="apache-2.0", training_steps=0,
                      generation=dict(generation), description=description)


def save_tiny_pipeline(out_dir: Path, build: Callable[[int], object], seed: int, *, generation: dict,
                       description: str) -> Path:
    """Build a tiny pipeline with ``build(seed)`` and save it with its card into ``out_dir``.

    The build runs under ``fork_rng``: it may seed torch's global RNG, the caller's RNG is left where it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        pipe = build(seed)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    write_tiny_card(out_dir, generation=generation, description=description)
    return out_dir
