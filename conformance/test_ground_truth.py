"""Check: on reference episodes, the FT model is not reliably further from the ground truth than zero-shot."""

import pytest

from pytest_wiw.checks import (
    EpisodeError,
    GenerationRequest,
    WorkerError,
    check,
    episode_folders,
    fail,
    ground_truth,
    load_episode,
    record,
    require,
    require_upstream,
)

#: The junit property and report field that carry a passing check's figures as one line.
SUMMARY_PROPERTY = "summary"


@check("closer to ground truth")
def test_closer_to_ground_truth(wm, wiw_session, wiw_record):
    """FT and zero-shot at the same seed on N reference episodes, scored against the ground-truth frames
    (PSNR, SSIM); fails when a metric's bootstrap 95% interval of the mean improvement lies below -margin."""
    sel = wiw_session.selection
    if sel.reference is None:
        pytest.skip("needs reference episodes: give --wm-reference=DIR (docs/ground-truth.md; "
                    "`pytest-wiw import-habitat ROOT OUT` makes them from WIW's Habitat collection)")
    require_upstream(wm, "closer to ground truth")
    gen = require(wm.ready, "closer to ground truth").generation
    tasks = wm.tasks()
    try:
        folders = episode_folders(sel.reference)
        episodes = [e for e in (load_episode(f) for f in folders) if e.task_type in tasks]
    except EpisodeError as exc:
        fail(f"reference episodes unusable: {exc}")
    if not episodes:
        pytest.skip(f"no episode in {sel.reference} is of a task {wm.spec.name} serves ({', '.join(tasks)})")
    episodes = episodes[: sel.reference_episodes]
    out_hw = (gen["out_height"], gen["out_width"])
    scores = []
    for episode in episodes:
        request = GenerationRequest(images=episode.start[None], actions=[episode.actions], task_type=episode.task_type,
                                    seed=wm.seed, request_model_name=wm.spec.name)
        try:
            ft, zero = wm.reference_pair(episode.name, request)
        except WorkerError as exc:
            fail(f"episode {episode.name}: the worker failed: {exc}")
        for g in (ft, zero):
            if g.frames is None:
                fail(f"episode {episode.name}: {g.label} failed: {g.error}")
        truth = ground_truth.map_ground_truth(episode.frames, gen["num_output_frames"], out_hw)
        score = ground_truth.score_episode(episode.name, ft.frames, zero.frames, truth)
        scores.append(score)
        if wm.ground_truth_sheet is None:
            wm.ground_truth_sheet = {"episode": episode.name, "ground_truth": truth, "zero_shot": zero.frames[0],
                                     "ft": ft.frames[0], "psnr_ft": score.psnr_ft,
                                     "psnr_zero_shot": score.psnr_zero_shot}
    verdict = ground_truth.judge(scores, sel.reference_margins)
    summary = verdict.describe()
    record(wiw_record, wm, **verdict.figures(), reference_generations=wm.reference_generations)
    wiw_record(SUMMARY_PROPERTY, summary)
    wm.ground_truth = {"summary": summary, "reference": sel.reference, "seed": wm.seed,
                       "episodes": [s.row() for s in scores], **verdict.to_dict()}
    if verdict.worse:
        fail(verdict.failure(wm.spec.name, wm.spec.base))
