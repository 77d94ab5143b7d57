"""Handlers used by the examples in the workerbridge documentation.

A bridge created with ``handlers=["textjobs"]`` imports this module in the
calling process and in every worker, which registers the handlers below.  The
documentation's build puts this directory on ``sys.path`` and runs every
example against these handlers, so the pages cannot drift from the code.
"""

from __future__ import annotations

import os
import time
from typing import Any

import workerbridge as wb


# -- a first handler ---------------------------------------------------------------------


@wb.handler("text", "count_words")
def count_words(ctx: wb.Context, text: str) -> int:
    """Return the number of whitespace-separated words in ``text``."""
    return len(text.split())


# -- progress and cooperative cancellation ------------------------------------------------


@wb.handler("text", "count_lines")
def count_lines(ctx: wb.Context, data: bytes | memoryview) -> int:
    """Count the newlines in ``data``, 64 KiB at a time, reporting progress in bytes."""
    view = memoryview(data)
    step = 64 * 1024
    lines = 0
    for start in range(0, len(view), step):
        ctx.check_cancelled()  # raises TaskCancelledError once the task is cancelled
        lines += bytes(view[start : start + step]).count(b"\n")
        ctx.report(min(start + step, len(view)), len(view))
    return lines


@wb.handler("demo", "nap")
def nap(ctx: wb.Context, seconds: float) -> str:
    """Wait ``seconds``, checking the cancel flag every 10 ms (a cooperative handler)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            return "stopped early"  # the caller never sees this: its task has already failed
        time.sleep(0.01)
    return "rested"


@wb.handler("demo", "spin")
def spin(ctx: wb.Context, seconds: float) -> str:
    """Wait ``seconds`` without ever looking at the cancel flag (a non-cooperative handler)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


# -- payload types ------------------------------------------------------------------------


@wb.handler("text", "describe")
def describe(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, str]:
    """Return the type name of every value in a dict payload, as the handler sees it."""
    return {key: type(value).__name__ for key, value in payload.items()}


# -- affinity and worker state ------------------------------------------------------------


@wb.handler("text", "add_lines")
def add_lines(ctx: wb.Context, payload: dict[str, Any]) -> int:
    """Keep ``payload["lines"]`` in this worker, under ``payload["source"]``."""
    kept = ctx.state.setdefault(("lines", payload["source"]), [])
    kept.extend(payload["lines"])
    return len(kept)


@wb.handler("text", "grep")
def grep(ctx: wb.Context, payload: dict[str, Any]) -> list[str]:
    """Return the kept lines of ``payload["source"]`` that contain ``payload["word"]``."""
    kept = ctx.state.get(("lines", payload["source"]), [])
    return [line for line in kept if payload["word"] in line]


@wb.handler("text", "where")
def where(ctx: wb.Context, payload: object) -> int:
    """Return the index of the worker running this task."""
    return ctx.worker


# -- failures -----------------------------------------------------------------------------


@wb.handler("text", "parse_int")
def parse_int(ctx: wb.Context, text: str) -> int:
    """Parse ``text`` as an integer; a bad value raises :exc:`ValueError` in the handler."""
    return int(text)


@wb.handler("demo", "crash")
def crash(ctx: wb.Context, caller_pid: int) -> None:
    """End the worker process abruptly with exit status 3, as a crash in C code would."""
    if os.getpid() == caller_pid:  # in-process fallback: never take the caller down
        raise RuntimeError("refusing to crash the calling process")
    os._exit(3)


# -- plain functions for wb.Executor ------------------------------------------------------


def shout(word: str) -> str:
    """Return ``word`` in capitals with an exclamation mark (an Executor example)."""
    return word.upper() + "!"
