"""The declared checks (pytest_wiw.api.checklist) and what is derived from them: one conformance test per
check, the markers, the dependency graph, expected_failures validation."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from pytest_wiw.api.checklist import CHECK_NAMES, CHECKS, Check, check_named, declaration_problems
from pytest_wiw.api.registry import CHECK_NAMES as REGISTRY_CHECK_NAMES
from pytest_wiw.api.registry import GenerationDefaults, get_spec, register_wm
from pytest_wiw.checks import check
from pytest_wiw.checks.dependencies import EMBEDDED_DEFAULT_ONLY, UPSTREAM, upstream_chain
from pytest_wiw.checks.judgements import JUDGEMENTS
from pytest_wiw.errors import CheckDeclarationError, SpecError, UsageError
from pytest_wiw.plugin.hooks import CONFORMANCE_DIR
from pytest_wiw.plugin.selection import parse_expected_failures
from pytest_wiw.session.subject import OWNERS


def conformance_tests() -> dict[str, object]:
    """Every ``test_*`` function of the conformance modules the plugin runs, by name (a name twice is an error)."""
    import conformance

    assert inspect.getfile(conformance).startswith(str(CONFORMANCE_DIR)), "another checkout's conformance/"
    found: dict[str, object] = {}
    for path in sorted(CONFORMANCE_DIR.glob("test_*.py")):
        module = importlib.import_module(f"conformance.{path.stem}")
        for name, fn in vars(module).items():
            if name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__:
                assert name not in found, f"{name} is defined in two conformance modules"
                found[name] = fn
    return found


def test_every_declared_check_has_exactly_one_conformance_test_and_every_test_is_declared():
    tests = conformance_tests()
    assert sorted(tests) == sorted(c.test for c in CHECKS)
    for c in CHECKS:
        marks = [m for m in getattr(tests[c.test], "pytestmark", []) if m.name == "wm_check"]
        # through @check: the declared name and ft_only, nothing typed by hand
        assert [(m.args, m.kwargs) for m in marks] == [((c.name,), {"ft_only": c.ft_only})], (c.test, marks)


def test_conformance_tests_block_and_read_generations_as_their_own_check():
    """``require_upstream(wm, NAME)`` and ``frames_of(gen, NAME)`` name the test's own check (another name blocks
    on another check's upstream, or makes the test the owner of another check's generation); every check with
    upstream checks asks for them."""
    tests = conformance_tests()
    for c in CHECKS:
        if c.test not in tests:
            continue  # the test above names it
        source = inspect.getsource(tests[c.test])
        named = {}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("require_upstream", "frames_of"):
                arg = node.args[1]
                assert isinstance(arg, ast.Constant), (c.test, ast.unparse(node))
                named.setdefault(node.func.id, set()).add(arg.value)
        assert all(names == {c.name} for names in named.values()), (c.test, named)
        assert ("require_upstream" in named) == bool(c.upstream), (c.test, named)


def test_check_refuses_an_undeclared_name_and_a_misnamed_test():
    with pytest.raises(CheckDeclarationError, match=r"^'seed determinsm' is not a declared check \(did you mean "
                                                    r"'seed determinism'\?\); declare it in pytest_wiw/api/checklist"):
        check("seed determinsm")

    def test_same_seed_twice():
        pass

    with pytest.raises(CheckDeclarationError, match="decorates test_same_seed_twice, but the test of 'seed "
                                                    "determinism' is named test_seed_determinism"):
        check("seed determinism")(test_same_seed_twice)


def test_a_conformance_module_with_an_undeclared_check_fails_at_collection(pytester):
    pytester.makepyfile(test_new_check="""
        from pytest_wiw.checks import check

        @check("output contrat")
        def test_output_contrat(wm):
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 2  # an error at collection, not a test that passes or skips
    result.stdout.fnmatch_lines(["*CheckDeclarationError: 'output contrat' is not a declared check "
                                 "(did you mean 'output contract'?)*"])


