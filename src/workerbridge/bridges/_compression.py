"""``bridge.compression``: zstd, snappy, gzip and zlib over bytes and files.

Data flow (each operation is one plan, see :mod:`._base`)::

    compress(data)     validate ── ≤ INLINE_MAX bytes ──> handler in this thread
                                ── zstd/gzip and ≥ SPLIT_PER_WORKER * workers ──>
                                   parts of PART_SIZE, one task each
                                   (independent frames / members) ──> b"".join
                                ── otherwise ──> one task
    decompress(data)   validate ── small ──> this thread, output capped at
                                   INLINE_OUTPUT_MAX (beyond it: one task)
                                ── otherwise ──> one task
    compress_file      stat src ── zstd/gzip and large ──> compress_range per byte
                                   range into parent-made part files ──>
                                   file/assemble (._parts) ──> dst
                                ── otherwise ──> one streaming task
    decompress_file    one streaming task

The engine (:mod:`._codecs`) defines the formats and errors; the handlers
(:mod:`._compression_handlers`) run it.
"""

from __future__ import annotations

from collections.abc import Iterator

from .._errors import ValidationError
from .._shared import CancellationToken
from . import _compression_handlers as handlers
from ._base import (
    AsyncBaseBridge,
    BaseBridge,
    Bytes,
    Job,
    Operation,
    Plan,
    ProgressCallback,
    byte_length,
    copy_docs,
    documented,
    drive,
    drive_async,
    gather,
    run_one,
    split_ranges,
)
from ._codecs import _check_codec, _check_level, _check_limit, splittable
from ._files import StrPath, _fspath, as_buffer
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
        ("compress", {"data": view[start : start + n], "codec": codec, "level": level}, n)
        for start, n in ranges
    ]
    op.expect(size)
    parts: list[bytes] = yield from gather(op, jobs)
    return b"".join(parts)


def decompress_plan(
    op: Operation, data: object, codec: str, max_output_size: int | None
) -> Plan[bytes]:
    limit = _check_limit(max_output_size)
    size = byte_length(data)
    payload = {"data": data, "codec": codec, "max_output_size": limit}
    if op.can_inline(size):
        cap = INLINE_OUTPUT_MAX if limit is None else min(limit, INLINE_OUTPUT_MAX)
        try:
            return op.inline(handlers.decompress, {**payload, "max_output_size": cap}, size)
        except ValidationError:
            if cap == limit:  # the caller's own limit: the same error a worker would raise
                raise
    _check_codec(codec)  # (a bad codec also lands here, and is refused before sending)
    payload["data"] = as_buffer(data)
    out: bytes = yield from run_one(op, "decompress", payload, size)
    return out


def compress_file_plan(
    op: Operation, src: StrPath, dst: StrPath, codec: str, level: int | None
) -> Plan[None]:
    _check_level(_check_codec(codec), level)
    source = _fspath(src, "source")
    target = _fspath(dst, "destination")
    before = source_state(source)
    ranges = None
    if before is not None and splittable(codec):
        ranges = split_ranges(before[0], op.workers, op.tuning)
    if before is None or ranges is None:
        payload = {"src": source, "dst": target, "codec": codec, "level": level}
        yield from run_one(op, "compress_file", payload, None if before is None else before[0])
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
    source = _fspath(src, "source")
    payload = {
        "src": source,
        "dst": _fspath(dst, "destination"),
        "codec": codec,
        "max_output_size": limit,
    }
    yield from run_one(op, "decompress_file", payload, source_size(source))
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
    one stream.  Results are the same whichever way a call ran.  Get the
    instance from :attr:`workerbridge.WorkerBridge.compression`.
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
            result is one frame or member per part.

        Raises
        ------
        workerbridge.ValidationError
            Unknown codec, bad level, or ``data`` not bytes-like.
        {errors}
        """
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

        Parameters
        ----------
        data
            A bytes-like object.
        codec
            ``"zstd"``, ``"snappy"``, ``"gzip"`` or ``"zlib"``.
        max_output_size
            Refuse output larger than this many bytes (``None``: no limit); a
            decompression bomb then fails without ever holding its output.
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
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, decompress_plan(op, data, codec, max_output_size))

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
        temporary file is left.  Progress counts compressed bytes read.

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
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, decompress_plan(op, data, codec, max_output_size))

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
