"""Unit tests of the worker wire protocol (pytest_wiw.wire.frames): framing, bounds, no pickle."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from pytest_wiw.wire.frames import (
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    ProtocolError,
    decode_body,
    encode_frame,
    read_frame,
    write_frame,
)

U32 = struct.Struct(">I")


def _npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _frame(header: dict | bytes, *blobs: bytes, total: int | None = None, head_len: int | None = None) -> bytes:
    """Assemble a frame by hand (so it can be wrong in exactly one way)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = b"".join(blobs)
    total = 4 + len(head) + len(body) if total is None else total
    head_len = len(head) if head_len is None else head_len
    return U32.pack(total) + U32.pack(head_len) + head + body


def _must_not_read(n: int) -> bytes:
    raise AssertionError(f"decode_body read {n} bytes of a frame it should have refused first")


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "video": rng.integers(0, 256, size=(2, 5, 3, 8, 12), dtype=np.uint8),
        "latents": rng.standard_normal((3, 4)).astype(np.float32),
        "ids": np.array([[4, 1, 2], [3, 0, 0]], dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "strided": np.arange(24, dtype=np.int32).reshape(4, 6)[:, ::2].T,  # non-contiguous view
    }


# -- round trips --------------------------------------------------------------------------------

def test_encode_then_read_frame_returns_header_and_every_array_unchanged():
    header = {"type": "result", "request_id": 3, "meta": {"note": "é", "list": [1, 2]}}
    arrays = _arrays()
    header_back, arrays_back = read_frame(io.BytesIO(encode_frame(header, arrays)))
    assert header_back == header  # the "arrays" bookkeeping is popped off again
    assert list(arrays_back) == list(arrays)  # same names, same order
    for name, array in arrays.items():
        got = arrays_back[name]
        assert got.dtype == array.dtype, name
        assert got.shape == array.shape, name
        np.testing.assert_array_equal(got, array, err_msg=name)


def test_empty_array_keeps_its_shape_and_dtype():
    _, back = read_frame(io.BytesIO(encode_frame({"type": "t"}, {"e": np.empty((0,), dtype=np.uint8)})))
    assert back["e"].shape == (0,) and back["e"].dtype == np.uint8


def test_zero_dim_array_round_trips_as_zero_dim():
    _, back = read_frame(io.BytesIO(encode_frame({"type": "t"}, {"s": np.array(7.5, dtype=np.float64)})))
    assert back["s"].shape == ()
    assert back["s"].dtype == np.float64 and float(back["s"]) == 7.5


def test_frame_without_arrays_round_trips():
    header, arrays = read_frame(io.BytesIO(encode_frame({"type": "stats", "n": 1})))
    assert header == {"type": "stats", "n": 1}
    assert arrays == {}


def test_encode_frame_does_not_mutate_the_callers_header():
    header = {"type": "generate"}
    encode_frame(header, {"a": np.zeros(2, np.uint8)})
    assert header == {"type": "generate"}


def test_frame_length_prefix_counts_bytes_after_itself():
    frame = encode_frame({"type": "t"}, {"a": np.zeros(5, np.uint8)})
    (total,) = U32.unpack(frame[:4])
    assert total == len(frame) - 4
    (head_len,) = U32.unpack(frame[4:8])
    assert json.loads(frame[8:8 + head_len])["arrays"][0][0] == "a"


def test_write_frame_then_read_frame_reads_consecutive_messages():
    stream = io.BytesIO()
    write_frame(stream, {"type": "ready"})
    write_frame(stream, {"type": "result", "i": 1}, {"video": np.ones((1, 2, 3, 8, 8), np.uint8)})
    stream.seek(0)
    assert read_frame(stream) == ({"type": "ready"}, {})
    header, arrays = read_frame(stream)
    assert header == {"type": "result", "i": 1}
    np.testing.assert_array_equal(arrays["video"], np.ones((1, 2, 3, 8, 8), np.uint8))
    with pytest.raises(EOFError):
        read_frame(stream)  # nothing left: a clean EOF, not a ProtocolError


# -- bounds: refused before the body is read ---------------------------------------------------

def test_frame_length_above_max_is_refused_before_reading_the_body():
    stream = io.BytesIO(U32.pack(MAX_FRAME_BYTES + 1))  # only the length: reading on would be EOFError
    with pytest.raises(ProtocolError, match=rf"frame length {MAX_FRAME_BYTES + 1} is outside"):
        read_frame(stream)


def test_decode_body_refuses_oversized_frame_without_calling_read():
    with pytest.raises(ProtocolError, match="frame length"):
        decode_body(MAX_FRAME_BYTES + 1, _must_not_read)
    with pytest.raises(ProtocolError, match="frame length"):
        decode_body(2**32 - 1, _must_not_read)


def test_frame_length_below_four_is_refused():
    with pytest.raises(ProtocolError, match="frame length 3 is outside"):
        decode_body(3, _must_not_read)


def test_header_length_larger_than_the_frame_is_refused_before_reading_the_header():
    stream = io.BytesIO(U32.pack(20) + U32.pack(100))  # header would need 100 of 16 bytes
    with pytest.raises(ProtocolError, match=r"header length 100 does not fit a frame of 20 bytes"):
        read_frame(stream)


