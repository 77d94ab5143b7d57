"""Fuzzing: the frame decoder, payload decoding, a live worker's channel, every handler."""

from __future__ import annotations

import os
import time

import msgpack
import pytest
import rel_scenarios as S
from rel_helpers import record

import workerbridge as wb
from workerbridge._protocol import decode_frame, write_frame

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_frame_decoder_raises_only_protocol_errors(heavy: bool) -> None:
    result = record(S.fuzz_frames(**S.size("fuzz_frames", heavy)))
    assert not result["failures"]


@pytest.mark.parametrize("heavy", SIZE)
def test_worker_survives_garbage_on_its_channel(heavy: bool) -> None:
    result = record(S.fuzz_channel(**S.size("fuzz_channel", heavy)))
    figures = result["figures"]
    assert not result["failures"]
    assert figures["protocol_errors_reported"] == figures["garbage_frames_sent"]
    assert figures["worker_restarts"] == 0


@pytest.mark.parametrize("heavy", SIZE)
def test_handlers_answer_garbage_payloads_with_typed_errors(heavy: bool) -> None:
    result = record(S.fuzz_handlers(**S.size("fuzz_handlers", heavy)))
    assert not result["failures"]
    assert result["figures"]["worker_restarts"] == 0


@pytest.mark.parametrize("kind", [[], {}, ["request"]])
def test_decode_frame_unhashable_kind_is_a_protocol_error(kind: object) -> None:
    with pytest.raises(wb.ProtocolError):
        decode_frame(msgpack.packb({"v": 1, "kind": kind, "id": 1}))


def test_worker_survives_a_frame_with_an_unhashable_kind() -> None:
    bridge = S.new_bridge(workers=1)
    try:
        assert bridge.run("rel", "echo", 1, timeout=60) == 1
        pid = bridge.stats().workers[0].pid
        slot = bridge._dispatcher._slots[0].slot
        with slot._send_lock:
            write_frame(slot._wfd, msgpack.packb({"v": 1, "kind": [], "id": 1}))
        time.sleep(0.5)
        assert bridge.run("rel", "echo", 2, timeout=60) == 2
        stats = bridge.stats()
        assert stats.restarts == 0
        assert stats.workers[0].pid == pid
    finally:
        bridge.close(wait=False)


def test_assemble_refuses_its_own_tmp_among_the_parts(tmp_path: os.PathLike[str]) -> None:
    tmp = os.path.join(tmp_path, "tmp")
    other = os.path.join(tmp_path, "other")
    with open(tmp, "wb") as f:
        f.write(b"x" * 1000)
    with open(other, "wb") as f:
        f.write(b"y" * 10)
    bridge = S.new_bridge(workers=1)
    try:
        payload = {
            "tmp": tmp,
            "dst": os.path.join(tmp_path, "dst"),
            "mode": 0o600,
            "size": 1010,
            "parts": [other, tmp],
        }
        with pytest.raises((wb.ValidationError, wb.IntegrityError)):
            bridge.run("file", "assemble", payload, timeout=1)
    finally:
        bridge.close(wait=False)


def test_assemble_refuses_its_destination_among_the_parts(tmp_path: os.PathLike[str]) -> None:
    tmp = os.path.join(tmp_path, "tmp")
    dst = os.path.join(tmp_path, "dst")
    for path, data in ((tmp, b""), (dst, b"z" * 10)):
        with open(path, "wb") as f:
            f.write(data)
    bridge = S.new_bridge(workers=1)
    try:
        payload = {"tmp": tmp, "dst": dst, "mode": 0o600, "size": 10, "parts": [dst]}
        with pytest.raises(wb.ValidationError, match="destination"):
            bridge.run("file", "assemble", payload, timeout=5)
        with open(dst, "rb") as f:
            assert f.read() == b"z" * 10  # untouched
    finally:
        bridge.close(wait=False)
