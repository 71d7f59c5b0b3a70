"""The session's worker pool: one worker process per (wm_type, checkpoint, device), started on first use.

A worker loads once and serves every check of the session; one that dies after it was ready is started
again for the checks that remain (WorkerHandle), one that failed to load is not
restarted (every check that needs it reports the same failure). ``close_all`` ends every process
group; it runs at session end, on Ctrl-C, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pytest_wiw.api.registry import GenerationDefaults, WMSpec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.errors import RequestRejected, WorkerError
from pytest_wiw.session.client import WorkerProcess
from pytest_wiw.session.timeline import WorkerTimeline
from pytest_wiw.wire.messages import ErrorReply, Ready, Result, Stats

# A worker that died after it was ready is started again at most this often per session: once per cause is
# the intent; a worker that dies on every request would otherwise be reloaded for every check.
MAX_RESTARTS = 3
# cuBLAS needs a fixed workspace for deterministic results (CUDA's documented setting).
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class PoolSettings:
    """Everything from the command line that shapes how workers start."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    deterministic: bool = True
    load_timeout: float = 1800.0
    request_timeout: float = 1800.0
    python: str = sys.executable
    tiny_cache: str = ""
    options: dict = field(default_factory=dict)
    #: wm_type -> the options a --wm-preset gives it (under ``options``, which win)
    preset_options: dict = field(default_factory=dict)
    worker_index: int = 0
    #: wm_type -> the command line of a WIW worker script run through the legacy adapter
    worker_cmds: dict = field(default_factory=dict)

    def options_for(self, wm_type: str) -> dict:
        """The options a worker of ``wm_type`` gets: its preset's values, with the --wm-opt values over them."""
        return {**self.preset_options.get(wm_type, {}), **self.options}


@dataclass(frozen=True)
class WorkerKey:
    wm_type: str
    ckpt: str | None
    base_ckpt: str | None
    device: str


class WorkerHandle:
    """A started worker: its ``ready`` report, and calls that count what they cost.

    A worker that dies or hangs after it was ready is started again, at most MAX_RESTARTS times, when a
    later check needs it: the call that killed it fails, the checks after it still judge the model.
    Each restart is one more load, counted with its reason. A worker that never got ready is not retried.
    """

    def __init__(self, key: WorkerKey, spec: WMSpec, process: WorkerProcess | None, settings: PoolSettings,
                 launch=None):
        self.key = key
        self.spec = spec
        self.process = process
        self.settings = settings
        self.ready: Ready | None = None
        self.failure: str | None = None
        self.generation_calls = 0
        self.loads = 1 if process is not None else 0
        #: why the worker was started again, one entry per restart
        self.restarts: list[str] = []
        self._launch = launch  # () -> (process, ready, failure): starts a fresh process of this worker
        #: when it was spawned, its start-up and every call: where the session's time went (report figures)
        self.timeline = WorkerTimeline(process.started if process is not None else time.monotonic())

    def set_ready(self, ready: Ready | None, failure: str | None) -> None:
        self.ready, self.failure = ready, failure
        if ready is not None:
            self.timeline.startup_seconds = ready.startup_seconds

    def generate(self, request: GenerationRequest, variant: str = "ft", what: str = "a generation"
                 ) -> tuple[np.ndarray, Result]:
        """Frames and the result; RequestRejected for an error reply, WorkerError if it died. ``what`` names the
        call in the session's timeline."""
        self._revive_if_stopped()
        with self._timed(what):
            return self._counted(self.process.generate(request, variant, self.settings.request_timeout,
                                                       self._generating(variant)))

    def generate_raw(self, request_header: dict, arrays: dict, variant: str = "ft") -> tuple[np.ndarray, Result]:
        """Send a request as given, unvalidated (the bad-request check uses this)."""
        self._revive_if_stopped()
        with self._timed("a bad request"):
            return self._counted(self.process.generate_raw(request_header, arrays, variant,
                                                           self.settings.request_timeout, self._generating(variant)))

    @contextlib.contextmanager
    def _timed(self, what: str):
        """Records the call in the timeline, answered or not."""
        sent = time.monotonic()
        try:
            yield
        finally:
            self.timeline.call(what, sent)

    def _generating(self, variant: str) -> str:
        return f"while generating ({self.key.wm_type}, {variant})"

    def _counted(self, reply: Result | ErrorReply) -> tuple[np.ndarray, Result]:
        if isinstance(reply, Result) or reply.stage == "generate":
            self.generation_calls += 1  # rejected requests never reach the model and cost nothing
        if isinstance(reply, ErrorReply):
            raise RequestRejected(reply)
        return reply.frames, reply

    def stats(self) -> Stats:
        self._revive_if_stopped()
        with self._timed("a stats request"):
            return self.process.stats(self.settings.request_timeout)

    def release(self) -> None:
        """No check left in this session needs the worker: ask it to exit now, so that its memory is free for the
        next wm_type's worker (pytest_wiw.plugin.worker_order). A later call starts it again: one more load,
        listed in ``restarts``."""
        if self.process is None or self.timeline.released is not None:
            return
        self.process.request_stop()
        self.timeline.released = time.monotonic()

    def _revive_if_stopped(self) -> None:
        """Start the worker again if it died or was stopped since it was ready (WorkerError if it may not be)."""
        if self.failure:
            raise WorkerError(self.failure)
        process = self.process
        released = self.timeline.released is not None
        if not released and not process.stopped_because and process.proc.poll() is None:
            return
        if released:  # a check of another wm_type asked for it after its own last check (an honest baseline)
            process.close()
            self.timeline.released = None
        cause = ("was released after its last check, then needed again" if released
                 else process.stopped_because or f"exited with status {process.proc.returncode}")
        if self._launch is None or len(self.restarts) >= MAX_RESTARTS:
            raise WorkerError(f"{process.label}: the worker {cause}; it was already started again "
                              f"{len(self.restarts)} time(s) this session, so it is not restarted again")
        process.kill(cause)
        self.restarts.append(cause)
        self.loads += 1
        sent = time.monotonic()
        self.process, ready, failure = self._launch()
        self.timeline.call("a restart", sent)
        if failure is not None:
            self.failure = f"restarted after it {cause}, the worker failed to load again: {failure}"
            raise WorkerError(self.failure)
        self.ready = dataclasses.replace(ready, restarted_because=list(self.restarts))


