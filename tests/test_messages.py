"""The typed replies (pytest_wiw.wire.messages): through a real frame and back, and what a bad one says."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest

from pytest_wiw.errors import ProtocolError
from pytest_wiw.session.client import WorkerProcess
from pytest_wiw.session.legacy import LegacyWorkerProcess, legacy_ready
from pytest_wiw.wire.frames import read_frame, write_frame
from pytest_wiw.wire.messages import ErrorReply, Ready, Result, Stats, reply_from_wire

FRAMES = np.arange(2 * 3 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 3, 4, 5)


def through_a_frame(message):
    stream = io.BytesIO()
    write_frame(stream, *message.to_wire())
    stream.seek(0)
    return reply_from_wire(*read_frame(stream))


@pytest.mark.parametrize("message", [
    Ready(wm_type="svd", pid=7, load_seconds=1.5, generation={"height": 8}, notes=["n"], weight_audit={"ok": True},
          restarted_because=["died"]),
    Result(frames=FRAMES, seconds=0.25, variant="zero_shot", nonfinite=True, generations=3, wrapper_stats={"a": 1}),
    ErrorReply(error_type="RequestError", message="images: too large", stage="validate", field="images"),
    Stats(generations=4, memory={"host_rss": 1}, uptime=2.0),
], ids=lambda m: m.TYPE)
def test_each_reply_survives_a_frame(message):
    back = through_a_frame(message)
    assert type(back) is type(message)
    if isinstance(message, Result):
        np.testing.assert_array_equal(back.frames, FRAMES)
        assert back.frames.dtype == np.uint8
        back.frames = message.frames
    assert back == message


def test_a_reply_missing_a_field_names_it():
    header, _ = Stats(generations=1).to_wire()
    del header["generations"]
    with pytest.raises(ProtocolError, match="stats message without 'generations'"):
        reply_from_wire(header)


def test_a_result_without_its_frames_is_refused():
    header, _ = Result(frames=FRAMES, seconds=1.0).to_wire()
    with pytest.raises(ProtocolError, match="result message without 'frames'"):
        reply_from_wire(header, {})


def test_unknown_reply_type_is_refused_and_unknown_keys_are_ignored():
    with pytest.raises(ProtocolError, match="unknown reply type 'hello'"):
        reply_from_wire({"type": "hello"})
    header, _ = Stats(generations=2).to_wire()
    assert reply_from_wire({**header, "from_a_newer_worker": 1}) == Stats(generations=2)


def test_the_legacy_adapter_offers_the_native_client_interface():
    """The pool talks to both through generate / generate_raw / stats with the same signatures; the legacy
    adapter answers them itself (typed replies, no frame of ours in between)."""
    for name in ("generate", "generate_raw", "stats"):
        native, legacy = getattr(WorkerProcess, name), getattr(LegacyWorkerProcess, name)
        assert legacy is not native, f"LegacyWorkerProcess must answer {name} itself"
        assert list(inspect.signature(legacy).parameters) == list(inspect.signature(native).parameters), name
    ready = legacy_ready("svd", 1, {"height": 8}, "navigation", "WIW's default")
    assert isinstance(ready, Ready) and ready.legacy and ready.tasks == ["navigation"] and ready.load_seconds is None
