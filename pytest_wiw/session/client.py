"""The client side of a worker process: start it, wait for ``ready``, send requests, tear it down.

Every wait has a deadline; a worker that exits, closes its pipe or overruns a timeout is reported
at once with the last lines of its log, and is killed with its whole process group.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.errors import ProtocolError, WorkerDied, WorkerError, WorkerTimeout
from pytest_wiw.wire.frames import _LEN, decode_body, encode_frame
from pytest_wiw.wire.messages import ErrorReply, Ready, Result, Stats, reply_from_wire

# How long a worker gets to exit after ``shutdown`` before its process group is killed.
SHUTDOWN_GRACE_S = 10.0
# An error message carries the last LOG_TAIL_LINES lines of the worker's log, each cut to
# LOG_LINE_CHARS characters, read from its last LOG_TAIL_BYTES: a model that floods its log with
# megabytes (one progress bar without newlines, a dump of a tensor) still gives a message one can read.
LOG_TAIL_LINES = 20
LOG_LINE_CHARS = 500
LOG_TAIL_BYTES = 64 * 1024
_POLL_S = 0.2
# Its pipe closed, a dying worker still runs its interpreter's shutdown (threads, atexit): on a loaded
# machine that took over 2 s. The wait ends as soon as it exits; its status names the cause.
EXIT_WAIT_S = 15.0


class WorkerProcess:
    """One running worker process and the pipe pair to it."""

    #: What the client is waiting for the worker to finish (``"while generating (...)"``); None when idle.
    #: A worker stopped while busy is killed at once: it would not read a ``shutdown`` until it finished.
    awaiting: str | None = None

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, label: str):
        self.label = label
        self.log_path = log_path
        #: time.monotonic() when the process was started (a load timeout counts from here)
        self.started = time.monotonic()
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, start_new_session=True)
        self.reply_fd = self.proc.stdout.fileno()
        self.extra_pipes: list = []  # further pipe ends a subclass owns, closed at teardown
        self.stopped_because: str | None = None
        self._stop_requested = False
        #: Called with each ``progress`` frame (stage, what, done, total, unit) while waiting for a reply.
        self.on_progress: Callable[[str, dict], None] | None = None
        #: The checkpoint paths the worker resolved before loading (the embedded default's tiny files).
        self.resolved: dict | None = None

    @classmethod
    def start(cls, python: str, config: dict, env: dict[str, str], log_path: Path, label: str) -> "WorkerProcess":
        argv = [python, "-m", "pytest_wiw.worker", json.dumps(config)]
        return cls(argv, env, log_path, label)

    # -- messaging ---------------------------------------------------------------------------
    def send(self, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        self._ensure_running()
        try:
            self.proc.stdin.write(encode_frame(header, arrays))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("while a request was being sent") from None

    def receive(self, timeout: float, what: str) -> tuple[dict, dict[str, np.ndarray]]:
        """The next reply from the worker within ``timeout`` seconds; progress frames go to on_progress."""
        deadline = time.monotonic() + timeout
        saw_progress = False
        self.awaiting = what
        while True:
            (total,) = _LEN.unpack(self._read(4, deadline, what))
            try:
                header, arrays = decode_body(total, lambda n: self._read(n, deadline, what))
            except ProtocolError as exc:
                self.kill(f"sent a malformed frame ({exc})")
                raise WorkerError(f"{self.label}: {exc}{self.log_tail_text()}") from None
            if header.get("type") == "resolved":
                self.resolved = header
                continue
            if header.get("type") != "progress":
                self.awaiting = None
                if saw_progress and self.on_progress is not None:
                    self.on_progress(self.label, None)
                return header, arrays
            saw_progress = True
            if self.on_progress is not None:
                self.on_progress(self.label, header)

    # -- the client interface (the legacy adapter offers the same) ---------------------------
    def wait_ready(self, timeout: float) -> Ready | ErrorReply:
        """The worker's first reply: ``ready``, or the ``error`` its load ended with."""
        return self._reply(timeout, "while loading the checkpoint", (Ready, ErrorReply))

    def generate(self, request: GenerationRequest, variant: str, timeout: float, what: str) -> Result | ErrorReply:
        """Run ``request`` on the FT weights (``variant="ft"``) or within zero_shot() (``"zero_shot"``)."""
        header, arrays = request.to_wire()
        return self.generate_raw(header, arrays, variant, timeout, what)

    def generate_raw(self, request_header: dict, arrays: dict[str, np.ndarray] | None, variant: str, timeout: float,
                     what: str) -> Result | ErrorReply:
        """Send a request as given, unvalidated (the bad-request check sends malformed ones on purpose)."""
        self.send({"type": "generate", "variant": variant, "request": request_header}, arrays)
        return self._reply(timeout, what, (Result, ErrorReply))

    def stats(self, timeout: float) -> Stats:
        self.send({"type": "stats"})
        return self._reply(timeout, "answering stats", (Stats,))

    def _reply(self, timeout: float, what: str, expected: tuple[type, ...]):
        header, arrays = self.receive(timeout, what)
        try:
            reply = reply_from_wire(header, arrays)
        except ProtocolError as exc:
            self.kill(f"sent a malformed reply ({exc})")
            raise WorkerError(f"{self.label}: {exc}{self.log_tail_text()}") from None
        if not isinstance(reply, expected):
            raise WorkerError(f"{self.label}: expected a {' or '.join(c.TYPE for c in expected)} message {what}, "
                              f"got a {reply.TYPE!r} message")
        return reply

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        fd = self.reply_fd
        chunks, got = [], 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill(f"timed out {what}")
                raise WorkerTimeout(f"{self.label}: no reply after the timeout {what}; the worker was stopped"
                                    f"{self.log_tail_text()}")
            ready, _, _ = select.select([fd], [], [], min(_POLL_S, remaining))
            if not ready:
                if self.proc.poll() is not None:
                    raise self._died(what)
                continue
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise self._died(what)
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _ensure_running(self) -> None:
        if self.stopped_because:
            raise WorkerError(f"{self.label}: the worker was stopped earlier: it {self.stopped_because}")
        if self.proc.poll() is not None:
            raise self._died("before the request")

    def _died(self, what: str) -> WorkerDied:
        try:
            code = self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        self.stopped_because = self.stopped_because or f"exited with status {code}"
        cause = describe_exit(code)
        hint = " (a wrapper that calls sys.exit() or os._exit(0)?)" if code == 0 else ""
        self.kill("died")
        return WorkerDied(f"{self.label}: the worker {cause} {what}, without replying{hint}{self.log_tail_text()}",
                          how=cause, log_tail=self.log_tail())

    # -- logs and teardown -------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last ``lines`` lines of the worker's log, each cut to LOG_LINE_CHARS characters."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.log_path) - LOG_TAIL_BYTES))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return [_cut(line) for line in deque(text.splitlines(), maxlen=lines)]

    def log_tail_text(self) -> str:
        tail = self.log_tail()
        if not tail:
            return f" (its log {self.log_path} is empty)"
        return f"\nlast lines of its log ({self.log_path}):\n    " + "\n    ".join(tail)

    def kill(self, reason: str) -> None:
        """Kill the worker's whole process group now."""
        self.stopped_because = self.stopped_because or reason
        _killpg(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        self._close_pipes()

    def stop_frame(self) -> bytes:
        """The bytes that ask this worker to exit."""
        return encode_frame({"type": "shutdown"})

    def request_stop(self) -> None:
        """Ask a running, idle worker to exit, without waiting for it (``close`` waits): the pytest process
        can write its report while the worker frees its memory."""
        if self._stop_requested or self.awaiting or self.stopped_because or self.proc.poll() is not None:
            return
        self._stop_requested = True
        try:
            self.proc.stdin.write(self.stop_frame())
            self.proc.stdin.flush()
        except OSError:
            pass

    def close(self) -> None:
        """Ask the worker to shut down; kill its process group if it does not exit in time, or at once
        when it is busy with a request (the session was interrupted: it would not read ``shutdown``)."""
        if self.awaiting and not self.stopped_because:
            self.stopped_because = f"was stopped {self.awaiting}, when the session ended or was interrupted"
        self.request_stop()
        if self._stop_requested and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=SHUTDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                self.stopped_because = f"did not exit within {SHUTDOWN_GRACE_S:.0f} s of being asked to stop"
        # Whatever the worker started (dataloaders, compilers) is in its process group: end them too.
        self.kill("was shut down at the end of the session")

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, *self.extra_pipes):
            if pipe is None:
                continue
            try:
                pipe.close()
            except OSError:
                pass
        self._log.close()


def _cut(line: str) -> str:
    if len(line) <= LOG_LINE_CHARS:
        return line
    return f"{line[:LOG_LINE_CHARS]} [line cut at {LOG_LINE_CHARS} characters]"


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int | None) -> str:
    """How a worker ended, from its exit code: ``exited with status 3``, ``was killed by SIGSEGV``."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {code}"