class WorkerPool:
    def __init__(self, settings: PoolSettings, on_progress=None):
        self.settings = settings
        self.on_progress = on_progress  # (label, progress frame) -> None, for the terminal
        self.handles: dict[WorkerKey, WorkerHandle] = {}
        #: workers started by ``prestart`` whose ready report nobody has waited for yet: (process, failure)
        self.spawned: dict[WorkerKey, tuple[WorkerProcess | None, str | None]] = {}
        self.log_dir = Path(tempfile.mkdtemp(prefix="pytest-wiw-logs-"))
        atexit.register(self.close_all)

    def get(self, spec: WMSpec, base_spec: WMSpec | None, ckpt: str | None, base_ckpt: str | None) -> WorkerHandle:
        key = WorkerKey(spec.name, ckpt, base_ckpt, self.settings.device)
        if key not in self.handles:
            self.handles[key] = self._start(key, spec, base_spec)
        return self.handles[key]

    def prestart(self, spec: WMSpec, base_spec: WMSpec | None, ckpt: str | None, base_ckpt: str | None) -> None:
        """Start the worker process of these checkpoints without waiting for it to load, so that the pytest
        process can do its own work on the checkpoint (hash it) while the worker imports and loads; ``get``
        then waits for its ready report. Nothing for a worker started already or a legacy script."""
        key = WorkerKey(spec.name, ckpt, base_ckpt, self.settings.device)
        if key in self.handles or key in self.spawned or spec.name in self.settings.worker_cmds:
            return
        self.spawned[key] = self._spawn(key, spec, base_spec)

    def _start(self, key: WorkerKey, spec: WMSpec, base_spec: WMSpec | None) -> WorkerHandle:
        def launch():
            return self._launch(key, spec, base_spec)

        spawned = self.spawned.pop(key, None)
        process, ready, failure = launch() if spawned is None else self._await_ready(*spawned)
        handle = WorkerHandle(key, spec, process, self.settings, launch=launch)
        handle.set_ready(ready, failure)
        return handle

    def _launch(self, key: WorkerKey, spec: WMSpec, base_spec: WMSpec | None):
        """Start one worker process: (process or None, its ready report or None, why it failed or None)."""
        if spec.name in self.settings.worker_cmds:
            _, env = device_environment(self.settings.device, self.settings.worker_index, self.settings.threads)
            return self._launch_legacy(spec, env)
        return self._await_ready(*self._spawn(key, spec, base_spec))

    def _spawn(self, key: WorkerKey, spec: WMSpec, base_spec: WMSpec | None):
        """Start one native worker process: (process, None), or (None, why it could not start)."""
        device, env = device_environment(self.settings.device, self.settings.worker_index, self.settings.threads)
        config = {
            "spec": spec.to_dict(), "base_spec": base_spec.to_dict() if base_spec else None,
            "ckpt": key.ckpt, "base_ckpt": key.base_ckpt, "device": device, "dtype": self.settings.dtype,
            "threads": self.settings.threads, "deterministic": self.settings.deterministic,
            "options": self.settings.options_for(spec.name),
            "tiny_cache": self.settings.tiny_cache,
        }
        log = self.log_dir / f"{spec.name}.log"
        label = f"worker {spec.name} ({device})"
        try:
            process = WorkerProcess.start(self.settings.python, config, env, log, label)
        except OSError as exc:
            return None, f"{label}: could not start {self.settings.python!r}: {exc}"
        process.on_progress = self.on_progress
        return process, None

    def _await_ready(self, process: WorkerProcess | None, failure: str | None):
        """(process, its ready report, None), or what went wrong instead; the load timeout counts from the start."""
        if process is None:
            return None, None, failure
        label = process.label
        try:
            left = self.settings.load_timeout - (time.monotonic() - process.started)
            reply = process.wait_ready(max(left, 0.0))
        except WorkerError as exc:
            return process, None, str(exc)
        if isinstance(reply, Ready):
            return process, reply, None
        process.kill("failed to load")
        return process, None, (f"{label} failed to load: {reply.error_type}: {reply.message}"
                               f"\n{reply.traceback}{process.log_tail_text()}")

    def _launch_legacy(self, spec: WMSpec, env: dict[str, str]):
        """A WIW worker script through the legacy adapter: ready as soon as it runs."""
        from pytest_wiw.session.legacy import LegacyWorkerProcess, command_settings, command_task, legacy_ready

        command = self.settings.worker_cmds[spec.name]
        label = f"legacy worker {spec.name} ({command})"
        try:
            # the script generates at its own arguments: they win over a preset, and --wm-opt may not contradict them
            generation = legacy_generation(spec, {**self.settings.options_for(spec.name),
                                                  **command_settings(command, self.settings.options)})
            task, task_source = command_task(command, self.settings.options)
            process = LegacyWorkerProcess(command, env, self.log_dir / f"{spec.name}.log", label, spec=spec)
        except (OSError, ValueError) as exc:
            return None, None, f"{label}: could not start: {exc}"
        ready = legacy_ready(spec.name, process.proc.pid, generation.to_dict(), task, task_source)
        ready.notes += process.notes
        return process, ready, None

    def counts(self) -> dict[str, dict[str, int]]:
        """Worker loads, generation calls and restarts per wm_type: what the session cost (DESIGN §9)."""
        out: dict[str, dict[str, int]] = {}
        for key, handle in self.handles.items():
            entry = out.setdefault(key.wm_type, {"loads": 0, "generations": 0, "restarts": []})
            entry["loads"] += handle.loads
            entry["generations"] += handle.generation_calls
            entry["restarts"] += handle.restarts
        return out

    def request_stop_all(self) -> None:
        """Ask every idle worker to exit, without waiting (``close_all`` waits and kills)."""
        for process in self._processes():
            process.request_stop()

    def _processes(self) -> list[WorkerProcess]:
        started = [h.process for h in self.handles.values()] + [p for p, _ in self.spawned.values()]
        return [p for p in started if p is not None]

    def close_all(self) -> None:
        """End every worker's process group (idempotent). Logs stay in ``log_dir`` for post-mortems."""
        for process in self._processes():
            process.close()


