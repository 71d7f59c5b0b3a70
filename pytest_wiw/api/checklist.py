"""The conformance checks, each declared once: its name, its test, what it proves, whom it applies to, and which
checks its inputs come from (the dependency graph of #10).

Everything else that names checks is derived from ``CHECKS``: ``CHECK_NAMES`` (pytest_wiw.api.registry), the
``wm_check`` markers of the conformance tests (``pytest_wiw.checks.check``), the FT-only skips (the marker's
``ft_only``), the dependency graph the checks block on (pytest_wiw.checks.dependencies), the validation of
``expected_failures`` (``undeclared_checks``, used by register_wm and by the ini option), and the report's
rows (pytest_wiw.report.writer: their names and order). Declaration order is the order users see: in the
report and in the "checks: ..." lists of error messages.

Why here, in the api: the check names are part of the contract a wrapper author writes against
(``register_wm(expected_failures={"seed determinism": ...})`` is validated by pytest_wiw.api.registry), and
the api imports nothing of pytest_wiw but itself, pytest_wiw.errors and pytest_wiw.checkpoints. So the
declaration lives where the api can read it, and imports nothing of pytest_wiw but pytest_wiw.errors (no
pytest either: the worker process imports the api). The conformance side (``pytest_wiw.checks``) reads it
from here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable

from pytest_wiw.errors import CheckDeclarationError

#: Where a new check is declared: named in error messages.
DECLARED_IN = "pytest_wiw/api/checklist.py (CHECKS)"


@dataclass(frozen=True)
class Check:
    """One conformance check.

    ``upstream``: the checks whose verdicts its inputs depend on; when one fails, this check is *blocked by* it
    (not failed a second time). ``embedded_default_only``: those of ``upstream`` that hold only for the
    embedded default (no --ckpt-path): a checkpoint given by path is read without the wrapper.
    ``ft_only``: it applies to post-trained types; a zero-shot type skips it, saying so.
    ``static``: it reads files only and never waits on a worker.
    """

    name: str
    doc: str
    upstream: tuple[str, ...] = ()
    embedded_default_only: tuple[str, ...] = ()
    ft_only: bool = False
    static: bool = False

    @property
    def test(self) -> str:
        """The conformance test function implementing it: ``test_`` and the name's words joined by ``_``
        (test ids read ``test_<check>[<wm_type>]``)."""
        return "test_" + "_".join(re.findall(r"[a-z0-9]+", self.name.lower()))


CHECKS: tuple[Check, ...] = (
    Check("registered", static=True,
          doc="the registry entry is complete: the wrapper's module is found, an FT type names a zero-shot base, "
              "the environment file pins exact versions"),
    # A wrapper string whose module cannot be found writes no embedded default (its make_tiny writes it): no
    # wrapper, no files. A checkpoint given by path is read without the wrapper.
    Check("checkpoint readable", static=True, upstream=("registered",), embedded_default_only=("registered",),
          doc="the checkpoint's files exist and open: safetensors headers that fit their files, no pickles"),
    # The card is looked for beside the checkpoint: one that does not open has no "beside" to look in.
    Check("checkpoint card", static=True, ft_only=True, upstream=("checkpoint readable",),
          doc="a model card beside the FT checkpoint names its datasets, training steps and licence"),
    # A wrapper string whose module cannot be found never loads (registered judges that part of the spec only:
    # an unpinned env file blocks nothing). A checkpoint whose files do not open here never reaches a worker:
    # its load is not a second failure.
    Check("checkpoint loads", upstream=("registered", "checkpoint readable"),
          doc="the worker loads it: every checkpoint tensor lands in the running model with its shape, kind of "
              "dtype and finite values"),
    Check("checkpoint applied", upstream=("checkpoint loads",),
          doc="the running model's weights are the checkpoint's"),
    Check("output contract", upstream=("checkpoint loads",),
          doc="a video comes back as uint8 (B, T, 3, H, W) at the declared sizes, not constant"),
    # An unseeded model gives another video at every call: batch items, call order and a second seed then
    # differ for that reason alone, so those three say nothing until determinism holds.
    Check("batch invariance", upstream=("seed determinism",),
          doc="a request in a batch gets the video it gets alone"),
    Check("seed determinism", upstream=("output contract",),
          doc="the same request and seed give the same video again"),
    Check("seed sensitivity", upstream=("seed determinism",),
          doc="another seed gives another video"),
    Check("order independence", upstream=("seed determinism",),
          doc="earlier requests leave no trace on a later one"),
    # A zero-shot that does not restore the base makes "FT vs zero-shot" a comparison with something else; and
    # an FT whose outputs change from call to call differs from its zero-shot by that alone.
    Check("differs from zero-shot", ft_only=True,
          upstream=("output contract", "seed determinism", "honest baseline"),
          doc="the fine-tune changes the output: FT and its zero-shot base differ on the same request and seed"),
    # Z is the FT worker's fourth call, held against the base worker's first: only a model whose outputs do not
    # change from call to call can be compared across calls (else a generator kept across calls reads as a
    # zero_shot() that does not restore the base).
    Check("honest baseline", ft_only=True, upstream=("output contract", "seed determinism"),
          doc="the zero-shot output the FT is compared with is the base type's own"),
    Check("bad request rejected", upstream=("checkpoint loads",),
          doc="invalid requests get an error naming the field, before any generation, and the worker keeps serving"),
    Check("memory stable", upstream=("checkpoint loads",),
          doc="the worker's memory does not grow at every call"),
    # A model that breaks the contract on the reference request breaks it on the drawn ones too.
    Check("property: contract holds", upstream=("output contract",),
          doc="the output contract holds for the valid requests hypothesis draws"),
    # The same FT-vs-zero-shot comparison, on reference episodes instead of R: it needs what "differs" needs.
    Check("closer to ground truth", ft_only=True,
          upstream=("output contract", "seed determinism", "honest baseline"),
          doc="on reference episodes the FT is not reliably further from the ground truth than zero-shot"),
)


def declaration_problems(checks: Iterable[Check]) -> list[str]:
    """What makes a declaration of checks inconsistent: a name twice, an upstream check not declared or not
    among the upstream, a cycle, a static check waiting on a worker. Empty when it is consistent."""
    checks = tuple(checks)
    by_name = {c.name: c for c in checks}
    problems = [f"{name!r} is declared twice" for name in by_name if sum(c.name == name for c in checks) > 1]
    tests = [c.test for c in checks]
    problems += [f"{[c.name for c in checks if c.test == t]} would share the test {t}" for t in dict.fromkeys(tests)
                 if tests.count(t) > 1]
    for c in checks:
        problems += [f"{c.name!r}: its upstream {up!r} is not a declared check" for up in c.upstream
                     if up not in by_name]
        problems += [f"{c.name!r}: embedded_default_only {up!r} is not one of its upstream checks"
                     for up in c.embedded_default_only if up not in c.upstream]
        if c.static:
            problems += [f"{c.name!r} is static but its upstream {up!r} waits on a worker" for up in c.upstream
                         if up in by_name and not by_name[up].static]
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            problems.append("cycle: " + " -> ".join(visiting[visiting.index(name):] + [name]))
            return
        if name in done or name not in by_name:
            return
        visiting.append(name)
        for up in by_name[name].upstream:
            visit(up)
        visiting.pop()
        done.add(name)

    for c in checks:
        visit(c.name)
    return problems


_PROBLEMS = declaration_problems(CHECKS)
if _PROBLEMS:
    raise CheckDeclarationError(f"{DECLARED_IN} is inconsistent:\n  - " + "\n  - ".join(_PROBLEMS))

#: The checks by name, in declaration order: as expected_failures and reports spell them.
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
_BY_NAME = {c.name: c for c in CHECKS}
_BY_TEST = {c.test: c for c in CHECKS}


def check_named(name: str) -> Check:
    """The declared check ``name``; raises CheckDeclarationError naming the closest declared name."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise CheckDeclarationError(f"{name!r} is not a declared check{_did_you_mean(name)}; declare it in "
                                    f"{DECLARED_IN}, or use one of: {', '.join(CHECK_NAMES)}") from None


