"""Frame boundaries of zstd and gzip data, found without decompressing.

Data flow::

    zstd bytes or file ──ZstdScanner: frame headers, then 3-byte block headers
                          (payloads skipped)──> [Frame(offset, length, size), ...]
    gzip bytes or file ──our member header: its "WB" extra field records the
                          member's length and data size──> [Frame, ...]  (None for
                          members written by anyone else: no cheap way to find them)
    [Frame, ...] ──group(part_size)──> runs of whole frames, one per parallel task

The zstd walk reads each frame header (content size, window) and each block
header (type, size), and skips block payloads, so a 256 MiB stream costs about
two thousand small reads.  It checks structure only; libzstd checks contents
when the frames are decoded.

The gzip member size field
--------------------------
Members we write for parallel compression (:func:`gzip_member`) carry one
extra subfield (RFC 1952 ``FEXTRA``; decoders that do not know it skip it, as
``gzip -d`` and zlib do)::

    offset  size  field
         0     4  1f 8b 08 04       magic, deflate, FLG = FEXTRA only
         4     4  00 00 00 00       MTIME (none)
         8     1  XFL               as zlib writes it for the level
         9     1  03                OS (Unix, as zlib writes it)
        10     2  20                XLEN (little-endian, as all gzip integers)
        12     2  "WB"              subfield id
        14     2  16                subfield length
        16     8  member length     the whole member, header and trailer included
        24     8  data size         the uncompressed bytes (also ISIZE, below 4 GiB)
        32        raw deflate data, then CRC-32 and ISIZE

A reader trusts the field only when every member of the input has it, the
lengths chain exactly to the end of the input, each member's ISIZE trailer
equals its data size, and that size is below 4 GiB and within deflate's
largest expansion; zlib then verifies ISIZE (and the CRC) while decoding, so
a decoded member always has exactly the recorded size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from .._errors import IntegrityError

__all__ = [
    "GZIP_HEADER_SIZE",
    "ZSTD_BLOCK_MAX",
    "ZSTD_MAGIC",
    "ZSTD_WINDOW_MAX",
    "Frame",
    "ReadAt",
    "ZstdScanner",
    "corrupt",
    "group",
    "gzip_member",
    "gzip_member_header",
    "gzip_member_trailer",
    "gzip_members",
    "zstd_frames",
]

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
ZSTD_BLOCK_MAX: Final = 1 << 17
#: The largest window the decoders accept (the ``zstd`` CLI's default limit):
#: frames needing more fail in the streaming decoder, so the one-shot decoder,
#: which needs no window, must not be used for them either.
ZSTD_WINDOW_MAX: Final = 1 << 27

#: Reads: a function returning up to ``n`` bytes at ``offset`` (fewer only at the end).
ReadAt = Callable[[int, int], bytes | memoryview]


def corrupt(codec: str, detail: object) -> IntegrityError:
    """The error for corrupt compressed input: its message starts ``corrupt <codec> data``."""
    return IntegrityError(f"corrupt {codec} data: {detail}")


class Frame(NamedTuple):
    """A zstd frame (skippable ones included) or gzip member within its input."""

    offset: int
    length: int
    #: Bytes it decompresses to, as its header declares; -1 when unknown (no
    #: content size, implausible, or a window beyond :data:`ZSTD_WINDOW_MAX`).
    size: int


# --------------------------------------------------------------------------- zstd


class ZstdScanner:
    """Walk zstd frame and block headers (RFC 8878) to find frame boundaries.

    Fed every byte (:meth:`feed`, the streaming decoders) or driven by
    random access (:meth:`skip` over :attr:`pending_skip` bytes, :meth:`feed`
    the :attr:`pending_field` bytes after them: :func:`zstd_frames`).
    python-zstandard's stream reader returns a silent EOF on a truncated
    frame; this scanner tells whether the input ended on a frame boundary.
    With ``record=True`` it lists the :class:`Frame` of every complete frame.
    """

    _MAGIC, _DESCRIPTOR, _HEADER, _BLOCK, _SKIPPABLE_SIZE = range(5)

    def __init__(self, *, record: bool = False) -> None:
        self._state = self._MAGIC
        self._want = 4
        self._field = bytearray()
        self._skip = 0
        self._checksum = False
        self._single_segment = False
        self._fcs_size = 0
        self._did_size = 0
        self._start = 0
        self._size = -1
        self._window = 0
        self._blocks = 0
        self.position = 0
        self.frames = 0
        self.recorded: list[Frame] | None = [] if record else None

    @property
    def at_boundary(self) -> bool:
        """``True`` when the bytes fed so far end exactly after a complete frame."""
        return self.frames > 0 and self._state == self._MAGIC and not self._field and not self._skip

    @property
    def pending_skip(self) -> int:
        """Bytes the scanner would only skip (block payloads, checksums)."""
        return self._skip

    @property
    def pending_field(self) -> int:
        """Bytes still needed to complete the header field being read."""
        return self._want - len(self._field)

    def error(self) -> IntegrityError:
        """The error to raise when the input ended where :attr:`at_boundary` is false."""
        if self.frames and self._state == self._MAGIC and not self._skip:
            return corrupt("zstd", "trailing data after the last frame")
        return corrupt("zstd", "truncated (the last frame is incomplete)")

    def skip(self, n: int) -> None:
        """Pass over ``n`` (at most :attr:`pending_skip`) bytes without reading them."""
        self._skip -= n
        self.position += n

    def feed(self, data: bytes | memoryview) -> None:
        """Consume ``data``; raise :exc:`IntegrityError` on a malformed header."""
        view = memoryview(data)
        pos, end = 0, len(view)
        base = self.position
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            step = min(self._want - len(self._field), end - pos)
            self._field += view[pos : pos + step]
            pos += step
            if len(self._field) == self._want:
                field = bytes(self._field)
                self._field.clear()
                self.position = base + pos
                self._on_field(field)
        self.position = base + end

    def _on_field(self, field: bytes) -> None:
        if self._state == self._MAGIC:
            self._start = self.position - 4
            if field == ZSTD_MAGIC:
                self._state, self._want = self._DESCRIPTOR, 1
            elif field[1:] == b"\x2a\x4d\x18" and field[0] & 0xF0 == 0x50:
                self._state, self._want = self._SKIPPABLE_SIZE, 4
            else:
                raise corrupt("zstd", "unknown frame magic number")
        elif self._state == self._DESCRIPTOR:
            descriptor = field[0]
            if descriptor & 0x08:
                raise corrupt("zstd", "reserved bit set in frame header")
            self._single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            self._fcs_size = (1 if self._single_segment else 0, 2, 4, 8)[descriptor >> 6]
            self._did_size = (0, 1, 2, 4)[descriptor & 0x03]
            rest = (0 if self._single_segment else 1) + self._did_size + self._fcs_size
            self._state, self._want = self._HEADER, rest
        elif self._state == self._HEADER:
            self._on_header(field)
            self._state, self._want = self._BLOCK, 3
        elif self._state == self._BLOCK:
            header = int.from_bytes(field, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise corrupt("zstd", "reserved block type")
            if size > ZSTD_BLOCK_MAX:
                raise corrupt("zstd", "block larger than 128 KiB")
            self._skip = 1 if kind == 1 else size
            self._blocks += 1
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._want = self._MAGIC, 4
                self._end_frame(self._plausible_size())
        else:  # skippable frame: skip its payload
            self._skip = int.from_bytes(field, "little")
            self._state, self._want = self._MAGIC, 4
            self._end_frame(0)

    def _on_header(self, field: bytes) -> None:
        """Window descriptor, dictionary id and content size (RFC 8878, 3.1.1.1)."""
        fcs = field[len(field) - self._fcs_size :]
        size = int.from_bytes(fcs, "little") if fcs else -1
        if self._fcs_size == 2:
            size += 256
        if self._single_segment:
            window = size
        else:
            exponent, mantissa = field[0] >> 3, field[0] & 7
            base = 1 << (10 + exponent)
            window = base + (base >> 3) * mantissa
        self._size, self._window, self._blocks = size, window, 0

    def _plausible_size(self) -> int:
        """The frame's declared content size if a decoder may rely on it, else -1."""
        size = self._size
        if size < 0 or self._window > ZSTD_WINDOW_MAX or size > self._blocks * ZSTD_BLOCK_MAX:
            return -1  # unknown, a window we do not accept, or more than its blocks can hold
        return size

    def _end_frame(self, size: int) -> None:
        self.frames += 1
        if self.recorded is not None:
            end = self.position + self._skip
            self.recorded.append(Frame(self._start, end - self._start, size))