def legacy_generation(spec: WMSpec, options: dict) -> GenerationDefaults:
    """What a legacy worker is expected to produce: the spec's defaults or, for a type registered
    without any, the sizes given; ``options`` holds --wm-opt and the sizes in the worker command."""
    from pytest_wiw.runtime.settings import effective_generation

    if spec.defaults is not None:
        return effective_generation(spec.defaults, [], options)
    needed = ("height", "width", "out_height", "out_width", "num_frames", "num_output_frames")
    missing = [k for k in needed if k not in options]
    if missing:
        raise ValueError(f"{spec.name} has no registered generation defaults: give "
                         + " ".join(f"--{k}=N" for k in missing) + " in the worker command (or --wm-opt)")
    return effective_generation(GenerationDefaults(**{k: int(options[k]) for k in needed}), [], options)


def device_environment(device: str, worker_index: int, threads: int) -> tuple[str, dict[str, str]]:
    """The device string the worker uses and the environment it starts with.

    A CUDA worker sees exactly one GPU: xdist worker gwN takes entry N mod len(devices) of the
    CUDA_VISIBLE_DEVICES this process inherited (never overriding the user's choice of GPUs).
    """
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTEST_XDIST_WORKER", None)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu", env
    visible = visible_gpus()
    if not visible:
        raise WorkerError("--wm-device cuda: no GPU is visible (CUDA_VISIBLE_DEVICES empty or no driver)")
    if ":" in device:
        index = int(device.split(":", 1)[1])
        if index >= len(visible):
            raise WorkerError(f"--wm-device {device}: only {len(visible)} GPU(s) visible")
    else:
        index = worker_index % len(visible)
    env["CUDA_VISIBLE_DEVICES"] = visible[index]
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    return "cuda:0", env


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries; CUDA is never initialised here."""
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [d.strip() for d in inherited.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def xdist_worker_index() -> int:
    """N for xdist worker gwN, 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0

