"""Checks: the checkpoint is readable, loads in the worker, and is really applied to the running model."""

import pytest

from pytest_wiw.checks import (
    SWAPPED_COMPONENT,
    CheckpointError,
    Fingerprint,
    WorkerError,
    blocked,
    check,
    checkpoint_of,
    compare_fingerprints,
    fail,
    judgements,
    open_checkpoint,
    record,
    require,
    require_upstream,
)

# How many offending tensor names a message lists before it says "and N more".
LIST_AT_MOST = 5
# The worker's weight audit (pytest_wiw.worker.weights_audit), kind -> what it means for the user.
AUDIT_FINDINGS = {
    "misshapen": "tensors whose shape differs from the model's (a checkpoint of another size or variant)",
    "wrong_dtype": "tensors stored as integers where the model holds floats, or the reverse (copied, not "
                   "converted: the weights are garbage)",
    "nonfinite": "tensors holding NaN or Inf (a diverged training run, or a corrupt save)",
    "missing": "parameters no checkpoint tensor fills (missing keys: they keep their random initialisation)",
}


def ckpt_name(ready) -> str:
    return str((ready.ckpt or {}).get("path") or "the checkpoint")


def skip_if_legacy(wm):
    if wm.legacy_command:
        pytest.skip(f"{wm.spec.name} runs a WIW worker script (--wm-worker-cmd): its checkpoint is inside the "
                    "command and it reports no weights")


def _rounded(seconds):
    return round(seconds, 3) if seconds is not None else None


def _listing(items):
    shown = "\n  - ".join(items[:LIST_AT_MOST])
    more = f"\n  ... and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
    return "\n  - " + shown + more


@check("checkpoint readable")
def test_checkpoint_readable(wm, wiw_record):
    """Files exist, safetensors headers parse and fit their files, no pickles; sha256 recorded."""
    skip_if_legacy(wm)
    require_upstream(wm, "checkpoint readable")
    ckpt = checkpoint_of(wm, "the checkpoint")
    try:
        index = ckpt.tensor_index()
    except CheckpointError as exc:
        fail(f"checkpoint unreadable: {exc}")
    if not index:
        fail(f"{ckpt.path}: the checkpoint holds no tensors")
    wm.start_worker_early()  # it imports and loads while the files are hashed here
    record(wiw_record, wm, checkpoint_format=ckpt.format, checkpoint_sha256=ckpt.sha256(),
           checkpoint_bytes=ckpt.size_bytes(), checkpoint_tensors=len(index))


@check("checkpoint loads")
def test_checkpoint_loads(wm, wiw_record):
    """The worker reaches ready; every checkpoint tensor lands in the running model with its shape and kind
    of dtype and finite values; no parameter of a component it loads is left unfilled."""
    require_upstream(wm, "checkpoint loads")
    try:
        ready = wm.ready()
    except WorkerError as exc:
        fail(f"the worker did not load: {exc}")
    if wm.legacy_command:  # a WIW script says nothing of its load: it has loaded when it answers
        record(wiw_record, wm, worker_pid=ready.pid)
        cause = judgements.loaded(wm)
        if cause:
            fail(cause)
        return
    record(wiw_record, wm, worker_pid=ready.pid, worker_python=ready.environment["executable"],
           load_seconds=round(ready.load_seconds, 3),
           weight_audit_seconds=_rounded(ready.weight_audit_seconds),
           load_host_peak_bytes=ready.memory["host_peak"], load_gpu_peak_bytes=ready.memory["gpu_peak"])
    unmapped = ready.unmapped_keys
    if unmapped and len(unmapped) == ready.tensor_count and not ready.maps_weights:
        fail(f"none of the {ready.tensor_count} checkpoint tensors can be found in the running model because "
             f"the wrapper {wm.spec.wrapper} overrides neither components() nor running_tensor(): the suite cannot "
             "see its weights. Return its modules, e.g.\n    def components(self):\n        return "
             "{\"transformer\": self.pipe.transformer, \"vae\": self.pipe.vae}\nor override "
             "running_tensor(key) for other layouts (LoRA files)")
    if unmapped:
        fail(f"{len(unmapped)} of {ready.tensor_count} checkpoint tensors have no counterpart in the running "
             f"model (a checkpoint for another architecture, or keys the wrapper does not map):" + _listing(unmapped))
    audit = ready.weight_audit or {}
    problems = [(AUDIT_FINDINGS[kind], audit[kind]) for kind in AUDIT_FINDINGS if audit.get(kind)]
    if problems:
        fail(f"{ckpt_name(ready)} loaded, but its weights are not what the model runs:\n"
             + "\n".join(f"{what}:" + _listing(items) for what, items in problems))


