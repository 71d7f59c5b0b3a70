"""The messages a worker sends back, typed: ``ready``, ``result``, ``error`` and ``stats``.

The worker builds them and writes ``to_wire()``; the client reads a frame back with ``reply_from_wire``; the
legacy adapter builds the same classes itself (it has no wire of ours to cross). Nested figures (memory, the
checkpoint's description, the environment, fingerprints) stay plain JSON dicts: they go into the report as they
are. Requests travel as ``GenerationRequest.to_wire()``; ``progress`` and ``resolved`` frames are the client's
own business (pytest_wiw.session.client).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pytest_wiw.errors import ProtocolError


@dataclass
class _Message:
    """A reply: a JSON header of its fields (arrays apart), tagged with its ``type``."""

    TYPE: ClassVar[str]
    #: fields that travel as arrays beside the header, not in it
    ARRAYS: ClassVar[tuple[str, ...]] = ()

    def to_wire(self) -> tuple[dict, dict[str, np.ndarray]]:
        header = {"type": self.TYPE}
        arrays = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.ARRAYS:
                arrays[f.name] = value
            else:
                header[f.name] = value
        return header, arrays

    @classmethod
    def from_wire(cls, header: dict, arrays: dict[str, np.ndarray] | None = None):
        """The message in ``header`` (and ``arrays``); ProtocolError names a missing field. Unknown keys are
        ignored: a newer worker may send more than this client reads."""
        arrays = arrays or {}
        values = {}
        for f in dataclasses.fields(cls):
            source = arrays if f.name in cls.ARRAYS else header
            if f.name in source:
                values[f.name] = source[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.TYPE} message without {f.name!r} (keys: {', '.join(sorted(header))})")
        return cls(**values)


@dataclass
class Ready(_Message):
    """The worker loaded its model: what it loaded, how long it took, what the model runs."""

    TYPE: ClassVar[str] = "ready"

    wm_type: str
    pid: int
    #: seconds the wrapper's constructor took (None: a legacy script, whose load the suite cannot see)
    load_seconds: float | None
    #: the generation settings in force (GenerationDefaults.to_dict())
    generation: dict
    memory: dict = field(default_factory=lambda: {"host_peak": None, "gpu_peak": None})
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    #: Checkpoint.describe() of the FT / base checkpoint (None when the suite cannot see it)
    ckpt: dict | None = None
    base_ckpt: dict | None = None
    #: running-tensor fingerprints by checkpoint key, and the keys the suite fingerprints
    fingerprints: dict = field(default_factory=dict)
    fingerprint_keys: list[str] = field(default_factory=list)
    unmapped_keys: list[str] = field(default_factory=list)
    tensor_count: int = 0
    weight_audit: dict | None = None
    weight_audit_seconds: float | None = None
    #: False when the wrapper said its weights are mapped in a way the suite cannot follow (maps_weights())
    maps_weights: bool = True
    wrapper_version: str = "0"
    wrapper_stats: dict = field(default_factory=dict)
    #: wall seconds from the worker's process start to this reply: imports, load, audit (None: not measured)
    startup_seconds: float | None = None
    #: an unmodified WIW worker script behind the legacy adapter
    legacy: bool = False
    #: why the pool started this worker again, one entry per restart (set by the pool, never sent)
    restarted_because: list[str] = field(default_factory=list)


@dataclass
class Result(_Message):
    """A generated batch and what it cost."""

    TYPE: ClassVar[str] = "result"
    ARRAYS: ClassVar[tuple[str, ...]] = ("frames",)

    #: uint8 (B, T, 3, H, W) as generate() returned it (the output contract check judges it)
    frames: np.ndarray
    seconds: float
    variant: str = "ft"
    #: the wrapper saw a NaN or infinity on the way (WorldModel.finish_video)
    nonfinite: bool = False
    notes: list[str] = field(default_factory=list)
    #: generate() calls this worker has run, this one included
    generations: int = 0
    memory: dict = field(default_factory=dict)
    wrapper_stats: dict = field(default_factory=dict)


@dataclass
class ErrorReply(_Message):
    """A request (or the load) failed; the worker keeps serving unless ``stage`` is ``load``."""

    TYPE: ClassVar[str] = "error"

    error_type: str
    message: str
    #: load | validate | generate | protocol
    stage: str = "protocol"
    #: the request field the error names, when it names one
    field: str | None = None
    traceback: str = ""


@dataclass
class Stats(_Message):
    """What the worker has done and holds, asked for at any time."""

    TYPE: ClassVar[str] = "stats"

    generations: int
    memory: dict = field(default_factory=dict)
    uptime: float | None = None
    weight_audit_seconds: float | None = None
    wrapper_stats: dict = field(default_factory=dict)


#: a reply type -> its class
REPLIES: dict[str, type[_Message]] = {cls.TYPE: cls for cls in (Ready, Result, ErrorReply, Stats)}


def reply_from_wire(header: dict, arrays: dict[str, np.ndarray] | None = None) -> Any:
    """The typed reply a frame carries; ProtocolError for an unknown type or a missing field."""
    cls = REPLIES.get(header.get("type"))
    if cls is None:
        raise ProtocolError(f"unknown reply type {header.get('type')!r}")
    return cls.from_wire(header, arrays)
