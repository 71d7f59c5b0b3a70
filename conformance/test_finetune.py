"""Checks for post-trained (FT) types: the FT output differs from zero-shot, and the baseline is honest."""

import pytest

from pytest_wiw.checks import (
    SWAPPED_COMPONENT,
    CheckpointError,
    check,
    diff_of,
    fail,
    frames_of,
    identical_weight_files,
    judgements,
    open_checkpoint,
    record,
    require,
    require_upstream,
)


@check("differs from zero-shot")
def test_differs_from_zero_shot(wm, wiw_session, wiw_record):
    """FT vs its zero-shot base on the identical request and seed: mean |diff| at least --wm-min-diff."""
    require_upstream(wm, "differs from zero-shot")
    floor = require(wm.floor, "the FT vs zero-shot difference")
    zero = frames_of(floor.z, "differs from zero-shot")
    ft = frames_of(floor.g1, "differs from zero-shot")
    diff = diff_of(ft, zero, "differs from zero-shot")
    record(wiw_record, wm, **diff.metrics("baseline_diff"))
    needed = wiw_session.selection.min_diff
    if diff.mean_abs < needed:
        fail(f"{wm.spec.name} is (nearly) identical to its zero-shot base {wm.spec.base} on the same request "
             f"and seed: {diff.describe()} (need mean |diff| >= {needed}/255). "
             + (_base_is_the_ft(wm) or "The fine-tune has no effect: a LoRA whose lora_B is zero, a transformer "
                "identical to the base, or adapters never enabled"))


def _base_is_the_ft(wm) -> str:
    """Why the base is the fine-tune itself (same path, or weight files byte-identical to the base's), or ""."""
    ready = wm.ready()
    ft, base = (ready.ckpt or {}).get("path"), (ready.base_ckpt or {}).get("path")
    if not ft or not base:
        return ""
    if ft == base:
        return (f"The base checkpoint is the FT checkpoint itself ({ft}): --base-ckpt-path (or the card's "
                "base_model) must name the zero-shot model the fine-tune started from, not the fine-tune")
    try:  # a swapped-in component is compared alone: the base may differ elsewhere (its own VAE...)
        same = identical_weight_files(open_checkpoint(ft), open_checkpoint(base),
                                      component=SWAPPED_COMPONENT.get(wm.spec.finetune))
    except CheckpointError:
        return ""
    if not same:
        return ""
    return (f"The base {base} holds the FT checkpoint's own weights ({', '.join(same[:3])} equal to the FT's): "
            "it is the fine-tune (or a copy of it), not the zero-shot model the fine-tune started from")


@check("honest baseline")
def test_honest_baseline(wm, wiw_session, wiw_record):
    """The zero-shot output Z used above equals the base wm_type's own G1 (same request, seed, settings)."""
    base = wm.spec.base
    if not wiw_session.selected(base):
        pytest.skip(f"needs the base wm_type in the same session: add --wm {base}")
    if wm.comparable_base() is None:
        sel = wiw_session.selection
        pytest.skip(f"--wm-preset {sel.preset} runs {wm.spec.name} at its FT settings and {base} at its zero-shot "
                    f"ones (WIW evaluates them apart); the zero-shot baseline inside {wm.spec.name} ran at the FT "
                    f"settings, so {base}'s own output cannot vouch for it: run without the preset for this check")
    base_wm = wm.comparable_base()
    require_upstream(wm, "honest baseline")
    require(wm.ready, "the honest baseline")
    require(base_wm.ready, "the honest baseline")
    zero = frames_of(require(wm.floor, "the honest baseline").z, "honest baseline")
    own = frames_of(require(base_wm.floor, "the honest baseline").g1, "honest baseline")
    if zero.shape == own.shape:
        record(wiw_record, wm, honest_baseline_max_abs=diff_of(zero, own, "honest baseline").max_abs)
    cause = judgements.honest_baseline(wm)
    if cause:
        fail(cause)
