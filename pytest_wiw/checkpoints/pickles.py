"""``--wm-allow-pickle``: pickle weight files converted to safetensors, never unpickled with code.

Without the option a pickle (``.bin .pt .pth .ckpt .pkl .pth.tar``) in a checkpoint is refused
(pytest_wiw.checkpoints.files). With it, each pickle is read by ``torch.load(weights_only=True)``, whose
restricted unpickler builds tensors and plain containers only and raises on anything else, so a
pickle that would run code never does. The tensors are written as ``.safetensors`` into a copy of
the checkpoint in the cache, and everything after works on that copy. The user's folder is never
written to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pytest_wiw.checkpoints.files import PICKLE_SUFFIXES, is_training_state
from pytest_wiw.checkpoints.pickle_peek import training_pickle_hint
from pytest_wiw.errors import CheckpointError

#: Keys under which training frameworks nest the weights in a pickled dict (Lightning, many trainers).
NESTED_STATE_KEYS = ("state_dict", "model", "module")


def pickle_files(path: Path) -> list[Path]:
    """The pickle weight files of a checkpoint path (the file itself, or inside the folder)."""
    if path.is_file():
        return [path] if path.name.endswith(PICKLE_SUFFIXES) else []
    return sorted(f for f in path.rglob("*") if f.is_file() and f.name.endswith(PICKLE_SUFFIXES)
                  and not is_training_state(f, path))  # accelerate's optimizer/RNG state: never loaded


def convert_pickles(path: str | Path, cache: Path) -> str:
    """``path``, or when it holds pickles, the path of its converted copy under ``cache/converted``.

    CheckpointError names the pickle that could not be read as plain tensors. The copy is keyed by the
    pickles' paths, sizes and modification times, so a changed file is converted again.
    """
    src = Path(path).expanduser().absolute()
    pickles = pickle_files(src) if src.exists() else []
    if not pickles:
        return str(path)
    key = hashlib.sha256("\n".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in pickles).encode())
    dst = cache / "converted" / f"{src.name}-{key.hexdigest()[:16]}"
    done = dst / ".converted"
    if not done.exists():
        tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_tree(src, tmp)
        (tmp / ".converted").write_text("\n".join(str(p) for p in pickles))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    return str(dst / src.name) if src.is_file() else str(dst)


def _convert_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` (a file or folder) to ``dst``, writing each pickle as a .safetensors beside."""
    if src.is_file():
        dst.mkdir(parents=True)
        card = src.parent / "README.md"
        if card.is_file():
            shutil.copy2(card, dst / card.name)
        _convert_one(src, dst / src.name)
        return
    for f in sorted(src.rglob("*")):
        target = dst / f.relative_to(src)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif f.name.endswith(PICKLE_SUFFIXES):
            target.parent.mkdir(parents=True, exist_ok=True)
            _convert_one(f, target)
        elif f.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def _convert_one(pickle: Path, target: Path) -> Path:
    """Read ``pickle`` with weights_only=True and write its tensors to ``target`` renamed .safetensors."""
    import torch
    from safetensors.torch import save_file

    try:
        loaded = torch.load(pickle, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(f"{pickle}: refused: it is not a plain pickle of tensors, so it was not loaded "
                              f"(torch.load(weights_only=True): {type(exc).__name__}: {str(exc)[:300]}).{training_pickle_hint(pickle)}") from exc
    tensors = _state_dict(pickle, loaded)
    out = target.with_name(_safetensors_name(target.name))
    # safetensors refuses tensors that share memory: give each its own contiguous copy.
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(out))
    return out


def _state_dict(pickle: Path, loaded) -> dict:
    import torch

    for key in NESTED_STATE_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(f"{pickle}: holds a {type(loaded).__name__}, not a dict of tensors (a state dict)")
    bad = [k for k, v in loaded.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{pickle}: entries that are not named tensors: {', '.join(map(str, bad[:5]))}")
    return loaded


def _safetensors_name(name: str) -> str:
    for suffix in (".pth.tar", *sorted(PICKLE_SUFFIXES, key=len, reverse=True)):
        if name.endswith(suffix):
            return name[: -len(suffix)] + ".safetensors"
    return name + ".safetensors"
