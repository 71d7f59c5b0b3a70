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
import shlex
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..request import GenerationRequest
from ..errors import RequestError
from ..worldmodel import check_request_limits
from .client import WorkerError, WorkerProcess

CLIENT_ID = 0
# A legacy frame holds one result batch; the same bound as the native protocol.
MAX_LEGACY_FRAME = 2 * 1024**3 - 1
_LEN = struct.Struct(">I")
# What a result pickle may contain: numpy arrays and scalars, and builtin containers.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"),
    ("collections", "OrderedDict"),
}


class _ResultUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"a legacy result may hold only arrays and containers, not {module}.{name}")
        return super().find_class(module, name)


class LegacyWorkerProcess(WorkerProcess):
    """A WIW worker script, started with the result pipe's write end as its last argument."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path, label: str, spec=None):
        self.spec = spec  # its request limits are checked here: the script knows none
        read_fd, write_fd = os.pipe()
        argv = [*shlex.split(command), str(write_fd)]
        self.label = label
        self.log_path = log_path
        self._log = open(log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self._log, stderr=self._log, env=env,
                                         start_new_session=True, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)  # only the child holds the write end: its exit closes the pipe
        self.reply_fd = read_fd
        self.extra_pipes = [os.fdopen(read_fd, "rb", buffering=0)]
        self.stopped_because = None
        self.task_id = 0
        self.generations = 0
        self.output_root = Path(tempfile.mkdtemp(prefix="pytest-wiw-legacy-"))

    def request(self, header: dict, arrays: dict | None, timeout: float, what: str) -> tuple[dict, dict]:
        """Answer a native message: ``generate`` goes to the script, ``stats`` is answered here."""
        if header["type"] == "stats":
            self._ensure_running()
            return {"type": "stats", "generations": self.generations, "memory": {}}, {}
        if header["type"] != "generate":
            return _error("ProtocolError", "type", f"type: {header['type']!r} has no legacy equivalent"), {}
        if header.get("variant", "ft") != "ft":
            return _error("NotImplementedError", None, "a legacy WIW worker has no zero-shot mode: run the base "
                          "type with its own --wm-worker-cmd"), {}
        try:
            req = GenerationRequest.from_wire(header["request"], arrays or {})
            if self.spec is not None:
                check_request_limits(req, self.spec)
        except RequestError as exc:  # the adapter checks structure and limits; the script checks the rest
            return _error("RequestError", exc.field, str(exc), stage="validate"), {}
        self.task_id += 1
        started = time.perf_counter()
        self._send_legacy(self._payload(req))
        result = self._receive_legacy(time.monotonic() + timeout, what)
        if isinstance(result, dict) and isinstance(result.get("error"), str):
            return _error("RequestError", None, result["error"], stage="validate"), {}
        self.generations += 1
        frames = result.get("pred_frames") if isinstance(result, dict) else None
        if not isinstance(frames, np.ndarray):
            return _error("TypeError", None, f"the worker's result has no pred_frames array "
                          f"(got {type(frames).__name__})", stage="generate"), {}
        return {"type": "result", "seconds": time.perf_counter() - started, "nonfinite": False, "notes": [],
                "generations": self.generations, "memory": {}}, {"frames": frames}

    def _payload(self, req: GenerationRequest) -> dict:
        save_dirs = []
        for i in range(req.batch_size):
            folder = self.output_root / f"task{self.task_id}" / f"item{i}"
            folder.mkdir(parents=True, exist_ok=True)
            save_dirs.append(str(folder))
        return {"b_action": [a if isinstance(a, str) else list(a) for a in req.actions], "save_dirs": save_dirs,
                "b_image": np.ascontiguousarray(req.images), "return_objects": True,
                "request_model_name": req.request_model_name, "b_seed": req.seeds, "task_type": req.task_type}

    def _send_legacy(self, payload: dict) -> None:
        self._ensure_running()
        body = pickle.dumps((CLIENT_ID, self.task_id, payload), protocol=4)
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
            client_id, task_id, result = _ResultUnpickler(io.BytesIO(body)).load()
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            self.kill("sent an unreadable result")
            raise WorkerError(f"{self.label}: unreadable result ({exc}){self.log_tail_text()}") from None
        if (client_id, task_id) != (CLIENT_ID, self.task_id):
            self.kill("answered another task")
            raise WorkerError(f"{self.label}: result for task {task_id} of client {client_id}, expected task "
                              f"{self.task_id} of client {CLIENT_ID}")
        return result


def _error(error_type: str, field: str | None, message: str, stage: str = "protocol") -> dict:
    return {"type": "error", "stage": stage, "error_type": error_type, "field": field, "message": message,
            "traceback": ""}


def legacy_ready(wm_type: str, pid: int, generation: dict) -> dict:
    """The ``ready`` report of a legacy worker: it tells nothing of its weights, only that it runs."""
    return {"type": "ready", "legacy": True, "wm_type": wm_type, "pid": pid, "load_seconds": None,
            "memory": {"host_peak": None, "gpu_peak": None}, "fingerprints": {}, "fingerprint_keys": [],
            "unmapped_keys": [], "tensor_count": 0, "ckpt": None, "base_ckpt": None, "generation": generation,
            "tasks": None,
            "environment": {}, "notes": ["legacy WIW worker: weights and load are not visible to the suite"]}
