"""The on-disk baseline cache (`--wm-baseline-cache DIR`): zero-shot outputs kept across runs.

An FT type's zero-shot call Z depends only on its base checkpoint, the request, the seed and the
software that ran it, so later runs read it from disk: 4 generation calls cold, 3 warm. Each entry
is ``<key hash>.npy`` (read with allow_pickle=False) plus ``<key hash>.json`` holding the full key;
any change of key misses. An entry that is corrupt, truncated or does not match its key is ignored
with a warning and rewritten, never trusted. Writes land by atomic rename, so concurrent xdist
workers never read a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np


class BaselineCacheWarning(UserWarning):
    """An entry of the baseline cache was unusable and is being rewritten."""


def baseline_key(*, base_sha256: str, request_digest: str, seed, wrapper: str, wrapper_version: str,
                 environment: dict, dtype: str, generation: dict) -> dict:
    """Everything a zero-shot output depends on."""
    return {
        "base_sha256": base_sha256, "request": request_digest, "seed": seed, "wrapper": wrapper,
        "wrapper_version": wrapper_version, "torch": environment.get("torch"),
        "diffusers": environment.get("diffusers"), "device_type": str(environment.get("device", "")).split(":")[0],
        "gpu": environment.get("gpu"), "dtype": dtype, "threads": environment.get("threads"),
        "deterministic_algorithms": environment.get("deterministic_algorithms"), "generation": generation,
    }


class BaselineCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def _paths(self, key: dict) -> tuple[Path, Path]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.folder / f"{digest}.npy", self.folder / f"{digest}.json"

    def get(self, key: dict) -> np.ndarray | None:
        """The cached frames for ``key``, or None (a miss, or an entry not to be trusted)."""
        array_path, key_path = self._paths(key)
        if not array_path.exists() and not key_path.exists():
            self.misses += 1
            return None
        try:
            stored = json.loads(key_path.read_text())
            if stored.get("key") != key:
                raise ValueError("its key file does not match the request (a hash collision or a hand edit)")
            frames = np.load(array_path, allow_pickle=False)
            if list(frames.shape) != stored.get("shape") or str(frames.dtype) != stored.get("dtype"):
                raise ValueError(f"holds {frames.dtype} {list(frames.shape)}, its key file says "
                                 f"{stored.get('dtype')} {stored.get('shape')}")
        except (OSError, ValueError, EOFError) as exc:
            warnings.warn(BaselineCacheWarning(f"baseline cache entry {array_path.name} ignored and rewritten: {exc}"),
                          stacklevel=2)
            self.misses += 1
            return None
        self.hits += 1
        return frames

    def put(self, key: dict, frames: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        array_path, key_path = self._paths(key)
        _atomic_write(array_path, lambda fh: np.save(fh, frames, allow_pickle=False))
        meta = {"key": key, "shape": list(frames.shape), "dtype": str(frames.dtype)}
        _atomic_write(key_path, lambda fh: fh.write(json.dumps(meta, indent=1, sort_keys=True).encode()))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
