"""One wm_type under test: its checkpoint, its worker, and the generations its checks share.

The checks never call the worker for generations themselves: they ask for the floor (DESIGN §9),
which runs once per wm_type, in this order, and is kept in the session result store:

1. G1: request R, seed s, alone, first call of the fresh worker (output contract; the reference).
2. G2: one batch of two: R with seed s' then R with seed s (batch invariance, seed sensitivity).
3. G3: R, seed s, alone, after G2 (seed determinism and order independence).
4. Z (FT types): R, seed s, inside ``zero_shot()`` (differs from zero-shot, honest baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_wiw.api.registry import WMSpec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.checkpoints.epochs import EPOCH_OPTION
from pytest_wiw.checkpoints.files import VARIANT_OPTION, Checkpoint, open_checkpoint
from pytest_wiw.checkpoints.fingerprint import file_fingerprints
from pytest_wiw.checkpoints.pipeline_diff import SWAPPED_COMPONENT, differing_components
from pytest_wiw.errors import CheckpointError, GenerationUnavailable, RequestRejected, WorkerError, WorkerNotReady
from pytest_wiw.runtime.settings import resolve_base_path
from pytest_wiw.session.pool import WorkerHandle, WorkerPool
from pytest_wiw.session.prefetch import CheckpointPrefetch
from pytest_wiw.wire.messages import Ready, Result

if TYPE_CHECKING:
    from pytest_wiw.session.baseline_cache import BaselineCache

REFERENCE_ACTIONS = {
    "navigation": [4, 1, 1, 2, 1, 3, 1],
    "manipulation": "pick up the red cup and place it in the drawer",
    "freetext": "move forward and turn left",
}
# The second seed of G2: any seed other than s works; s + 1 keeps the report readable.
SEED_OFFSET = 1

#: floor generation -> the check that sends it (subject.Floor); with --wm-max-batch 1, G2 is seed sensitivity's
OWNERS = {"G1": "output contract", "G2": "batch invariance", "G3": "seed determinism", "Z": "differs from zero-shot"}


@dataclass
class Generation:
    """One generation call's outcome: frames, or the reason there are none."""

    label: str
    frames: np.ndarray | None = None
    error: str | None = None
    #: the worker's reply (None: not run, failed, or taken from the baseline cache)
    reply: Result | None = None
    #: read from the on-disk baseline cache instead of generated
    cached: bool = False
    #: the check that sends this request (OWNERS); others that need it are blocked by it
    owner: str | None = None
    #: the worker died or hung on this request (rather than rejecting it)
    died: bool = False

    def require(self) -> np.ndarray:
        if self.frames is None:
            raise GenerationUnavailable(f"{self.label} failed: {self.error}")
        return self.frames


class ResultStore:
    """Every generation of the session by (worker, request content, seeds, weights variant)."""

    def __init__(self):
        self._results: dict[tuple, Generation] = {}
        self.generations = 0

    def run(self, handle: WorkerHandle, request: GenerationRequest, variant: str, label: str,
            repeat: int = 0) -> Generation:
        """The generation for this key, run on first use. ``repeat`` > 0 asks for a deliberate rerun
        of the same request (seed determinism needs G3 to be a call of its own, not G1 again)."""
        key = (handle.key, request.content_digest(), tuple(request.seeds), variant, repeat)
        if key not in self._results:
            self.generations += 1
            gen = Generation(label)
            try:
                gen.frames, gen.reply = handle.generate(request, variant, label)
            except RequestRejected as exc:
                gen.error = f"the worker rejected it: {exc.reply.error_type}: {exc}"
            except WorkerError as exc:
                gen.error = str(exc)
                gen.died = True
            self._results[key] = gen
        return self._results[key]


@dataclass
class Floor:
    g1: Generation
    g2: Generation | None
    g3: Generation
    z: Generation | None


