"""Wire protocol between the parent and its workers.

Data flow::

    parent                                        worker
    ------                                        ------
    pack_payload(obj) -> (bytes, buffers)         (large buffers copied into the
       buffers >= threshold become ExtType refs    worker's request arena by the pool)
    encode_frame(REQUEST, id, ch, op, payload) --pipe--> FrameReader.read_frame()
                                                  decode_frame() -> Frame
                                                  unpack_payload(bytes, resolve)
                                                  handler(ctx, payload) -> result
    FrameReader.read_frame()  <--pipe--           encode_frame(RESPONSE | ERROR, id, ...)

Every frame is one msgpack map ``{v, id, kind, channel, op, payload}`` (plus
``bufs``, the table of out-of-band buffers, on requests and responses) behind a
4-byte little-endian length prefix.  The kinds are:

``hello``     parent -> worker, first frame: configuration (sys.path, handler modules, ...)
``ready``     worker -> parent, handshake answer once handler modules are imported
``request``   parent -> worker, run ``channel``/``op`` on ``payload``
``response``  worker -> parent, the handler's result
``error``     worker -> parent, the handler raised (sanitized type name and message),
              or the worker rejected a frame (``ProtocolError``)
``shutdown``  parent -> worker, exit after the current task

Progress, cancellation and liveness deliberately do *not* travel as frames: they
live in shared-memory slots (:mod:`workerbridge._pool`), so a busy handler sees a
cancel without reading its pipe, and progress never floods the pipe.

Every incoming frame is validated; anything malformed, truncated, oversized,
of an unknown kind or of another version raises :exc:`ProtocolError`, which the
reading side reports and survives.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import NotImplementedType
from typing import Any, Final, NamedTuple

import msgpack

from ._atomic import want_pure
from ._errors import ProtocolError, ValidationError

#: the C codec (workerbridge._fast), or None: the Python codec only
_fast_encode: Callable[..., bytes | NotImplementedType] | None = None
_fast_decode: Callable[[bytes | bytearray | memoryview, type[Frame]], Frame | None] | None = None
if not want_pure():
    try:
        from . import _fast
    except ImportError:  # the optional extension did not build
        pass
    else:
        _fast_encode = _fast.encode_frame
        _fast_decode = _fast.decode_frame

__all__ = [
    "ERROR",
    "HELLO",
    "KINDS",
    "READY",
    "REQUEST",
    "RESPONSE",
    "SHUTDOWN",
    "VERSION",
    "BufferRef",
    "Frame",
    "FrameReader",
    "SegmentRange",
    "decode_frame",
    "encode_frame",
    "no_buffers",
    "pack_payload",
    "unpack_payload",
    "write_frame",
]

VERSION: Final = 1

HELLO: Final = "hello"
READY: Final = "ready"
REQUEST: Final = "request"
RESPONSE: Final = "response"
ERROR: Final = "error"
SHUTDOWN: Final = "shutdown"
KINDS: Final = frozenset({HELLO, READY, REQUEST, RESPONSE, ERROR, SHUTDOWN})

#: Largest frame either side accepts.  Large binary values travel out of band
#: (shared memory), so frames stay small; the limit only bounds a bad peer.
MAX_FRAME: Final = 256 * 1024 * 1024

#: Binary values at least this large travel out of band instead of inside the
#: frame.  Lower means fewer copies through the pipe but more arena traffic for
#: mid-sized values; 64 KiB is where a pipe write stops being one syscall.
OUT_OF_BAND_THRESHOLD: Final = 64 * 1024

_EXT_BUFFER: Final = 1
_HEADER = struct.Struct("<I")
_READ_CHUNK: Final = 16 * 1024  # below malloc's mmap threshold: no mmap/munmap per read


class Frame(NamedTuple):
    """One decoded, validated frame (a named tuple: built once per frame on the hot path)."""

    kind: str
    id: int | None
    channel: str
    op: str
    payload: bytes | None
    bufs: list[list[object]]
    #: a request whose answer goes to the worker's direct pipe, read by the waiting caller
    direct: bool = False


@dataclass(frozen=True, slots=True)
class BufferRef:
    """Placeholder for an out-of-band buffer: index into the frame's ``bufs`` table."""

    index: int


class SegmentRange:
    """A range of an existing shared-memory segment, sent by name instead of copied.

    A worker answers with one when its handler returns, whole, the read-only
    view of a buffer handed to it (:meth:`WorkerBridge.allocate`): the memory
    goes back to its owner without a copy.
    """

    __slots__ = ("_wb_segment_name", "nbytes", "offset")

    def __init__(self, name: str, offset: int, nbytes: int) -> None:
        self._wb_segment_name = name
        self.offset = offset
        self.nbytes = nbytes


# -- payloads -----------------------------------------------------------------------------


def _is_buffer(obj: object) -> bool:
    return isinstance(obj, bytes | bytearray | memoryview)