def zstd_frames(read_at: ReadAt, total: int) -> list[Frame]:
    """Every frame of the ``total``-byte zstd input read by ``read_at``.

    Raises
    ------
    IntegrityError
        A malformed header, or input that does not end on a frame boundary
        (truncated, trailing data, or empty).
    """
    scanner = ZstdScanner(record=True)
    position = 0
    while position < total:
        step = min(scanner.pending_skip, total - position)
        if step:
            scanner.skip(step)
            position += step
            continue
        data = read_at(position, min(scanner.pending_field, total - position))
        if not data:
            break
        scanner.feed(data)
        position += len(data)
    if position != total or not scanner.at_boundary:
        raise scanner.error()
    assert scanner.recorded is not None
    return scanner.recorded


# --------------------------------------------------------------------------- gzip

GZIP_HEADER_SIZE: Final = 32
_GZIP_HEAD: Final = b"\x1f\x8b\x08\x04\x00\x00\x00\x00"
_GZIP_EXTRA: Final = b"\x14\x00WB\x10\x00"  # XLEN 20, subfield "WB" of 16 bytes
# Deflate expands at most 1032:1 (258-byte matches at about 2 bits each).
_DEFLATE_MAX_RATIO: Final = 1032
_ISIZE_LIMIT: Final = 1 << 32


