"""Handlers of the ``network`` channel: what ``bridge.network`` runs in a worker.

Data flow::

    NetworkBridge plan (parent: validation) --payload dict--> handler(ctx, payload)
        --> ._http.download / ._http.upload (urllib3, retries, resume, tus)
        --> {"transfer": [url, path, bytes, sha256]}
         or {"error": [type, message, url, status]}   TransferError / HTTPError
    parent: transfer_from_record() --> workerbridge.Transfer, or raises the same
            TransferError / HTTPError the engine raised

The error record exists because only workerbridge's core errors cross the
process boundary with their type; :exc:`TransferError` and :exc:`HTTPError`
travel as a result instead, so callers match on the real types in both modes.
Messages are scrubbed as every error frame is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import Context, handler
from .._remote import sanitize
from . import _http

__all__ = ["transfer_from_record"]


def _record(run: Callable[..., _http.Transfer], **kwargs: Any) -> dict[str, Any]:
    try:
        done = run(**kwargs)
    except _http.HTTPError as exc:
        return {"error": ["HTTPError", sanitize(str(exc)), exc.url, exc.status]}
    except _http.TransferError as exc:
        return {"error": ["TransferError", sanitize(str(exc)), exc.url, None]}
    return {"transfer": [done.url, done.path, done.bytes, done.sha256]}


@handler("network", "download")
def download(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _record(_http.download, ctx=ctx, **p)


@handler("network", "upload")
def upload(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return _record(_http.upload, ctx=ctx, **p)


def transfer_from_record(record: dict[str, Any]) -> _http.Transfer:
    """Turn a handler's record back into a :class:`Transfer`, or raise its error."""
    error = record.get("error")
    if error is not None:
        kind, message, url, status = error
        if kind == "HTTPError":
            raise _http.HTTPError(message, url, status)
        raise _http.TransferError(message, url)
    url, path, size, digest = record["transfer"]
    return _http.Transfer(url=url, path=path, bytes=size, sha256=digest)
