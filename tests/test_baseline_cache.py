"""The baseline cache: zero-shot outputs reused across runs, never trusted when damaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_checks_dir, run_checks

from pytest_wiw.session.baseline_cache import BaselineCache, BaselineCacheWarning, baseline_key

ENV = {"torch": "2.13.0", "diffusers": "0.42.1", "device": "cpu", "threads": 1, "deterministic_algorithms": True}


def key(**changes):
    values = dict(base_sha256="ab" * 32, request_digest="cd" * 32, seed=0, wrapper="wrappers.wan:WanImageToVideo",
                  wrapper_version="1", environment=ENV, dtype="float32", generation={"steps": 2})
    values.update(changes)
    return baseline_key(**values)


@pytest.fixture
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(1, 4, 3, 8, 8), dtype=np.uint8)


def test_miss_then_hit(tmp_path, frames):
    cache = BaselineCache(tmp_path)
    assert cache.get(key()) is None
    cache.put(key(), frames)
    np.testing.assert_array_equal(cache.get(key()), frames)
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.parametrize("change", [dict(seed=1), dict(base_sha256="ef" * 32), dict(wrapper_version="2"),
                                    dict(dtype="bfloat16"), dict(environment={**ENV, "torch": "2.14.0"}),
                                    dict(environment={**ENV, "device": "cuda:0"}), dict(generation={"steps": 3})])
def test_any_change_of_key_misses(tmp_path, frames, change):
    cache = BaselineCache(tmp_path)
    cache.put(key(), frames)
    assert cache.get(key(**change)) is None


def test_truncated_entry_is_ignored_with_a_warning_and_rewritten(tmp_path, frames):
    cache = BaselineCache(tmp_path)
    cache.put(key(), frames)
    (npy,) = tmp_path.glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:100])
    with pytest.warns(BaselineCacheWarning, match="ignored and rewritten"):
        assert cache.get(key()) is None
    cache.put(key(), frames)
    np.testing.assert_array_equal(cache.get(key()), frames)


def test_entry_whose_key_file_disagrees_is_not_trusted(tmp_path, frames):
    cache = BaselineCache(tmp_path)
    cache.put(key(), frames)
    (meta,) = tmp_path.glob("*.json")
    data = json.loads(meta.read_text())
    data["key"]["seed"] = 99
    meta.write_text(json.dumps(data))
    with pytest.warns(BaselineCacheWarning, match="does not match"):
        assert cache.get(key()) is None


def test_no_temporary_files_left(tmp_path, frames):
    BaselineCache(tmp_path).put(key(), frames)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npy"]


def test_second_run_reads_the_zero_shot_output_from_the_cache(tmp_path, run_env):
    """Cold: 1 load and 4 generation calls; warm: 3, and every check still passes (honest baseline too)."""
    cache = tmp_path / "baselines"
    figures = []
    for run_index in (1, 2):
        workdir = make_checks_dir(tmp_path / f"run{run_index}")
        run = run_checks(workdir, run_env, "--wm", "FTwan21", "--wm", "wan21", "--wm-baseline-cache", str(cache),
                         "--wm-report", str(workdir / "report"))
        assert run.returncode == 0, run.output[-3000:]
        assert run["test_honest_baseline[FTwan21]"].outcome == "passed"
        figures.append(json.loads((workdir / "report" / "FTwan21.json").read_text())["figures"])
    assert (figures[0]["loads"], figures[0]["generations"]) == (1, 4)
    assert (figures[1]["loads"], figures[1]["generations"]) == (1, 3)
    assert figures[0]["baseline_diff_mean_abs"] == figures[1]["baseline_diff_mean_abs"]
