"""Decompressing multi-frame zstd and gzip data in parallel parts.

Data flow::

    bytes (parent) / file (a split_file task) ──split_frames: the frame walk of
        ._frames; every frame's size known? total ≤ max_output_size?──> runs of
        whole frames, each of at least part_size output bytes
    run of a bytes input ──decompress_part() in a worker──> its bytes ──> b"".join
    run of a file ──decompress_file_range() in a worker──> pwrite at the run's
        output offset in the one temporary file the parent made ──> file/assemble

A run decodes with the engine's own decoders (:mod:`._codecs`) and must give
exactly the size its headers declare; it ends on a frame boundary the walk
found and the decoder confirms, so the joined parts always equal what a
sequential decode gives, or the call fails with :exc:`IntegrityError`.
Input that cannot be split is left to the sequential decoders.
"""

from __future__ import annotations

import os
from typing import Final

from .._errors import IntegrityError, ValidationError
from .._types import WorkContext
from ._codecs import (
    _check_codec,
    _check_limit,
    _corrupt,
    _decode_stream,
    _gzip_decode_members,
    _Limit,
    _RangeReader,
    _zstd_decode_frames,
    decompress,
)
from ._files import StrPath, _check_int, _checkpoint, _report, open_source
from ._frames import Frame, ReadAt, group, gzip_members, zstd_frames

__all__ = [
    "FILE_FRAME_MAX",
    "decompress_file_range",
    "decompress_part",
    "split_file",
    "split_frames",
]

#: The parallel file path decodes a frame in one call (its compressed bytes
#: and its output in memory at once) when it declares at most this many bytes;
#: a run holding a larger frame is streamed in bounded pieces instead.
#: Our own frames hold PART_SIZE (4 MiB) each.
FILE_FRAME_MAX: Final = 16 * 1024 * 1024


def split_frames(
    read_at: ReadAt, total: int, codec: str, max_output_size: int | None, part_size: int
) -> tuple[list[list[Frame]], int] | None:
    """Runs of whole frames or members to decompress in parallel, and the output size.

    ``read_at`` reads the ``total``-byte input.  ``None`` when the input
    cannot be split: not zstd or gzip, a frame whose size is unknown (zstd
    without content size; gzip members without our size field), or a single
    run of ``part_size`` output bytes or less.  Then it must be decoded
    serially (which also finds any error).

    Raises
    ------
    IntegrityError
        zstd input that is not a sequence of well-formed frames.
    ValidationError
        The frames declare more than ``max_output_size`` bytes in all.
    """
    if codec == "zstd":
        frames: list[Frame] | None = zstd_frames(read_at, total)
    elif codec == "gzip":
        frames = gzip_members(read_at, total)
    else:
        return None
    if frames is None or any(frame.size < 0 for frame in frames):
        return None
    size = sum(frame.size for frame in frames)
    _Limit(max_output_size).add(size)
    runs = group(frames, part_size)
    return (runs, size) if len(runs) > 1 else None


def split_file(
    src: StrPath, codec: str, max_output_size: int | None, part_size: int
) -> list[list[int]] | None:
    """:func:`split_frames` of the file ``src``: ``[offset, length, size]`` of each run.

    Plain lists (what a task returns); ``None`` when the file cannot be split.

    Raises
    ------
    IntegrityError
        zstd input that is not a sequence of well-formed frames.
    ValidationError
        A bad path, or frames declaring more than ``max_output_size`` bytes.
    """
    codec = _check_codec(codec)
    limit = _check_limit(max_output_size)
    part_size = _check_int(part_size, "part_size", minimum=1)
    fh, before = open_source(src)
    with fh:
        fd = fh.fileno()

        def read_at(offset: int, n: int) -> bytes:
            return os.pread(fd, n, offset)

        split = split_frames(read_at, before.st_size, codec, limit, part_size)
    if split is None:
        return None
    return [
        [run[0].offset, run[-1].offset + run[-1].length - run[0].offset, sum(f.size for f in run)]
        for run in split[0]
    ]


def decompress_part(data: object, codec: str, size: int) -> bytes:
    """Decompress a run of whole frames or members whose headers declare ``size`` bytes.

    A part of :func:`split_frames`.

    Raises
    ------
    IntegrityError
        Corrupt data, or output of another size than declared.
    """
    try:
        out = decompress(data, codec, size)
    except ValidationError:  # more than declared: the headers lie
        out = b""
        size = -1
    if len(out) != size:
        raise _corrupt(codec, "the frames hold another size than their headers declare")
    return out


def decompress_file_range(
    src: StrPath,
    offset: int,
    length: int,
    codec: str,
    size: int,
    out: str,
    at: int,
    *,
    ctx: WorkContext | None = None,
) -> int:
    """Decompress a run of whole frames of ``src`` into the existing file ``out`` at ``at``.

    The parallel file path: ``[offset, offset + length)`` of ``src`` holds
    frames or members whose headers declare ``size`` bytes in all (a run of
    :func:`split_frames`); their output is written, in bounded pieces, at
    ``[at, at + size)`` of ``out``, which the caller created and commits.
    Progress is reported in compressed bytes.  Returns ``size``.

    Raises
    ------
    IntegrityError
        Corrupt data, or output of another size than declared.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each chunk).
    """
    codec = _check_codec(codec)
    fh, _ = open_source(src)
    with fh:
        fd = os.open(out, os.O_WRONLY | os.O_CLOEXEC)  # never created here: see ._parts
        try:
            written = 0

            def sink(piece: bytes) -> None:
                nonlocal written
                if written + len(piece) > size:
                    raise _corrupt(codec, "the frames hold more than their headers declare")
                view = memoryview(piece)
                while view:
                    n = os.pwrite(fd, view, at + written)
                    written += n
                    view = view[n:]

            frames = _range_frames(fh.fileno(), offset, length, codec)
            if frames is None:
                fh.seek(offset)
                _decode_stream(_RangeReader(fh, length), codec, sink, ctx, length)
            else:  # frames of known, moderate sizes: read and decode each in one call
                decode = _zstd_decode_frames if codec == "zstd" else _gzip_decode_members
                for start, n, declared in frames:
                    _checkpoint(ctx)
                    data = memoryview(_pread_all(fh.fileno(), offset + start, n))
                    for piece in decode(data, (Frame(0, n, declared),)):
                        sink(piece)
                    _report(ctx, start + n, length)
        finally:
            os.close(fd)
    if written != size:
        raise _corrupt(codec, "the frames hold less than their headers declare")
    _report(ctx, length, length)
    return written


def _range_frames(fd: int, offset: int, length: int, codec: str) -> list[Frame] | None:
    """The frames of a range of the file ``fd`` if each may be decoded in one call."""

    def read_at(at: int, n: int) -> bytes:
        return os.pread(fd, n, offset + at)

    try:
        frames = zstd_frames(read_at, length) if codec == "zstd" else gzip_members(read_at, length)
    except IntegrityError:
        return None  # the streaming decoder reports it, with its progress so far
    if frames is None or not all(0 <= frame.size <= FILE_FRAME_MAX for frame in frames):
        return None
    return frames


def _pread_all(fd: int, offset: int, n: int) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            raise IntegrityError("source changed while it was being read (it became shorter)")
        data += more
    return data
