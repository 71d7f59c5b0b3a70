"""Check: invalid requests get an error reply naming the field, and the worker keeps serving."""

import numpy as np

from pytest_wiw.checks import RequestRejected, WorkerDied, WorkerError, check, fail, require, require_upstream


def bad_requests(header: dict, images: np.ndarray, spec):
    """(what, field the error must name, header, arrays) for each invalid request, built from R."""
    def variant(**changes):
        return {**header, **changes}

    wm_type = spec.name
    nav = header["task_type"] == "navigation"
    yield "float images", "images", header, {"images": images.astype(np.float32)}
    yield "an empty batch", "images", header, {"images": images[:0]}
    yield "a 2-D image", "images", header, {"images": images[0, 0]}
    yield ("an unknown action id" if nav else "an empty instruction"), "actions[0]", \
        variant(actions=[[4, 1, 9]] if nav else [" "]), {"images": images}
    yield "actions for two items with one image", "actions", \
        variant(actions=header["actions"] * 2), {"images": images}
    yield "a negative seed", "seed", variant(seed=-1), {"images": images}
    yield "an image beyond the model's size limit", "images", header, \
        {"images": np.zeros((1, 3, spec.max_image_side + 8, 8), dtype=np.uint8)}
    if nav:
        yield "more actions than the model's limit", "actions[0]", \
            variant(actions=[[4] + [1] * spec.max_actions]), {"images": images}
    yield "another model's name", "request_model_name", \
        variant(request_model_name=f"{wm_type}-other"), {"images": images}


@check("bad request rejected")
def test_bad_request_rejected(wm):
    """Wrong dtype or shape, empty batch, unknown action, sizes beyond the spec's limits, name mismatch ->
    an error naming the field. A worker that dies on one is reported for it and started again for the rest."""
    require_upstream(wm, "bad request rejected")
    handle = wm.worker()
    header, arrays = require(wm.reference_request, "bad requests").to_wire()
    before = require(handle.stats, "bad requests").generations
    restarts_before = len(handle.restarts)
    problems = []
    for what, field, bad_header, bad_arrays in bad_requests(header, arrays["images"], wm.spec):
        try:
            handle.generate_raw(bad_header, bad_arrays)
        except RequestRejected as exc:
            if field not in (exc.reply.message or ""):
                problems.append(f"{what}: rejected, but the message does not name {field!r}: {exc}")
        except WorkerError as exc:
            ended, lines = _death(exc)
            problems.append(f"{what}: {ended} on a request with {what} instead of replying with an error; {lines}")
        else:
            hint = (" (WIW's manager compared a name sliced per item; the name must be compared whole)"
                    if field == "request_model_name" else "")
            problems.append(f"{what}: accepted and generated a video; expected an error naming {field!r}{hint}")
    after = require(handle.stats, "bad requests (is the worker still serving?)").generations
    if len(handle.restarts) > restarts_before:
        before = 0  # the worker counting now was started after a death; it has served only bad requests
    if problems:
        fail("invalid requests were not rejected properly:\n  - " + "\n  - ".join(problems))
    if after != before:
        fail(f"{after - before} generation(s) ran for invalid requests: validation must come before generating")


def _death(exc: WorkerError) -> tuple[str, str]:
    """What the worker did instead of replying, and its last log lines."""
    if not isinstance(exc, WorkerDied):
        return "the worker failed", str(exc)
    how = exc.how
    if how.startswith("exited with status "):
        how = f"exited (status {how.removeprefix('exited with status ')})"
    lines = "\n      ".join(exc.log_tail) if exc.log_tail else "(its log is empty)"
    return f"the worker process {how}", f"its last log lines:\n      {lines}"