def test_names_and_graph_are_derived_from_the_declaration():
    assert REGISTRY_CHECK_NAMES is CHECK_NAMES == tuple(c.name for c in CHECKS)
    assert UPSTREAM == {c.name: c.upstream for c in CHECKS}
    assert EMBEDDED_DEFAULT_ONLY == {("checkpoint readable", "registered")}
    assert {c.name for c in CHECKS if c.ft_only} == {"checkpoint card", "differs from zero-shot", "honest baseline",
                                                    "closer to ground truth"}
    # the checks that send the floor's requests (seed sensitivity sends G2 under --wm-max-batch 1)
    assert set(OWNERS.values()) | {"seed sensitivity"} <= set(CHECK_NAMES)


def test_every_upstream_check_has_a_judgement():
    """A check others depend on is judged when they ask (require_upstream); one without a judgement would never
    block them."""
    assert set(JUDGEMENTS) == {up for c in CHECKS for up in c.upstream}


def test_upstream_chain_orders_the_graph_and_refuses_a_name_not_declared():
    assert upstream_chain("differs from zero-shot") == ["registered", "checkpoint readable", "checkpoint loads",
                                                        "output contract", "seed determinism", "honest baseline"]
    assert upstream_chain("checkpoint readable") == ["registered"]
    assert upstream_chain("checkpoint readable", embedded_default=False) == []
    with pytest.raises(CheckDeclarationError, match="'seed_determinism' is not a declared check"):
        upstream_chain("seed_determinism")


def test_declaration_problems_are_named():
    assert declaration_problems(CHECKS) == []
    bad = (Check("a", doc="", static=True, upstream=("b",)), Check("b", doc="", upstream=("c",)),
           Check("c", doc="", upstream=("b", "nowhere"), embedded_default_only=("a",)), Check("a", doc=""),
           Check("A", doc=""))
    problems = declaration_problems(bad)
    assert "'a' is declared twice" in problems
    assert "['a', 'a', 'A'] would share the test test_a" in problems
    assert "'c': its upstream 'nowhere' is not a declared check" in problems
    assert "'c': embedded_default_only 'a' is not one of its upstream checks" in problems
    assert "'a' is static but its upstream 'b' waits on a worker" in problems
    assert "cycle: b -> c -> b" in problems


def test_tests_are_named_after_their_checks():
    assert check_named("property: contract holds").test == "test_property_contract_holds"
    assert check_named("differs from zero-shot").test == "test_differs_from_zero_shot"


PROBLEM = ("'seed_determinism' is not a check (did you mean 'seed determinism'?); checks: "
           + ", ".join(CHECK_NAMES))


def test_expected_failures_are_validated_alike_in_register_wm_and_the_ini_option():
    defaults = GenerationDefaults(height=16, width=16, out_height=16, out_width=16, num_frames=5, steps=2)
    with pytest.raises(SpecError) as raised:
        register_wm("unit-test-typo", wrapper="wrappers.common.tiny_text:Tiny", category="text", defaults=defaults,
                    expected_failures={"seed_determinism": "why"})
    assert str(raised.value) == f"register_wm('unit-test-typo'): expected_failures: {PROBLEM}"
    with pytest.raises(UsageError) as raised:
        parse_expected_failures(["svd: seed_determinism: why"], {"svd": get_spec("svd")})
    assert str(raised.value) == f"wm_expected_failures line 'svd: seed_determinism: why': {PROBLEM}"
    assert parse_expected_failures(["svd: seed determinism: why"], {"svd": get_spec("svd")}) == {
        ("svd", "seed determinism"): "why"}


def test_the_checklist_imports_nothing_of_pytest_wiw_but_errors():
    """The api reads it, and the api imports nothing of pytest_wiw but itself, errors and checkpoints; the worker
    imports the api, so no pytest either."""
    import pytest_wiw.api.checklist as checklist

    tree = ast.parse(inspect.getsource(checklist))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imported if m.split(".")[0] in ("pytest_wiw", "pytest")} == {"pytest_wiw.errors"}, imported
