"""Every exception pytest-wiw raises on purpose, in one module, each with a message a user can act on.

Wrappers see the first four through pytest_wiw.api; the rest are the suite's own (the wire, the worker
process, the session, reference episodes, the embedded default).
"""


class WiwError(Exception):
    """Base class of every error pytest-wiw raises on purpose."""


class CheckpointError(WiwError):
    """A checkpoint is missing, unreadable, of the wrong kind, or does not fit its model.

    The message names the file (or field) and the likely cause.
    """


class RequestError(WiwError, ValueError):
    """A generation request is invalid. The message starts with the field it concerns."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class SpecError(WiwError, ValueError):
    """A registry entry (register_wm call) is incomplete or inconsistent."""


class UsageError(WiwError):
    """A command-line option or value is wrong; the message says what is accepted."""


# -- the wire and the worker process
class ProtocolError(Exception):
    """A frame is malformed, too large, or carries something other than plain arrays."""


class WorkerError(Exception):
    """The worker failed: it died, timed out, or could not load. The message carries its log tail."""


class WorkerDied(WorkerError):
    """The worker process ended without replying: ``how`` says how (``exited with status 1``), ``log_tail``
    holds its last log lines."""

    def __init__(self, message: str, how: str = "stopped answering", log_tail: list[str] | None = None):
        super().__init__(message)
        self.how = how
        self.log_tail = log_tail or []


class WorkerTimeout(WorkerError):
    pass


class RequestRejected(Exception):
    """The worker answered a request with an ``error`` reply (it keeps serving); ``reply`` is that
    pytest_wiw.wire.messages.ErrorReply."""

    def __init__(self, reply):
        self.reply = reply
        super().__init__(reply.message or "error")

    @property
    def field(self) -> str | None:
        return self.reply.field


class GenerationUnavailable(Exception):
    """A check's input generation failed; the check fails with this message."""


class WorkerNotReady(WorkerError):
    """The worker never reached ``ready``: every check that needs it is blocked by ``checkpoint loads``."""


# -- reference episodes
class EpisodeError(UsageError):
    """A reference episode is missing a file or holds a wrong value; the message names the file."""


# -- the embedded default
class TinyCheckpointError(CheckpointError):
    """The wrapper's ``make_tiny`` did not return the checkpoint it wrote (the embedded default has no files)."""


# -- the declared conformance checks
class CheckDeclarationError(WiwError):
    """A conformance check is named that pytest_wiw.api.checklist does not declare, or that declaration is
    inconsistent (an upstream check not declared, a cycle); the message names the check and the fix."""