class _Packers(threading.local):
    """One msgpack ``Packer`` per thread: ``msgpack.packb`` builds a new one per call."""

    def __init__(self) -> None:
        self.frame = msgpack.Packer(use_bin_type=True)
        self.payload = msgpack.Packer(use_bin_type=True, default=_refuse)


def _refuse(value: object) -> object:
    raise ValidationError(
        f"cannot send a value of type {type(value).__qualname__}: payloads hold None, "
        "bool, int, float, str, bytes-like, list, tuple and dict"
    )


_packers = _Packers()
_NONE: Final = b"\xc0"
#: payload values that cannot hold a buffer: packed as they are, without a walk
_SCALARS: Final = frozenset({type(None), bool, int, float, str})


def pack_payload(
    obj: object,
    threshold: int = OUT_OF_BAND_THRESHOLD,
    returned: dict[int, Any] | None = None,
) -> tuple[bytes, list[Any]]:
    """Encode a payload with msgpack, moving large binary values out of band.

    Parameters
    ----------
    obj
        ``None``, booleans, ints, floats, strings, bytes-like objects, and lists,
        tuples or string-keyed dicts of those.
    threshold
        Binary values of at least this many bytes are replaced by a reference and
        returned in the buffer list instead of being copied into the frame.
    returned
        ``id(view) -> replacement`` for the views of handed buffers a handler
        received: such a view, found anywhere in ``obj``, goes out of band as
        its replacement (a :class:`SegmentRange`, say), whatever its size.

    Returns
    -------
    tuple
        The encoded bytes and the list of out-of-band buffers, in reference order:
        memoryviews to copy, or shared buffers (objects with ``_wb_segment_name``)
        handed over by name without a copy.

    Raises
    ------
    ValidationError
        The payload holds a value msgpack cannot encode (the message names its type).
    """
    if obj is None:
        return _NONE, []
    buffers: list[Any] = []
    kind = type(obj)
    try:
        if kind in _SCALARS or (kind is bytes and len(obj) < threshold):  # type: ignore[arg-type]
            value = obj
        else:
            value = _walk(obj, buffers, threshold, returned)
        packed: bytes = _packers.payload.pack(value)  # a failed pack leaves the packer empty
    except ValidationError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"cannot encode payload: {exc}") from None
    return packed, buffers


def _walk(
    value: object, buffers: list[Any], threshold: int, returned: dict[int, Any] | None
) -> object:
    """Replace large and shared buffers in ``value`` by references appended to ``buffers``."""
    if returned:
        replacement = returned.get(id(value))
        if replacement is not None:
            value = replacement
    if getattr(value, "_wb_segment_name", None) is not None:
        buffers.append(value)
        return msgpack.ExtType(_EXT_BUFFER, _HEADER.pack(len(buffers) - 1))
    if _is_buffer(value):
        view = memoryview(value)  # type: ignore[arg-type]
        if view.nbytes >= threshold:
            if not view.contiguous:
                view = memoryview(view.tobytes())
            buffers.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
            return msgpack.ExtType(_EXT_BUFFER, _HEADER.pack(len(buffers) - 1))
        return value
    if isinstance(value, dict):
        return {k: _walk(v, buffers, threshold, returned) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, buffers, threshold, returned) for v in value]
    return value


def no_buffers(index: int) -> object:
    """The ``resolve`` of a frame without out-of-band buffers: any reference is an error."""
    raise ProtocolError("payload references a missing buffer")


def unpack_payload(data: bytes, resolve: Callable[[int], object] = no_buffers) -> object:
    """Decode a payload produced by :func:`pack_payload`.

    ``resolve(index)`` turns each out-of-band reference into the object the
    handler or caller sees (a memoryview over shared memory, or a copy).
    """
    if data == _NONE:
        return None

    def ext_hook(code: int, raw: bytes) -> object:
        if code != _EXT_BUFFER or len(raw) != _HEADER.size:
            raise ProtocolError(f"unknown msgpack extension type {code}")
        return resolve(_HEADER.unpack(raw)[0])

    try:
        return msgpack.unpackb(data, raw=False, ext_hook=ext_hook, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"malformed payload: {type(exc).__name__}") from None


# -- frames -------------------------------------------------------------------------------


def encode_frame(
    kind: str,
    id: int | None,
    channel: str = "",
    op: str = "",
    payload: bytes | None = None,
    bufs: Sequence[Sequence[object]] = (),
    direct: bool = False,
) -> bytes:
    """Encode one frame (without its length prefix); ``payload`` is already msgpack bytes.

    The C encoder of :mod:`workerbridge._fast` writes the frames of the hot path;
    it gives anything unusual to the Python encoder, which writes the same bytes.
    """
    if _fast_encode is not None:
        data = _fast_encode(kind, id, channel, op, payload, bufs, direct)
        if not isinstance(data, NotImplementedType):
            return data
    return _encode_frame_py(kind, id, channel, op, payload, bufs, direct)


