"""Handlers of the reliability scenarios (channel ``rel``), imported in every worker."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import workerbridge as wb


@wb.handler("rel", "echo")
def echo(ctx: wb.Context, payload: Any) -> Any:
    return payload


@wb.handler("rel", "work")
def work(ctx: wb.Context, payload: Any) -> Any:
    """Idempotent small job: sleep ``payload["ms"]`` milliseconds, return ``payload["id"]``."""
    ms = float(payload.get("ms", 0))
    if ms > 0:
        time.sleep(ms / 1000)
    return payload["id"]


@wb.handler("rel", "pid")
def pid(ctx: wb.Context, payload: Any) -> int:
    return os.getpid()


@wb.handler("rel", "spin")
def spin(ctx: wb.Context, payload: Any) -> None:
    while True:  # pure-Python loop that never looks at ctx.cancelled
        pass


@wb.handler("rel", "spin_c")
def spin_c(ctx: wb.Context, payload: Any) -> int:
    # one C call that holds the GIL for hours: no Python code runs until it returns
    return sum(itertools.repeat(1, 10**13))


@wb.handler("rel", "coop")
def coop(ctx: wb.Context, payload: Any) -> float | None:
    """Poll ``ctx.cancelled`` every ``poll`` seconds (at most ``limit`` s).

    When the flag shows up, write the ``time.monotonic()`` of that moment to
    ``payload["mark"]`` (CLOCK_MONOTONIC is shared by all processes on Linux)
    so the caller can measure how fast the flag reached the handler.
    """
    poll = float(payload.get("poll", 0.001))
    end = time.monotonic() + float(payload.get("limit", 30))
    ctx.report(0, 1)
    while time.monotonic() < end:
        if ctx.cancelled:
            seen = time.monotonic()
            mark = payload.get("mark")
            if mark:
                with open(mark, "w") as f:
                    f.write(repr(seen))
            return seen
        time.sleep(poll)
    return None


@wb.handler("rel", "crash")
def crash(ctx: wb.Context, payload: Any) -> None:
    os._exit(int(payload or 70))
