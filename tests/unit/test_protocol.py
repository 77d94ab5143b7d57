"""Frames and payloads: every malformed input is a ProtocolError, never a crash."""

from __future__ import annotations

import os
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workerbridge as wb
from workerbridge._protocol import (
    MAX_FRAME,
    REQUEST,
    FrameReader,
    decode_frame,
    encode_frame,
    pack_payload,
    unpack_payload,
    write_frame,
)


def test_round_trip() -> None:
    payload, bufs = pack_payload({"a": [1, 2.5, "x", None, True], "b": b"\x00" * 10})
    assert bufs == []
    frame = decode_frame(encode_frame(REQUEST, 7, "ch", "op", payload))
    assert (frame.kind, frame.id, frame.channel, frame.op) == (REQUEST, 7, "ch", "op")
    assert unpack_payload(frame.payload or b"", lambda i: None) == {
        "a": [1, 2.5, "x", None, True],
        "b": b"\x00" * 10,
    }


def test_large_buffers_go_out_of_band() -> None:
    big = os.urandom(100_000)
    payload, bufs = pack_payload({"x": big, "small": b"abc"})
    assert len(payload) < 100 and len(bufs) == 1
    assert unpack_payload(payload, lambda i: bytes(bufs[i])) == {"x": big, "small": b"abc"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 99, "kind": "request"}),
        msgpack.packb({"v": 1, "kind": "nonsense"}),
        msgpack.packb({"v": 1, "kind": "request", "id": "x", "channel": "a", "op": "b"}),
        msgpack.packb({"v": 1, "kind": "request", "id": 1, "channel": 5, "op": "b"}),
        msgpack.packb({"v": 1, "kind": "request", "id": 1, "channel": "", "op": "b"}),
        msgpack.packb(
            {"v": 1, "kind": "request", "id": 1, "channel": "a", "op": "b", "payload": 5}
        ),
        msgpack.packb({"v": 1, "kind": "response", "id": 1, "bufs": [["x", -1, 2]]}),
        msgpack.packb({"v": 1, "kind": "response", "id": 1, "bufs": "nope"}),
    ],
)
def test_malformed_frames(raw: bytes) -> None:
    with pytest.raises(wb.ProtocolError):
        decode_frame(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_only_protocol_errors(data: bytes) -> None:
    try:
        decode_frame(data)
    except wb.ProtocolError:
        pass


def test_unencodable_payload() -> None:
    with pytest.raises(wb.ValidationError, match="set"):
        pack_payload({"x": {1, 2}})
    with pytest.raises(wb.ValidationError):
        pack_payload(2**70)


def test_unknown_extension_is_protocol_error() -> None:
    data = msgpack.packb(msgpack.ExtType(42, b"zz"))
    with pytest.raises(wb.ProtocolError):
        unpack_payload(data, lambda i: None)


def test_reader_handles_truncation_and_oversize() -> None:
    r, w = os.pipe()
    try:
        write_frame(w, b"hello")
        os.write(w, struct.pack("<I", 64) + b"x" * 10)
        os.close(w)
        reader = FrameReader(r)
        assert reader.read_frame() == b"hello"
        with pytest.raises(wb.ProtocolError, match="truncated"):
            reader.read_frame()
        assert reader.read_frame() is None
    finally:
        os.close(r)
    r, w = os.pipe()
    try:
        os.write(w, struct.pack("<I", 100) + b"y" * 100)
        write_frame(w, b"after")
        os.close(w)
        reader = FrameReader(r, max_frame=50)
        with pytest.raises(wb.ProtocolError, match="oversized"):
            reader.read_frame()
        assert reader.read_frame() == b"after"  # stayed in step
    finally:
        os.close(r)
    with pytest.raises(wb.ValidationError):
        write_frame(-1, b"x" * (MAX_FRAME + 1))


def test_worker_survives_garbage(pool: wb.WorkerBridge) -> None:
    assert pool.run("t", "add", {"a": 1, "b": 1}) == 2
    slot = next(r.slot for r in pool._dispatcher._slots if r.state == "idle")
    with slot._send_lock:
        os.write(slot._wfd, struct.pack("<I", 3) + b"\xc1\xc1\xc1")
        write_frame(slot._wfd, msgpack.packb({"v": 1, "kind": "bogus"}))
        write_frame(
            slot._wfd,
            msgpack.packb({"v": 1, "kind": "request", "id": 1, "channel": "nope", "op": "x"}),
        )
    for _ in range(10):
        assert pool.run("t", "add", {"a": 2, "b": 2}) == 4
    assert pool.stats().restarts == 0
