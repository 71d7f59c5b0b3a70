"""The import directions docs/architecture.md draws, held by the code: a test fails on an import against them.

Every import counts, also one inside a function (a lazy import is still a dependency); only imports under
``if TYPE_CHECKING:`` (annotations, never run) are left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: pytest_wiw's parts, lowest first: a part imports only parts of a lower rank (and itself). Parts of one
#: rank do not import each other: the worker process and the pytest process's session share only what is below.
RANKS = {
    "errors": 0,
    "checkpoints": 1,
    "api": 2,
    "runtime": 3, "wire": 3, "reference": 3,
    "worker": 4, "session": 4,
    "checks": 5,
    "report": 6,
    "plugin": 7,
    "cli": 8,
}
#: what the worker process may never import: the pytest side
PYTEST_SIDE = ("session", "checks", "report", "plugin", "cli")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` (a file under ``root``) that runs."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            for alias in node.names:  # `from pytest_wiw.checks import judgements` imports a module too
                found.append((node.lineno, f"{module}.{alias.name}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def part_of(module: str) -> str | None:
    """The pytest_wiw part a module belongs to (``pytest_wiw.session.pool`` -> ``session``)."""
    parts = module.split(".")
    if parts[0] != "pytest_wiw" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANKS else None


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def violations(folder: str, allowed) -> list[str]:
    out = []
    for path in sources(folder):
        for line, module in imports_of(path):
            problem = allowed(path, module)
            if problem:
                out.append(f"{path.relative_to(ROOT)}:{line}: imports {module}: {problem}")
    return sorted(set(out))


def pytest_wiw_rule(path: Path, module: str) -> str | None:
    own = part_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    other = part_of(module)
    if module.split(".")[0] in ("wrappers", "conformance"):
        return "pytest_wiw reaches wrappers only through the registry's 'module:Class' strings"
    if own is None or other is None or own == other:
        return None
    if own == "worker" and other in PYTEST_SIDE:
        return "the worker process never imports the pytest side"
    if RANKS[other] >= RANKS[own]:
        return f"{own} (rank {RANKS[own]}) may import only parts below it; {other} is rank {RANKS[other]}"
    return None


def conformance_rule(path: Path, module: str) -> str | None:
    if not module.startswith("pytest_wiw"):
        return None
    import pytest_wiw.checks as checks

    parts = module.split(".")
    if parts[:2] != ["pytest_wiw", "checks"] or (len(parts) > 2 and parts[2] not in checks.__all__):
        return "a conformance check imports pytest_wiw.checks and nothing else of pytest_wiw"
    return None


def wrappers_rule(path: Path, module: str) -> str | None:
    if module.startswith("pytest_wiw") and module.split(".")[:2] != ["pytest_wiw", "api"]:
        return "a wrapper imports pytest_wiw.api (the stable surface) and nothing else of pytest_wiw"
    return None


def test_pytest_wiw_parts_import_only_lower_parts():
    assert violations("pytest_wiw", pytest_wiw_rule) == []


def test_conformance_imports_only_pytest_wiw_checks():
    assert violations("conformance", conformance_rule) == []


def test_wrappers_import_only_the_api():
    assert violations("wrappers", wrappers_rule) == []


def test_no_module_level_import_cycle():
    """Module-level imports inside pytest_wiw form no cycle (a lazy import hiding one is caught above by rank)."""
    graph: dict[str, set[str]] = {}
    for path in sources("pytest_wiw"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pytest_wiw"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("pytest_wiw"))
        graph[name] = deps
    graph = {k: {d for d in v if d in graph and d != k} for k, v in graph.items()}
    # a package's __init__ importing its own modules is how a facade is built, not a cycle
    graph = {k: {d for d in v if not d.startswith(k + ".")} for k, v in graph.items()}
    state: dict[str, int] = {}

    def cycle_from(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return trail + [node, dep]
            if dep not in state:
                found = cycle_from(dep, trail + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = cycle_from(node, [])
            assert found is None, " -> ".join(found)


@pytest.mark.parametrize("rule, importer, module", [
    (pytest_wiw_rule, "pytest_wiw/worker/server.py", "pytest_wiw.plugin.hooks"),
    (pytest_wiw_rule, "pytest_wiw/worker/server.py", "pytest_wiw.session.pool"),
    (pytest_wiw_rule, "pytest_wiw/api/worldmodel.py", "pytest_wiw.runtime.tiny"),
    (pytest_wiw_rule, "pytest_wiw/session/pool.py", "pytest_wiw.worker.server"),
    (pytest_wiw_rule, "pytest_wiw/session/subject.py", "pytest_wiw.checks.dependencies"),
    (pytest_wiw_rule, "pytest_wiw/checkpoints/files.py", "wrappers.svd"),
    (conformance_rule, "conformance/test_outputs.py", "pytest_wiw.session.pool"),
    (conformance_rule, "conformance/test_outputs.py", "pytest_wiw.checks.assertions"),
    (wrappers_rule, "wrappers/svd.py", "pytest_wiw.checkpoints.files"),
])
def test_the_rules_refuse_an_import_against_the_direction(rule, importer, module):
    assert rule(ROOT / importer, module)


def test_imports_are_found_inside_functions_but_not_under_type_checking(tmp_path):
    module = tmp_path / "pytest_wiw" / "worker" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pytest_wiw.plugin\n"
                      "def f():\n    from pytest_wiw.session import pool\n")
    found = {m for _, m in imports_of(module, tmp_path)}
    assert "pytest_wiw.session.pool" in found and "pytest_wiw.plugin" not in found


def test_architecture_doc_names_only_modules_that_exist():
    text = ARCHITECTURE.read_text()
    named = set(re.findall(r"`((?:pytest_wiw|wrappers|conformance)(?:/[\w.]+)+)`", text))
    assert len(named) >= 20, "docs/architecture.md should name the modules that own each step"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"


@pytest.mark.parametrize("part", sorted(p for p in RANKS if p not in ("errors", "cli")))
def test_every_part_is_a_package_the_doc_describes(part):
    assert (ROOT / "pytest_wiw" / part / "__init__.py").is_file()
    assert f"`pytest_wiw/{part}/`" in ARCHITECTURE.read_text(), f"docs/architecture.md does not describe {part}/"
