"""Which check's inputs come from which: a check whose inputs failed upstream is blocked, not failed.

One graph, read by the checks through ``pytest_wiw.checks.assertions``: a check first asks for its upstream
checks' judgements (computed on demand from the session's result store, so the order in which pytest
runs the checks does not matter), and is reported as *blocked by* the first upstream check that fails,
naming that check's one-line cause. A defect then fails the one check meant for it. The static checks
(registered, checkpoint readable, checkpoint card) depend on nothing, and never wait on a worker.

Floor generations have an owner too: the check that sends the request (DESIGN §9). When a generation
fails (the worker died on it), its owner fails naming the request, and every other check that needed it
is blocked by the owner.
"""

from __future__ import annotations

#: check -> the checks whose verdicts its inputs depend on
UPSTREAM: dict[str, tuple[str, ...]] = {
    # A wrapper string whose module cannot be found never loads (registered judges that part of the spec only:
    # an unpinned env file blocks nothing). A checkpoint whose files do not open here never reaches a worker:
    # its load is not a second failure.
    "checkpoint loads": ("registered", "checkpoint readable"),
    # The embedded default is written by the wrapper's make_tiny: no wrapper, no files (EMBEDDED_DEFAULT_ONLY).
    "checkpoint readable": ("registered",),
    # The card is looked for beside the checkpoint: one that does not open has no "beside" to look in.
    "checkpoint card": ("checkpoint readable",),
    "output contract": ("checkpoint loads",),
    "seed determinism": ("output contract",),
    # An unseeded model gives another video at every call: batch items, call order and a second seed then
    # differ for that reason alone, so those three say nothing until determinism holds.
    "batch invariance": ("seed determinism",),
    "order independence": ("seed determinism",),
    "seed sensitivity": ("seed determinism",),
    # A zero-shot that does not restore the base makes "FT vs zero-shot" a comparison with something else; and
    # an FT whose outputs change from call to call differs from its zero-shot by that alone.
    "differs from zero-shot": ("output contract", "seed determinism", "honest baseline"),
    # Z is the FT worker's fourth call, held against the base worker's first: only a model whose outputs do not
    # change from call to call can be compared across calls (else a generator kept across calls reads as a
    # zero_shot() that does not restore the base).
    "honest baseline": ("output contract", "seed determinism"),
    # The same FT-vs-zero-shot comparison, on reference episodes instead of R: it needs what "differs" needs.
    "closer to ground truth": ("output contract", "seed determinism", "honest baseline"),
    "memory stable": ("checkpoint loads",),
    # A model that breaks the contract on the reference request breaks it on the drawn ones too.
    "property: contract holds": ("output contract",),
    "bad request rejected": ("checkpoint loads",),
    "checkpoint applied": ("checkpoint loads",),
}

#: (check, upstream) edges that hold only for the embedded default (no --ckpt-path): a checkpoint given by
#: path is read without the wrapper
EMBEDDED_DEFAULT_ONLY = {("checkpoint readable", "registered")}


BLOCKED_PREFIX = "blocked by "


def upstream_chain(check: str, embedded_default: bool = True) -> list[str]:
    """Every check ``check`` depends on, each once, every check after the ones it depends on (so a check
    blocked by a failed load names the load, not the output contract the load also blocked).
    ``embedded_default``: the checkpoint is the wrapper's tiny one (EMBEDDED_DEFAULT_ONLY edges hold)."""
    order: list[str] = []

    def visit(name: str) -> None:
        for upstream in UPSTREAM.get(name, ()):
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
