"""Keep each family's checks on one xdist worker: one load per checkpoint, one result store per family.

pytest-xdist's own ``--dist loadgroup`` groups by a suffix its workers append to each test's nodeid,
which stopped working with pytest 9.2 (it writes a node attribute pytest renamed). This scheduler
needs no suffix: the controller already knows every selected wm_type's family, and each check's nodeid
ends in its wm_type (``conformance/test_outputs.py::test_seed_determinism[FTwan21]``), so work is
handed out in units of one family, like ``--dist loadscope`` hands out modules.
"""

from __future__ import annotations

import re
from typing import Mapping

from xdist.scheduler import LoadScopeScheduling

_PARAM_ID = re.compile(r"\[([^\[\]]+)\]$")


def family_of(nodeid: str, families: Mapping[str, str]) -> str | None:
    """The family of the wm_type a check's nodeid is parametrized with, or None for any other test."""
    match = _PARAM_ID.search(nodeid)
    if match is None:
        return None
    param_id = match.group(1)
    if param_id in families:
        return families[param_id]
    # another parameter beside wm_type ("FTwan22-14B-x"): the longest wm_type that starts the id
    for wm_type in sorted(families, key=len, reverse=True):
        if param_id.startswith(wm_type + "-"):
            return families[wm_type]
    return None


class FamilyScheduling(LoadScopeScheduling):
    """``--dist loadscope`` with a family of wm_types as the scope of a check; other tests keep their own."""

    def __init__(self, config, log=None, *, families: Mapping[str, str]) -> None:
        super().__init__(config, log)
        self.families = dict(families)

    def _split_scope(self, nodeid: str) -> str:
        family = family_of(nodeid, self.families)
        return nodeid if family is None else f"wm-family:{family}"
