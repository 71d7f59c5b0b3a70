"""The session's worker pool: one worker process per (wm_type, checkpoint, device), started on first use.

A worker loads once and serves every check of the session; a worker that failed to load is not
restarted (every check that needs it reports the same failure). ``close_all`` ends every process
group; it runs at session end, on Ctrl-C, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .registry import GenerationDefaults, WMSpec
from .request import GenerationRequest
from .worker.client import WorkerError, WorkerProcess

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


class RequestRejected(Exception):
    """The worker answered a request with an ``error`` reply (it keeps serving)."""

    def __init__(self, reply: dict):
        self.reply = reply
        super().__init__(reply.get("message", "error"))

    @property
    def field(self) -> str | None:
        return self.reply.get("field")


class WorkerHandle:
    """A started worker: its ``ready`` report, and calls that count what they cost."""

    def __init__(self, key: WorkerKey, spec: WMSpec, process: WorkerProcess | None, settings: PoolSettings):
        self.key = key
        self.spec = spec
        self.process = process
        self.settings = settings
        self.ready: dict | None = None
        self.failure: str | None = None
        self.generation_calls = 0

    def generate(self, request: GenerationRequest, variant: str = "ft") -> tuple[np.ndarray, dict]:
        """Frames and the reply header; RequestRejected for an error reply, WorkerError if it died."""
        header, arrays = request.to_wire()
        return self.generate_raw(header, arrays, variant)

    def generate_raw(self, request_header: dict, arrays: dict, variant: str = "ft") -> tuple[np.ndarray, dict]:
        """Send a request as given, unvalidated (the bad-request check uses this)."""
        if self.failure:
            raise WorkerError(self.failure)
        reply, out = self.process.request({"type": "generate", "variant": variant, "request": request_header},
                                          arrays, self.settings.request_timeout,
                                          f"while generating ({self.key.wm_type}, {variant})")
        if reply["type"] == "result" or reply.get("stage") == "generate":
            self.generation_calls += 1  # rejected requests never reach the model and cost nothing
        if reply["type"] == "error":
            raise RequestRejected(reply)
        if reply["type"] != "result" or "frames" not in out:
            raise WorkerError(f"{self.key.wm_type}: expected a result, got a {reply['type']!r} message")
        return out["frames"], reply

    def stats(self) -> dict:
        if self.failure:
            raise WorkerError(self.failure)
        reply, _ = self.process.request({"type": "stats"}, None, self.settings.request_timeout, "answering stats")
        return reply


class WorkerPool:
    def __init__(self, settings: PoolSettings, on_progress=None):
        self.settings = settings
        self.on_progress = on_progress  # (label, progress frame) -> None, for the terminal
        self.handles: dict[WorkerKey, WorkerHandle] = {}
        self.loads = 0
        self.log_dir = Path(tempfile.mkdtemp(prefix="pytest-wiw-logs-"))
        atexit.register(self.close_all)

    def get(self, spec: WMSpec, base_spec: WMSpec | None, ckpt: str | None, base_ckpt: str | None) -> WorkerHandle:
        key = WorkerKey(spec.name, ckpt, base_ckpt, self.settings.device)
        if key not in self.handles:
            self.handles[key] = self._start(key, spec, base_spec)
        return self.handles[key]

    def _start(self, key: WorkerKey, spec: WMSpec, base_spec: WMSpec | None) -> WorkerHandle:
        device, env = device_environment(self.settings.device, self.settings.worker_index, self.settings.threads)
        if spec.name in self.settings.worker_cmds:
            return self._start_legacy(key, spec, env)
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
            handle = WorkerHandle(key, spec, None, self.settings)
            handle.failure = f"{label}: could not start {self.settings.python!r}: {exc}"
            return handle
        process.on_progress = self.on_progress
        handle = WorkerHandle(key, spec, process, self.settings)
        self.loads += 1
        try:
            reply, _ = process.receive(self.settings.load_timeout, "while loading the checkpoint")
        except WorkerError as exc:
            handle.failure = str(exc)
            return handle
        if reply["type"] == "ready":
            handle.ready = reply
        else:
            handle.failure = (f"{label} failed to load: {reply.get('error_type')}: {reply.get('message')}"
                              f"\n{reply.get('traceback', '')}{process.log_tail_text()}")
            process.kill("failed to load")
        return handle

    def _start_legacy(self, key: WorkerKey, spec: WMSpec, env: dict[str, str]) -> WorkerHandle:
        """A WIW worker script through the legacy adapter: ready as soon as it runs."""
        from .worker.legacy import LegacyWorkerProcess, legacy_ready

        command = self.settings.worker_cmds[spec.name]
        label = f"legacy worker {spec.name} ({command})"
        handle = WorkerHandle(key, spec, None, self.settings)
        try:
            generation = legacy_generation(spec, self.settings.options_for(spec.name))
            process = LegacyWorkerProcess(command, env, self.log_dir / f"{spec.name}.log", label, spec=spec)
        except (OSError, ValueError) as exc:
            handle.failure = f"{label}: could not start: {exc}"
            return handle
        self.loads += 1
        handle.process = process
        handle.ready = legacy_ready(spec.name, process.proc.pid, generation.to_dict())
        return handle

    def counts(self) -> dict[str, dict[str, int]]:
        """Worker loads and generation calls per wm_type: what the session cost (DESIGN §9)."""
        out: dict[str, dict[str, int]] = {}
        for key, handle in self.handles.items():
            entry = out.setdefault(key.wm_type, {"loads": 0, "generations": 0})
            entry["loads"] += 1 if handle.process is not None else 0
            entry["generations"] += handle.generation_calls
        return out

    def close_all(self) -> None:
        """End every worker's process group (idempotent). Logs stay in ``log_dir`` for post-mortems."""
        for handle in self.handles.values():
            if handle.process is not None:
                handle.process.close()


def legacy_generation(spec: WMSpec, options: dict) -> GenerationDefaults:
    """What a legacy worker is expected to produce: the spec's defaults or, for a type registered
    without any, the sizes given with --wm-opt."""
    from .worker.server import effective_generation

    if spec.defaults is not None:
        return effective_generation(spec.defaults, [], options)
    needed = ("height", "width", "out_height", "out_width", "num_frames", "num_output_frames")
    missing = [k for k in needed if k not in options]
    if missing:
        raise ValueError(f"{spec.name} has no registered generation defaults: give "
                         + " ".join(f"--wm-opt {k}=N" for k in missing))
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

