"""Handlers used by the test suite (imported by name in every worker)."""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import time
from typing import Any

import workerbridge as wb


@wb.handler("t", "add")
def add(ctx: wb.Context, payload: Any) -> Any:
    return payload["a"] + payload["b"]


@wb.handler("t", "pid")
def pid(ctx: wb.Context, payload: Any) -> int:
    return os.getpid()


@wb.handler("t", "exit")
def exit_(ctx: wb.Context, payload: Any) -> None:
    os._exit(int(payload))


@wb.handler("t", "sigkill")
def sigkill(ctx: wb.Context, payload: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@wb.handler("t", "segfault")
def segfault(ctx: wb.Context, payload: Any) -> None:
    ctypes.string_at(0)


@wb.handler("t", "spin")
def spin(ctx: wb.Context, payload: Any) -> None:
    while True:  # ignores ctx.cancelled on purpose
        pass


@wb.handler("t", "spin_c")
def spin_c(ctx: wb.Context, payload: Any) -> int:
    # one C call that holds the GIL for a very long time
    return sum(itertools.repeat(1, 10**13))


@wb.handler("t", "coop")
def coop(ctx: wb.Context, payload: Any) -> int:
    steps = int(payload.get("steps", 100))
    delay = float(payload.get("delay", 0.01))
    for i in range(steps):
        ctx.check_cancelled()
        ctx.report(i, steps)
        time.sleep(delay)
    ctx.report(steps, steps)
    return steps


@wb.handler("t", "raise")
def raise_(ctx: wb.Context, payload: Any) -> None:
    raise ValueError(f"bad input {payload!r} with key {bytes(range(32)).hex()}")


@wb.handler("t", "raise_integrity")
def raise_integrity(ctx: wb.Context, payload: Any) -> None:
    raise wb.IntegrityError("authentication failed")


@wb.handler("t", "state_add")
def state_add(ctx: wb.Context, payload: Any) -> Any:
    items = ctx.state.setdefault(payload["key"], [])
    items.append(payload["value"])
    return {"pid": os.getpid(), "worker": ctx.worker, "items": list(items)}


@wb.handler("t", "record")
def record(ctx: wb.Context, payload: Any) -> Any:
    log = ctx.state.setdefault("order", [])
    log.append(payload)
    return list(log)


@wb.handler("t", "sleep")
def sleep(ctx: wb.Context, payload: Any) -> float:
    time.sleep(float(payload))
    return float(payload)


@wb.handler("t", "counter")
def counter(ctx: wb.Context, payload: Any) -> int:
    c: wb.SharedCounter = payload_counter(payload)
    return c.add(1)


def payload_counter(payload: Any) -> Any:
    import pickle

    return pickle.loads(bytes(payload))


@wb.handler("t", "bufsum")
def bufsum(ctx: wb.Context, payload: Any) -> Any:
    view = payload["data"]
    return {"type": type(view).__name__, "len": len(view), "sum": sum(bytes(view[:1024]))}


@wb.handler("t", "bufpart")
def bufpart(ctx: wb.Context, payload: Any) -> Any:
    """Return part of a handed buffer's view (``payload["data"][:n]``): a copy comes back."""
    return payload["data"][: payload["n"]]


@wb.handler("t", "wait_token")
def wait_token(ctx: wb.Context, payload: Any) -> bool:
    end = time.monotonic() + float(payload)
    while time.monotonic() < end:
        if ctx.cancelled:
            return True
        time.sleep(0.002)
    return False


@wb.handler("t", "wait_file")
def wait_file(ctx: wb.Context, payload: Any) -> str:
    """Wait (up to ``payload["limit"]`` s) until the file ``payload["path"]`` exists."""
    end = time.monotonic() + float(payload.get("limit", 60))
    while time.monotonic() < end:
        if os.path.exists(payload["path"]):
            return "seen"
        time.sleep(0.005)
    return "gave up"


@wb.handler("t", "bigresult")
def bigresult(ctx: wb.Context, payload: Any) -> bytes:
    return bytes([7]) * int(payload)


@wb.handler("t", "unencodable")
def unencodable(ctx: wb.Context, payload: Any) -> Any:
    return object()
