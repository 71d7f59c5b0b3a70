"""The embedded-default cache: an entry per wm_type, wrapper version, wrapper source and seed."""

from __future__ import annotations

import importlib
import sys

from pytest_wiw.api.registry import WMSpec
from pytest_wiw.runtime.tiny import ensure_one, source_digest

PROBE = '''
from pathlib import Path
from pytest_wiw.api import WorldModel


class Probe(WorldModel):
    version = "1"

    def generate(self, request):
        raise NotImplementedError

    @classmethod
    def make_tiny(cls, wm_type, out_dir, *, base=None, seed=0):
        import torch
        from safetensors.torch import save_file

        (Path(out_dir) / "made").write_text(MADE)
        save_file({"w": torch.zeros(1)}, str(Path(out_dir) / "model.safetensors"))  # a checkpoint holds weights
        return Path(out_dir)
'''


def test_a_changed_make_tiny_gets_a_fresh_entry_without_a_version_bump(tmp_path, monkeypatch):
    """A wrapper whose make_tiny changed but whose version was not bumped must not get the stale build."""
    module = tmp_path / "tiny_probe_wrapper.py"
    module.write_text(PROBE + 'MADE = "first"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tiny_probe_wrapper", raising=False)
    spec = WMSpec(name="probe", wrapper="tiny_probe_wrapper:Probe", category="text")
    first = ensure_one(spec, tmp_path / "cache", seed=0)
    assert (first / "made").read_text() == "first"
    assert ensure_one(spec, tmp_path / "cache", seed=0) == first  # reused while nothing changed

    module.write_text(PROBE + 'MADE = "second"\n')  # same version "1", another make_tiny
    importlib.reload(importlib.import_module("tiny_probe_wrapper"))
    second = ensure_one(spec, tmp_path / "cache", seed=0)
    assert second != first and (second / "made").read_text() == "second"
    cls = importlib.import_module("tiny_probe_wrapper").Probe
    assert source_digest(cls) in second.parent.name or source_digest(cls) in second.name


def test_source_digest_follows_the_helpers_a_wrapper_imports(tmp_path, monkeypatch):
    """A make_tiny whose tiny-building helper lives in another module of its package (wrappers/common/tiny.py) gets
    a fresh tiny checkpoint when only that helper changes; a module of another package does not count."""
    package = tmp_path / "tinypkg"
    (package / "common").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "common" / "__init__.py").write_text("")
    (package / "common" / "build.py").write_text("SEED = 0\n")
    (package / "model.py").write_text("import json\nfrom .common.build import SEED\n\nclass Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    cls = importlib.import_module("tinypkg.model").Model
    before = source_digest(cls)
    assert source_digest(cls) == before  # deterministic
    (package / "common" / "build.py").write_text("SEED = 1\n")
    assert source_digest(cls) != before
