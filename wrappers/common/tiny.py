"""Tiny checkpoints: every wrapper's ``make_tiny`` writes its checkpoint through ``save_tiny``.

A tiny checkpoint is built from seeded random weights (or from the tiny base it fine-tunes), saved in the
layout real checkpoints of its kind have, and carries a card with its generation settings (and its base,
for an FT type). The build runs under ``fork_rng``, so it may seed torch's global RNG without moving the
caller's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch

from pytest_wiw.api import write_card


def tiny_generation(*, guidance_scale: float, height: int = 32, width: int = 32, num_frames: int = 9) -> dict:
    """The generation settings a tiny checkpoint's card carries: ``height`` x ``width`` (output at the same size),
    ``num_frames`` generated and mapped to 4, 2 steps: a call well under a second on one CPU thread.

    ``guidance_scale`` above 1 runs the pipeline's negative-prompt (CFG) path, as the real settings do.
    """
    return {"height": height, "width": width, "out_height": height, "out_width": width, "num_frames": num_frames,
            "num_output_frames": 4, "steps": 2, "guidance_scale": guidance_scale}


def write_tiny_card(out_dir: Path, *, generation: dict, description: str, base: Path | None = None) -> Path:
    """The card of a tiny checkpoint: random weights, its generation settings, its base (FT types)."""
    return write_card(out_dir, base_model=str(base) if base is not None else None,
                      datasets=["none (random tiny weights)"], license="apache-2.0", training_steps=0,
                      generation=dict(generation), description=description)


def save_pretrained_layout(built, out_dir: Path) -> None:
    """The default layout: diffusers' own ``save_pretrained`` (a pipeline folder, or a model folder), safetensors."""
    built.save_pretrained(str(out_dir), safe_serialization=True)


def save_tiny(out_dir: Path, build: Callable[[int], object], seed: int, *, generation: dict, description: str,
              base: Path | None = None, save: Callable[[object, Path], None] = save_pretrained_layout,
              cards_in: Iterable[str] = (".",)) -> Path:
    """Make a tiny checkpoint in ``out_dir`` and return ``out_dir``.

    ``build(seed)`` makes what is saved (a pipeline, a model, a state dict ...) under ``fork_rng``; ``save(built,
    out_dir)`` writes it in its real layout (default: ``save_pretrained``); a card naming ``generation``,
    ``description`` and ``base`` (an FT type's tiny base) goes into each folder of ``cards_in`` (relative to
    ``out_dir``), so that each loads with nothing else given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        save(build(seed), out_dir)
    for where in cards_in:
        write_tiny_card(out_dir / where, generation=generation, description=description,
                        base=Path(base) if base is not None else None)
    return out_dir


class TinyPipeline:
    """``make_tiny`` for a wrapper whose tiny checkpoint is one pipeline folder (a mixin, listed before
    WorldModel): ``tiny_pipeline(seed)`` saved with ``save_tiny``.

    A subclass sets ``tiny_pipeline``, ``TINY_GENERATION`` (its card's generation settings), ``TINY_DESCRIPTION``
    (the card's description; ``{wm_type}`` and ``{seed}`` are filled in) and ``TINY_TYPES`` (the wm_types it
    serves; empty: any).
    """

    TINY_TYPES: tuple[str, ...] = ()
    TINY_GENERATION: dict = {}
    TINY_DESCRIPTION = ""

    @staticmethod
    def tiny_pipeline(seed: int):
        """The tiny pipeline, built from seeded random weights (it may seed torch's global RNG)."""
        raise NotImplementedError("a TinyPipeline wrapper defines tiny_pipeline(seed)")

    @classmethod
    def make_tiny(cls, wm_type: str, out_dir: Path, *, base: Path | None = None, seed: int = 0) -> Path:
        """The tiny pipeline folder in ``out_dir``, with its card; returns ``out_dir``."""
        if cls.TINY_TYPES and wm_type not in cls.TINY_TYPES:
            raise ValueError(f"{cls.__name__}.make_tiny serves {' and '.join(cls.TINY_TYPES)}, not {wm_type!r}")
        return save_tiny(out_dir, cls.tiny_pipeline, seed, generation=cls.TINY_GENERATION,
                         description=cls.TINY_DESCRIPTION.format(wm_type=wm_type, seed=seed))