def gzip_member_header(level: int, body_length: int, size: int) -> bytes:
    """The header of a member of ``size`` data bytes deflated into ``body_length`` bytes."""
    length = GZIP_HEADER_SIZE + body_length + 8
    xfl = 2 if level == 9 else 4 if level < 2 else 0  # as zlib's own gzip header
    return b"".join(
        (
            _GZIP_HEAD,
            bytes((xfl, 3)),
            _GZIP_EXTRA,
            length.to_bytes(8, "little"),
            size.to_bytes(8, "little"),
        )
    )


def gzip_member_trailer(crc: int, size: int) -> bytes:
    """CRC-32 and ISIZE of a member's data."""
    return crc.to_bytes(4, "little") + (size % _ISIZE_LIMIT).to_bytes(4, "little")


def gzip_member(data: bytes | memoryview, level: int) -> bytes:
    """One gzip member of ``data`` with the member size field (see the module docstring)."""
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = packer.compress(data) + packer.flush()
    size = len(data)
    return b"".join(
        (
            gzip_member_header(level, len(body), size),
            body,
            gzip_member_trailer(zlib.crc32(data), size),
        )
    )


def gzip_members(read_at: ReadAt, total: int) -> list[Frame] | None:
    """The members of a gzip input if every one carries a trustworthy size field, else ``None``."""
    frames: list[Frame] = []
    position = 0
    while position < total:
        header = bytes(read_at(position, GZIP_HEADER_SIZE))
        if (
            len(header) != GZIP_HEADER_SIZE
            or header[:8] != _GZIP_HEAD
            or header[10:16] != _GZIP_EXTRA
        ):
            return None
        length = int.from_bytes(header[16:24], "little")
        size = int.from_bytes(header[24:32], "little")
        if (
            length < GZIP_HEADER_SIZE + 10  # the shortest deflate stream is 2 bytes
            or length > total - position
            or size >= _ISIZE_LIMIT
            or size > _DEFLATE_MAX_RATIO * length
            or bytes(read_at(position + length - 4, 4)) != size.to_bytes(4, "little")
        ):
            return None
        frames.append(Frame(position, length, size))
        position += length
    return frames or None


# --------------------------------------------------------------------------- parts


def group(frames: Sequence[Frame], part_size: int) -> list[list[Frame]]:
    """Cut ``frames`` (sizes all known) into runs of at least ``part_size`` output bytes.

    The last run may be smaller; frames are never split.
    """
    runs: list[list[Frame]] = []
    run: list[Frame] = []
    done = 0
    for frame in frames:
        run.append(frame)
        done += frame.size
        if done >= part_size:
            runs.append(run)
            run, done = [], 0
    if run:
        runs.append(run)
    return runs
