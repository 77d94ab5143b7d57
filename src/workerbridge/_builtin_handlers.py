"""workerbridge's internal handlers, on the reserved ``_wb`` channel.

Data flow::

    Executor.submit(fn, *args)  -> pickle.dumps((fn, args, kwargs))  -> ("_wb", "call")
    Executor.map(fn, items)     -> pickle.dumps((fn, [item, ...], True)) -> ("_wb", "batch")
    Executor.map(fn, a, b, ...) -> pickle.dumps((fn, [args, ...]))    -> ("_wb", "batch")
    worker: pickle.loads (only here, only frames from its own parent) -> fn(item) / fn(*args)
            -> pickle.dumps(result) -> parent -> pickle.loads

``echo`` and ``noop`` exist for benchmarks and health checks.

Pickle is the one place where arbitrary code can run on load, so it is used
only for :class:`workerbridge.Executor` callables travelling between a parent
and the workers it started itself, over pipes no one else holds.
"""

from __future__ import annotations

import itertools
import pickle
import sys
import threading
import time
from typing import Any

from ._errors import ValidationError
from ._registry import Context, handler

__all__: list[str] = []

#: Set by the worker from its handshake: the parent's ``__main__`` file, so that
#: functions defined in a script can be unpickled (as ``multiprocessing`` does).
MAIN_PATH: list[str | None] = [None]
_main_lock = threading.Lock()
MAIN_FIXED = threading.Event()


def _ensure_main(blob: bytes) -> None:
    if MAIN_FIXED.is_set() or b"__main__" not in blob:
        return
    with _main_lock:
        if MAIN_FIXED.is_set():
            return
        MAIN_FIXED.set()
        path = MAIN_PATH[0]
        main = sys.modules.get("__main__")
        if path is None or getattr(main, "__file__", None) == path:
            return
        from multiprocessing import spawn

        spawn._fixup_main_from_path(path)  # type: ignore[attr-defined]


def _loads(data: Any) -> Any:
    blob = bytes(data)
    _ensure_main(blob)
    return pickle.loads(blob)


def _dumps(value: object) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ValidationError(
            f"the result of type {type(value).__qualname__} cannot be pickled: {exc}"
        ) from None


@handler("_wb", "call")
def _call(ctx: Context, payload: Any) -> bytes:
    fn, args, kwargs = _loads(payload)
    return _dumps(fn(*args, **kwargs))


#: Calls run between two checks of the cancel flag in a batch.
_BATCH_SLICE = 256


@handler("_wb", "batch")
def _batch(ctx: Context, payload: Any) -> bytes:
    """``(fn, items)``: ``fn(*args)`` for each args tuple; ``(fn, items, True)``: ``fn(item)``."""
    fn, items, *single = _loads(payload)
    call = map if single and single[0] else itertools.starmap
    out: list[Any] = []
    for start in range(0, len(items), _BATCH_SLICE):
        ctx.check_cancelled()
        out.extend(call(fn, items[start : start + _BATCH_SLICE]))
    return _dumps(out)


@handler("_wb", "echo")
def _echo(ctx: Context, payload: Any) -> Any:
    return payload


@handler("_wb", "noop")
def _noop(ctx: Context, payload: Any) -> None:
    return None


@handler("_wb", "sleep")
def _sleep(ctx: Context, payload: Any) -> float:
    """Sleep cooperatively for ``payload`` seconds, reporting progress in ms."""
    seconds = float(payload)
    end = time.monotonic() + seconds
    total = max(1, int(seconds * 1000))
    while True:
        left = end - time.monotonic()
        ctx.report(total - max(0, int(left * 1000)), total)
        if left <= 0:
            return seconds
        ctx.check_cancelled()
        time.sleep(min(left, 0.005))
