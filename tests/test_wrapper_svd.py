"""wrappers.svd on a real tiny random SVD pipeline (no mocks), loaded the way the worker loads it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from wrapper_helpers import (
    assert_batch_items_equal_items_alone,
    assert_uint8_video,
    fingerprint_mismatches,
    load_wrapper,
    make_tiny_leaving_rng,
    mean_abs_diff,
    reference_request,
)

import pytest_wiw.checkpoints.files
from pytest_wiw.api import CheckpointError
from wrappers.svd import StableVideoDiffusion


def load(path, options=None):
    return load_wrapper(StableVideoDiffusion, "svd", path, options=options)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return StableVideoDiffusion.make_tiny("svd", tmp_path_factory.mktemp("svd") / "tiny", seed=0)


@pytest.fixture(scope="module")
def wm(tiny_dir):
    return load(tiny_dir)


def request(batch=2, seed=(11, 22), actions=None, images=None, height=40, width=56):
    return reference_request("svd", seed, batch, actions=actions or [[4, 1, 2, 3]] * batch, images=images,
                             image_hw=(height, width), image_seed=7)


@pytest.fixture(scope="module")
def batch_out(wm):
    return wm.generate(request())


def test_card_and_sizes(tiny_dir, wm):
    assert (tiny_dir / "model_index.json").is_file()
    g = wm.generation
    assert (g.height, g.width, g.num_frames, g.num_output_frames, g.steps) == (32, 32, 14, 4, 2)
    assert type(wm).version == "2"


def test_output_dtype_and_shape(batch_out, wm):
    assert_uint8_video(wm, batch_out, 2)


def test_output_not_constant(batch_out):
    assert batch_out.std() > 5.0
    assert len(np.unique(batch_out)) > 32
    frames = batch_out[0]
    assert mean_abs_diff(frames[0], frames[-1]) > 1.0, "all frames of a video are alike"


def test_same_seed_bitwise(wm, batch_out):
    again = wm.generate(request())
    assert np.array_equal(again, batch_out)


def test_different_seed_differs(wm):
    a = wm.generate(request(batch=1, seed=11))
    b = wm.generate(request(batch=1, seed=12))
    assert mean_abs_diff(a, b) >= 1.0


def test_batch_item_equals_single(wm, batch_out):
    # The wrapper runs items one by one, so it promises more than the tolerance: bitwise.
    assert_batch_items_equal_items_alone(wm, request(), batch_out)


def test_seeds_per_item(wm, batch_out):
    # Items with the same image but different seeds differ; a shared int seed gives equal items.
    assert mean_abs_diff(batch_out[0], batch_out[1]) >= 1.0
    images = np.repeat(request().images[:1], 2, axis=0)
    same = wm.generate(request(images=images, seed=5))
    assert np.array_equal(same[0], same[1])


def test_image_only_conditioning(wm):
    base = wm.generate(request(batch=1, seed=3))
    other_actions = wm.generate(request(batch=1, seed=3, actions=[[4, 3, 3, 3, 1]]))
    assert np.array_equal(base, other_actions)
    other_image = wm.generate(request(batch=1, seed=3, images=np.full((1, 3, 40, 56), 200, np.uint8)))
    assert mean_abs_diff(base, other_image) >= 1.0


def test_no_global_rng(wm):
    state = torch.get_rng_state()
    wm.generate(request(batch=1, seed=9))
    assert torch.equal(state, torch.get_rng_state())


def test_fingerprints_match_files(wm):
    assert {k.split("/")[0] for k in wm.ckpt.fingerprint_keys()} == {"unet", "vae", "image_encoder"}
    assert fingerprint_mismatches(wm, wm.ckpt) == {}


def test_make_tiny_is_reproducible(tiny_dir, tmp_path):
    again = make_tiny_leaving_rng(StableVideoDiffusion, "svd", tmp_path / "again", seed=0)
    a = pytest_wiw.checkpoints.files.open_checkpoint(tiny_dir)
    b = pytest_wiw.checkpoints.files.open_checkpoint(again)
    assert a.sha256() == b.sha256()
    other = pytest_wiw.checkpoints.files.open_checkpoint(
        StableVideoDiffusion.make_tiny("svd", tmp_path / "other", seed=1))
    assert other.sha256() != a.sha256()


def test_wrong_pipeline_is_a_checkpoint_error(tiny_dir, tmp_path):
    bad = shutil.copytree(tiny_dir, tmp_path / "bad")
    index = json.loads((bad / "model_index.json").read_text())
    index["_class_name"] = "WanImageToVideoPipeline"
    (bad / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="StableVideoDiffusionPipeline"):
        load(bad)
