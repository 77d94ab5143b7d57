"""workerbridge's internal handlers, on the reserved ``_wb`` channel.

Data flow::

    Executor.submit(fn, *args)  -> pickle.dumps((fn, args, kwargs)) -> ("_wb", "call")
    Executor.map(fn, items)     -> pickle.dumps((fn, items, True, debug, budget))
                                                                    -> ("_wb", "batch")
    Executor.map(fn, a, b, ...) -> pickle.dumps((fn, [args, ...], False, debug, budget))
                                                                    -> ("_wb", "batch")
    worker: pickle.loads (only here, only frames from its own parent) -> fn(item) / fn(*args)
            -> pickle.dumps(result), or for a batch (results, error record | None, seconds)
            -> parent -> pickle.loads

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
from ._remote import error_record

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


#: Seconds of calls a batch runs between two checks of its cancel flag (and of
#: its budget), about: a batch of tiny calls checks a few times, one of slow
#: calls before each call.
_CHECK_INTERVAL = 0.01


@handler("_wb", "batch")
def _batch(ctx: Context, payload: Any) -> bytes:
    """``(fn, items, single, debug, budget)``: ``fn(item)`` (single) or ``fn(*item)`` for each.

    Returns the pickled ``(results, error, seconds)``: the results in order, and
    ``error`` ``None``, or the error record of the first call that raised (the
    results are then those of the calls before it).  With a ``budget`` (seconds)
    the batch stops once it has run that long and returns the results so far:
    the caller sends the other items again.  The calls run in slices, growing
    fourfold while a slice takes less than :data:`_CHECK_INTERVAL`, with a
    cancel check before each.
    """
    fn, items, single, debug, budget = _loads(payload)
    call = map if single else itertools.starmap
    out: list[Any] = []
    total = len(items)
    done = 0
    step = 1
    clock = time.perf_counter
    begin = last = clock()
    while done < total:
        ctx.check_cancelled()
        try:
            out.extend(call(fn, items[done : done + step]))
        except Exception as exc:
            # ``out`` holds the results of the calls before the one that raised
            return _batch_result(out, error_record(exc, debug), clock() - begin, debug)
        done += step
        now = clock()
        if budget is not None and now - begin >= budget:
            break
        if now - last < _CHECK_INTERVAL:
            step *= 4
        last = now
    return _batch_result(out, None, clock() - begin, debug)


def _batch_result(out: list[Any], error: object, seconds: float, debug: bool) -> bytes:
    """Pickle a batch's outcome; a result that cannot be pickled becomes its error."""
    try:
        return _dumps((out, error, seconds))
    except ValidationError:
        for index, value in enumerate(out):
            try:
                _dumps(value)
            except ValidationError as exc:
                return _dumps((out[:index], error_record(exc, debug), seconds))
        raise


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
