"""``@check(name)``: how a conformance test says which declared check it implements.

The decorator applies the ``wm_check`` marker the plugin parametrizes over wm_types, with what the declaration
(pytest_wiw.api.checklist) says of the check (``ft_only``: zero-shot types skip it). A name that is not declared,
or a test function not named after its check (test ids read ``test_<check>[<wm_type>]``, and the report maps
them back), raises CheckDeclarationError when the conformance module is imported.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import pytest

from pytest_wiw.api.checklist import DECLARED_IN, check_named
from pytest_wiw.errors import CheckDeclarationError

F = TypeVar("F", bound=Callable)


def check(name: str) -> Callable[[F], F]:
    """Mark the decorated test function as the conformance test of the declared check ``name``."""
    declared = check_named(name)

    def mark(fn: F) -> F:
        if fn.__name__ != declared.test:
            raise CheckDeclarationError(f"@check({name!r}) decorates {fn.__name__}, but the test of {name!r} is "
                                        f"named {declared.test} (test ids and report rows are derived from the "
                                        f"check's name in {DECLARED_IN}): rename the function")
        return pytest.mark.wm_check(declared.name, ft_only=declared.ft_only)(fn)

    return mark
