"""The C hot path (workerbridge._fast) against the Python code it stands in for.

The C encoder must write the very bytes the Python encoder writes, and the C
decoder must never accept a frame the Python decoder rejects, nor build a
different value; both are checked over generated and mutated frames.
"""

from __future__ import annotations

import os
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workerbridge import _protocol
from workerbridge._errors import ProtocolError
from workerbridge._protocol import KINDS, Frame
from workerbridge._spin import _spin_readable_py

fast = pytest.importorskip("workerbridge._fast")

# integers at every msgpack width boundary, both signs
_EDGES = [
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
]
ints = st.one_of(st.sampled_from(_EDGES), st.integers(-(2**63), 2**64 - 1))
# lengths at every str/bin width boundary
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from([31, 32, 255, 256, 65535, 65536]).map(lambda n: "é" * (n // 2) + "x" * (n % 2)),
    st.sampled_from([0, 31, 32, 255, 256, 65535, 65536]).map(lambda n: "a" * n),
)
blobs = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from([255, 256, 65535, 65536]).map(lambda n: b"\x01" * n),
)
tables = st.lists(
    st.tuples(texts, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(list), max_size=20
)
frames = st.tuples(
    st.sampled_from(sorted(KINDS)),
    st.one_of(st.none(), ints),
    texts,
    texts,
    blobs,
    tables,
    st.booleans(),
)


def _py_decode(data: bytes) -> Frame | str:
    try:
        return _protocol._decode_frame_py(data)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


def _decode(data: bytes) -> Frame | str:
    try:
        return _protocol.decode_frame(data)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_c_encoder_writes_the_python_bytes(args: tuple[object, ...]) -> None:
    expected = _protocol._encode_frame_py(*args)  # type: ignore[arg-type]
    assert fast.encode_frame(*args) == expected
    assert _protocol.encode_frame(*args) == expected  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_c_decoder_builds_the_python_frame(args: tuple[object, ...]) -> None:
    data = _protocol._encode_frame_py(*args)  # type: ignore[arg-type]
    expected = _py_decode(data)
    got = fast.decode_frame(data, Frame)
    if isinstance(expected, str):
        assert got is None  # only requests without id, channel or op are refused here
        assert args[0] == "request"
    else:
        assert got == expected
        assert type(got) is Frame
        assert [type(v) for v in got] == [type(v) for v in expected]
        assert fast.decode_frame(bytearray(data), Frame) == expected
        assert fast.decode_frame(memoryview(data), Frame) == expected


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.data())
def test_c_decoder_never_accepts_what_python_refuses(
    args: tuple[object, ...], data: st.DataObject
) -> None:
    raw = bytearray(_protocol._encode_frame_py(*args))  # type: ignore[arg-type]
    # flip, cut or extend the frame
    how = data.draw(st.sampled_from(["flip", "cut", "extend", "byte"]))
    if how == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        del raw[data.draw(st.integers(0, len(raw))) :]
    elif how == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=4))
    elif raw:
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    mutated = bytes(raw)
    got = fast.decode_frame(mutated, Frame)
    expected = _py_decode(mutated)
    if got is not None:
        assert got == expected
    assert _decode(mutated) == expected  # the combined decoder: same value or same error


@pytest.mark.parametrize(
    "obj",
    [
        {"v": 1, "kind": "ready", "extra": [1, {"x": 2}]},  # unknown key: the Python decoder
        {"v": 1, "kind": "ready", "id": True},  # a bool is not an id
        {"v": 2, "kind": "ready"},
        {"v": 1, "kind": "bogus"},
        {"v": 1, "kind": "ready", "payload": "text"},
        {"v": 1, "kind": "ready", "bufs": [["a", -1, 2]]},
        {"v": 1, "kind": "ready", "bufs": [["a", 1]]},
        {"v": 1, "kind": "ready", "d": None},
        {"v": 1, "kind": "request", "id": 1, "channel": "", "op": "x"},
        {"kind": "ready"},
        [1, 2, 3],
        {"v": 1, "kind": "ready", "bufs": None, "d": False, "channel": "c"},
    ],
)
def test_unusual_frames_agree(obj: object) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    got = fast.decode_frame(data, Frame)
    expected = _py_decode(data)
    if got is not None:
        assert got == expected
    assert _decode(data) == expected


def test_invalid_utf8_and_duplicate_keys_go_to_python() -> None:
    bad = b"\x83\xa1v\x01\xa4kind\xa5ready\xa7channel\xa2\xff\xfe"
    assert fast.decode_frame(bad, Frame) is None
    assert _decode(bad) == _py_decode(bad)
    dup = b"\x83\xa1v\x01\xa4kind\xa5ready\xa4kind\xa5error"
    assert fast.decode_frame(dup, Frame) is None
    assert _decode(dup) == _py_decode(dup)


def test_encoder_leaves_unusual_inputs_to_python() -> None:
    nothing = fast.encode_frame("ready", True, "", "", None, (), False)
    assert nothing is NotImplemented
    assert fast.encode_frame("ready", 1, "", "", bytearray(b"x"), (), False) is NotImplemented
    assert fast.encode_frame("ready", 2**64, "", "", None, (), False) is NotImplemented
    assert fast.encode_frame("ready", 1, "\ud800", "", None, (), False) is NotImplemented
    assert fast.encode_frame("ready", 1, "", "", None, [["a", 1.5, 2]], False) is NotImplemented
    with pytest.raises(OverflowError):
        _protocol.encode_frame("ready", 2**64, "", "", None)  # the Python packer's own error


def test_decode_frame_argument_errors() -> None:
    with pytest.raises(TypeError):
        fast.decode_frame(b"\x80", tuple[int])  # type: ignore[misc]
    with pytest.raises(TypeError):
        fast.decode_frame("text", Frame)


# -- spin_readable ---------------------------------------------------------------------


@pytest.mark.parametrize("spin", [fast.spin_readable, _spin_readable_py], ids=["c", "python"])
def test_spin_readable(spin: object) -> None:
    r, w = os.pipe()
    r2, w2 = os.pipe()
    try:
        t0 = time.monotonic()
        assert spin((r, r2), 0.002) is False  # type: ignore[operator]
        assert time.monotonic() - t0 >= 0.002
        os.write(w2, b"x")
        assert spin((r, r2), 5.0) is True  # type: ignore[operator]
        assert spin((r,), 0.0) is False  # type: ignore[operator]
        os.close(w)
        assert spin((r,), 5.0) is True  # type: ignore[operator]  # end of file is ready
    finally:
        for fd in (r, r2, w2):
            os.close(fd)


def test_spin_readable_errors() -> None:
    with pytest.raises(ValueError):
        fast.spin_readable((), 0.1)
    with pytest.raises(ValueError):
        fast.spin_readable((1, 2, 3, 4, 5), 0.1)
    with pytest.raises(ValueError):
        fast.spin_readable((-1,), 0.1)
    with pytest.raises(ValueError):
        fast.spin_readable((0,), -1.0)
    with pytest.raises(TypeError):
        fast.spin_readable(5, 0.1)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert fast.spin_readable((r,), 0.1) is True  # a closed fd: the caller's read reports it
