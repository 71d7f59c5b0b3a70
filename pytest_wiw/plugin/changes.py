"""`--wm-changed REF`: which wm_types a change touches, from ``git diff`` against a ref."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from pytest_wiw.api.registry import WMSpec
from pytest_wiw.errors import UsageError
from pytest_wiw.runtime.wrapper_class import package_sources


def changed_files(ref: str, cwd: Path) -> set[Path]:
    """Absolute paths of files that differ between ``ref`` and the working tree of the repo at ``cwd``."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "--name-only", ref, "--"], cwd=top, capture_output=True, text=True,
                              check=True).stdout
    except FileNotFoundError:
        raise UsageError("--wm-changed needs git on PATH") from None
    except subprocess.CalledProcessError as exc:
        raise UsageError(f"--wm-changed {ref!r}: git failed: {exc.stderr.strip() or exc}") from None
    return {(Path(top) / line).resolve() for line in diff.splitlines() if line}


def spec_files(spec: WMSpec) -> set[Path]:
    """The files that define a wm_type: its wrapper module and the modules of its package that it imports (shared
    loading and tiny-building code), the module that registered it, its env file."""
    files = set()
    if spec.wrapper:
        module = spec.wrapper.split(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found and found.origin and found.origin.endswith(".py"):
            files |= {f.resolve() for f in package_sources(Path(found.origin), module)}
    if spec.registered_in:
        files.add(Path(spec.registered_in).resolve())
    env = spec.env_path()
    if env is not None:
        files.add(env.resolve())
    return files


def changed_wm_types(ref: str, specs: list[WMSpec]) -> set[str]:
    """Names of the specs whose defining files changed since ``ref`` (looked up in each file's own repo)."""
    changed: set[str] = set()
    diffs: dict[Path, set[Path]] = {}
    for spec in specs:
        for file in spec_files(spec):
            repo = file.parent
            if repo not in diffs:
                diffs[repo] = changed_files(ref, repo)
            if file in diffs[repo]:
                changed.add(spec.name)
    return changed
