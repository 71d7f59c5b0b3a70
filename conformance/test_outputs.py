"""Checks on the floor generations G1, G2, G3: output contract, batch invariance, seeds and call order."""

import pytest

from pytest_wiw.checks import check, diff_of, fail, frames_of, judgements, record, require, require_upstream


@check("output contract")
def test_output_contract(wm, wiw_record):
    """G1 is uint8 (B, T, 3, H, W) with T and (H, W) as declared, not constant, with no NaN upstream."""
    require_upstream(wm, "output contract")
    floor = require(wm.floor, "the output contract")
    frames = frames_of(floor.g1, "output contract")
    record(wiw_record, wm, output_shape=str(tuple(frames.shape)), output_dtype=str(frames.dtype),
           seconds_per_generation=round(floor.g1.reply.seconds if floor.g1.reply else 0.0, 4))
    cause = judgements.output_contract(wm)
    if cause:
        fail(cause)


@check("batch invariance")
def test_batch_invariance(wm, wiw_record):
    """Item 1 of G2 (R, seed s, in a batch of two) equals G1 (R, seed s, alone)."""
    if wm.max_batch < 2:
        pytest.skip(f"batch invariance needs a batch of two; max batch is {wm.max_batch} (--wm-max-batch)")
    require_upstream(wm, "batch invariance")
    floor = require(wm.floor, "batch invariance")
    g2 = frames_of(floor.g2, "batch invariance")
    g1 = frames_of(floor.g1, "batch invariance")
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


@check("seed determinism")
def test_seed_determinism(wm, wiw_record):
    """G3 (R, seed s, again) equals G1: same request and seed, same output."""
    require_upstream(wm, "seed determinism")
    floor = require(wm.floor, "seed determinism")
    frames_of(floor.g3, "seed determinism")  # G3 is this check's own request: its failure fails here
    diff = judgements.determinism_diff(wm)
    if not isinstance(diff, str):
        record(wiw_record, wm, determinism_max_abs=diff.max_abs)
    cause = judgements.seed_determinism(wm)
    if cause:
        fail(cause)


@check("seed sensitivity")
def test_seed_sensitivity(wm, wiw_session, wiw_record):
    """Item 0 of G2 (seed s') differs from G1 (seed s)."""
    require_upstream(wm, "seed sensitivity")
    floor = require(wm.floor, "seed sensitivity")
    other = frames_of(floor.g2, "seed sensitivity")[0:1]
    diff = diff_of(other, frames_of(floor.g1, "seed sensitivity"), "seed sensitivity")
    floor_diff = wiw_session.selection.min_diff
    record(wiw_record, wm, **diff.metrics("seed_diff"))
    if diff.mean_abs < floor_diff:
        fail(f"seeds {wm.seed} and {wm.seed + 1} give (nearly) the same video: {diff.describe()} "
             f"(need mean |diff| >= {floor_diff}/255). The wrapper probably ignores the request's seed "
             "(a fixed generator, or noise drawn once at load)")


@check("order independence")
def test_order_independence(wm, wiw_record):
    """G3 (R, seed s) after the batch G2 equals G1 (R, seed s, first call): earlier requests leave no trace."""
    require_upstream(wm, "order independence")
    floor = require(wm.floor, "order independence")
    diff = diff_of(frames_of(floor.g3, "order independence"), frames_of(floor.g1, "order independence"),
                   "order independence")
    tol = wm.spec.tolerances.determinism_max_abs
    if diff.max_abs > tol:
        fail(f"the same request (seed {wm.seed}) gives another video after other requests ran: "
             f"{diff.describe()}. The wrapper probably keeps state across calls: one generator built at load "
             "and advanced by every request, or a cache of latents")
