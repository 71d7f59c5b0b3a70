"""A spec's ``"module:Class"`` wrapper string: imported (in the worker), or only looked up (in the pytest process).

The wrapper module is imported only inside the worker process (it imports the model libraries); the pytest
process only looks its file up, as the worker would, so that a typo or a package not installed fails
``registered`` (a static check) instead of every check that needs the worker.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

from pytest_wiw.api.registry import WMSpec

#: What the fix is, whichever way the module cannot be imported.
WRAPPER_FIX = ("fix the module path in register_wm(wrapper='module:Class'), or install the package that provides "
               "it into the worker's Python environment (its env= requirements file, or --wm-worker-python)")


def wrapper_module_problem(spec: WMSpec, worker_python: str) -> str | None:
    """Why the worker could not import ``spec.wrapper``'s module, or None (found, or not knowable here).

    Only judged when the worker runs this very interpreter: another one (--wm-worker-python) has its own
    packages, and its worker says what it cannot import when it loads."""
    if not spec.runnable or os.path.realpath(worker_python) != os.path.realpath(sys.executable):
        return None
    module = spec.wrapper.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
        if found is None and "." not in module:  # the worker runs `python -m`: its working folder is on its path
            found = importlib.machinery.PathFinder.find_spec(module, [os.getcwd()])
    except Exception as exc:  # a parent package that is missing or fails to import
        cause = f"{type(exc).__name__}: {exc}"
    else:
        if found is not None:
            return None
        cause = f"ModuleNotFoundError: No module named {module!r}"
    return f"wrapper {spec.wrapper!r}: module {module!r} cannot be imported ({cause}): {WRAPPER_FIX}"


def load_wrapper_class(target: str):
    """Import ``"module:Class"``; errors say which part is wrong."""
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"wrapper module {module_name!r} (from {target!r}) cannot be imported: "
                          f"{type(exc).__name__}: {exc}: {WRAPPER_FIX}") from exc
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"wrapper module {module_name!r} has no class {class_name!r}: fix the class name in "
                          f"register_wm(wrapper={target!r})") from None


def package_sources(file: Path, module: str) -> set[Path]:
    """``file`` (the source of ``module``) and the files of its own top-level package it imports, transitively,
    read as text (find_spec runs only their packages' ``__init__``): what a wrapper is made of
    (``wrappers/cosmos.py`` loads and builds its tiny checkpoint through ``wrappers/common/``). The tiny cache
    keys on it; ``--wm-changed`` selects by it."""
    import ast

    top = module.split(".")[0]
    seen: set[Path] = set()
    todo = [(file, module)]
    while todo:
        path, name = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_bytes())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = (package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else [])
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                try:
                    spec = importlib.util.find_spec(target)
                except (ImportError, ValueError):
                    spec = None
                if spec is not None and spec.origin and spec.origin.endswith(".py"):
                    todo.append((Path(spec.origin), target))
    return seen
