"""pytest-wiw's cache folder: the embedded default's tiny checkpoints and the checkpoint digests live there."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$PYTEST_WIW_CACHE``, else ``$XDG_CACHE_HOME/pytest-wiw``, else ``~/.cache/pytest-wiw``."""
    if os.environ.get("PYTEST_WIW_CACHE"):
        return Path(os.environ["PYTEST_WIW_CACHE"]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "pytest-wiw"
