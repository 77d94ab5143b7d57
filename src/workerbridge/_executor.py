"""Executor: a drop-in :class:`concurrent.futures.Executor` over a WorkerBridge.

Data flow::

    submit(fn, *args, **kw) --pickle--> ("_wb", "call") task --> Task (a Future)
    map(fn, *iterables)     --batches of `chunksize` calls--> ("_wb", "batch") tasks
                            --results unpickled and yielded in order
    shutdown(wait, cancel_futures) --> WorkerBridge.close(wait, cancel_pending)

Futures are :class:`workerbridge.Task` objects, so workerbridge's crash and
timeout behaviour applies: a worker that dies fails only its own future with
:exc:`WorkerCrashedError` and the pool keeps serving (unlike
``ProcessPoolExecutor``, where one dead worker breaks the pool).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from ._bridge import WorkerBridge
from ._errors import TaskTimeoutError, ValidationError
from ._task import Task

__all__ = ["Executor"]

P = ParamSpec("P")
T = TypeVar("T")

#: Batches per worker that ``map`` aims for when it can see the input's length:
#: more batches balance uneven work better, fewer cost fewer round trips.
BATCHES_PER_WORKER = 4

#: Largest automatic batch, so that results stream back while ``map`` runs.
MAX_AUTO_CHUNK = 4096


def _pickle(obj: object) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ValidationError(f"cannot pickle the call: {exc}") from None


class Executor(concurrent.futures.Executor):
    """A :class:`concurrent.futures.Executor` running calls in workerbridge's worker processes.

    Parameters
    ----------
    max_workers
        Number of worker processes (``None``: :func:`os.cpu_count`).
    **bridge_options
        Passed to :class:`WorkerBridge` (``fallback``, ``max_queue``,
        ``default_timeout``, ...).

    Notes
    -----
    Functions and arguments are pickled, as with
    :class:`~concurrent.futures.ProcessPoolExecutor`; functions must be
    importable (defined at module level; a script's functions work when the
    script is guarded by ``if __name__ == "__main__":``).
    """

    def __init__(self, max_workers: int | None = None, **bridge_options: Any) -> None:
        bridge_options.setdefault("max_queue", 1 << 30)
        self._bridge = WorkerBridge(max_workers, **bridge_options)

    @property
    def bridge(self) -> WorkerBridge:
        """The :class:`WorkerBridge` behind this executor."""
        return self._bridge

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Task[T]:
        """Schedule ``fn(*args, **kwargs)``; return a :class:`Task` (a Future).

        Raises
        ------
        ValidationError
            ``fn`` or its arguments cannot be pickled (nothing was sent).
        PoolClosedError
            The executor was shut down.
        """
        blob = _pickle((fn, args, kwargs))
        raw: Task[Any] = self._bridge.submit("_wb", "call", blob, block=True)
        return _chain(raw, pickle.loads)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[T]:
        """Like :meth:`concurrent.futures.Executor.map`, batching calls automatically.

        Parameters
        ----------
        timeout
            Seconds from this call until every result must be ready; a late
            result raises :exc:`TimeoutError` (a :exc:`~workerbridge.TaskTimeoutError`)
            and the remaining batches are cancelled.
        chunksize
            Calls per batch.  ``None`` picks one: about four batches per worker
            when the input has a length, otherwise growing batches.
        """
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValidationError(f"chunksize must be a positive int, got {chunksize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        single = len(iterables) == 1  # send the items themselves, not 1-tuples
        args_iter: Iterator[Any] = iter(iterables[0]) if single else zip(*iterables, strict=False)
        if chunksize is None:
            total = None
            if len(iterables) == 1 and hasattr(iterables[0], "__len__"):
                total = len(iterables[0])  # type: ignore[arg-type]
            if total is not None:
                per = -(-total // (self._bridge.workers * BATCHES_PER_WORKER))
                sizes: Iterator[int] = itertools.repeat(max(1, min(per, MAX_AUTO_CHUNK)))
            else:
                sizes = (min(MAX_AUTO_CHUNK, 2**i) for i in itertools.count())
        else:
            sizes = itertools.repeat(chunksize)

        tasks: list[Task[list[T]]] = []
        while True:
            batch = list(itertools.islice(args_iter, next(sizes)))
            if not batch:
                break
            blob = _pickle((fn, batch, True) if single else (fn, batch))
            raw: Task[Any] = self._bridge.submit("_wb", "batch", blob, block=True)
            tasks.append(_chain(raw, pickle.loads))

        def results() -> Iterator[T]:
            try:
                for task in tasks:
                    left = None if deadline is None else deadline - time.monotonic()
                    try:
                        chunk = task.result(left)
                    except concurrent.futures.TimeoutError:
                        raise TaskTimeoutError(
                            f"map results not ready within {timeout} s", task.id
                        ) from None
                    yield from chunk
            finally:
                for task in tasks:
                    task.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the executor; see :meth:`concurrent.futures.Executor.shutdown`.

        ``cancel_futures=True`` cancels calls not yet started; with
        ``wait=True`` running calls finish first.
        """
        self._bridge.close(wait=wait, cancel_pending=cancel_futures or not wait)


def _chain(raw: Task[Any], convert: Callable[[Any], T]) -> Task[T]:
    """Return a Task with ``raw``'s id whose result is ``convert(raw.result())``."""
    out: Task[T] = Task(raw.id, raw.channel, raw.op, None)
    out.cancel = raw.cancel  # type: ignore[method-assign]

    def done(_: concurrent.futures.Future[Any]) -> None:
        try:
            value = convert(raw.result(0))
        except BaseException as exc:
            if not out.done():
                if raw.cancelled():
                    out._cancel_now()
                else:
                    out.set_exception(exc)
            return
        if not out.done():
            out.set_result(value)

    raw.add_done_callback(done)
    return out


Executor.__module__ = "workerbridge"
