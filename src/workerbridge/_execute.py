"""Running one request: shared by the worker process and the in-process fallback.

Data flow::

    (channel, op, payload bytes, resolve) --lookup--> handler entry
        --unpack_payload--> payload --handler(ctx, payload)--> result
        --pack_payload--> (result bytes, out-of-band buffers)    ok
        or error_record(exc) -> {"type", "message"}              failed

Both backends call :func:`run_request`, so a handler sees the same payload
types and a caller the same result types and errors whichever way it ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._protocol import pack_payload, unpack_payload
from ._registry import Context, lookup
from ._remote import error_record

__all__ = ["Outcome", "run_request"]

#: ``(True, result_bytes, buffers)`` or ``(False, error_record, [])``.
Outcome = tuple[bool, Any, list[Any]]


def run_request(
    channel: str,
    op: str,
    payload: bytes | None,
    resolve: Callable[[int], object],
    ctx: Context,
    debug: bool = False,
) -> Outcome:
    """Look up the handler, decode the payload, run, encode the result or the error."""
    try:
        entry = lookup(channel, op)
        value = None if payload is None else unpack_payload(payload, resolve)
        result = entry.fn(ctx, value)
        packed, buffers = pack_payload(result)
    except BaseException as exc:  # a handler's SystemExit must not end the worker
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False, error_record(exc, debug), []
    return True, packed, buffers
