"""Handlers of the ``compression`` channel: what ``bridge.compression`` runs in a worker.

Data flow::

    CompressionBridge plan (parent) --payload dict--> handler(ctx, payload)
        --> engine function of ._codecs / ._multiframe --> bytes (or bytes written)

    parallel bytes paths: compress_chunk makes one independent zstd frame / gzip
    member of a part; decompress_part decodes one run of whole frames / members.

    parallel file paths: compress_range writes its zstd frame / gzip member into
    a part file the parent created (._parts.write_at); split_file walks a
    compressed file's frames, then decompress_range writes the output of one
    run of frames at its known offset of the one temporary file the parent
    created; file/assemble joins or commits them.

The same functions run in the caller's thread for tiny inputs (the plan's
``op.inline``), so the result is identical wherever a call ran.
"""

from __future__ import annotations

from typing import Any

from .._registry import Context, handler
from . import _codecs, _multiframe, _parts

__all__: list[str] = []


@handler("compression", "compress")
def compress(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _codecs.compress(p["data"], p["codec"], p["level"])


@handler("compression", "decompress")
def decompress(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _codecs.decompress(p["data"], p["codec"], p["max_output_size"])


@handler("compression", "compress_chunk")
def compress_chunk(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _codecs.compress_chunk(p["data"], p["codec"], p["level"])


@handler("compression", "decompress_part")
def decompress_part(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _multiframe.decompress_part(p["data"], p["codec"], p["size"])


@handler("compression", "compress_file")
def compress_file(ctx: Context, p: dict[str, Any]) -> int:
    return _codecs.compress_file(p["src"], p["dst"], p["codec"], p["level"], ctx=ctx)


@handler("compression", "decompress_file")
def decompress_file(ctx: Context, p: dict[str, Any]) -> int:
    return _codecs.decompress_file(p["src"], p["dst"], p["codec"], p["max_output_size"], ctx=ctx)


@handler("compression", "compress_range")
def compress_range(ctx: Context, p: dict[str, Any]) -> int:
    """Compress one byte range of ``src`` into the part file ``part``; return its size."""
    data = _codecs.compress_file_range(
        p["src"], p["offset"], p["length"], p["codec"], p["level"], ctx=ctx
    )
    ctx.check_cancelled()
    return _parts.write_at(p["part"], data, 0)


@handler("compression", "split_file")
def split_file(ctx: Context, p: dict[str, Any]) -> list[list[int]] | None:
    """Walk the frames of ``src``: ``[offset, length, size]`` of each run, or ``None``."""
    ctx.check_cancelled()
    return _multiframe.split_file(p["src"], p["codec"], p["max_output_size"], p["part_size"])


@handler("compression", "decompress_range")
def decompress_range(ctx: Context, p: dict[str, Any]) -> int:
    """Decompress one run of frames of ``src`` into ``out`` at ``at``; return its size."""
    return _multiframe.decompress_file_range(
        p["src"], p["offset"], p["length"], p["codec"], p["size"], p["out"], p["at"], ctx=ctx
    )