def _encode_frame_py(
    kind: str,
    id: int | None,
    channel: str,
    op: str,
    payload: bytes | None,
    bufs: Sequence[Sequence[object]],
    direct: bool,
) -> bytes:
    frame: dict[str, object] = {
        "v": VERSION,
        "id": id,
        "kind": kind,
        "channel": channel,
        "op": op,
        "payload": payload,
    }
    if bufs:
        frame["bufs"] = [list(b) for b in bufs]
    if direct:
        frame["d"] = True
    return _packers.frame.pack(frame)  # type: ignore[no-any-return]


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode and validate one frame.

    The C decoder of :mod:`workerbridge._fast` takes the frames our encoders
    write; whatever it does not take (anything malformed, or merely unusual)
    goes to the Python decoder, which returns the same :class:`Frame` or
    raises.

    Raises
    ------
    ProtocolError
        The bytes are not a well-formed frame of this protocol version.
    """
    if _fast_decode is not None:
        frame = _fast_decode(data, Frame)
        if frame is not None:
            return frame
    return _decode_frame_py(data)


def _decode_frame_py(data: bytes | bytearray | memoryview) -> Frame:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {type(exc).__name__}") from None
    if type(obj) is not dict:
        raise ProtocolError("malformed frame: not a map")
    get = obj.get
    version = get("v")
    if version != VERSION or type(version) is not int:
        raise ProtocolError(f"incompatible protocol version {version!r} (expected {VERSION})")
    kind = get("kind")
    if type(kind) is not str or kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind!r}")
    fid = get("id")
    if fid is not None and type(fid) is not int:
        raise ProtocolError("malformed frame: id is not an integer")
    channel = get("channel", "")
    op = get("op", "")
    if type(channel) is not str or type(op) is not str:
        raise ProtocolError("malformed frame: channel and op must be strings")
    payload = get("payload")
    if payload is not None and type(payload) is not bytes:
        raise ProtocolError("malformed frame: payload is not binary")
    bufs = get("bufs")
    if bufs is None:
        bufs = []
    elif type(bufs) is not list or not all(
        type(b) is list
        and len(b) == 3
        and type(b[0]) is str
        and type(b[1]) is int
        and type(b[2]) is int
        and b[1] >= 0
        and b[2] >= 0
        for b in bufs
    ):
        raise ProtocolError("malformed frame: bad buffer table")
    if kind == REQUEST and (fid is None or not channel or not op):
        raise ProtocolError("malformed request: id, channel and op are required")
    direct = get("d", False)
    if type(direct) is not bool:
        raise ProtocolError("malformed frame: d is not a boolean")
    return Frame(kind, fid, channel, op, payload, bufs, direct)


def write_frame(fd: int, frame: bytes) -> None:
    """Write one length-prefixed frame to a file descriptor (blocking, complete)."""
    if len(frame) > MAX_FRAME:
        raise ValidationError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    header = _HEADER.pack(len(frame))
    if len(frame) <= 4096:
        data = header + frame
        written = os.write(fd, data)  # one write of up to PIPE_BUF bytes is whole
        if written < len(data):
            rest = memoryview(data)[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        return
    written = os.writev(fd, [header, frame])
    total = len(header) + len(frame)
    if written < total:
        rest = memoryview(header + frame)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


class FrameReader:
    """Read length-prefixed frames from a file descriptor.

    :meth:`read_frame` returns the frame's bytes, ``None`` at end of file, and
    raises :exc:`ProtocolError` for an oversized or truncated frame.  After an
    oversized frame the reader skips its body (in bounded memory) so the stream
    stays in step; after a truncated one there is nothing more to read.
    """

    __slots__ = ("_buf", "_fd", "_max")

    def __init__(self, fd: int, max_frame: int = MAX_FRAME) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._max = max_frame

    @property
    def fd(self) -> int:
        """The file descriptor read from."""
        return self._fd

    @property
    def buffered(self) -> bool:
        """Whether bytes of a next frame were read already (no need to wait for the fd)."""
        return bool(self._buf)

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = os.read(self._fd, max(_READ_CHUNK, n - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read_frame(self) -> bytes | None:
        if not self._buf:
            # the common case: one read brings exactly one whole frame
            chunk = os.read(self._fd, _READ_CHUNK)
            if not chunk:
                return None
            if len(chunk) > _HEADER.size:
                (length,) = _HEADER.unpack_from(chunk)
                if len(chunk) == _HEADER.size + length and length <= self._max:
                    return chunk[_HEADER.size :]
            self._buf += chunk
        if not self._fill(_HEADER.size):
            if self._buf:
                self._buf.clear()
                raise ProtocolError("truncated frame header at end of stream")
            return None
        (length,) = _HEADER.unpack_from(self._buf)
        if length > self._max:
            del self._buf[: _HEADER.size]
            self._skip(length)
            raise ProtocolError(f"oversized frame ({length} bytes, limit {self._max})")
        end = _HEADER.size + length
        if not self._fill(end):
            self._buf.clear()
            raise ProtocolError("truncated frame at end of stream")
        data = bytes(self._buf[_HEADER.size : end])
        del self._buf[:end]
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            if not self._buf and not self._fill(1):
                return
            take = min(n, len(self._buf))
            del self._buf[:take]
            n -= take
