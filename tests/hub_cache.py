"""Lay a checkpoint folder out as a Hugging Face hub cache repository, as `huggingface_hub` writes one.

``<cache>/models--org--name/blobs/<sha256 of the content>`` holds each file once;
``snapshots/<revision>/<path>`` is a relative symlink to its blob; ``refs/main`` holds the revision.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

#: A revision as the hub names them: a 40-hex commit id (any fixed one will do for a test).
REVISION = "9cf024d5bfa8f56622af86c884f26a52f6676f2e"


def hub_snapshot(src: Path, cache: Path, repo_id: str, revision: str = REVISION) -> Path:
    """Copy the folder ``src`` into ``cache`` as hub repository ``repo_id``; return its snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshot = repo / "blobs", repo / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in Path(src).rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = blobs / digest
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
