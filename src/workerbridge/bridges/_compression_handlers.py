"""Handlers of the ``compression`` channel: what ``bridge.compression`` runs in a worker.

Data flow::

    CompressionBridge plan (parent) --payload dict--> handler(ctx, payload)
        --> engine function of ._codecs --> bytes (or bytes written, for files)

    parallel file path: compress_range writes its zstd frame / gzip member into
    a part file the parent created (._parts.write_at); file/assemble joins them.

The same functions run in the caller's thread for tiny inputs (the plan's
``op.inline``), so the result is identical wherever a call ran.
"""

from __future__ import annotations

from typing import Any

from .._registry import Context, handler
from . import _codecs, _parts

__all__: list[str] = []


@handler("compression", "compress")
def compress(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _codecs.compress(p["data"], p["codec"], p["level"])


@handler("compression", "decompress")
def decompress(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _codecs.decompress(p["data"], p["codec"], p["max_output_size"])


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
