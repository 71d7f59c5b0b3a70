"""What a wrapper runs with, in any process: its base checkpoint, its generation settings, torch's switches.

The worker applies these before it builds the model; the benchmarks and ``pytest-wiw make-tiny`` apply the
same ones so that their figures and files are the suite's.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from pathlib import Path

from pytest_wiw.api.registry import GenerationDefaults
from pytest_wiw.checkpoints.files import Checkpoint, card_generation
from pytest_wiw.errors import CheckpointError


def resolve_base_path(ckpt: Checkpoint, given: str | None) -> Path:
    """The FT checkpoint's zero-shot base: --base-ckpt-path, else the card's ``base_model``."""
    if given:
        return Path(given)
    base = ckpt.card.get("base_model")
    if not base:
        raise CheckpointError(f"{ckpt.path}: no base checkpoint: give --base-ckpt-path, or name a local "
                              f"base_model in the card ({ckpt.root / 'README.md'})")
    path = Path(str(base)).expanduser()
    if not path.is_absolute():
        path = ckpt.root / path
    if not path.exists():
        raise CheckpointError(f"{ckpt.root / 'README.md'}: base_model {base!r} is not a local path "
                              "(nothing is downloaded): give --base-ckpt-path")
    return path


def effective_generation(defaults: GenerationDefaults, ckpts: list[Checkpoint | None],
                         options: dict) -> GenerationDefaults:
    """Spec defaults, updated by each card in turn (an FT's base, then the FT checkpoint), then by
    the --wm-opt keys that name a generation setting."""
    fields = {f.name for f in dataclasses.fields(GenerationDefaults)}
    generation = defaults
    for ckpt in ckpts:
        if ckpt is not None:
            generation = generation.updated(card_generation(ckpt.card))
    return generation.updated({k: v for k, v in options.items() if k in fields})


def configure_torch(threads: int, deterministic: bool, device: str) -> dict:
    """Pin the thread count and, unless opted out, make torch deterministic; report what is in force."""
    import torch

    torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    env = {
        "python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(), "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cuda": torch.version.cuda, "gpu": None,
    }
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        env["diffusers"] = None
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return env