def check_of_test(test: str) -> Check | None:
    """The check a conformance test function (``test_seed_determinism``) implements, or None."""
    return _BY_TEST.get(test)


def undeclared_checks(names: Iterable[str]) -> str | None:
    """Why ``names`` (check names a user wrote: expected_failures) are not all declared checks, or None.

    One message for every place that reads such names: the unknown ones, the closest declared name of each,
    and every declared name."""
    unknown = [n for n in names if n not in _BY_NAME]
    if not unknown:
        return None
    if len(unknown) == 1:
        named = f"{unknown[0]!r} is not a check{_did_you_mean(unknown[0])}"
    else:
        named = ", ".join(f"{n!r}{_did_you_mean(n)}" for n in unknown) + " are not checks"
    return f"{named}; checks: {', '.join(CHECK_NAMES)}"


def _did_you_mean(name: object) -> str:
    spelled = " ".join(re.findall(r"[a-z0-9]+", str(name).lower().removeprefix("test_")))
    plain = {" ".join(re.findall(r"[a-z0-9]+", n)): n for n in CHECK_NAMES}
    if spelled in plain:  # 'seed_determinism', 'property contract holds', 'differs from zero shot'
        return f" (did you mean {plain[spelled]!r}?)"
    close = difflib.get_close_matches(str(name), CHECK_NAMES, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
