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

import contextvars
import os
from collections.abc import Callable
from typing import Any

from ._protocol import pack_payload, unpack_payload
from ._registry import Context, lookup
from ._remote import error_record

__all__ = ["TMP_TAG", "Outcome", "run_request", "set_owner", "tmp_tag"]

#: The tag of the running request, ``wb<owner pid>-<task id>``: the temporary files
#: of atomic outputs carry it, so the caller can remove those of a task whose
#: worker was killed before it could clean up (see ``bridges._files.atomic_writer``).
TMP_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("workerbridge_tmp_tag", default="")

_owner: list[int | None] = [None]  # None: this process (the in-process backend)


def set_owner(pid: int) -> None:
    """In a worker: the pid of the parent whose task ids the tags carry."""
    _owner[0] = pid


def tmp_tag(task_id: int, owner: int | None = None) -> str:
    """The temporary-file tag of task ``task_id`` of the bridge in process ``owner``."""
    if owner is None:
        owner = _owner[0] or os.getpid()
    return f"wb{owner}-{task_id}"


#: ``(True, result_bytes, buffers)`` or ``(False, error_record, [])``.
Outcome = tuple[bool, Any, list[Any]]


def run_request(
    channel: str,
    op: str,
    payload: bytes | None,
    resolve: Callable[[int], object],
    ctx: Context,
    debug: bool = False,
    returned: dict[int, Any] | None = None,
) -> Outcome:
    """Look up the handler, decode the payload, run, encode the result or the error.

    ``returned`` maps the ids of the handed-buffer views ``resolve`` gave out to
    what the result carries instead if the handler returns one (see
    :func:`~workerbridge._protocol.pack_payload`).
    """
    tag = TMP_TAG.set(tmp_tag(ctx.task_id))
    try:
        entry = lookup(channel, op)
        value = None if payload is None else unpack_payload(payload, resolve)
        result = entry.fn(ctx, value)
        packed, buffers = pack_payload(result, returned=returned)
    except BaseException as exc:  # a handler's SystemExit must not end the worker
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False, error_record(exc, debug), []
    finally:
        TMP_TAG.reset(tag)
    return True, packed, buffers
