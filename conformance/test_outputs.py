"""Checks on the floor generations G1, G2, G3: output contract, batch invariance, seeds and call order."""

import numpy as np
import pytest

from pytest_wiw.assertions import diff_of, fail, frames_of, record, require


@pytest.mark.wm_check("output contract")
def test_output_contract(wm, wiw_record):
    """G1 is uint8 (B, T, 3, H, W) with T and (H, W) as declared, not constant, with no NaN upstream."""
    floor = require(wm.floor, "the output contract")
    frames = frames_of(floor.g1, "the output contract")
    gen = wm.ready()["generation"]
    expected = (1, gen["num_output_frames"], 3, gen["out_height"], gen["out_width"])
    record(wiw_record, wm, output_shape=str(tuple(frames.shape)), output_dtype=str(frames.dtype),
           seconds_per_generation=round(floor.g1.reply.get("seconds", 0.0), 4))
    if frames.dtype != np.uint8:
        fail(f"output dtype is {frames.dtype}, expected uint8 (0..255): convert the pipeline's [0, 1] floats "
             "with WorldModel.finish_video")
    if tuple(frames.shape) != expected:
        fail(f"output shape is {tuple(frames.shape)}, expected (B, T, 3, H, W) = {expected} "
             f"(num_output_frames={gen['num_output_frames']}, out size {gen['out_height']}x{gen['out_width']}); "
             "map the pipeline's frames with WorldModel.finish_video")
    if floor.g1.reply.get("nonfinite"):
        fail("the pipeline produced NaN or Inf values before the uint8 conversion (overflow in float16? "
             "try --wm-dtype bfloat16 or float32)")
    if frames.min() == frames.max():
        fail(f"every output value is {int(frames.min())}: the video is constant (a decoder that outputs "
             "nothing, or frames clipped to one value)")


@pytest.mark.wm_check("batch invariance")
def test_batch_invariance(wm, wiw_record):
    """Item 1 of G2 (R, seed s, in a batch of two) equals G1 (R, seed s, alone)."""
    if wm.max_batch < 2:
        pytest.skip(f"batch invariance needs a batch of two; max batch is {wm.max_batch} (--wm-max-batch)")
    floor = require(wm.floor, "batch invariance")
    g1 = frames_of(floor.g1, "batch invariance")
    g2 = frames_of(floor.g2, "batch invariance")
    if g2.shape[0] != 2:
        fail(f"a batch of 2 requests returned {g2.shape[0]} videos: the wrapper drops or adds batch items")
    diff = diff_of(g2[1:2], g1, "batch invariance")
    tol = wm.spec.tolerances
    record(wiw_record, wm, **diff.metrics("batch_diff"))
    if diff.max_abs > tol.batch_max_abs or diff.mean_abs > tol.batch_mean_abs:
        fail(f"item 1 of a batch (seed {wm.seed}) differs from the same request run alone: {diff.describe()} "
             f"(allowed: max {tol.batch_max_abs}/255, mean {tol.batch_mean_abs}/255). The wrapper probably "
             "shares one generator across the batch or seeds it from the first item only: build one generator "
             "per item with WorldModel.generators(request)")


@pytest.mark.wm_check("seed determinism")
def test_seed_determinism(wm, wiw_record):
    """G3 (R, seed s, again) equals G1: same request and seed, same output."""
    floor = require(wm.floor, "seed determinism")
    diff = diff_of(frames_of(floor.g3, "seed determinism"), frames_of(floor.g1, "seed determinism"),
                   "seed determinism")
    tol = wm.spec.tolerances.determinism_max_abs
    record(wiw_record, wm, determinism_max_abs=diff.max_abs)
    if diff.max_abs > tol:
        fail(f"outputs differ across two runs with seed {wm.seed}: {diff.describe()} (allowed max {tol}/255). "
             "The wrapper probably draws noise without the request's generator (torch's global RNG, an "
             "unseeded sampler), or keeps a generator across calls")


@pytest.mark.wm_check("seed sensitivity")
def test_seed_sensitivity(wm, wiw_session, wiw_record):
    """Item 0 of G2 (seed s') differs from G1 (seed s)."""
    floor = require(wm.floor, "seed sensitivity")
    other = frames_of(floor.g2, "seed sensitivity")[0:1]
    diff = diff_of(other, frames_of(floor.g1, "seed sensitivity"), "seed sensitivity")
    floor_diff = wiw_session.selection.min_diff
    record(wiw_record, wm, **diff.metrics("seed_diff"))
    if diff.mean_abs < floor_diff:
        fail(f"seeds {wm.seed} and {wm.seed + 1} give (nearly) the same video: {diff.describe()} "
             f"(need mean |diff| >= {floor_diff}/255). The wrapper probably ignores the request's seed "
             "(a fixed generator, or noise drawn once at load)")


@pytest.mark.wm_check("order independence")
def test_order_independence(wm, wiw_record):
    """G3 (R, seed s) after the batch G2 equals G1 (R, seed s, first call): earlier requests leave no trace."""
    floor = require(wm.floor, "order independence")
    diff = diff_of(frames_of(floor.g3, "order independence"), frames_of(floor.g1, "order independence"),
                   "order independence")
    tol = wm.spec.tolerances.determinism_max_abs
    if diff.max_abs > tol:
        fail(f"the same request (seed {wm.seed}) gives another video after other requests ran: "
             f"{diff.describe()}. The wrapper probably keeps state across calls: one generator built at load "
             "and advanced by every request, or a cache of latents")
