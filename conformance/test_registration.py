"""Check: the wm_type's registry entry is complete."""

import pytest

from pytest_wiw.checks import check, fail, judgements, registry_problems


@check("registered")
def test_registered(wm, wiw_session):
    """The wrapper's module can be found; an FT type names an existing zero-shot base; the worker environment file
    pins exact versions."""
    spec = wm.spec
    if wm.legacy_command:
        pytest.skip(f"{spec.name} runs a WIW worker script (--wm-worker-cmd): its environment is the command's own")
    problems = registry_problems(spec, wiw_session.selection.registry)
    wrapper = judgements.wrapper_found(wm)
    if wrapper:
        problems.insert(0, wrapper)
    if len(problems) == 1:  # on the first line: the summary's root causes show one line
        fail(f"register_wm({spec.name!r}) is incomplete: {problems[0]}")
    if problems:
        fail(f"register_wm({spec.name!r}) is incomplete:\n  - " + "\n  - ".join(problems))
