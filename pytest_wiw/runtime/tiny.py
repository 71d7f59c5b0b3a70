"""The embedded default: tiny reference checkpoints, built once into a cache folder and reused.

Entries are keyed by wm_type, wrapper version, a hash of the wrapper's source file, and seed. Builds take a file lock (safe under
xdist) and land by an atomic rename, so a half-written entry is never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from filelock import FileLock

from pytest_wiw.api.registry import WMSpec
from pytest_wiw.errors import TinyCheckpointError

TINY_SEED = 0
# A second builder waits for the first; a tiny build takes seconds, so minutes mean a stuck peer.
LOCK_TIMEOUT_S = 600
_COMPLETE = ".complete"
# Hex digits of the wrapper source's sha256 in a cache entry's name: enough to tell two versions apart.
SOURCE_DIGEST_CHARS = 12
# What a checkpoint's weights are stored as (pickles are refused by the checks).
WEIGHTS_SUFFIX = ".safetensors"


def ensure_tiny(spec: WMSpec, base_spec: WMSpec | None, cache: Path,
                seed: int = TINY_SEED) -> tuple[Path, Path | None]:
    """Paths of the tiny checkpoint of ``spec`` (and of its base), building what is missing."""
    base_path = ensure_one(base_spec, cache, seed) if spec.is_ft else None
    if spec.is_ft and base_spec is None:
        raise ValueError(f"{spec.name} is an FT type: its base spec is needed to build its tiny base")
    return ensure_one(spec, cache, seed, base=base_path), base_path


def ensure_one(spec: WMSpec, cache: Path, seed: int, base: Path | None = None) -> Path:
    from pytest_wiw.runtime.wrapper_class import load_wrapper_class

    cls = load_wrapper_class(spec.wrapper)
    entry = cache / f"{spec.name}-v{getattr(cls, 'version', '0')}-{source_digest(cls)}-seed{seed}"
    if (entry / _COMPLETE).exists():
        return _ckpt_in(entry)
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock", timeout=LOCK_TIMEOUT_S):
        if (entry / _COMPLETE).exists():
            return _ckpt_in(entry)
        if entry.exists():  # a build interrupted before its rename cannot be here, but a hand edit can
            shutil.rmtree(entry)
        staging = cache / f".{entry.name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "ckpt").mkdir(parents=True)
        try:
            out_dir = staging / "ckpt"
            written = made_checkpoint(cls, spec.name, out_dir, cls.make_tiny(spec.name, out_dir, base=base, seed=seed))
            rel = written.relative_to(staging)
            (staging / _COMPLETE).write_text(rel.as_posix())
            os.rename(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _ckpt_in(entry)


def made_checkpoint(cls: type, wm_type: str, out_dir: Path, returned: object) -> Path:
    """What ``make_tiny`` returned, checked: a path in ``out_dir`` that opens as a checkpoint with weights.
    TinyCheckpointError naming ``make_tiny`` and what it should return, else."""
    call = f"{cls.__name__}.make_tiny({wm_type!r}, out_dir)"
    should = ("make_tiny must write the checkpoint into out_dir and return its path: out_dir itself for a folder "
              "(a diffusers pipeline, a transformer/ folder), or the weights file it wrote there (a LoRA "
              ".safetensors); see docs/writing-a-wrapper.md, section 3")
    if returned is None:
        raise TinyCheckpointError(f"{call} returned None (a missing `return out_dir`?): {should}")
    if not isinstance(returned, (str, os.PathLike)):
        raise TinyCheckpointError(f"{call} returned a {type(returned).__name__}, not a path: {should}")
    written, root = Path(returned).resolve(), out_dir.resolve()
    if written != root and root not in written.parents:
        raise TinyCheckpointError(f"{call} returned {returned}, which is not out_dir ({out_dir}) nor inside it"
                                  f"{' (its parent folder)' if written == root.parent else ''}: {should}")
    written = out_dir / written.relative_to(root)
    # Existence and weights only: how the files open (variants, epochs) is the checkpoint check's business.
    if not written.exists():
        raise TinyCheckpointError(f"{call} returned {written}, which does not exist: {should}")
    if not (written.suffix == WEIGHTS_SUFFIX if written.is_file() else any(written.rglob(f"*{WEIGHTS_SUFFIX}"))):
        raise TinyCheckpointError(f"{call} returned {written}, which holds no {WEIGHTS_SUFFIX} weights: {should}")
    return written


def source_digest(cls: type) -> str:
    """A short hash of the source the wrapper's tiny checkpoint comes from: a make_tiny that changed without its
    ``version`` being bumped still gets a fresh tiny checkpoint, never a stale one from the cache.

    The source is the file that defines the class and every module of its own top-level package that file
    imports, followed import by import (``wrappers/cosmos.py`` builds its tiny pipeline with
    ``wrappers/common/tiny.py``), plus the files of the class's bases from that package."""
    import hashlib
    import inspect

    from pytest_wiw.runtime.wrapper_class import package_sources

    try:
        files = package_sources(Path(inspect.getsourcefile(cls) or ""), cls.__module__)
        for base in cls.__mro__[1:]:
            if base.__module__.split(".")[0] == cls.__module__.split(".")[0]:
                files |= package_sources(Path(inspect.getsourcefile(base) or ""), base.__module__)
        digest = hashlib.sha256()
        for file in sorted(files):
            digest.update(file.read_bytes())
    except (OSError, TypeError):
        return "nosrc"
    return digest.hexdigest()[:SOURCE_DIGEST_CHARS]


def _ckpt_in(entry: Path) -> Path:
    return entry / (entry / _COMPLETE).read_text().strip()
