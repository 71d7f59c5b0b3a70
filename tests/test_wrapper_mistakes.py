"""A wrapper written from docs/writing-a-wrapper.md with one mistake gets a message naming the fix.

The end-to-end rows (which check fails, which are blocked) are in test_verdicts.py; these are the messages'
other branches, checked directly.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

from pytest_wiw.api.registry import GenerationDefaults, WMSpec
from pytest_wiw.api.worldmodel import zero_shot_context
from pytest_wiw.errors import CheckpointError
from pytest_wiw.runtime.tiny import TinyCheckpointError, made_checkpoint
from pytest_wiw.runtime.wrapper_class import load_wrapper_class, wrapper_module_problem


class Tiny:
    """Stands for a wrapper class: made_checkpoint only names it."""


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """A folder holding one real safetensors weights file, as a make_tiny writes it."""
    import torch
    from safetensors.torch import save_file

    out = tmp_path / "ckpt"
    out.mkdir()
    save_file({"w": torch.zeros(2, 2)}, str(out / "model.safetensors"))
    return out


def test_make_tiny_returning_its_checkpoint_is_accepted(written):
    assert made_checkpoint(Tiny, "x", written, written) == written
    assert made_checkpoint(Tiny, "x", written, str(written / "model.safetensors")) == written / "model.safetensors"


@pytest.mark.parametrize(("returned", "words"), [
    (None, "returned None (a missing `return out_dir`?)"),
    (7, "returned a int, not a path"),
    ("PARENT", "nor inside it (its parent folder)"),
    ("MISSING", "which does not exist"),
    ("EMPTY", "which holds no .safetensors weights"),
])
def test_make_tiny_returning_the_wrong_thing_is_named(written, returned, words):
    returned = {"PARENT": written.parent, "MISSING": written / "model", "EMPTY": written / "sub"}.get(returned, returned)
    if returned == written / "sub":
        returned.mkdir()
    with pytest.raises(TinyCheckpointError) as err:
        made_checkpoint(Tiny, "x", written, returned)
    assert words in str(err.value) and "Tiny.make_tiny('x', out_dir)" in str(err.value)
    assert "make_tiny must write the checkpoint into out_dir and return its path" in str(err.value)
    assert isinstance(err.value, CheckpointError)


class _Model:
    def __init__(self, zero_shot):
        self.zero_shot = zero_shot


def test_zero_shot_context_accepts_a_context_manager():
    @contextlib.contextmanager
    def decorated():
        yield

    with zero_shot_context(_Model(decorated)):
        pass


def test_zero_shot_returning_none_names_the_fix():
    with pytest.raises(TypeError) as err:
        zero_shot_context(_Model(lambda: None))
    assert "returned NoneType, not a context manager" in str(err.value)
    assert "@contextlib.contextmanager that switches the fine-tune off, yields" in str(err.value)


def test_zero_shot_generator_without_decorator_names_the_decorator():
    def undecorated():
        yield

    with pytest.raises(TypeError) as err:
        zero_shot_context(_Model(undecorated))
    assert "returned generator" in str(err.value) and "put @contextlib.contextmanager above" in str(err.value)


def _spec(wrapper: str) -> WMSpec:
    return WMSpec(name="x", wrapper=wrapper, category="text",
                  defaults=GenerationDefaults(height=8, width=8, out_height=8, out_width=8, num_frames=2))


def test_wrapper_module_found_or_named():
    assert wrapper_module_problem(_spec("wrappers.svd:StableVideoDiffusion"), sys.executable) is None
    missing = wrapper_module_problem(_spec("no_such_pkg.sub:Model"), sys.executable)
    assert "module 'no_such_pkg.sub' cannot be imported (ModuleNotFoundError: No module named 'no_such_pkg')" in missing
    assert "fix the module path in register_wm(wrapper='module:Class')" in missing
    # another interpreter has its own packages: its worker says what it cannot import
    assert wrapper_module_problem(_spec("no_such_pkg.sub:Model"), "/other/python") is None


def test_worker_import_errors_name_the_module_and_the_fix():
    with pytest.raises(ImportError) as err:
        load_wrapper_class("no_such_pkg.sub:Model")
    assert "wrapper module 'no_such_pkg.sub' (from 'no_such_pkg.sub:Model') cannot be imported: " \
           "ModuleNotFoundError: No module named 'no_such_pkg'" in str(err.value)
    assert "install the package that provides it" in str(err.value)
    with pytest.raises(ImportError, match="has no class 'Nope': fix the class name in register_wm"):
        load_wrapper_class("wrappers.svd:Nope")
