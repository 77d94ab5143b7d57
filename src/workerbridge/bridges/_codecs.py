"""Compression engine: zstd, snappy, gzip and zlib over bytes and files.

Pure functions behind ``bridge.compression``; they run in worker processes or
threads and never import the pool.  Data flow::

    bytes ──compress()──────────────────────────────> one zstd frame / snappy block /
                                                       gzip member / zlib stream
    bytes ──decompress()── zstd: one frame declaring ≤ 1 MiB? one-shot ──> bytes
          (decompress_small(): the same, for the bridge's calls in the caller's
           thread, its output capped; None when a worker must do it)
                           zstd: frame walk (._frames) ── all sizes declared? total
                                 checked against max_output_size, one-shot per frame
                           otherwise: 256 KiB output pieces, counted ──> bytes
                                                  └─ total > max_output_size: ValidationError

    src ──read 1 MiB──> compressor ──> atomic_writer(dst)        compress_file()
    src ──read 1 MiB──> decoder ──bounded pieces──> atomic_writer(dst)   decompress_file()
          ctx.check_cancelled() before each chunk, ctx.report(bytes_read, src_size) after

    parallel paths (splittable codecs: zstd, gzip):
    compress_chunk() / compress_file_range(src, off, len) in N workers ──> frames/members
        (gzip members with their size field, ._frames) ──> b"".join / assemble
    and back: ._multiframe splits such input into runs of whole frames

Formats
-------
``zstd``
    Standard zstd frames (RFC 8878) with the content size and a content
    checksum; bytes and files alike.  Concatenated frames (and skippable
    frames) decompress as one stream, as the ``zstd`` CLI reads them.
``snappy``
    Bytes: one raw snappy block (``snappy.compress``).  Files: the snappy
    *framing format* (stream identifier, then CRC-32C-checked chunks of at most
    64 KiB), as ``snappy.stream_compress`` writes it.  An empty file is accepted
    as an empty stream (``snappy.stream_compress`` writes nothing for it); we
    write the stream identifier alone.
``gzip``
    RFC 1952 members (mtime 0, no file name); concatenated members decompress
    as one stream, as ``gzip -d`` reads them.  Members made for the parallel
    paths also record their length and data size in an extra field
    (:mod:`._frames`), so that they can be decompressed in parallel too.
``zlib``
    One RFC 1950 stream; it is not splittable.

Errors
------
* Unknown codec, a level out of range, a non-bytes argument:
  :exc:`~workerbridge.ValidationError` naming what is allowed.
* Corrupt, truncated or trailing-garbage compressed input (empty input
  included, except an empty snappy *file*): :exc:`~workerbridge.IntegrityError`
  whose message starts with ``corrupt <codec> data``.
* Output beyond ``max_output_size`` (a decompression bomb):
  :exc:`~workerbridge.ValidationError` naming the limit.  Output is produced
  in pieces of 256 KiB (64 KiB for snappy files) and counted before it is
  kept, so a decompression never holds more than ``max_output_size`` plus
  about 1 MiB of working buffers (a raw snappy block is refused before
  decoding when its length preamble exceeds the limit).  zstd additionally
  needs its window, which the decoder caps at 128 MiB as the ``zstd`` CLI does.
  Where every zstd frame declares its content size, or every gzip member
  records its size (:mod:`._frames`), the sum is checked before anything is
  decoded, and each frame is then decoded in one call into a buffer of its
  declared size; a frame holding anything else is corrupt.
* Paths follow the rule in :mod:`._files`: bad path arguments raise
  :exc:`~workerbridge.ValidationError`, other :exc:`OSError` propagate, a
  source changed during the read raises :exc:`~workerbridge.IntegrityError`.
  On any failure ``dst`` is untouched and no temporary file is left.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Final, Protocol, cast

import snappy
import zstandard

from .._errors import IntegrityError, ValidationError
from .._types import WorkContext
from ._files import (
    CHUNK_SIZE,
    StrPath,
    _check_int,
    _checkpoint,
    _report,
    as_buffer,
    assemble_file,
    atomic_writer,
    check_unchanged,
    open_source,
)
from ._frames import (
    ZSTD_MAGIC,
    ZSTD_WINDOW_MAX,
    Frame,
    ReadAt,
    ZstdScanner,
    corrupt,
    gzip_member,
    gzip_member_header,
    gzip_member_trailer,
    gzip_members,
    zstd_frames,
)

__all__ = [
    "CODECS",
    "DEFAULT_LEVELS",
    "SPLITTABLE_CODECS",
    "assemble_file",
    "compress",
    "compress_chunk",
    "compress_file",
    "compress_file_range",
    "decompress",
    "decompress_small",
    "decompress_file",
    "splittable",
]

CODECS: Final = ("zstd", "snappy", "gzip", "zlib")

#: Codecs whose independently compressed pieces concatenate into one valid stream.
SPLITTABLE_CODECS: Final = ("zstd", "gzip")

#: Level used when ``level=None``: zstd's own default, and the default of the
#: ``gzip`` CLI and of zlib (6) rather than :func:`gzip.compress`'s 9.
DEFAULT_LEVELS: Final = {"zstd": 3, "gzip": 6, "zlib": 6}

# zstd's fastest negative level (ZSTD_minCLevel()); 0 is rejected because zstd
# reads it as "default", which is what ``None`` already means here.
_ZSTD_MIN_LEVEL: Final = -(1 << 17)

# The snappy framing format: stream identifier chunk, and the per-chunk limit.
_SNAPPY_STREAM_ID: Final = b"\xff\x06\x00\x00sNaPpY"
_SNAPPY_MAX_CHUNK_DATA: Final = 1 << 16
# Largest body a data chunk may have: 4-byte CRC plus snappy's worst case for
# 64 KiB (32 + n + n/6 = 76,490 bytes), rounded up.
_SNAPPY_MAX_CHUNK_BODY: Final = 1 << 17

# Decoders hand out output in pieces of this size, so a decompression never
# holds more than max_output_size plus a few pieces.  Smaller pieces tighten
# that bound at the cost of more Python loop turns.
_OUT_CHUNK: Final = 1 << 18

# Decoders take their compressed input in slices of this size: zlib copies the
# input it has not consumed yet after every call, so a whole large input fed at
# once would be copied once per output piece.
_IN_CHUNK: Final = 1 << 18

#: A zstd input that is one frame declaring at most this many bytes is
#: decompressed in one call, into a buffer of exactly that size (the common
#: small case: no frame walk, no output pieces).  The cap bounds what a tiny
#: corrupt input declaring a huge size could make us allocate before failing.
ONE_SHOT_MAX: Final = 1 << 20

#: Inputs up to this many bytes reuse this thread's zstd contexts: creating a
#: compression context costs about 3 µs and a decompression one about 2 µs,
#: more than compressing or decompressing 1 KiB.  Larger inputs get fresh
#: contexts (noise next to the work), so the cached ones stay small.
CONTEXT_CACHE_MAX_INPUT: Final = 64 * 1024


def _check_codec(codec: object) -> str:
    if not isinstance(codec, str) or codec not in CODECS:
        raise ValidationError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    return codec


def _check_level(codec: str, level: object) -> int:
    """Return the effective level for ``codec`` (0 for snappy, which has none)."""
    if codec == "snappy":
        if level is not None:
            raise ValidationError("snappy has no compression levels; pass level=None")
        return 0
    if level is None:
        return DEFAULT_LEVELS[codec]
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValidationError(f"level must be an int or None, not {type(level).__name__}")
    if codec == "zstd":
        if not (_ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL) or level == 0:
            raise ValidationError(
                f"zstd level must be 1..{zstandard.MAX_COMPRESSION_LEVEL} or a negative fast "
                f"level down to {_ZSTD_MIN_LEVEL}, got {level}"
            )
    elif not 0 <= level <= 9:
        raise ValidationError(f"{codec} level must be 0..9, got {level}")
    return level


def _check_limit(max_output_size: object) -> int | None:
    if max_output_size is None:
        return None
    return _check_int(max_output_size, "max_output_size")


_corrupt = corrupt


def splittable(codec: str) -> bool:
    """Return whether ``codec``'s independently compressed pieces concatenate validly.

    ``True`` for zstd (frames) and gzip (members); ``False`` for zlib (one
    stream) and snappy (a raw block; the framing format is only used for files).
    """
    return _check_codec(codec) in SPLITTABLE_CODECS


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True)


class _Contexts(threading.local):
    """This thread's reusable zstd compressors, for inputs up to :data:`CONTEXT_CACHE_MAX_INPUT`.

    zstd contexts must not be shared between threads, hence one set per thread.
    """

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}


_CONTEXTS: Final = _Contexts()
# Levels whose compressor a thread keeps (a program using more starts over).
_CACHED_LEVELS: Final = 4


def _small_compressor(level: int) -> zstandard.ZstdCompressor:
    cache = _CONTEXTS.compressors
    found = cache.get(level)
    if found is None:
        if len(cache) >= _CACHED_LEVELS:
            cache.clear()
        found = cache[level] = _zstd_compressor(level)
    return found


#: Idle decompressors for one-shot calls (which need no window buffer).  A zstd
#: context must not serve two threads at once, so a call pops one (or makes
#: one) and appends it back when done: both are atomic, and cheaper than a
#: thread-local lookup.  The list holds as many as calls ever ran at once; a
#: forked child inherits only idle ones.
_DECOMPRESSORS: Final[list[zstandard.ZstdDecompressor]] = []


def _take_decompressor() -> zstandard.ZstdDecompressor:
    """An idle one-shot decompressor (give it back to :data:`_DECOMPRESSORS`)."""
    try:
        return _DECOMPRESSORS.pop()
    except IndexError:
        return zstandard.ZstdDecompressor()


class _Compressor:
    """A streaming compressor with one interface for every file format we write."""

    def __init__(self, codec: str, level: int, size: int, *, raw_deflate: bool = False) -> None:
        self._codec = codec
        self._zstd: zstandard.ZstdCompressionObj | None = None
        self._deflate: zlib._Compress | None = None
        self._snappy: snappy.StreamCompressor | None = None
        self._snappy_started = False
        if codec == "zstd":
            self._zstd = _zstd_compressor(level).compressobj(size=size)
        elif codec == "snappy":
            self._snappy = snappy.StreamCompressor()
        else:
            wbits = -15 if raw_deflate else 31 if codec == "gzip" else 15
            self._deflate = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def compress(self, data: bytes | memoryview) -> bytes:
        if self._zstd is not None:
            return self._zstd.compress(data)
        if self._deflate is not None:
            return self._deflate.compress(data)
        assert self._snappy is not None
        view = memoryview(data)
        pieces = []
        for start in range(0, len(view), _SNAPPY_MAX_CHUNK_DATA):
            piece = bytes(view[start : start + _SNAPPY_MAX_CHUNK_DATA])
            pieces.append(self._snappy.compress(piece))
            self._snappy_started = True
        return b"".join(pieces)

    def flush(self) -> bytes:
        if self._zstd is not None:
            return self._zstd.flush()
        if self._deflate is not None:
            return self._deflate.flush()
        return b"" if self._snappy_started else _SNAPPY_STREAM_ID


def compress(data: object, codec: str = "zstd", level: int | None = None) -> bytes:
    """Compress ``data`` into one zstd frame, snappy block, gzip member or zlib stream.

    Parameters
    ----------
    data
        Any bytes-like object.
    codec
        One of :data:`CODECS`.
    level
        ``None`` for the codec's default (:data:`DEFAULT_LEVELS`); zstd takes
        1..22 or a negative fast level, gzip and zlib 0..9, snappy none.

    Raises
    ------
    ValidationError
        Unknown codec, bad level, or ``data`` not bytes-like.
    """
    codec = _check_codec(codec)
    effective = _check_level(codec, level)
    view = data if type(data) is bytes else as_buffer(data)
    if codec == "zstd":
        if len(view) <= CONTEXT_CACHE_MAX_INPUT:
            return _small_compressor(effective).compress(view)
        return _zstd_compressor(effective).compress(view)
    if codec == "snappy":
        return bytes(snappy.compress(view))
    if codec == "zlib":
        return zlib.compress(view, effective)
    packer = zlib.compressobj(effective, zlib.DEFLATED, 31)
    return packer.compress(view) + packer.flush()


def compress_chunk(data: object, codec: str = "zstd", level: int | None = None) -> bytes:
    """Compress ``data`` into one independent zstd frame or gzip member.

    Such pieces, concatenated in order, decompress to the concatenated inputs
    (by :func:`decompress` and by the ``zstd``/``gzip`` tools), and
    :func:`split_frames` finds them again: zstd frames declare their content
    size, gzip members carry the size field of :mod:`._frames`.

    Raises
    ------
    ValidationError
        ``codec`` is not splittable (see :func:`splittable`), or as :func:`compress`.
    """
    if not splittable(codec):
        raise ValidationError(
            f"codec {codec!r} is not splittable; expected one of {', '.join(SPLITTABLE_CODECS)}"
        )
    if codec == "gzip":
        return gzip_member(as_buffer(data), _check_level(codec, level))
    return compress(data, codec, level)


# --------------------------------------------------------------------------- decoders
class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _RangeReader:
    """The next ``length`` bytes of an open file, read as if they were all of it."""

    def __init__(self, fh: IO[bytes], length: int) -> None:
        self._fh = fh
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._fh.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


class _ScanningReader:
    """A read-only file view that shows every byte it passes to a :class:`ZstdScanner`."""

    def __init__(self, fh: _Readable, scanner: ZstdScanner) -> None:
        self._fh = fh
        self._scanner = scanner
        self.bytes_read = 0
        self.at_eof = False

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data:
            self._scanner.feed(data)
            self.bytes_read += len(data)
        else:
            self.at_eof = True
        return data


class _Inflater:
    """Bounded-output gzip (multi-member) or zlib decoder."""

    def __init__(self, codec: str) -> None:
        self._codec = codec
        self._wbits = 31 if codec == "gzip" else 15
        self._engine = zlib.decompressobj(self._wbits)

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        """Yield the output for ``data`` in pieces of at most ``_OUT_CHUNK`` bytes."""
        view = memoryview(data)
        for start in range(0, len(view), _IN_CHUNK):
            yield from self._feed(view[start : start + _IN_CHUNK])

    def _feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        pending: bytes | memoryview = data
        while True:
            if self._engine.eof:
                if not pending:
                    return
                if self._codec != "gzip":
                    raise _corrupt(self._codec, "trailing data after the end of the stream")
                self._engine = zlib.decompressobj(self._wbits)
            try:
                out = self._engine.decompress(pending, _OUT_CHUNK)
            except zlib.error as exc:
                raise _corrupt(self._codec, exc) from None
            if out:
                yield out
            if self._engine.eof:
                pending = self._engine.unused_data
                continue
            pending = self._engine.unconsumed_tail
            if not pending and len(out) < _OUT_CHUNK:
                return

    def finish(self) -> None:
        """Raise :exc:`IntegrityError` unless the input ended after a complete stream."""
        if not self._engine.eof:
            raise _corrupt(self._codec, "truncated (the stream does not end)")


class _SnappyFrames:
    """Bounded decoder for the snappy framing format (at most 64 KiB per chunk)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self._seen_identifier = False
        self._decoder = snappy.StreamDecompressor()

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        self._buffer += data
        buf = self._buffer
        pos = 0
        try:
            while True:
                if self._skip:
                    step = min(self._skip, len(buf) - pos)
                    self._skip -= step
                    pos += step
                    if self._skip:
                        break
                if len(buf) - pos < 4:
                    break
                kind = buf[pos]
                length = int.from_bytes(buf[pos + 1 : pos + 4], "little")
                if kind != 0xFF and not self._seen_identifier:
                    raise _corrupt("snappy", "missing stream identifier")
                if kind >= 0x80 and kind != 0xFF:  # padding or reserved skippable chunk
                    pos += 4
                    self._skip = length
                    continue
                if kind == 0xFF:
                    if length != 6:
                        raise _corrupt("snappy", "bad stream identifier")
                elif kind > 0x01:
                    raise _corrupt("snappy", f"reserved unskippable chunk type {kind:#04x}")
                elif not 4 < length <= _SNAPPY_MAX_CHUNK_BODY:
                    raise _corrupt("snappy", "bad chunk length")
                if len(buf) - pos < 4 + length:
                    break
                chunk = bytes(buf[pos : pos + 4 + length])
                pos += 4 + length
                if kind == 0xFF:
                    if chunk != _SNAPPY_STREAM_ID:
                        raise _corrupt("snappy", "bad stream identifier")
                    self._seen_identifier = True
                    continue
                yield self._decode_chunk(kind, chunk)
        finally:
            del buf[:pos]

    def _decode_chunk(self, kind: int, chunk: bytes) -> bytes:
        if kind == 0x00:
            declared = _snappy_length(memoryview(chunk)[8:], "snappy")
            if declared > _SNAPPY_MAX_CHUNK_DATA:
                raise _corrupt("snappy", "chunk declares more than 64 KiB")
        elif len(chunk) - 8 > _SNAPPY_MAX_CHUNK_DATA:
            raise _corrupt("snappy", "uncompressed chunk longer than 64 KiB")
        try:
            # One complete chunk at a time: python-snappy checks its CRC-32C.
            return bytes(self._decoder.decompress(chunk))
        except (OSError, snappy.UncompressError) as exc:
            raise _corrupt("snappy", str(exc) or "bad chunk") from None

    def finish(self) -> None:
        if self._buffer or self._skip:
            raise _corrupt("snappy", "truncated (the last chunk is incomplete)")


