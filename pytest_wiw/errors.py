"""The exceptions a wrapper, a checkpoint or a request raise, each with a message a user can act on."""


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
