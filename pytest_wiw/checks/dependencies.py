"""Which check's inputs come from which: a check whose inputs failed upstream is blocked, not failed.

One graph, declared with the checks (``Check.upstream`` in pytest_wiw.api.checklist) and read by the checks
through ``pytest_wiw.checks.assertions``: a check first asks for its upstream checks' judgements (computed on
demand from the session's result store, so the order in which pytest runs the checks does not matter), and is
reported as *blocked by* the first upstream check that fails, naming that check's one-line cause. A defect then
fails the one check meant for it. The static checks (``Check.static``: registered, checkpoint readable,
checkpoint card) depend on static checks only, and never wait on a worker.

Floor generations have an owner too: the check that sends the request (DESIGN §9). When a generation
fails (the worker died on it), its owner fails naming the request, and every other check that needed it
is blocked by the owner.
"""

from __future__ import annotations

from pytest_wiw.api.checklist import CHECKS, check_named

#: check -> the checks whose verdicts its inputs depend on (derived from the declaration: pytest_wiw.api.checklist)
UPSTREAM: dict[str, tuple[str, ...]] = {c.name: c.upstream for c in CHECKS}

#: (check, upstream) edges that hold only for the embedded default (no --ckpt-path): a checkpoint given by
#: path is read without the wrapper (``Check.embedded_default_only``)
EMBEDDED_DEFAULT_ONLY = {(c.name, up) for c in CHECKS for up in c.embedded_default_only}

BLOCKED_PREFIX = "blocked by "


def upstream_chain(check: str, embedded_default: bool = True) -> list[str]:
    """Every check ``check`` depends on, each once, every check after the ones it depends on (so a check
    blocked by a failed load names the load, not the output contract the load also blocked).
    ``embedded_default``: the checkpoint is the wrapper's tiny one (EMBEDDED_DEFAULT_ONLY edges hold).
    A name that is not a declared check raises CheckDeclarationError (a typo must not drop the blocking)."""
    order: list[str] = []

    def visit(name: str) -> None:
        for upstream in check_named(name).upstream:
            if not embedded_default and (name, upstream) in EMBEDDED_DEFAULT_ONLY:
                continue
            if upstream not in order:
                visit(upstream)
                order.append(upstream)

    visit(check)
    return order


def blocked_reason(upstream: str, cause: str) -> str:
    """The skip reason of a blocked check: ``blocked by <check>: <its first line of cause>``."""
    first = cause.strip().splitlines()[0] if cause.strip() else "failed"
    return f"{BLOCKED_PREFIX}{upstream}: {first}"


def is_blocked(message: str) -> bool:
    return message.startswith(BLOCKED_PREFIX)
