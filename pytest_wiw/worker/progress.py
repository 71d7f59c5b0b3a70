"""Progress of long work inside the worker: bytes loaded and denoising steps, streamed as frames.

A real checkpoint takes a while to load and a generation minutes, so the worker reports as it goes.
It hooks the two places every diffusers pipeline passes through, so no wrapper has to: the
pipeline's ``progress_bar`` (one update per denoising step) and diffusers' ``load_state_dict`` (one
update per weight file). Each update is a ``progress`` frame on the protocol, sent before the
``ready``/``result`` it belongs to; the client hands them to its progress callback.
"""

from __future__ import annotations

import os
import time
from typing import Callable

# Steps closer together than this are not each sent: a 1000-step tiny run should not flood the pipe.
MIN_INTERVAL_S = 0.2


class StepReporter:
    """Stands in for the tqdm bar a pipeline opens around its denoising loop."""

    def __init__(self, emit: Callable[[dict], None], total: int | None, iterable=None):
        self.emit = emit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.iterable = iterable
        self.done = 0
        self.last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= MIN_INTERVAL_S or self.done == self.total:
            self.last = now
            self.emit({"stage": "generate", "what": "denoising step", "done": self.done, "total": self.total,
                       "unit": "steps"})

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def close(self) -> None:
        return None


def install(emit: Callable[[dict], None]) -> None:
    """Route diffusers' progress bars and weight-file loads to ``emit`` (a no-op without diffusers)."""
    try:
        from diffusers import DiffusionPipeline
        from diffusers.models import model_loading_utils, modeling_utils
    except ImportError:
        return

    def progress_bar(self, iterable=None, total=None):
        return StepReporter(emit, total, iterable)

    DiffusionPipeline.progress_bar = progress_bar
    original = model_loading_utils.load_state_dict
    loaded = {"bytes": 0}

    def load_state_dict(checkpoint_file, *args, **kwargs):
        state = original(checkpoint_file, *args, **kwargs)
        if not isinstance(checkpoint_file, (str, os.PathLike)):
            return state  # an in-memory state dict passed through: nothing was read from disk
        try:
            loaded["bytes"] += os.path.getsize(checkpoint_file)
        except (OSError, TypeError):
            pass
        emit({"stage": "load", "what": os.path.basename(str(checkpoint_file)), "done": loaded["bytes"],
              "total": None, "unit": "bytes"})
        return state

    model_loading_utils.load_state_dict = load_state_dict
    modeling_utils.load_state_dict = load_state_dict