@check("checkpoint applied")
def test_checkpoint_applied(wm, wiw_record):
    """The running model's weights equal the checkpoint's tensors (fingerprints within float64 rounding).

    A type that swaps one component into its base, given a whole pipeline folder (WIW's FTltx), runs only
    that component of it: every other component of the folder must equal the base's, which runs instead
    (compared file by file, pytest_wiw.checkpoints.pipeline_diff); one that differs would be silently ignored."""
    skip_if_legacy(wm)
    require_upstream(wm, "checkpoint applied")
    ready = require(wm.ready, "the running weights")
    if not ready.maps_weights:
        blocked("checkpoint loads", f"the wrapper {wm.spec.wrapper} overrides neither components() nor "
                                    "running_tensor(): its running weights cannot be looked up")
    ckpt = checkpoint_of(wm, "the running weights")
    keys = ready.fingerprint_keys
    running = {k: Fingerprint.from_dict(v) for k, v in ready.fingerprints.items()}
    missing = [k for k in keys if k not in running]
    if missing:
        fail(f"{len(missing)} of {len(keys)} checkpoint tensors are not in the running model "
             "(the wrapper's running_tensor() finds no tensor for them):" + _listing(missing))
    expected = wm.expected_fingerprints(ckpt, keys, {k: fp.dtype for k, fp in running.items()})
    mismatches = [m for k in keys if (m := compare_fingerprints(k, running[k], expected[k]))]
    record(wiw_record, wm, fingerprinted_tensors=len(keys), fingerprint_mismatches=len(mismatches))
    not_run = _components_not_run(wm, ready, ckpt, wiw_record)
    if not_run:
        component = SWAPPED_COMPONENT[wm.spec.finetune]
        fail(f"{ckpt.path} is a whole pipeline folder and {wm.spec.name} runs only its {component}/ "
             f"(finetune={wm.spec.finetune!r}), but these components of it differ from the base's "
             f"({ready.base_ckpt['path']}), whose own run instead:" + _listing(not_run)
             + "\nEither this is not the base the fine-tune was trained from (give the right --base-ckpt-path), "
             "or these components were fine-tuned too, and the checks would not test what this checkpoint runs")
    if mismatches:
        fail(f"{len(mismatches)} of {len(keys)} fingerprinted tensors differ between the running model and "
             f"{ckpt.path}: the wrapper loads the checkpoint but runs other weights (the base's?)"
             + _listing(mismatches))


def _components_not_run(wm, ready: dict, ckpt, wiw_record) -> list[str]:
    """For a type that swaps one component into its base, given a whole pipeline folder: its other components
    that differ from the base's (the base's run, not these), each with how it differs. Recorded either way."""
    component = SWAPPED_COMPONENT.get(wm.spec.finetune)
    base = ready.base_ckpt
    if component is None or ckpt.format != "diffusers" or not base:
        return []
    try:
        differences = wm.differing_components(ckpt, open_checkpoint(base["path"]), skip=(component,))
    except CheckpointError as exc:
        fail(f"cannot compare the pipeline folder's other components with the base's: {exc}")
    record(wiw_record, wm, ft_components_differing=",".join(d.name for d in differences) or "none")
    return [d.describe() for d in differences]
