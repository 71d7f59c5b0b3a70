"""The worker wire protocol: length-prefixed frames of a JSON header and raw .npy arrays, no pickle.

Frame layout::

    u32 big-endian  frame length N (bytes after this field)
    u32 big-endian  header length H
    H bytes         JSON header: {"type": ..., ..., "arrays": [[name, nbytes], ...]}
    N-4-H bytes     the arrays, each in .npy format, in the order "arrays" lists them

Arrays are read with ``allow_pickle=False``: an object array on the wire is an error, never code.

Messages: ``generate`` -> ``result`` | ``error``; ``stats`` -> ``stats``; ``shutdown``; the worker
opens with ``ready`` (or ``error`` if loading failed).
"""

from __future__ import annotations

import io
import json
import struct
from typing import BinaryIO

import numpy as np

from pytest_wiw.errors import ProtocolError

# One frame carries at most one generated batch: 2 x 129 frames x 3 x 720 x 1280 uint8 is ~1.4 GiB.
MAX_FRAME_BYTES = 2 * 1024**3 - 1
MAX_HEADER_BYTES = 16 * 1024 * 1024
_LEN = struct.Struct(">I")


def encode_frame(header: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """Serialise one message; raises ProtocolError for object arrays or an oversized frame."""
    arrays = arrays or {}
    blobs = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise ProtocolError(f"array {name!r} has dtype object; only plain numeric arrays travel")
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=False)  # keeps 0-d arrays 0-d
        blobs.append((name, buf.getvalue()))
    head = dict(header)
    head["arrays"] = [[name, len(blob)] for name, blob in blobs]
    head_bytes = json.dumps(head, separators=(",", ":")).encode()
    if len(head_bytes) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(head_bytes)} bytes exceeds {MAX_HEADER_BYTES}")
    total = 4 + len(head_bytes) + sum(len(b) for _, b in blobs)
    if total > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {total} bytes exceeds the {MAX_FRAME_BYTES}-byte bound")
    return b"".join([_LEN.pack(total), _LEN.pack(len(head_bytes)), head_bytes, *(b for _, b in blobs)])


def write_frame(stream: BinaryIO, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    stream.write(encode_frame(header, arrays))
    stream.flush()


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read exactly n bytes; EOFError when the stream ends first (a dead peer)."""
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise EOFError(f"stream closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> tuple[dict, dict[str, np.ndarray]]:
    (total,) = _LEN.unpack(read_exact(stream, 4))
    return decode_body(total, lambda n: read_exact(stream, n))


def decode_body(total: int, read) -> tuple[dict, dict[str, np.ndarray]]:
    """Decode a frame body of ``total`` bytes, pulling bytes with ``read(n)``, checking every bound."""
    if total > MAX_FRAME_BYTES or total < 4:
        raise ProtocolError(f"frame length {total} is outside 4..{MAX_FRAME_BYTES}")
    (head_len,) = _LEN.unpack(read(4))
    if head_len > MAX_HEADER_BYTES or head_len > total - 4:
        raise ProtocolError(f"header length {head_len} does not fit a frame of {total} bytes")
    try:
        header = json.loads(read(head_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or "type" not in header:
        raise ProtocolError("header must be a JSON object with a 'type'")
    listed = header.pop("arrays", [])
    if not isinstance(listed, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int) and e[1] >= 0
            for e in listed):
        raise ProtocolError("header 'arrays' must be [[name, nbytes], ...]")
    if sum(n for _, n in listed) != total - 4 - head_len:
        raise ProtocolError("array sizes in the header do not add up to the frame length")
    arrays = {}
    for name, nbytes in listed:
        arrays[name] = _read_npy(name, read(nbytes))
    return header, arrays


def _read_npy(name: str, blob: bytes) -> np.ndarray:
    """A plain array from .npy bytes; its header must describe exactly the bytes that follow it."""
    fp = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fp)
    except (ValueError, EOFError) as exc:
        raise ProtocolError(f"array {name!r} is not a plain .npy array: {exc}") from exc
    if dtype.hasobject:
        raise ProtocolError(f"array {name!r} has dtype object (allow_pickle=False): only plain arrays travel")
    count = 1
    for dim in shape:
        count *= dim
    if count * dtype.itemsize != len(blob) - fp.tell():
        raise ProtocolError(f"array {name!r}: its .npy header describes {count * dtype.itemsize} bytes, "
                            f"the frame carries {len(blob) - fp.tell()}")
    data = np.frombuffer(blob, dtype=dtype, count=count, offset=fp.tell())
    return (data.reshape(shape[::-1]).T if fortran else data.reshape(shape)).copy()