class WMSubject:
    """The session state of one wm_type: resolved lazily, shared by all of its checks."""

    def __init__(self, spec: WMSpec, base_spec: WMSpec | None, ckpt: str | None, base_ckpt: str | None,
                 pool: WorkerPool, store: ResultStore, seed: int, max_batch: int,
                 baseline_cache: "BaselineCache | None" = None, allow_pickle: bool = False,
                 declared_failures: dict[str, str] | None = None):
        self.spec = spec
        self.base_spec = base_spec
        self.ckpt_arg = ckpt
        self.base_ckpt_arg = base_ckpt
        self.pool = pool
        self.store = store
        self.seed = seed
        self.max_batch = min(max_batch, spec.max_batch)
        self._handle: WorkerHandle | None = None
        self._floor: Floor | None = None
        self.baseline_cache = baseline_cache
        self.property_examples = 0  # generations of the property check, counted apart from the floor
        #: generation calls of the ground-truth check (FT and zero-shot per episode), counted apart from the floor
        self.reference_generations = 0
        #: the ground-truth check's per-episode table and verdict, for the report (None: it did not run)
        self.ground_truth: dict | None = None
        #: the first episode's ground truth, zero-shot and FT videos with their per-frame PSNR, for the sheet
        self.ground_truth_sheet: dict | None = None
        self.allow_pickle = allow_pickle
        #: check -> reason, the known failures declared for this wm_type (registry and ini file)
        self.declared_failures = {**spec.expected_failures, **(declared_failures or {})}
        #: upstream check -> its judgement (None or the cause), computed once for the checks it blocks
        self.judged: dict[str, str | None] = {}
        #: () -> the base type's subject when this FT type's zero-shot output can be held against it here
        self.comparable_base = lambda: None
        self._paths: tuple[str | None, str | None] | None = None
        self._prefetch: CheckpointPrefetch | None = None
        self.metrics: dict[str, object] = {}

    @property
    def variant(self) -> str | None:
        """The diffusers weight variant ``--wm-opt variant=`` asks for (None: the only one a folder holds)."""
        return self.pool.settings.options.get(VARIANT_OPTION)

    @property
    def legacy_command(self) -> str | None:
        """The WIW worker script command this type runs through the legacy adapter, if any."""
        return self.pool.settings.worker_cmds.get(self.spec.name)

    # -- checkpoint and worker ------------------------------------------------------------------
    def checkpoint_paths(self) -> tuple[str | None, str | None]:
        """The checkpoint and base paths the worker loads: as given, or with --wm-allow-pickle their copies
        with pickles converted to safetensors (CheckpointError for a pickle that is not plain tensors)."""
        if self._paths is None:
            if not self.allow_pickle:
                self._paths = (self.ckpt_arg, self.base_ckpt_arg)
            else:
                from pytest_wiw.checkpoints.pickles import convert_pickles

                cache = Path(self.pool.settings.tiny_cache)
                self._paths = tuple(convert_pickles(p, cache) if p else None
                                    for p in (self.ckpt_arg, self.base_ckpt_arg))
        return self._paths

    @property
    def epoch_option(self) -> str | None:
        """``--wm-opt epoch=N``: the epoch of a DiffSynth epoch folder, opened alike here and in the worker."""
        return self.pool.settings.options.get(EPOCH_OPTION)

    def checkpoint(self) -> Checkpoint:
        """The checkpoint under test, opened here (the embedded default asks the worker for its path)."""
        path = self.checkpoint_paths()[0]
        if path is None:  # the worker built it; a worker that failed to load still said where
            handle = self.worker()
            resolved = handle.process.resolved if handle.process is not None else None
            if resolved and resolved.get("error"):  # the wrapper's make_tiny did not return what it wrote
                raise CheckpointError(resolved["error"])
            path = resolved["ckpt"] if resolved else self.ready().ckpt["path"]
        return self._opened(path)

    def _opened(self, path: str) -> Checkpoint:
        return open_checkpoint(path, self.variant, epoch=self.epoch_option)

    def worker(self) -> WorkerHandle:
        if self._handle is None:
            try:  # never start a worker on a checkpoint that fails to open here
                ckpt, base = self.checkpoint_paths()
                if ckpt is not None:
                    self._opened(ckpt).tensor_index()  # every header parses and fits its file
            except CheckpointError as exc:
                handle = WorkerHandle(None, self.spec, None, self.pool.settings)
                handle.failure = f"checkpoint not loaded: {exc}"
                self._handle = handle
                return handle
            self._handle = self.pool.get(self.spec, self.base_spec, ckpt, base)
        return self._handle

    def release_worker(self) -> None:
        """No check left needs this wm_type's worker: let it exit (``WorkerHandle.release``)."""
        if self._handle is not None:
            self._handle.release()

    def start_worker_early(self) -> None:
        """Start the worker of a given checkpoint now, without waiting for its load (``worker()`` waits later):
        the readable check hashes the files while the worker imports and loads. Call it only once the
        checkpoint's headers parsed here, as ``worker()`` would check first."""
        if self._handle is not None or self.legacy_command:
            return
        ckpt, base = self.checkpoint_paths()
        self.pool.prestart(self.spec, self.base_spec, ckpt, base)  # the embedded default's worker builds its path
        if self._prefetch is None:
            self._prefetch = self._start_prefetch(ckpt, base)

    def _start_prefetch(self, ckpt_path: str | None, base_path: str | None) -> CheckpointPrefetch:
        """What ``checkpoint applied`` reads of the files, read while the worker loads (pytest_wiw.session.prefetch)."""
        dtype = self.pool.settings.dtype
        if ckpt_path is None:
            return CheckpointPrefetch(None, dtype)
        ckpt = self._opened(ckpt_path)
        component = SWAPPED_COMPONENT.get(self.spec.finetune) if ckpt.format == "diffusers" else None
        base = None
        if component is not None:
            try:
                base = open_checkpoint(resolve_base_path(ckpt, base_path), self.variant)
            except CheckpointError:  # the worker and the checks say so
                component = None
        return CheckpointPrefetch(ckpt, dtype, base=base, component=component)

    def expected_fingerprints(self, ckpt: Checkpoint, keys: list[str], dtypes: dict[str, str]) -> dict:
        """The checkpoint's fingerprints of ``keys``, each cast to its running dtype (``checkpoint applied``):
        read while the worker loaded where that guess held, else now."""
        if self._prefetch is None:
            return file_fingerprints(ckpt, keys, dtypes)
        return self._prefetch.fingerprints(ckpt, keys, dtypes)

    def differing_components(self, ft: Checkpoint, base: Checkpoint, skip: tuple[str, ...]) -> list:
        """The components of the pipeline folder ``ft`` other than ``skip`` that differ from ``base``'s
        (pytest_wiw.checkpoints.pipeline_diff): compared while the worker loaded when it was the same base."""
        if self._prefetch is None:
            return differing_components(ft, base, skip=skip)
        return self._prefetch.differing_components(ft, base, skip)

    def ready(self) -> Ready:
        """The worker's ``ready`` report; WorkerNotReady when it failed to load."""
        handle = self.worker()
        if handle.ready is None:
            raise WorkerNotReady(handle.failure or "worker did not report ready")
        return handle.ready

    # -- requests and the floor -----------------------------------------------------------------
    def reference_request(self) -> GenerationRequest:
        """R: a deterministic start image at the model's input size and the first task's actions."""
        gen = self.ready().generation
        task = self.tasks()[0]
        return GenerationRequest(images=reference_image(gen["height"], gen["width"])[None], actions=[
            REFERENCE_ACTIONS[task]], task_type=task, seed=self.seed, request_model_name=self.spec.name)

    def tasks(self) -> tuple[str, ...]:
        """The tasks the loaded model serves (its own report, else the spec's)."""
        return tuple(self.ready().tasks or self.spec.tasks)

    def floor(self) -> Floor:
        if self._floor is None:
            handle = self.worker()
            r = self.reference_request()
            s, s2 = self.seed, self.seed + SEED_OFFSET
            g1 = self.store.run(handle, r, "ft", "G1 (R, seed s, first call)")
            # Without G1 the output contract fails and every check reading G2, G3 or Z is blocked by it: those
            # calls would cost minutes each on a real model (and a restart each, on a worker that dies on them).
            run = self.store.run if g1.frames is not None else _not_run_after(g1)
            if self.max_batch >= 2:
                batch = GenerationRequest(images=np.concatenate([r.images, r.images]), actions=r.actions * 2,
                                          task_type=r.task_type, seed=[s2, s], request_model_name=r.request_model_name)
                g2 = run(handle, batch, "ft", f"G2 (batch of R with seeds {s2}, {s})")
            else:
                g2 = run(handle, r.with_seed(s2), "ft", f"G2 (R, seed {s2}, alone: --wm-max-batch 1)")
            g3 = run(handle, r, "ft", "G3 (R, seed s, after G2)", repeat=1)
            z = None
            if self.spec.is_ft:
                label = "Z (R, seed s, zero-shot)"
                z = self._zero_shot(handle, r, label) if g1.frames is not None else run(handle, r, "zero_shot", label)
            g2_owner = OWNERS["G2"] if self.max_batch >= 2 else "seed sensitivity"
            for gen, owner in ((g1, OWNERS["G1"]), (g2, g2_owner), (g3, OWNERS["G3"]), (z, OWNERS["Z"])):
                if gen is not None:
                    gen.owner = owner
            self._floor = Floor(g1, g2, g3, z)
        return self._floor

    def reference_pair(self, name: str, request: GenerationRequest) -> tuple[Generation, Generation]:
        """The FT and zero-shot outputs for one reference episode's request (pytest_wiw.checks.ground_truth): the
        calls they cost are counted in ``reference_generations``; the zero-shot one goes through the baseline
        cache like Z."""
        handle = self.worker()
        before = handle.generation_calls
        try:
            ft = self.store.run(handle, request, "ft", f"FT on episode {name}")
            zero = self._zero_shot(handle, request, f"zero-shot on episode {name}")
        finally:
            self.reference_generations += handle.generation_calls - before
        return ft, zero

    def generate_example(self, request: GenerationRequest) -> tuple[np.ndarray, Result]:
        """One request of the property check on the FT weights, outside the result store (each example is drawn
        once): the calls it costs are counted in ``property_examples``, apart from the floor's."""
        handle = self.worker()
        before = handle.generation_calls
        try:
            return handle.generate(request, what="a property example")
        finally:
            self.property_examples += handle.generation_calls - before

    def _zero_shot(self, handle: WorkerHandle, r: GenerationRequest, label: str) -> Generation:
        """A zero-shot output: from the baseline cache when it holds it, else one call inside zero_shot()
        (then cached)."""
        if self.baseline_cache is None or handle.ready is None or not handle.ready.base_ckpt:
            return self.store.run(handle, r, "zero_shot", label)
        from pytest_wiw.session.baseline_cache import baseline_key

        ready = handle.ready
        key = baseline_key(
            base_sha256=open_checkpoint(ready.base_ckpt["path"], self.variant).sha256(), request_digest=r.content_digest(),
            seed=r.seed, wrapper=self.spec.wrapper, wrapper_version=ready.wrapper_version,
            environment=ready.environment, dtype=self.pool.settings.dtype, generation=ready.generation)
        cached = self.baseline_cache.get(key)
        if cached is not None:
            return Generation(f"{label}, from the baseline cache", frames=cached, cached=True)
        gen = self.store.run(handle, r, "zero_shot", label)
        if gen.frames is not None:
            self.baseline_cache.put(key, gen.frames)
        return gen

    # -- what the report says of this wm_type --------------------------------------------------
    def timeline(self, session_start: float) -> dict | None:
        """Where the session's time went for this wm_type's worker (pytest_wiw.session.timeline), or None
        when no worker was started."""
        if self._handle is None or self._handle.process is None:
            return None
        return self._handle.timeline.summary(session_start)

    def summary(self) -> dict:
        """The worker's side of the report: checkpoints, environment, generation settings, notes."""
        ready = self._handle.ready if self._handle is not None else None
        if not ready:
            failure = self._handle.failure if self._handle is not None else None
            return {"checkpoint": {"path": self.ckpt_arg} if self.ckpt_arg else None, "worker_failure": failure}
        notes = list(ready.notes)
        for gen in self._floor_generations():
            if gen.reply is not None:
                notes += [n for n in gen.reply.notes if n not in notes]
        return {"checkpoint": ready.ckpt, "base_checkpoint": ready.base_ckpt,
                "environment": ready.environment, "generation": ready.generation, "notes": notes,
                "legacy_command": self.legacy_command, "tasks": ready.tasks or list(self.spec.tasks),
                "wrapper_stats": self._latest_wrapper_stats(ready)}

    def _latest_wrapper_stats(self, ready: Ready) -> dict:
        """The wrapper's own figures (offload swaps...) as of its last floor generation, else as of ready."""
        replies = [g.reply for g in self._floor_generations() if g.reply is not None]
        latest = max(replies, key=lambda reply: reply.generations, default=None)
        return (latest or ready).wrapper_stats or {}

    def _floor_generations(self) -> list[Generation]:
        if self._floor is None:
            return []
        return [g for g in (self._floor.g1, self._floor.g2, self._floor.g3, self._floor.z) if g is not None]



def _not_run_after(g1: Generation):
    """A stand-in for ResultStore.run that sends nothing: the generation is recorded as not run because G1 failed."""
    def run(handle, request, variant, label, repeat=0) -> Generation:
        return Generation(label, error=f"not run: {g1.label} failed")
    return run


def reference_image(height: int, width: int) -> np.ndarray:
    """A fixed, image-like start observation (smooth gradients plus a few blocks), uint8 (3, H, W)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 127.5 + 127.5 * np.sin(2 * np.pi * (x + y) / max(height, width))
    img = np.stack([r, g, b])
    rng = np.random.default_rng(20251125)
    for _ in range(4):
        h0, w0 = rng.integers(0, height // 2 + 1), rng.integers(0, width // 2 + 1)
        img[:, h0 : h0 + height // 4 + 1, w0 : w0 + width // 4 + 1] = rng.integers(0, 256, size=(3, 1, 1))
    return img.round().clip(0, 255).astype(np.uint8)