def _snappy_length(block: memoryview, codec: str) -> int:
    """Read the varint uncompressed-length preamble of a raw snappy block."""
    value = 0
    for i in range(min(5, len(block))):
        byte = block[i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise _corrupt(codec, "bad length preamble")


class _Limit:
    """Count output bytes against ``max_output_size``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise ValidationError(f"decompressed output exceeds max_output_size={self.limit} bytes")


def decompress(data: object, codec: str = "zstd", max_output_size: int | None = None) -> bytes:
    """Decompress zstd frames, a raw snappy block, gzip members or a zlib stream.

    Concatenated zstd frames and gzip members decompress as one stream.

    Parameters
    ----------
    data
        Any bytes-like object.
    codec
        One of :data:`CODECS`.
    max_output_size
        Refuse output larger than this many bytes (``None``: no limit).  At
        most this much plus one chunk is ever allocated; frames that all
        declare their sizes are refused before any decoding.

    Raises
    ------
    ValidationError
        Unknown codec, bad arguments, or output beyond ``max_output_size``.
    IntegrityError
        Corrupt, truncated or trailing-garbage input.
    """
    codec = _check_codec(codec)
    limit = _check_limit(max_output_size)
    raw = data if type(data) is bytes else as_buffer(data)
    if codec == "zstd":  # the common small case first
        whole = _zstd_one_shot(raw, limit)
        if whole is not None:
            return whole
    return _decompress_any(raw, codec, _Limit(limit))


def decompress_small(data: object, codec: str, limit: int | None, most: int) -> bytes | None:
    """:func:`decompress` for a small call in the caller's thread, its output capped at ``most``.

    ``limit`` is the caller's ``max_output_size`` (already checked, or
    ``None``).  Returns ``None`` when the output would pass ``most`` but not
    ``limit``, so a worker must do it (and, unless a ``limit`` was given, for
    an unknown codec: the caller's plan refuses it).  The common input, one
    zstd frame in a ``bytes`` object, goes straight to the one-shot decoder,
    skipping the general path's set-up (a sixth of a 1 KiB decompression).

    Raises
    ------
    ValidationError
        Output beyond ``limit``, when ``limit`` is at most ``most``.
    IntegrityError
        Corrupt, truncated or trailing-garbage input.
    """
    cap = most if limit is None or limit > most else limit
    try:
        if type(data) is bytes and type(codec) is str and codec == "zstd":
            # _zstd_one_shot(data, cap), inline: the call and its set-up cost a
            # few percent of a 1 KiB decompression.
            try:
                params = zstandard.get_frame_parameters(data)
            except zstandard.ZstdError:
                params = None
            if (
                params is not None
                and 0 < params.content_size <= (cap if cap < ONE_SHOT_MAX else ONE_SHOT_MAX)
                and 0 < params.window_size <= ZSTD_WINDOW_MAX
            ):
                try:
                    decompressor = _DECOMPRESSORS.pop()
                except IndexError:
                    decompressor = zstandard.ZstdDecompressor()
                try:
                    out: bytes = decompressor.decompress(data, 0, False, False)
                except zstandard.ZstdError:
                    pass  # the full path finds the precise error
                else:
                    return out
                finally:
                    _DECOMPRESSORS.append(decompressor)
            return _decompress_any(data, codec, _Limit(cap))
        return decompress(data, codec, cap)
    except ValidationError:
        if cap == limit:  # the caller's own limit: the same error a worker would raise
            raise
    return None


def _decompress_any(raw: bytes | memoryview, codec: str, limit: _Limit) -> bytes:
    """:func:`decompress` for a checked codec, after the zstd one-shot declined ``raw``."""
    view = as_buffer(raw)
    if codec == "snappy":
        declared = _snappy_length(view, codec)
        # Snappy expands at most 64 bytes per 3-byte copy element; anything
        # claiming more is corrupt, and we refuse before allocating for it.
        if declared > len(view) * 22 + 16:
            raise _corrupt(codec, "length preamble larger than the data can hold")
        limit.add(declared)
        try:
            return bytes(snappy.decompress(view))
        except (OSError, snappy.UncompressError) as exc:
            raise _corrupt(codec, str(exc) or "bad block") from None
    if codec == "zstd":
        return _zstd_decompress(view, limit)
    members = gzip_members(_reader(view), len(view)) if codec == "gzip" else None
    if members is not None:  # ours, with their sizes: one exact call per member
        limit.add(sum(member.size for member in members))
        return b"".join(_gzip_decode_members(view, members))
    out = bytearray()
    inflater = _Inflater(codec)
    for piece in inflater.feed(view):
        limit.add(len(piece))
        out += piece
    inflater.finish()
    return bytes(out)


def _zstd_decompress(view: memoryview, limit: _Limit) -> bytes:
    frames = zstd_frames(_reader(view), len(view))  # IntegrityError unless well formed
    if all(frame.size >= 0 for frame in frames):
        limit.add(sum(frame.size for frame in frames))
        return b"".join(_zstd_decode_frames(view, frames))
    out = bytearray()  # some frame does not declare its size: count the output as it comes

    def sink(piece: bytes) -> None:
        limit.add(len(piece))
        out.extend(piece)

    reader = zstandard.ZstdDecompressor().stream_reader(view, read_across_frames=True)
    _zstd_pump(reader, sink, None, None)
    return bytes(out)


def _zstd_one_shot(data: bytes | memoryview, limit: int | None) -> bytes | None:
    """The output of an input that is one frame declaring 1..:data:`ONE_SHOT_MAX` bytes.

    ``None`` for any other input, and for a failure: the caller's full path
    then finds the precise error.
    """
    try:
        # libzstd reads the magic number itself: anything but a zstd frame
        # raises, and a skippable frame (which decompress() would read as
        # empty) reports a window size of 0.
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError:
        return None
    size = params.content_size
    cap = limit if limit is not None and limit < ONE_SHOT_MAX else ONE_SHOT_MAX
    # (A frame declaring 0 bytes is left to the full path: python-zstandard
    # returns b"" for it without looking at the rest of the input.)
    if not (0 < size <= cap and 0 < params.window_size <= ZSTD_WINDOW_MAX):
        return None
    decompressor = _take_decompressor()
    try:
        # Positional (max_output_size, read_across_frames, allow_extra_data):
        # keywords cost as much again as decompressing 1 KiB.
        out: bytes = decompressor.decompress(data, 0, False, False)
    except zstandard.ZstdError:
        return None
    finally:
        _DECOMPRESSORS.append(decompressor)
    return out


def _zstd_decode_frames(view: memoryview, frames: Sequence[Frame]) -> Iterator[bytes]:
    """Decode well-formed ``frames`` of ``view`` whose sizes are all known, one call each."""
    decompressor = _take_decompressor()
    try:
        for offset, length, size in frames:
            frame = view[offset : offset + length]
            try:
                if size:
                    yield decompressor.decompress(frame, 0, False, False)
                elif frame[:4].tobytes() == ZSTD_MAGIC:  # empty: one-shot would not look at it
                    out = bytearray()
                    _zstd_pump(zstandard.ZstdDecompressor().stream_reader(frame), out.extend)
                    if out:
                        raise _corrupt("zstd", "frame content size mismatch")
            except zstandard.ZstdError as exc:
                raise _corrupt("zstd", exc) from None
    finally:
        _DECOMPRESSORS.append(decompressor)


def _gzip_decode_members(view: memoryview, members: Sequence[Frame]) -> Iterator[bytes]:
    """Decode gzip members whose boundaries and sizes :func:`gzip_members` found."""
    for offset, length, size in members:
        engine = zlib.decompressobj(31)
        try:
            out = engine.decompress(view[offset : offset + length], size + 1)
        except zlib.error as exc:
            raise _corrupt("gzip", exc) from None
        if not engine.eof or engine.unused_data or len(out) != size:
            raise _corrupt("gzip", "a member does not match its recorded length and size")
        yield out


def _reader(view: memoryview) -> ReadAt:
    def read_at(offset: int, n: int) -> memoryview:
        return view[offset : offset + n]

    return read_at


def _zstd_pump(
    reader: zstandard.ZstdDecompressionReader,
    sink: Callable[[bytes], object],
    ctx: WorkContext | None = None,
    progress: Callable[[], None] | None = None,
) -> None:
    try:
        with reader:
            while True:
                _checkpoint(ctx)
                piece = reader.read(_OUT_CHUNK)
                if not piece:
                    break
                sink(piece)
                if progress is not None:
                    progress()
    except zstandard.ZstdError as exc:
        raise _corrupt("zstd", exc) from None


# --------------------------------------------------------------------------- files
def compress_file(
    src: StrPath,
    dst: StrPath,
    codec: str = "zstd",
    level: int | None = None,
    *,
    ctx: WorkContext | None = None,
) -> int:
    """Compress the file ``src`` into ``dst`` in bounded memory; return the bytes written.

    ``dst`` is replaced atomically; snappy files use the framing format.

    Raises
    ------
    ValidationError
        Unknown codec, bad level, or a bad path (see :mod:`._files`).
    IntegrityError
        ``src`` changed while it was read.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each 1 MiB chunk); ``dst`` untouched.
    """
    codec = _check_codec(codec)
    effective = _check_level(codec, level)
    fh, before = open_source(src)
    written = 0
    with fh, atomic_writer(dst) as out:
        packer = _Compressor(codec, effective, before.st_size)
        done = 0
        while True:
            _checkpoint(ctx)
            chunk = fh.read(CHUNK_SIZE)
            if not chunk:
                break
            done += len(chunk)
            written += out.write(packer.compress(chunk))
            _report(ctx, done, before.st_size)
        check_unchanged(fh, src, before, done)
        written += out.write(packer.flush())
        if done == 0:
            _report(ctx, 0, before.st_size)
        _checkpoint(ctx)
    return written


def decompress_file(
    src: StrPath,
    dst: StrPath,
    codec: str = "zstd",
    max_output_size: int | None = None,
    *,
    ctx: WorkContext | None = None,
) -> int:
    """Decompress the file ``src`` into ``dst`` in bounded memory; return the bytes written.

    Progress is reported in compressed bytes read, against the size of ``src``.

    Raises
    ------
    ValidationError
        Unknown codec, a bad path, or output beyond ``max_output_size``.
    IntegrityError
        Corrupt or truncated input, or ``src`` changed while it was read.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each chunk); ``dst`` untouched.
    """
    codec = _check_codec(codec)
    limit = _Limit(_check_limit(max_output_size))
    fh, before = open_source(src)
    total = before.st_size
    with fh, atomic_writer(dst) as out:

        def sink(piece: bytes) -> None:
            limit.add(len(piece))
            out.write(piece)

        done = _decode_stream(fh, codec, sink, ctx, total)
        check_unchanged(fh, src, before, done)
        _report(ctx, done, total)
        _checkpoint(ctx)
    return limit.total


def _decode_stream(
    fh: _Readable, codec: str, sink: Callable[[bytes], None], ctx: WorkContext | None, total: int
) -> int:
    """Decode all of ``fh`` into ``sink`` in bounded pieces; return the compressed bytes read.

    Progress is reported against ``total`` compressed bytes.
    """
    if codec == "zstd":
        scanner = ZstdScanner()
        source = _ScanningReader(fh, scanner)
        reader = zstandard.ZstdDecompressor().stream_reader(
            cast("IO[bytes]", source), read_size=CHUNK_SIZE, read_across_frames=True
        )
        _zstd_pump(reader, sink, ctx, lambda: _report(ctx, source.bytes_read, total))
        if not source.at_eof and fh.read(1):
            raise _corrupt(codec, "trailing data after the last frame")
        if not scanner.at_boundary:
            raise scanner.error()
        return source.bytes_read
    decoder: _Inflater | _SnappyFrames = _SnappyFrames() if codec == "snappy" else _Inflater(codec)
    done = 0
    while True:
        _checkpoint(ctx)
        chunk = fh.read(CHUNK_SIZE)
        if not chunk:
            break
        done += len(chunk)
        for piece in decoder.feed(chunk):
            sink(piece)
        _report(ctx, done, total)
    if codec != "snappy" or done:
        decoder.finish()
    return done


def compress_file_range(
    src: StrPath,
    offset: int,
    length: int,
    codec: str = "zstd",
    level: int | None = None,
    *,
    ctx: WorkContext | None = None,
) -> bytes:
    """Compress bytes ``[offset, offset + length)`` of ``src`` into one frame or member.

    The parallel file path: split the source into ranges, compress each in a
    worker, and write the pieces in order with :func:`assemble_file`.  A range
    reaching past the end of the file covers what exists.  The piece is what
    :func:`compress_chunk` makes of the range's bytes.

    Raises
    ------
    ValidationError
        The codec is not splittable, negative ``offset``/``length``, or a bad path.
    IntegrityError
        ``src`` changed while the range was read.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each chunk).
    """
    if not splittable(codec):
        raise ValidationError(
            f"codec {codec!r} is not splittable; expected one of {', '.join(SPLITTABLE_CODECS)}"
        )
    effective = _check_level(codec, level)
    offset = _check_int(offset, "offset")
    length = _check_int(length, "length")
    fh, before = open_source(src)
    with fh:
        want = max(0, min(length, before.st_size - offset))
        gzip = codec == "gzip"  # raw deflate here, in a member with the size field below
        packer = _Compressor(codec, effective, want, raw_deflate=gzip)
        fh.seek(offset)
        pieces = []
        done = crc = 0
        while done < want:
            _checkpoint(ctx)
            chunk = fh.read(min(CHUNK_SIZE, want - done))
            if not chunk:
                break
            done += len(chunk)
            if gzip:
                crc = zlib.crc32(chunk, crc)
            pieces.append(packer.compress(chunk))
            _report(ctx, done, want)
        after = fh.seek(0, 2)
        if done != want or after != before.st_size:
            raise IntegrityError(f"source {str(src)!r} changed while it was being read")
        pieces.append(packer.flush())
    if gzip:
        body = sum(len(piece) for piece in pieces)
        pieces.insert(0, gzip_member_header(effective, body, want))
        pieces.append(gzip_member_trailer(crc, want))
    return b"".join(pieces)
