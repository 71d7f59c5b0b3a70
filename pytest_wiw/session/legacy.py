"""The WIW legacy adapter: run an unmodified World-in-World worker script under the same checks.

WIW's worker scripts (``downstream/api_models/*_model.py``) take the write end of a result pipe as
their last argument, read frames of a 4-byte big-endian length and a pickle of
``(client_id, task_id, payload)`` on stdin, and write ``(client_id, task_id, result)`` frames back on
the pipe. This module speaks that protocol and presents the worker to the pool exactly like a
native one, so the generation checks run against it unchanged.

Payload keys: ``b_action``, ``save_dirs``, ``b_image`` (uint8 B,C,H,W), ``return_objects``,
``request_model_name`` (sent whole, never cut per item), plus ``b_seed`` and ``task_type``, which
WIW's own scripts ignore (so they fail seed determinism: the finding the suite exists for). The
result carries ``pred_frames`` (uint8 B,T,C,H,W) and ``save_dirs``; a result with an ``error``
string is read as a rejected request. Pickle is read only from the pipe of a child the user
started, and then only plain containers and numpy arrays.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.api.worldmodel import check_request_limits
from pytest_wiw.errors import RequestError, WorkerError
from pytest_wiw.session import script_watchdog
from pytest_wiw.session.client import WorkerProcess
from pytest_wiw.wire.messages import ErrorReply, Ready, Result, Stats

CLIENT_ID = 0
# A legacy frame holds one result batch; the same bound as the native protocol.
MAX_LEGACY_FRAME = 2 * 1024**3 - 1
_LEN = struct.Struct(">I")
# WIW's manager pickles with the highest protocol its Python has (write_pickled_data); so do we.
REQUEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
# WIW's scripts fix their task at launch (``--task_type``, argparse default navigation); the payload has none.
DEFAULT_TASK = "navigation"
# What WIW's manager sends a worker to end it (worker_manager.receiver_for_worker); an EOF does not.
STOP_MESSAGE = "DONE"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_TASK_FLAG = "--task_type"

# What a result pickle may name, besides builtin containers: the numpy functions an array, a dtype or a
# scalar pickles through. numpy 2 writes ``numpy._core.*``, numpy 1.x ``numpy.core.*``; protocol 5 (WIW's
# HIGHEST_PROTOCOL) carries contiguous arrays through ``_frombuffer``, older protocols through
# ``_reconstruct``. Each name maps to this process's own numpy object, whichever numpy wrote it.
_NUMPY_NAMES = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    **{(f"{pkg}.{mod}", name): (mod, name)
       for pkg in ("numpy.core", "numpy._core")
       for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))},
}
_BUILTINS = {("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
             ("builtins", "frozenset"), ("builtins", "bytearray"), ("collections", "OrderedDict"),
             ("_codecs", "encode")}  # protocols 0-2 write bytes as _codecs.encode(str, "latin1")


def _numpy_object(where: tuple[str, str]):
    import importlib

    module, name = where
    if module == "numpy":
        return getattr(np, name)
    for pkg in ("numpy._core", "numpy.core"):  # this process's numpy: 2.x first, then 1.x
        try:
            return getattr(importlib.import_module(f"{pkg}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy here has no {module}.{name}")


class _ResultUnpickler(pickle.Unpickler):
    """Reads arrays, numpy scalars and builtin containers; refuses every other global by name, before it
    is imported or called (a result that would run code never runs it)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_NAMES:
            return _numpy_object(_NUMPY_NAMES[module, name])
        if (module, name) in _BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a legacy result may hold only numpy arrays, numpy scalars and builtin "
                                     f"containers, not {module}.{name}")


def read_result(body: bytes):
    """Unpickle one result frame of a WIW worker (the allowlist above); UnpicklingError names what it refused."""
    return _ResultUnpickler(io.BytesIO(body)).load()


#: WIW script argument -> the generation setting it fixes (downstream/api_models/*_model.py argparse names)
COMMAND_SETTINGS = {"height": "height", "width": "width", "out_height": "out_height", "out_width": "out_width",
                    "num_frames": "num_frames", "num_output_frames": "num_output_frames",
                    "num_inference_steps": "steps", "guidance_scale": "guidance_scale"}


def command_flags(command: str) -> dict[str, str]:
    """The ``--key=value`` and ``--key value`` arguments of a worker command, by key (the last one wins, as
    argparse does)."""
    argv = shlex.split(command)
    flags = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags[arg[2:]] = argv[i + 1]
    return flags


def command_settings(command: str, options: dict) -> dict[str, str]:
    """Generation settings the command fixes (its ``--height``, ``--num_output_frames``, ...), checked against
    ``--wm-opt``: the script generates at its own arguments, so a different --wm-opt is a usage error."""
    flags = command_flags(command)
    settings = {ours: flags[theirs] for theirs, ours in COMMAND_SETTINGS.items() if theirs in flags}
    for key, value in settings.items():
        if key in options and str(options[key]) != value:
            raise ValueError(f"--wm-opt {key}={options[key]} contradicts the worker command's "
                             f"{_flag_for(key)} {value}: the script generates at its own arguments")
    return settings