def test_header_length_above_max_header_bytes_is_refused():
    total = MAX_HEADER_BYTES + 100
    stream = io.BytesIO(U32.pack(total) + U32.pack(MAX_HEADER_BYTES + 1))
    with pytest.raises(ProtocolError, match=rf"header length {MAX_HEADER_BYTES + 1} does not fit"):
        read_frame(stream)


# -- malformed headers ---------------------------------------------------------------------------

def test_header_that_is_not_json_is_refused():
    with pytest.raises(ProtocolError, match="header is not valid JSON"):
        read_frame(io.BytesIO(_frame(b"{not json")))


def test_header_that_is_not_utf8_is_refused():
    with pytest.raises(ProtocolError, match="header is not valid JSON"):
        read_frame(io.BytesIO(_frame(b"\xff\xfe\x00")))


def test_header_without_type_is_refused():
    with pytest.raises(ProtocolError, match="header must be a JSON object with a 'type'"):
        read_frame(io.BytesIO(_frame({"request_id": 1})))


def test_header_that_is_a_json_list_is_refused():
    with pytest.raises(ProtocolError, match="JSON object with a 'type'"):
        read_frame(io.BytesIO(_frame(b'["type"]')))


def test_array_sizes_that_do_not_add_up_to_the_frame_length_are_refused():
    blob = _npy(np.zeros(4, np.uint8))
    too_few = _frame({"type": "result", "arrays": [["a", len(blob) - 1]]}, blob)
    with pytest.raises(ProtocolError, match="do not add up to the frame length"):
        read_frame(io.BytesIO(too_few))
    extra_bytes = _frame({"type": "result", "arrays": [["a", len(blob)]]}, blob, b"junk")
    with pytest.raises(ProtocolError, match="do not add up to the frame length"):
        read_frame(io.BytesIO(extra_bytes))


def test_listed_blob_that_is_not_npy_is_refused_naming_the_array():
    with pytest.raises(ProtocolError, match=r"array 'video' is not a plain \.npy array"):
        read_frame(io.BytesIO(_frame({"type": "result", "arrays": [["video", 8]]}, b"NOTANPY!")))


@pytest.mark.parametrize("listed", [[["a"]], [["a", "many"]], 5, "ab"])
def test_malformed_arrays_listing_is_a_protocol_error(listed):
    with pytest.raises(ProtocolError, match="arrays"):
        read_frame(io.BytesIO(_frame({"type": "result", "arrays": listed})))


def test_npy_header_claiming_more_data_than_its_blob_is_refused():
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (2**62,)})
    blob = buf.getvalue() + b"\x00" * 10
    with pytest.raises(ProtocolError, match="'video'"):
        read_frame(io.BytesIO(_frame({"type": "result", "arrays": [["video", len(blob)]]}, blob)))


# -- no pickle, either way ------------------------------------------------------------------------

class _Marker:
    """Unpickling this object opens (so creates) the marker file: proof that pickle code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_npy(marker) -> bytes:
    return _npy(np.array([{"a": _Marker(marker)}], dtype=object), allow_pickle=True)


def test_encode_frame_refuses_object_arrays_naming_the_array():
    with pytest.raises(ProtocolError, match=r"array 'meta' has dtype object"):
        encode_frame({"type": "result"}, {"meta": np.array([{"a": 1}], dtype=object)})


def test_pickle_payload_would_run_code_if_unpickled(tmp_path):
    """Control for the next test: the payload really creates its marker when loaded with pickle."""
    marker = tmp_path / "control-marker"
    np.lib.format.read_array(io.BytesIO(_pickle_npy(marker)), allow_pickle=True)
    assert marker.exists()


def test_object_array_on_the_wire_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled-marker"
    blob = _pickle_npy(marker)
    frame = _frame({"type": "generate", "arrays": [["images", len(blob)]]}, blob)
    with pytest.raises(ProtocolError, match=r"array 'images' has dtype object \(allow_pickle=False\)"):
        read_frame(io.BytesIO(frame))
    assert not marker.exists(), "decoding the frame ran pickled code"


# -- a dead peer ------------------------------------------------------------------------------------

def test_eof_in_the_middle_of_a_frame_raises_eoferror():
    frame = encode_frame({"type": "result"}, {"a": np.arange(10, dtype=np.int64)})
    with pytest.raises(EOFError, match=r"stream closed after \d+ of \d+ bytes"):
        read_frame(io.BytesIO(frame[:-5]))


def test_eof_inside_the_length_prefix_raises_eoferror():
    with pytest.raises(EOFError, match="stream closed after 2 of 4 bytes"):
        read_frame(io.BytesIO(b"\x00\x00"))


def test_read_frame_reassembles_short_reads():
    class Trickle(io.BytesIO):
        def read(self, n=-1):
            return super().read(min(n, 3) if n and n > 0 else n)

    arrays = {"a": np.arange(50, dtype=np.float32)}
    header, back = read_frame(Trickle(encode_frame({"type": "t"}, arrays)))
    assert header == {"type": "t"}
    np.testing.assert_array_equal(back["a"], arrays["a"])
