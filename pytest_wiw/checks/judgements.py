"""The judgements other checks depend on, as plain functions: each returns None or the failure's message.

A check calls its own judgement and fails with the message; a downstream check calls the same function
to learn whether it is blocked (``pytest_wiw.checks.dependencies``). Judgements read the session's result store:
calling one twice, or from several checks, runs no generation twice.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pytest_wiw.checks.compare import VideoDiff, video_diff
from pytest_wiw.errors import CheckpointError, WorkerError
from pytest_wiw.session.subject import Generation, WMSubject


def wrapper_found(wm: WMSubject) -> str | None:
    """The module of the spec's wrapper string can be found (the part of ``registered`` a load depends on)."""
    from pytest_wiw.runtime.wrapper_class import wrapper_module_problem

    return None if wm.legacy_command else wrapper_module_problem(wm.spec, wm.pool.settings.python)


def readable(wm: WMSubject) -> str | None:
    """The checkpoint's files open here: they exist, their safetensors headers parse and fit, no pickles.
    A WIW script's checkpoint is inside its command, and a worker that cannot say where the embedded default
    is has its own check (checkpoint loads): neither is judged here."""
    if wm.legacy_command:
        return None
    try:
        wm.checkpoint().tensor_index()
    except CheckpointError as exc:
        return f"checkpoint unreadable: {exc}"
    except WorkerError:
        return None
    return None


def loaded(wm: WMSubject) -> str | None:
    """The worker reached ``ready`` (the weight audit is the load check's own business, not an input).

    A WIW worker script reports nothing while it loads: it has loaded when it answers its first request,
    so one that dies before answering G1 failed to load."""
    try:
        wm.ready()
    except WorkerError as exc:
        return f"the worker did not load: {exc}"
    if wm.legacy_command:
        g1 = wm.floor().g1
        if g1.frames is None and g1.died:
            return f"the WIW worker script did not answer its first request: {g1.error}"
    return None


def output_contract(wm: WMSubject) -> str | None:
    """G1 is uint8 (B, T, 3, H, W) at the declared T and size, finite upstream, not constant."""
    g1 = _floor_generation(wm, "g1")
    if isinstance(g1, str):
        return g1
    frames = g1.frames
    gen = wm.ready().generation
    expected = (1, gen["num_output_frames"], 3, gen["out_height"], gen["out_width"])
    if frames.dtype != np.uint8:
        return (f"output dtype is {frames.dtype}, expected uint8 (0..255): convert the pipeline's [0, 1] floats "
                "with WorldModel.finish_video")
    if tuple(frames.shape) != expected:
        return (f"output shape is {tuple(frames.shape)}, expected (B, T, 3, H, W) = {expected} "
                f"(num_output_frames={gen['num_output_frames']}, out size {gen['out_height']}x{gen['out_width']}); "
                "map the pipeline's frames with WorldModel.finish_video")
    if g1.reply is not None and g1.reply.nonfinite:
        return ("the pipeline produced NaN or Inf values before the uint8 conversion (overflow in float16? "
                "try --wm-dtype bfloat16 or float32)")
    if frames.min() == frames.max():
        return (f"every output value is {int(frames.min())}: the video is constant (a decoder that outputs "
                "nothing, or frames clipped to one value)")
    return None


def determinism_diff(wm: WMSubject) -> VideoDiff | str:
    """G3 against G1 (same request and seed, G2 between them), or why they cannot be compared."""
    floor = wm.floor()
    for gen in (floor.g1, floor.g3):
        if gen.frames is None:
            return f"{gen.label} failed: {gen.error}"
    return video_diff(floor.g3.frames, floor.g1.frames)


def seed_determinism(wm: WMSubject) -> str | None:
    """Same request and seed twice -> the same output, within the spec's tolerance."""
    diff = determinism_diff(wm)
    if isinstance(diff, str):
        return diff
    tol = wm.spec.tolerances.determinism_max_abs
    if diff.max_abs > tol:
        return (f"outputs differ across two runs with seed {wm.seed}: {diff.describe()} (allowed max {tol}/255). "
                "The wrapper probably draws noise without the request's generator (torch's global RNG, an "
                "unseeded sampler), or keeps a generator across calls")
    return None


def honest_baseline(wm: WMSubject) -> str | None:
    """The zero-shot output Z inside an FT type equals its base type's own G1 (same request, seed, settings).

    None when that cannot be judged here: no base in the session, or Z or the base's G1 missing (the checks
    that send those requests say why)."""
    base_wm = wm.comparable_base() if wm.spec.is_ft else None
    if base_wm is None:
        return None
    try:
        ft_gen, base_gen = wm.ready().generation, base_wm.ready().generation
        z, own = wm.floor().z, base_wm.floor().g1
    except WorkerError:
        return None
    if ft_gen != base_gen:
        changed = {k: (ft_gen[k], base_gen[k]) for k in ft_gen if ft_gen[k] != base_gen.get(k)}
        return (f"{wm.spec.name} and {wm.spec.base} generate at different settings (FT, base): {changed}: the FT "
                "and zero-shot outputs would be compared at different resolutions or frame counts")
    if z is None or z.frames is None or own.frames is None or z.frames.shape != own.frames.shape:
        return None
    diff = video_diff(z.frames, own.frames)
    if diff.max_abs > wm.spec.tolerances.determinism_max_abs:
        return (f"the zero-shot output inside {wm.spec.name} differs from {wm.spec.base}'s own output for the same "
                f"request and seed: {diff.describe()}. zero_shot() does not restore the base model (a fused LoRA, "
                "a component left swapped, or a base loaded with other settings)")
    return None


def _floor_generation(wm: WMSubject, name: str) -> Generation | str:
    try:
        gen = getattr(wm.floor(), name)
    except WorkerError as exc:
        return str(exc)
    if gen.frames is None:
        return f"{gen.label} failed: {gen.error}"
    return gen


#: check name -> its judgement, for the checks others depend on (pytest_wiw.checks.dependencies.UPSTREAM)
JUDGEMENTS: dict[str, Callable[[WMSubject], str | None]] = {
    "registered": wrapper_found,
    "checkpoint readable": readable,
    "checkpoint loads": loaded,
    "output contract": output_contract,
    "seed determinism": seed_determinism,
    "honest baseline": honest_baseline,
}