def _flag_for(setting: str) -> str:
    return "--" + next(theirs for theirs, ours in COMMAND_SETTINGS.items() if ours == setting)


def command_task(command: str, options: dict) -> tuple[str, str]:
    """The task a WIW worker command serves, and where that came from.

    ``--task_type=X`` or ``--task_type X`` in the command, else ``--wm-opt task_type=X``, else WIW's default
    (navigation). Both given and different is a usage error: the script would serve the command's.
    """
    from pytest_wiw.api.request import TASK_TYPES

    given = command_flags(command).get(_TASK_FLAG[2:])
    option = options.get("task_type")
    if given is not None and option is not None and option != given:
        raise ValueError(f"--wm-opt task_type={option} contradicts {_TASK_FLAG} {given} in the worker command; "
                         "the script serves the task it was started with")
    task, source = ((given, f"{_TASK_FLAG} in the worker command") if given is not None else
                    (option, "--wm-opt task_type") if option is not None else
                    (DEFAULT_TASK, f"WIW's default: the command has no {_TASK_FLAG}"))
    if task not in TASK_TYPES:
        raise ValueError(f"task_type {task!r} ({source}) is not one of {', '.join(TASK_TYPES)}")
    return task, source


class LegacyWorkerProcess(WorkerProcess):
    """A WIW worker script, started with the result pipe's write end as its last argument."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path, label: str, spec=None):
        self.spec = spec  # its request limits are checked here: the script knows none
        launch = plan_launch(command, env)
        read_fd, write_fd = os.pipe()
        self.label = label
        self.log_path = log_path
        self.notes = launch.notes
        self._log = open(log_path, "ab")
        self.started = time.monotonic()
        self._stop_requested = False
        try:
            # WIW's scripts print (tracebacks too, once their logger is set up) on stdout: both go to the log.
            self.proc = subprocess.Popen([*launch.argv, str(write_fd)], stdin=subprocess.PIPE, stdout=self._log,
                                         stderr=self._log, env=launch.env, cwd=launch.cwd, start_new_session=True,
                                         pass_fds=(write_fd,))
        finally:
            os.close(write_fd)  # only the child holds the write end: its exit closes the pipe
        self.reply_fd = read_fd
        self.extra_pipes = [os.fdopen(read_fd, "rb", buffering=0)]
        self.stopped_because = None
        self.task_id = 0
        self.generations = 0
        # where the script saves each item's video (the payload's save_dirs); removed with the script
        self.output_root = Path(tempfile.mkdtemp(prefix="pytest-wiw-legacy-"))
        self._watchdog: subprocess.Popen | None = None
        try:
            self._watchdog = _start_watchdog(self.proc.pid, self._log)
        except OSError:
            self.kill("could not be watched")
            raise

    # -- the client interface of WorkerProcess, answered by the script or here ---------------------
    def stats(self, timeout: float) -> Stats:
        """Counted here: the script reports nothing of itself."""
        self._ensure_running()
        return Stats(generations=self.generations)

    def generate_raw(self, request_header: dict, arrays: dict | None, variant: str, timeout: float,
                     what: str) -> Result | ErrorReply:
        """A request as the bad-request check sends it: parsed (and refused) here, since the script checks little."""
        try:
            request = GenerationRequest.from_wire(request_header, arrays or {})
        except RequestError as exc:
            return ErrorReply("RequestError", str(exc), stage="validate", field=exc.field)
        return self.generate(request, variant, timeout, what)

    def generate(self, request: GenerationRequest, variant: str, timeout: float, what: str) -> Result | ErrorReply:
        """Send ``request`` to the script as WIW's manager does, and read its result back."""
        if variant != "ft":
            return ErrorReply("NotImplementedError", "a legacy WIW worker has no zero-shot mode: run the base "
                              "type with its own --wm-worker-cmd")
        if self.spec is not None:
            try:  # the adapter checks the limits; the script checks the rest
                check_request_limits(request, self.spec)
            except RequestError as exc:
                return ErrorReply("RequestError", str(exc), stage="validate", field=exc.field)
        self.task_id += 1
        started = time.perf_counter()
        self._send_legacy(self._payload(request))
        result = self._receive_legacy(time.monotonic() + timeout, what)
        if isinstance(result, dict) and isinstance(result.get("error"), str):
            return ErrorReply("RequestError", result["error"], stage="validate")
        self.generations += 1
        frames = result.get("pred_frames") if isinstance(result, dict) else None
        if not isinstance(frames, np.ndarray):
            return ErrorReply("TypeError", f"the worker's result has no pred_frames array "
                              f"(got {type(frames).__name__})", stage="generate")
        return Result(frames=frames, seconds=time.perf_counter() - started, generations=self.generations)

    def _payload(self, req: GenerationRequest) -> dict:
        save_dirs = []
        for i in range(req.batch_size):
            folder = self.output_root / f"task{self.task_id}" / f"item{i}"
            folder.mkdir(parents=True, exist_ok=True)
            save_dirs.append(str(folder))
        return {"b_action": [a if isinstance(a, str) else list(a) for a in req.actions], "save_dirs": save_dirs,
                "b_image": np.ascontiguousarray(req.images), "return_objects": [True] * req.batch_size,
                "request_model_name": req.request_model_name, "b_seed": req.seeds, "task_type": req.task_type}

    def _send_legacy(self, payload: dict) -> None:
        self._ensure_running()
        body = pickle.dumps((CLIENT_ID, self.task_id, payload), protocol=REQUEST_PROTOCOL)
        try:
            self.proc.stdin.write(_LEN.pack(len(body)) + body)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("while a request was being sent") from None

    def _receive_legacy(self, deadline: float, what: str):
        self.awaiting = what
        (size,) = _LEN.unpack(self._read(4, deadline, what))
        if size > MAX_LEGACY_FRAME:
            self.kill("sent an oversized frame")
            raise WorkerError(f"{self.label}: result frame of {size} bytes exceeds the bound{self.log_tail_text()}")
        body = self._read(size, deadline, what)
        self.awaiting = None
        try:
            client_id, task_id, result = read_result(body)
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            self.kill("sent an unreadable result")
            raise WorkerError(f"{self.label}: unreadable result ({exc}){self.log_tail_text()}") from None
        if (client_id, task_id) != (CLIENT_ID, self.task_id):
            self.kill("answered another task")
            raise WorkerError(f"{self.label}: result for task {task_id} of client {client_id}, expected task "
                              f"{self.task_id} of client {CLIENT_ID}")
        return result


    def stop_frame(self) -> bytes:
        """What WIW's manager sends to stop a script: a framed pickle of the string "DONE" (WIW's workers ignore
        an EOF on stdin)."""
        body = pickle.dumps(STOP_MESSAGE, protocol=REQUEST_PROTOCOL)
        return _LEN.pack(len(body)) + body

    def kill(self, reason: str) -> None:
        """Kill the script's process group, then dismiss its watchdog and remove the videos it saved."""
        super().kill(reason)
        watchdog = self._watchdog
        if watchdog is not None and not watchdog.stdin.closed:
            try:
                watchdog.stdin.write(script_watchdog.DISMISS)
                watchdog.stdin.close()
                watchdog.wait(timeout=5.0)
            except (OSError, subprocess.TimeoutExpired):
                watchdog.kill()
        shutil.rmtree(self.output_root, ignore_errors=True)


