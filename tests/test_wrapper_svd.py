"""wrappers.svd on a real tiny random SVD pipeline (no mocks), loaded the way the worker loads it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import pytest_wiw.checkpoint
import pytest_wiw.registry
from pytest_wiw.api import CheckpointError, GenerationRequest
from pytest_wiw.fingerprint import compare, file_fingerprints
from wrappers.svd import StableVideoDiffusion


def load(path, options=None):
    spec = pytest_wiw.registry.get_spec("svd")
    ckpt = pytest_wiw.checkpoint.open_checkpoint(path)
    spec = dataclasses.replace(spec, defaults=spec.defaults.updated(pytest_wiw.checkpoint.card_generation(ckpt.card)))
    return StableVideoDiffusion(spec, ckpt, base_ckpt=None, device="cpu", dtype=torch.float32,
                                options=options or {})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return StableVideoDiffusion.make_tiny("svd", tmp_path_factory.mktemp("svd") / "tiny", seed=0)


@pytest.fixture(scope="module")
def wm(tiny_dir):
    return load(tiny_dir)


def request(batch=2, seed=(11, 22), actions=None, images=None, height=40, width=56):
    if images is None:
        images = np.random.default_rng(7).integers(0, 256, (batch, 3, height, width), dtype=np.uint8)
    return GenerationRequest(images=images, actions=actions or [[4, 1, 2, 3]] * batch, task_type="navigation",
                             seed=list(seed) if isinstance(seed, tuple) else seed, request_model_name="svd")


@pytest.fixture(scope="module")
def batch_out(wm):
    return wm.generate(request())


def mean_abs(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_card_and_sizes(tiny_dir, wm):
    assert (tiny_dir / "model_index.json").is_file()
    g = wm.generation
    assert (g.height, g.width, g.num_frames, g.num_output_frames, g.steps) == (32, 32, 4, 4, 2)
    assert type(wm).version == "1"


def test_output_dtype_and_shape(batch_out, wm):
    g = wm.generation
    assert batch_out.dtype == np.uint8
    assert batch_out.shape == (2, g.num_output_frames, 3, g.out_height, g.out_width)
    assert not wm.nonfinite_seen


def test_output_not_constant(batch_out):
    assert batch_out.std() > 5.0
    assert len(np.unique(batch_out)) > 32
    frames = batch_out[0]
    assert mean_abs(frames[0], frames[-1]) > 1.0, "all frames of a video are alike"


def test_same_seed_bitwise(wm, batch_out):
    again = wm.generate(request())
    assert np.array_equal(again, batch_out)


def test_different_seed_differs(wm):
    a = wm.generate(request(batch=1, seed=11))
    b = wm.generate(request(batch=1, seed=12))
    assert mean_abs(a, b) >= 1.0


def test_batch_item_equals_single(wm, batch_out):
    req = request()
    tol = wm.spec.tolerances
    for i in range(req.batch_size):
        alone = wm.generate(req.item(i))
        diff = np.abs(batch_out[i].astype(np.int16) - alone[0].astype(np.int16))
        assert diff.max() <= tol.batch_max_abs and diff.mean() <= tol.batch_mean_abs
        # The wrapper runs items one by one, so it promises more than the tolerance: bitwise.
        assert np.array_equal(batch_out[i], alone[0])


def test_seeds_per_item(wm, batch_out):
    # Items with the same image but different seeds differ; a shared int seed gives equal items.
    assert mean_abs(batch_out[0], batch_out[1]) >= 1.0
    images = np.repeat(request().images[:1], 2, axis=0)
    same = wm.generate(request(images=images, seed=5))
    assert np.array_equal(same[0], same[1])


def test_image_only_conditioning(wm):
    base = wm.generate(request(batch=1, seed=3))
    other_actions = wm.generate(request(batch=1, seed=3, actions=[[4, 3, 3, 3, 1]]))
    assert np.array_equal(base, other_actions)
    other_image = wm.generate(request(batch=1, seed=3, images=np.full((1, 3, 40, 56), 200, np.uint8)))
    assert mean_abs(base, other_image) >= 1.0


def test_no_global_rng(wm):
    state = torch.get_rng_state()
    wm.generate(request(batch=1, seed=9))
    assert torch.equal(state, torch.get_rng_state())


def test_fingerprints_match_files(wm):
    running = wm.weight_fingerprints()
    keys = wm.ckpt.fingerprint_keys()
    assert set(running) == set(keys), f"not found in the model: {sorted(set(keys) - set(running))[:5]}"
    assert {k.split("/")[0] for k in keys} == {"unet", "vae", "image_encoder"}
    expected = file_fingerprints(wm.ckpt, keys, {k: fp.dtype for k, fp in running.items()})
    problems = [p for k in keys if (p := compare(k, running[k], expected[k]))]
    assert not problems


def test_make_tiny_is_reproducible(tiny_dir, tmp_path):
    state = torch.get_rng_state()
    again = StableVideoDiffusion.make_tiny("svd", tmp_path / "again", seed=0)
    assert torch.equal(state, torch.get_rng_state()), "make_tiny moved the caller's global RNG"
    a = pytest_wiw.checkpoint.open_checkpoint(tiny_dir)
    b = pytest_wiw.checkpoint.open_checkpoint(again)
    assert a.sha256() == b.sha256()
    other = pytest_wiw.checkpoint.open_checkpoint(
        StableVideoDiffusion.make_tiny("svd", tmp_path / "other", seed=1))
    assert other.sha256() != a.sha256()


def test_wrong_pipeline_is_a_checkpoint_error(tiny_dir, tmp_path):
    bad = shutil.copytree(tiny_dir, tmp_path / "bad")
    index = json.loads((bad / "model_index.json").read_text())
    index["_class_name"] = "WanImageToVideoPipeline"
    (bad / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="StableVideoDiffusionPipeline"):
        load(bad)
