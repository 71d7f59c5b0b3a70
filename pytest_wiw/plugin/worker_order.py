"""One WM worker at a time: the checks of one wm_type run together, and its worker exits after the last of them.

pytest runs the conformance checks module by module, so a session of FTwan21 and wan21 would alternate between
their two workers, and both would hold the GPU to the session's end: at 14B two pipelines of about 40 GB each,
more than an 80 GB card has. Here the checks are ordered by family, then by wm_type (a family's zero-shot types
before its FT types, so the base's floor is in the result store when an FT type's honest baseline asks for it),
each wm_type's checks in module order; other tests keep their places. Once every collected check of a wm_type has
run in this process, its worker is asked to exit (``WorkerHandle.release``).

Under xdist the family scheduler (``xdist_family``) sends all of a family's checks to one xdist worker in this
order, so the same holds per xdist worker. Under a ``--dist`` of the user's, one wm_type's checks may be shared
out over several processes: none of them sees all of them run, and the workers live to the session's end.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import pytest

from pytest_wiw.api.registry import WMSpec


def wm_type_of(item: pytest.Item) -> str | None:
    """The wm_type a conformance check is parametrized with, or None for any other test."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or item.get_closest_marker("wm_check") is None:
        return None
    return callspec.params.get("wm_type")


def order_checks(items: list[pytest.Item], wm_types: Sequence[str], registry: Mapping[str, WMSpec]) -> None:
    """Reorder ``items`` in place: the conformance checks of ``wm_types`` by family (in the order the families were
    selected), zero-shot types before FT types, then selection order; each wm_type's checks keep their order. The
    checks take the places the checks held, so any other test stays where it was."""
    families = list(dict.fromkeys(registry[name].family for name in wm_types))
    rank = {name: (families.index(registry[name].family), int(registry[name].is_ft), i)
            for i, name in enumerate(wm_types)}
    places = [i for i, item in enumerate(items) if wm_type_of(item) in rank]
    checks = sorted((items[i] for i in places), key=lambda item: rank[wm_type_of(item)])  # stable
    for place, item in zip(places, checks):
        items[place] = item


class ChecksLeft:
    """How many of the collected checks of each wm_type this process has still to run."""

    def __init__(self, items: Sequence[pytest.Item]):
        self.left = Counter(name for name in map(wm_type_of, items) if name is not None)

    def ran(self, item: pytest.Item) -> str | None:
        """Count ``item`` as run: the wm_type whose last check it was, else None."""
        name = wm_type_of(item)
        if name is None or self.left[name] <= 0:
            return None
        self.left[name] -= 1
        return name if self.left[name] == 0 else None