def _start_watchdog(pgid: int, log) -> subprocess.Popen:
    """Start the process that kills the script's group ``pgid`` if this process dies (``script_watchdog``).
    Only this process holds the write end of its stdin; it writes to the script's log."""
    return subprocess.Popen([sys.executable, "-I", "-S", script_watchdog.__file__, str(pgid)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


@dataclass
class Launch:
    """How a WIW worker command is started: argv, environment, working directory, and what was adapted."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    notes: list[str]


def plan_launch(command: str, env: dict[str, str]) -> Launch:
    """Start a command the way WIW's manager does (it runs the line through a shell), without a shell.

    Leading ``NAME=value`` words (``CUDA_VISIBLE_DEVICES=0 python ...``) become environment variables. A
    script inside a WIW checkout (``<root>/downstream/api_models/x_model.py``, ``<root>/FTsvd/...``) runs with
    that root as its working directory and first on PYTHONPATH, as WIW's launcher arranges: its scripts
    import ``utils.logger`` and ``downstream.*`` and read cwd-relative files.
    """
    words = shlex.split(command)
    env = dict(env)
    notes = []
    while words and _ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        if name == "CUDA_VISIBLE_DEVICES" and env.get(name) not in (None, value):
            notes.append(f"CUDA_VISIBLE_DEVICES={value} from the worker command replaces the suite's {env[name]}")
        env[name] = value
    if not words:
        raise ValueError(f"the worker command {command!r} names no program")
    root = next((wiw_root(Path(w)) for w in words[1:3] if w.endswith(".py")), None)
    cwd = None
    if root is not None:
        cwd = str(root)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH")) if p)
        notes.append(f"WIW checkout {root}: the script runs there, with it first on PYTHONPATH")
    return Launch(words, env, cwd, notes)


def wiw_root(script: Path) -> Path | None:
    """The WIW checkout a script lies in (the folder holding ``downstream/api_models``), if any."""
    path = script if script.is_absolute() else Path.cwd() / script
    for folder in path.resolve().parents:
        if (folder / "downstream" / "api_models").is_dir():
            return folder
    return None


def legacy_ready(wm_type: str, pid: int, generation: dict, task: str, task_source: str) -> Ready:
    """The ``ready`` report of a legacy worker: it tells nothing of its weights, only that it runs and
    which task it was started for (every request the suite sends it is of that task)."""
    return Ready(wm_type=wm_type, pid=pid, load_seconds=None, generation=generation, tasks=[task], legacy=True,
                 notes=["legacy WIW worker: weights and load are not visible to the suite",
                        f"task tested: {task} ({task_source})"])
