"""Handlers of the ``file`` channel: what ``bridge.file`` runs in a worker.

Data flow::

    FileBridge method (parent) --payload dict--> handler(ctx, payload) in a worker
        --> engine function of ._files (streamed, ctx for progress and cancellation)
        --> plain result (str, bytes, int)

``assemble`` is internal: the last step of the parallel file paths of the
compression and crypto bridges (see :mod:`._parts`).  Payload keys are the
engine's argument names; the parent validated them, the engines check again.
"""

from __future__ import annotations

from typing import Any

from .._registry import Context, handler
from . import _files, _parts

__all__: list[str] = []


@handler("file", "hash")
def hash_(ctx: Context, p: dict[str, Any]) -> str:
    return _files.hash_file(p["path"], p["algorithm"], ctx=ctx)


@handler("file", "copy")
def copy(ctx: Context, p: dict[str, Any]) -> int:
    return _files.copy_file(p["src"], p["dst"], ctx=ctx)


@handler("file", "read")
def read(ctx: Context, p: dict[str, Any]) -> bytes:
    return _files.read_range(p["path"], p["offset"], p["length"], ctx=ctx)


@handler("file", "write")
def write(ctx: Context, p: dict[str, Any]) -> int:
    return _files.write_file(p["path"], p["data"], ctx=ctx)


@handler("file", "assemble")
def assemble(ctx: Context, p: dict[str, Any]) -> int:
    return _parts.commit(p["tmp"], p["dst"], p["mode"], p["size"], p["parts"], ctx)
