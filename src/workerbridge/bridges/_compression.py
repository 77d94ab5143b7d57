"""``bridge.compression``: zstd, snappy, gzip and zlib over bytes and files.

Data flow (each operation is one plan, see :mod:`._base`)::

    compress(data)     validate ── ≤ INLINE_MAX bytes ──> handler in this thread
                                ── zstd/gzip and ≥ SPLIT_PER_WORKER * workers ──>
                                   parts of PART_SIZE, one compress_chunk task each
                                   (independent frames / members that record
                                   their sizes) ──> b"".join
                                ── otherwise ──> one task
    decompress(data)   validate ── small ──> this thread, output capped at
                                   INLINE_OUTPUT_MAX (beyond it: a worker)
                                ── zstd/gzip, ≥ SPLIT_PER_WORKER bytes ──> walk the
                                   frame headers here (._frames): every size known,
                                   total within max_output_size, ≥ SPLIT_PER_WORKER
                                   * workers? ──> runs of whole frames of ≥ PART_SIZE
                                   output, one decompress_part task each ──> b"".join
                                ── otherwise ──> one task
    compress_file      stat src ── zstd/gzip and large ──> compress_range per byte
                                   range into parent-made part files ──>
                                   file/assemble (._parts) ──> dst
                                ── otherwise ──> one streaming task
    decompress_file    stat src ── zstd/gzip and large: the same walk, by pread,
                                   in a split_file task ──> one temporary file;
                                   decompress_range per run writes at its output
                                   offset ──> file/assemble
                                ── otherwise ──> one streaming task

    Small calls without on_progress or a token skip the plan: the engine runs
    right here (BaseBridge._quick), with the same results and errors.

Input that cannot be split (one frame, frames without a content size, gzip
members written by other programs, zlib, snappy) is decoded by one task, as
before; a parallel decode either equals the sequential one or fails.

The engine (:mod:`._codecs`) defines the formats and errors; the handlers
(:mod:`._compression_handlers`) run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from .._errors import ValidationError
from .._shared import CancellationToken
from . import _codecs
from . import _compression_handlers as handlers
from ._base import (
    AsyncBaseBridge,
    BaseBridge,
    Bytes,
    Job,
    Operation,
    Plan,
    ProgressCallback,
    _dispatcher_closed,
    byte_length,
    copy_docs,
    documented,
    drive,
    drive_async,
    gather,
    gather_bytes,
    run_one,
    split_ranges,
)
from ._codecs import _check_codec, _check_level, _check_limit, decompress_small, splittable
from ._files import StrPath, as_buffer, caller_path
from ._frames import Frame, ReadAt
from ._multiframe import split_frames
from ._parts import OutputFiles, assemble, check_unchanged, source_size, source_state

__all__ = ["AsyncCompressionBridge", "CompressionBridge"]

#: Largest output a decompression run in the caller's thread may produce; a
#: small input that expands further (a bomb, or just very redundant data) is
#: handed to a worker instead, so the caller is never blocked for long.
INLINE_OUTPUT_MAX = 1 << 20


# --------------------------------------------------------------------------- plans


def compress_plan(op: Operation, data: object, codec: str, level: int | None) -> Plan[bytes]:
    size = byte_length(data)
    if op.can_inline(size):
        return op.inline(handlers.compress, {"data": data, "codec": codec, "level": level}, size)
    _check_level(_check_codec(codec), level)
    view = as_buffer(data)
    payload = {"data": view, "codec": codec, "level": level}
    ranges = split_ranges(size, op.workers, op.tuning) if splittable(codec) else None
    if ranges is None:
        out: bytes = yield from run_one(op, "compress", payload, size)
        return out
    jobs: list[Job] = [
        ("compress_chunk", {"data": view[start : start + n], "codec": codec, "level": level}, n)
        for start, n in ranges
    ]
    op.expect(size)
    return (yield from gather_bytes(op, jobs))


def decompress_inline(run: Callable[[int], bytes], limit: int | None) -> bytes | None:
    """Decompress inline with ``run(max_output_size)``, output capped at :data:`INLINE_OUTPUT_MAX`.

    Returns ``None`` when the output would pass the cap but not the caller's
    own ``limit``: then a worker must do it.  (A bad codec also returns
    ``None`` unless a limit was given; the plan refuses it before sending.)
    """
    cap = INLINE_OUTPUT_MAX if limit is None else min(limit, INLINE_OUTPUT_MAX)
    try:
        return run(cap)
    except ValidationError:
        if cap == limit:  # the caller's own limit: the same error a worker would raise
            raise
    return None


def decompress_here(
    bridge: BaseBridge, data: object, codec: str, limit: int | None
) -> bytes | None:
    """:func:`decompress_inline` by the engine itself, for a call that may skip the plan."""
    try:
        return decompress_small(data, codec, limit, INLINE_OUTPUT_MAX)
    except Exception as exc:
        raise bridge._failure(exc) from None


def decompress_plan(
    op: Operation, data: object, codec: str, max_output_size: int | None, *, inline: bool = True
) -> Plan[bytes]:
    limit = _check_limit(max_output_size)
    size = byte_length(data)
    if inline and op.can_inline(size):

        def run(cap: int) -> bytes:
            payload = {"data": data, "codec": codec, "max_output_size": cap}
            return op.inline(handlers.decompress, payload, size)

        small = decompress_inline(run, limit)
        if small is not None:
            return small
    _check_codec(codec)  # (a bad codec also lands here, and is refused before sending)
    view = as_buffer(data)
    split = parallel_runs(op, partial(_slice, view), size, codec, limit)
    if split is None:
        payload = {"data": view, "codec": codec, "max_output_size": limit}
        out: bytes = yield from run_one(op, "decompress", payload, size)
        return out
    jobs: list[Job] = []
    for frames in split[0]:
        start, end = frames[0].offset, frames[-1].offset + frames[-1].length
        part = {"data": view[start:end], "codec": codec, "size": sum(f.size for f in frames)}
        jobs.append(("decompress_part", part, end - start))
    op.expect(size)
    return (yield from gather_bytes(op, jobs))


def _slice(view: memoryview, offset: int, n: int) -> memoryview:
    return view[offset : offset + n]


def parallel_runs(
    op: Operation, read_at: ReadAt, size: int, codec: str, limit: int | None
) -> tuple[list[list[Frame]], int] | None:
    """Runs of whole frames for a parallel decompression, and the output size; or ``None``.

    Only inputs of at least ``split_per_worker`` bytes are walked (in this
    thread: about 5 ms per 100 MiB of zstd, one read per 128 KiB block; much
    less for gzip, two per member), and only outputs of at least
    ``split_per_worker`` bytes per worker are split, as for compression.

    Raises
    ------
    IntegrityError
        zstd input that is not a sequence of well-formed frames.
    ValidationError
        The frames declare more than ``limit`` bytes.
    """
    if not _walk_worth_it(op, size, codec):
        return None
    split = split_frames(read_at, size, codec, limit, op.tuning.part_size)
    if split is None or split[1] < op.tuning.split_per_worker * op.workers:
        return None
    return split


def _walk_worth_it(op: Operation, size: int, codec: str) -> bool:
    return op.workers > 1 and size >= op.tuning.split_per_worker and splittable(codec)


def compress_file_plan(
    op: Operation, src: StrPath, dst: StrPath, codec: str, level: int | None
) -> Plan[None]:
    _check_level(_check_codec(codec), level)
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    before = source_state(source)
    ranges = None
    if before is not None and splittable(codec):
        ranges = split_ranges(before[0], op.workers, op.tuning)
    if before is None or ranges is None:
        payload = {"src": source, "dst": target, "codec": codec, "level": level}
        size = None if before is None else before[0]
        yield from run_one(op, "compress_file", payload, size, output=target)
        return None
    out = OutputFiles(target)
    op.expect(before[0])
    try:
        part_files: list[str] = []

        def jobs() -> Iterator[Job]:
            for start, n in ranges:
                part = out.new()
                part_files.append(part)
                payload = {
                    "src": source,
                    "offset": start,
                    "length": n,
                    "codec": codec,
                    "level": level,
                    "part": part,
                }
                yield "compress_range", payload, n

        sizes: list[int] = yield from gather(op, jobs())
        check_unchanged(source, before)
        yield from assemble(op, out, out.new(), sum(sizes), part_files)
    finally:
        out.discard()
    return None


def decompress_file_plan(
    op: Operation, src: StrPath, dst: StrPath, codec: str, max_output_size: int | None
) -> Plan[None]:
    _check_codec(codec)
    limit = _check_limit(max_output_size)
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    before = source_state(source)
    runs: list[list[int]] | None = None
    if before is not None and _walk_worth_it(op, before[0], codec):
        # The walk reads one header per 128 KiB block: a worker does it, so
        # the caller (an event loop, maybe) is not blocked by huge files.
        op.expect(before[0])
        payload = {
            "src": source,
            "codec": codec,
            "max_output_size": limit,
            "part_size": op.tuning.part_size,
        }
        runs = yield from run_one(op, "split_file", payload, 0)
    total = 0 if runs is None else sum(size for _, _, size in runs)
    if before is None or runs is None or total < op.tuning.split_per_worker * op.workers:
        payload = {"src": source, "dst": target, "codec": codec, "max_output_size": limit}
        yield from run_one(op, "decompress_file", payload, source_size(source), output=target)
        return None
    out = OutputFiles(target)
    try:
        tmp = out.new()
        jobs: list[Job] = []
        at = 0
        for start, length, size in runs:
            payload = {
                "src": source,
                "offset": start,
                "length": length,
                "codec": codec,
                "size": size,
                "out": tmp,
                "at": at,
            }
            jobs.append(("decompress_range", payload, length))
            at += size
        yield from gather(op, jobs)
        check_unchanged(source, before)
        yield from assemble(op, out, tmp, total)
    finally:
        out.discard()
    return None


# --------------------------------------------------------------------------- classes


class CompressionBridge(BaseBridge):
    """Compression in worker processes: ``bridge.compression``.

    Codecs: ``"zstd"`` (standard zstd frames), ``"snappy"`` (bytes: a raw
    snappy block as ``snappy.compress`` makes it; files: the snappy framing
    format), ``"gzip"`` (RFC 1952) and ``"zlib"`` (RFC 1950).  Output is
    readable by each format's reference tool or library, and the other way
    round.

    Inputs up to 16 KiB run in the calling thread (a worker round trip costs
    more than the work); large zstd and gzip inputs are split across the
    workers as independent frames or members, which every decoder reads as
    one stream, and such multi-frame data is decompressed across the workers
    too.  Results are the same whichever way a call ran.  Get the instance
    from :attr:`workerbridge.WorkerBridge.compression`.
    """

    __slots__ = ()
    _channel = "compression"

    @documented
    def compress(
        self,
        data: Bytes,
        codec: str = "zstd",
        level: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Compress ``data`` and return the compressed bytes.

        Parameters
        ----------
        data
            A bytes-like object.
        codec
            ``"zstd"``, ``"snappy"``, ``"gzip"`` or ``"zlib"``.
        level
            ``None`` for the codec's default (zstd 3, gzip and zlib 6); zstd
            takes 1..22 or a negative fast level, gzip and zlib 0..9, snappy
            none.
        {options}

        Returns
        -------
        bytes
            One zstd frame, snappy block, gzip member or zlib stream.  zstd
            and gzip inputs of 8 MiB per worker and more (16 MiB with two
            workers) are compressed in parallel, in 4 MiB parts: then the
            result is one frame or member per part (gzip members then record
            their sizes in an extra header field, which other readers skip),
            and :meth:`decompress` splits it the same way.

        Raises
        ------
        workerbridge.ValidationError
            Unknown codec, bad level, or ``data`` not bytes-like.
        {errors}
        """
        if (
            type(data) is bytes
            and len(data) <= self._plain_max
            and timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and not _dispatcher_closed(self._dispatcher)
        ) or self._fits(data, timeout, on_progress, cancel, priority):
            try:
                return _codecs.compress(data, codec, level)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, compress_plan(op, data, codec, level))

    @documented
    def decompress(
        self,
        data: Bytes,
        codec: str = "zstd",
        max_output_size: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Decompress ``data`` and return the original bytes.

        Concatenated zstd frames and gzip members decompress as one stream.
        Large inputs made of several frames (what :meth:`compress` makes of
        large inputs, or zstd frames of any producer that declare their size)
        are decompressed in parallel, one run of whole frames per task.

        Parameters
        ----------
        data
            A bytes-like object.
        codec
            ``"zstd"``, ``"snappy"``, ``"gzip"`` or ``"zlib"``.
        max_output_size
            Refuse output larger than this many bytes (``None``: no limit); a
            decompression bomb then fails without ever holding its output.
            Frames that declare their sizes are refused before any decoding.
        {options}

        Returns
        -------
        bytes
            The decompressed data.

        Raises
        ------
        workerbridge.ValidationError
            Unknown codec, bad arguments, or output beyond ``max_output_size``.
        workerbridge.IntegrityError
            Corrupt, truncated or trailing-garbage input; the message starts
            with ``corrupt <codec> data``.
        {errors}
        """
        limit = None if max_output_size is None else _check_limit(max_output_size)
        inline = True
        if (
            type(data) is bytes
            and len(data) <= self._plain_max
            and timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and not _dispatcher_closed(self._dispatcher)
        ) or self._fits(data, timeout, on_progress, cancel, priority):
            try:  # (decompress_here, inline: a call costs a few percent at 1 KiB)
                out = decompress_small(data, codec, limit, INLINE_OUTPUT_MAX)
            except Exception as exc:
                raise self._failure(exc) from None
            if out is not None:
                return out
            inline = False  # larger than the inline cap: a worker does it
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, decompress_plan(op, data, codec, max_output_size, inline=inline))

    @documented
    def compress_file(
        self,
        src: StrPath,
        dst: StrPath,
        codec: str = "zstd",
        level: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Compress the file ``src`` into ``dst``, streamed, in bounded memory.

        ``dst`` is replaced atomically: until the call succeeds it is the old
        file (or absent), never a partial one, and no temporary file is left
        on failure, timeout or cancellation.  zstd and gzip files of 8 MiB
        per worker and more are compressed in parallel, one 4 MiB range per
        task, and a worker joins the frames or members; snappy files use the
        framing format.

        Parameters
        ----------
        src, dst
            Paths (``str`` or ``os.PathLike``).  ``dst``'s directory must exist.
        codec
            ``"zstd"``, ``"snappy"``, ``"gzip"`` or ``"zlib"``.
        level
            As for :meth:`compress`.
        {options}

        Raises
        ------
        workerbridge.ValidationError
            Unknown codec, bad level, or an unusable path (missing source, a
            directory, missing destination directory, permission denied).
        workerbridge.IntegrityError
            ``src`` changed while it was read.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, compress_file_plan(op, src, dst, codec, level))

    @documented
    def decompress_file(
        self,
        src: StrPath,
        dst: StrPath,
        codec: str = "zstd",
        max_output_size: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Decompress the file ``src`` into ``dst``, streamed, in bounded memory.

        ``dst`` is replaced atomically and only once the whole input decoded;
        on any failure, timeout or cancellation it is untouched and no
        temporary file is left.  Progress counts compressed bytes read.  Large
        files of several frames are decompressed in parallel, as by
        :meth:`decompress`, each task writing its output at its place in one
        temporary file.

        Parameters
        ----------
        src, dst
            Paths (``str`` or ``os.PathLike``).
        codec
            ``"zstd"``, ``"snappy"`` (the framing format), ``"gzip"`` or ``"zlib"``.
        max_output_size
            Refuse output larger than this many bytes (``None``: no limit).
        {options}

        Raises
        ------
        workerbridge.ValidationError
            Unknown codec, an unusable path, or output beyond ``max_output_size``.
        workerbridge.IntegrityError
            Corrupt or truncated input, or ``src`` changed while it was read.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, decompress_file_plan(op, src, dst, codec, max_output_size))


class AsyncCompressionBridge(AsyncBaseBridge):
    """The asyncio flavour of :class:`CompressionBridge`: the same methods, as coroutines.

    Get the instance from :attr:`workerbridge.AsyncWorkerBridge.compression`.
    """

    __slots__ = ()
    _channel = "compression"

    async def compress(
        self,
        data: Bytes,
        codec: str = "zstd",
        level: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        if self._fits(data, timeout, on_progress, cancel, priority):
            try:
                return _codecs.compress(data, codec, level)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, compress_plan(op, data, codec, level))

    async def decompress(
        self,
        data: Bytes,
        codec: str = "zstd",
        max_output_size: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        limit = None if max_output_size is None else _check_limit(max_output_size)
        inline = True
        if self._fits(data, timeout, on_progress, cancel, priority):
            out = decompress_here(self, data, codec, limit)
            if out is not None:
                return out
            inline = False  # larger than the inline cap: a worker does it
        op = self._op(timeout, on_progress, cancel, priority)
        plan = decompress_plan(op, data, codec, max_output_size, inline=inline)
        return await drive_async(op, plan)

    async def compress_file(
        self,
        src: StrPath,
        dst: StrPath,
        codec: str = "zstd",
        level: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, compress_file_plan(op, src, dst, codec, level))

    async def decompress_file(
        self,
        src: StrPath,
        dst: StrPath,
        codec: str = "zstd",
        max_output_size: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, decompress_file_plan(op, src, dst, codec, max_output_size))


copy_docs(AsyncCompressionBridge, CompressionBridge)
for _cls in (CompressionBridge, AsyncCompressionBridge):
    _cls.__module__ = "workerbridge.bridges"
del _cls
