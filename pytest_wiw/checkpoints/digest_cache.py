"""A checkpoint's sha256, remembered across sessions by what the file system says of its files.

Hashing a 14.9 GiB pipeline takes about 17 s; a CI runner or a developer checks the same checkpoint
again and again. The digest is kept in ``<cache>/digests/`` (the tiny-checkpoint cache,
``$PYTEST_WIW_CACHE``), one small JSON file per checkpoint, keyed by every weight file's

    name in the checkpoint, absolute path, device, inode, size, mtime_ns and ctime_ns.

Trust rule: a cached digest is used when none of these changed. Any write through the file system
changes mtime and ctime; replacing a file (a fresh save, ``cp``, ``rsync`` without ``--inplace``) also
changes its inode. What is missed: a file whose contents change while its size, inode, mtime *and*
ctime all stay, which takes resetting the clock, or a file system that does not keep ctime (some
network and FUSE mounts; there, a file rewritten in place with the same size and a restored mtime,
e.g. ``rsync --inplace --times``, would be missed). Delete ``<cache>/digests/`` to forget every digest.

Entries are written whole to a temporary file and renamed: xdist workers and concurrent sessions
sharing the cache never read half an entry. An unreadable entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

#: Sub-folder of the cache holding the entries.
DIGESTS_DIR = "digests"
#: Hex digits of the key's own sha256 in an entry's file name: enough to never collide in practice.
ENTRY_NAME_CHARS = 32

#: What this process did, for tests and for the curious: checkpoints hashed, and served from the cache.
counts = {"hashed": 0, "cached": 0}


def file_identity(name: str, path: Path) -> dict:
    """What the trust rule compares for one weight file (see the module docstring)."""
    st = os.stat(path)
    return {"name": name, "path": str(Path(path).absolute()), "dev": st.st_dev, "inode": st.st_ino,
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def cached_digest(files: Sequence[tuple[str, Path]], compute: Callable[[], str], cache_dir: Path | None) -> str:
    """The digest ``compute()`` returns for ``files`` ((name, path) pairs), from the cache when every file's
    identity is unchanged; computed (and stored) otherwise. ``cache_dir`` None: always computed."""
    if cache_dir is None:
        counts["hashed"] += 1
        return compute()
    key = [file_identity(name, path) for name, path in files]
    entry = Path(cache_dir) / DIGESTS_DIR / (
        hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:ENTRY_NAME_CHARS] + ".json")
    try:
        stored = json.loads(entry.read_text())
        if stored.get("key") == key and isinstance(stored.get("sha256"), str):
            counts["cached"] += 1
            return stored["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = compute()
    counts["hashed"] += 1
    if key == [file_identity(name, path) for name, path in files]:  # nothing changed while it was read
        _write(entry, {"key": key, "sha256": digest})
    return digest


def _write(entry: Path, data: dict) -> None:
    """Write ``entry`` atomically; a cache that cannot be written costs only the next hash."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, entry)
    except OSError:
        pass
