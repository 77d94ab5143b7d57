"""Sanitized errors across the process boundary.

Data flow::

    handler raises exc --error_record(exc)--> {"type", "message", "traceback"?}
        --error frame--> parent --exception_from_record(record, task_id)--> typed exception

Only the exception's type name and a scrubbed message cross: bytes literals and
long hex or base64 runs (which could be key material or payload bytes) are
replaced by placeholders and the message is truncated.  workerbridge's own
error types (``IntegrityError``, ``ValidationError``, ...) are rebuilt as the
same type so the caller sees identical errors in the pool and in-process; any
other exception becomes :exc:`RemoteError`.  The in-process fallback sends its
exceptions through the same two functions, so both modes raise alike.
"""

from __future__ import annotations

import re
import traceback
from typing import Final

from . import _errors
from ._errors import RemoteError, TaskCancelledError, TaskError

__all__ = ["MAX_MESSAGE", "error_record", "exception_from_record", "sanitize"]

#: Longest message that crosses; longer ones are cut with an ellipsis.
MAX_MESSAGE: Final = 500

_BYTES_LITERAL = re.compile(r"""(?:bytearray\()?b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)?""")
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_LONG_B64 = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")

_PASSTHROUGH: Final = {
    name: getattr(_errors, name)
    for name in (
        "IntegrityError",
        "NonceReuseError",
        "ProtocolError",
        "ValidationError",
    )
}


def sanitize(message: str) -> str:
    """Scrub bytes literals and long hex/base64 runs from ``message`` and truncate it."""
    message = _BYTES_LITERAL.sub("<bytes redacted>", message)
    message = _LONG_HEX.sub("<hex redacted>", message)
    message = _LONG_B64.sub("<data redacted>", message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return message


def error_record(exc: BaseException, debug: bool = False) -> dict[str, str]:
    """Describe ``exc`` for the error frame: sanitized type name and message."""
    record = {"type": type(exc).__name__, "message": sanitize(str(exc))}
    if isinstance(exc, TaskCancelledError):
        record["type"] = "TaskCancelledError"
    if debug:
        record["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return record


def exception_from_record(record: object, task_id: int | None) -> BaseException:
    """Rebuild the exception the caller sees from an error record."""
    if not isinstance(record, dict):
        return RemoteError("handler failed (malformed error record)", task_id)
    type_name = str(record.get("type", "Exception"))
    message = str(record.get("message", ""))
    tb = record.get("traceback")
    if type_name == "TaskCancelledError":
        return TaskCancelledError(message or "task cancelled", task_id)
    cls = _PASSTHROUGH.get(type_name)
    if cls is None and type_name in ("TransferError", "HTTPError"):
        from .bridges import _transfer

        cls = getattr(_transfer, type_name)
    if cls is not None:
        exc: BaseException = cls(message)
        if isinstance(exc, TaskError):
            exc.task_id = task_id
        return exc
    return RemoteError(
        f"{type_name}: {message}" if message else type_name,
        task_id,
        remote_type=type_name,
        remote_traceback=str(tb) if tb is not None else None,
    )
