"""Check: hypothesis draws valid requests, and the output contract holds for each.

Hypothesis is imported when the check runs, not when it is collected: importing it takes a second or more of
pytest's start-up, which every session would otherwise wait through before its workers start.
"""

import numpy as np
import pytest

from pytest_wiw.checks import (
    GenerationRequest,
    RequestRejected,
    WorkerError,
    check,
    fail,
    record,
    require,
    require_upstream,
)

WORDS = ("pick up the red cup", "open the drawer", "push the blue block", "move forward", "turn left")


def valid_requests(wm_type: str, tasks, max_batch: int, max_image_side: int = 96, max_actions: int = 13):
    """A hypothesis strategy of valid requests within the spec's limits: batch size, start images of any size
    (multiples of 8 up to 96 pixels), action sequences or instructions, seeds."""
    from hypothesis import strategies as st

    return st.composite(_draw_request)(st, wm_type, tasks, max_batch, max_image_side, max_actions)


def _draw_request(draw, st, wm_type: str, tasks, max_batch: int, max_image_side: int, max_actions: int):
    batch = draw(st.integers(1, max_batch))
    side_steps = max(1, min(12, max_image_side // 8))
    height = draw(st.integers(min(2, side_steps), side_steps)) * 8
    width = draw(st.integers(min(2, side_steps), side_steps)) * 8
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = rng.integers(0, 256, size=(batch, 3, height, width), dtype=np.uint8)
    task = draw(st.sampled_from(tasks))
    if task == "navigation":
        # WIW rows open with the stop id 4; a limit of one id leaves room for a single motion only.
        opening = [4] if max_actions >= 2 else []
        moves = st.lists(st.integers(0, 4) if opening else st.integers(1, 3), min_size=1,
                         max_size=max(1, min(12, max_actions - len(opening))))
        actions = [opening + draw(moves) for _ in range(batch)]
    else:
        actions = [" and ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))) for _ in range(batch)]
    seed = draw(st.one_of(st.integers(0, 2**31), st.lists(st.integers(0, 2**31), min_size=batch, max_size=batch)))
    return GenerationRequest(images=images, actions=actions, task_type=task, seed=seed, request_model_name=wm_type)


@check("property: contract holds")
def test_property_contract_holds(wm, wiw_session, wiw_record):
    """Every drawn request gets uint8 (B, T, 3, H, W) at the declared size, not constant.

    Hypothesis draws the requests; the first example that breaks the contract, or on which the worker fails
    or dies, is reported as drawn, with its request, seed and the worker's last log lines. Examples are not
    shrunk or replayed: each one is a generation (minutes on a real checkpoint), and a worker that died on
    one is a different worker when replayed, which hypothesis would only report as flaky.
    """
    from hypothesis import HealthCheck, Phase, given, settings

    require_upstream(wm, "property: contract holds")
    budget = wiw_session.max_examples(wm)
    if budget == 0:
        pytest.skip("--wm-max-examples 0")
    handle = wm.worker()
    gen = require(wm.ready, "the property check").generation
    tasks = wm.tasks()
    expected_tail = (gen["num_output_frames"], 3, gen["out_height"], gen["out_width"])
    examples, failures = [], []

    @settings(max_examples=budget, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate))
    @given(request=valid_requests(wm.spec.name, tasks, wm.max_batch, wm.spec.max_image_side, wm.spec.max_actions))
    def contract_holds(request):
        if failures:
            return  # one failing example is the verdict; no more generations are spent after it
        examples.append(request)
        problem = _contract_problem(handle, wm, request, expected_tail)
        if problem:
            failures.append(f"{problem}\n  example {len(examples)}: {_describe(request)}")

    contract_holds()
    record(wiw_record, wm, property_examples=len(examples), property_tasks=",".join(tasks))
    if failures:
        fail(failures[0])


def _contract_problem(handle, wm, request: GenerationRequest, expected_tail: tuple) -> str | None:
    """What is wrong with the worker's answer to one valid request, or None."""
    try:
        frames, _ = wm.generate_example(request)
    except RequestRejected as exc:
        return f"a valid request was rejected: {exc}"
    except WorkerError as exc:
        return f"the worker failed on a valid request: {exc}"
    expected = (request.batch_size, *expected_tail)
    if frames.dtype != np.uint8 or tuple(frames.shape) != expected:
        return f"output {frames.dtype} {tuple(frames.shape)}; expected uint8 {expected}"
    if frames.min() == frames.max():
        return "constant output"
    return None


def _describe(request: GenerationRequest) -> str:
    return (f"batch {request.batch_size}, task {request.task_type}, images {request.images.shape}, "
            f"actions {request.actions!r}, seed {request.seed!r}")
