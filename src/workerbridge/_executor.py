"""Executor: a drop-in :class:`concurrent.futures.Executor` over a WorkerBridge.

Data flow::

    submit(fn, *args, **kw) --pickle--> ("_wb", "call") task --> Task (a Future)
    map(fn, *iterables)     --> _MapRun: the input cut into batches, each pickled
                                and sent as one ("_wb", "batch") task; at most
                                `ahead` batches submitted and not yet consumed
        worker:   runs the batch's calls; an automatic batch still running after
                  BATCH_BUDGET returns the results it has (a "cut" batch)
        consumer: next(iterator) --wait for the oldest batch, unpickle it; a cut
                  batch's remaining calls are resubmitted right behind it, in
                  batches sized from the pace measured (as is more input,
                  submitted next)--> the batch's result list --> its items
                  (a C-level chain)
    shutdown(wait, cancel_futures) --> WorkerBridge.close(wait, cancel_pending)

Futures are :class:`workerbridge.Task` objects, so workerbridge's crash and
timeout behaviour applies: a worker that dies fails only its own future with
:exc:`WorkerCrashedError` and the pool keeps serving (unlike
``ProcessPoolExecutor``, where one dead worker breaks the pool).

``map`` does all of its own work on the consuming thread (no helper thread):
the batches ahead keep the workers busy while it pickles the next batch or
unpickles a finished one, and the lanes' reader threads only pass raw result
bytes on, so a worker gets its next batch without waiting for the caller.
Automatic batches start large, one per worker (a batch costs a round trip
through the pool, the price that matters for tiny calls), and the time budget
keeps slow or uneven calls balanced over the workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import pickle
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

from ._bridge import WorkerBridge
from ._errors import TaskError, TaskTimeoutError, ValidationError
from ._remote import exception_from_record
from ._task import Task

__all__ = ["Executor"]

P = ParamSpec("P")
T = TypeVar("T")

#: Batches per worker that ``map`` cuts an input with a length into
#: (``chunksize=None``).  Each batch costs a round trip through the pool, about
#: 0.1 ms of its time, so for tiny calls fewer, larger batches win; the balance
#: over the workers that more batches would bring comes from BATCH_BUDGET.
BATCHES_PER_WORKER = 1

#: Largest automatic batch (and where the growing batches of an input without
#: a length stop growing): it bounds the pickled input in flight per batch, and
#: the calls pickled twice when a batch is cut.
MAX_AUTO_CHUNK = 16384

#: Seconds an automatic batch runs before it returns the results it has; its
#: other calls go back to the caller's queue in smaller batches.  Shorter
#: balances uneven calls and streams results sooner; longer costs fewer round
#: trips.  ``None``: batches always run whole.
BATCH_BUDGET: float | None = 0.05

#: Seconds of calls that an automatic batch sent after the first results holds
#: at most, at the pace of the last batch read: the rest of a cut batch, and
#: further input (never more than planned).  A round trip costs about 0.1 ms.
PIECE_SECONDS = 0.02

#: Batches ``map`` keeps submitted and not yet consumed, per worker.  It bounds
#: the memory an endless or slowly consumed input can take; too few leave the
#: workers waiting for the consumer between batches.
AHEAD_PER_WORKER = 4


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

        Results come in input order.  The calls travel in batches, one task
        per batch.  The first batches are submitted before ``map`` returns;
        after that, up to ``AHEAD_PER_WORKER`` batches per worker stay
        submitted ahead of the results you have consumed, so an endless or
        very long input is read as you iterate, in bounded memory.

        Parameters
        ----------
        timeout
            Seconds from this call until every result must be ready; a late
            result raises :exc:`TimeoutError` (a :exc:`~workerbridge.TaskTimeoutError`)
            and the batches not consumed yet are cancelled.  Input not sent
            by then is not sent at all: the iterator raises in its place.
        chunksize
            Calls per batch.  ``None`` chooses: one batch per worker when the
            input has a length (at most ``MAX_AUTO_CHUNK`` calls), otherwise
            batches growing from 1 call; an automatic batch that runs longer
            than ``BATCH_BUDGET`` seconds returns early and its remaining calls
            are sent again in smaller batches, so slow or uneven calls stay
            spread over the workers.

        Returns
        -------
        Iterator
            The results.  A call that raised raises its error (usually a
            :exc:`~workerbridge.RemoteError`) when the iterator reaches it,
            after the results of the calls before it.  ``close()`` on the
            iterator, or dropping it, cancels the batches not consumed yet, as
            does :meth:`shutdown`.

        Raises
        ------
        ValidationError
            A bad ``chunksize``.
        Exception
            An error reading the input or sending a batch
            (:exc:`~workerbridge.ValidationError` for one that cannot be
            pickled, :exc:`~workerbridge.PoolClosedError` after
            :meth:`shutdown`): raised here for the batches sent before ``map``
            returns, later by the iterator in its place among the results.
        """
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ValidationError(f"chunksize must be a positive int, got {chunksize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        workers = self._bridge.workers
        single = len(iterables) == 1  # send the items themselves, not 1-tuples
        source: Any = iterables[0] if single else None
        sizes: Iterator[int]
        if chunksize is not None:
            sizes = itertools.repeat(chunksize)
        elif single and hasattr(source, "__len__"):
            sizes = _auto_sizes(len(source), workers)
        else:
            sizes = (min(MAX_AUTO_CHUNK, 2**i) for i in itertools.count())
        take: Callable[[int], Sequence[Any]]
        if type(source) in (list, tuple, range):
            take = _slicer(source)
        else:
            args = iter(source) if single else zip(*iterables, strict=False)
            take = lambda n: list(itertools.islice(args, n))  # noqa: E731
        run = _MapRun(
            self._bridge,
            fn,
            take,
            sizes,
            single=single,
            budget=BATCH_BUDGET if chunksize is None else None,
            ahead=AHEAD_PER_WORKER * workers,
            deadline=deadline,
            timeout=timeout,
        )
        try:
            run.fill(defer=False)
        except BaseException:
            run.cancel()
            raise
        batches = run.batches()
        results: _MapIterator[T] = _MapIterator.from_iterable(batches)  # type: ignore[assignment]
        results._batches = batches
        results._run = run
        return results

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the executor; see :meth:`concurrent.futures.Executor.shutdown`.

        ``cancel_futures=True`` cancels calls not yet started; with
        ``wait=True`` running calls finish first.
        """
        self._bridge.close(wait=wait, cancel_pending=cancel_futures or not wait)


def _auto_sizes(total: int, workers: int) -> Iterator[int]:
    """Batch sizes for ``total`` calls on ``workers`` workers (``chunksize=None``).

    :data:`BATCHES_PER_WORKER` equal batches per worker, at most
    :data:`MAX_AUTO_CHUNK` calls each.  (Smaller first batches, so that the
    workers start sooner, measured slower: each extra batch costs more than
    the overlap it buys.)
    """
    per = -(-total // (workers * BATCHES_PER_WORKER))
    return itertools.repeat(max(1, min(per, MAX_AUTO_CHUNK)))


def _slicer(seq: Sequence[Any]) -> Callable[[int], Sequence[Any]]:
    """``take(n)``: the next ``n`` items of a list, tuple or range, by slicing."""
    pos = 0

    def take(n: int) -> Sequence[Any]:
        nonlocal pos
        batch = seq[pos : pos + n]
        pos += len(batch)
        return batch

    return take


class _Batch:
    """One batch of a map: its task and items, or an error to raise in its place.

    ``outcome`` is set once the finished task's result was read; ``error`` is
    for a batch that could not be sent (its input raised, it could not be
    pickled, the executor was shut down, the deadline had passed): the
    consumer raises it when it gets there, after every result before it.
    """

    __slots__ = ("error", "items", "outcome", "task")

    def __init__(
        self, task: Task[Any] | None, items: Sequence[Any], error: Exception | None = None
    ) -> None:
        self.task = task
        self.items = items
        self.error = error
        self.outcome: tuple[list[Any], object] | None = None  # (results, error record)


class _MapRun:
    """One ``Executor.map`` call: its batches submitted and not consumed, in input order.

    ``fill()`` submits input batches until ``ahead`` are pending (or the input
    ends); ``batches()`` waits for the oldest, tops the queue up and yields the
    batch's results as one list.  A batch cut short by its budget has its
    remaining calls resubmitted, in smaller batches, right behind it.
    """

    def __init__(
        self,
        bridge: WorkerBridge,
        fn: Callable[..., Any],
        take: Callable[[int], Sequence[Any]],
        sizes: Iterator[int],
        *,
        single: bool,
        budget: float | None,
        ahead: int,
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        self.bridge = bridge
        self.fn = fn
        self.take = take
        self.sizes = sizes
        self.single = single
        self.budget = budget
        self.ahead = max(1, ahead)
        self.deadline = deadline
        self.timeout = timeout
        self.debug = bool(getattr(bridge, "_debug", False))
        self.pending: list[_Batch] = []
        self.exhausted = False
        self.pace: float | None = None  # seconds per call, of the last batch read

    def late(self, task_id: int | None) -> TaskTimeoutError:
        return TaskTimeoutError(f"map results not ready within {self.timeout} s", task_id)

    def submit(self, items: Sequence[Any]) -> _Batch:
        """Send ``items`` as one batch; past the deadline, a batch that raises the timeout."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return _Batch(None, items, self.late(None))  # it could not be ready in time
        blob = _pickle((self.fn, items, self.single, self.debug, self.budget))
        task = self.bridge.submit("_wb", "batch", blob, block=True)
        # the items are kept only where a cut batch may have to send them again
        return _Batch(task, items if self.budget is not None else ())

    def fill(self, *, defer: bool = True) -> None:
        """Submit input batches until ``ahead`` are pending or the input is exhausted.

        With ``defer`` an error (from the input, pickling or the bridge) ends
        the input and waits in the queue, to be raised in its place.
        """
        pending = self.pending
        while not self.exhausted and len(pending) < self.ahead:
            try:
                size = next(self.sizes)
                if self.pace is not None:
                    size = max(1, min(size, int(PIECE_SECONDS / self.pace)))
                items = self.take(size)
                if not items:
                    self.exhausted = True
                    return
                batch = self.submit(items)
            except Exception as exc:
                if not defer:
                    raise
                batch = _Batch(None, (), exc)
            pending.append(batch)
            if batch.error is not None:
                self.exhausted = True

    def cancel(self) -> None:
        """Cancel every batch not consumed yet; read no more input."""
        self.exhausted = True
        pending, self.pending = self.pending, []
        for batch in pending:
            if batch.task is not None:
                batch.task.cancel()

    def read(self, batch: _Batch, task: Task[Any]) -> tuple[list[Any], object]:
        """The finished ``batch``'s outcome; if it was cut, resubmit the rest behind it."""
        if batch.outcome is not None:
            return batch.outcome
        out, error, elapsed = pickle.loads(task.result(0))
        batch.outcome = (out, error)
        done = len(out)
        if self.budget is not None and error is None and done:
            # the pace sizes what is sent next: a cut batch's rest, and new input
            self.pace = max(elapsed, 1e-9) / done
        if self.pace is not None and error is None and done < len(batch.items):
            pace = self.pace
            rest = batch.items[done:]
            count = -(-len(rest) // max(1, int(PIECE_SECONDS / pace)))
            step = -(-len(rest) // count)  # equal pieces
            at = self.pending.index(batch) + 1
            for start in range(0, len(rest), step):
                try:
                    piece = self.submit(rest[start : start + step])
                except Exception as exc:
                    piece = _Batch(None, (), exc)
                self.pending.insert(at, piece)
                at += 1
                if piece.error is not None:
                    self.exhausted = True  # nothing after the error is reached
                    break
        return batch.outcome

    def read_finished(self) -> None:
        """Read the finished batches behind the oldest, so a cut one's rest is sent now."""
        for batch in self.pending[1 : self.ahead]:
            task = batch.task
            if batch.outcome is not None or task is None or not task.done():
                continue
            if not task.cancelled() and task.exception(0) is None:
                self.read(batch, task)

    def batches(self) -> Generator[list[Any], None, None]:
        """Each batch's results as one list, in order; then a failed call's error."""
        pending = self.pending
        try:
            while pending:
                batch = pending[0]
                task = batch.task
                if task is None:
                    assert batch.error is not None
                    raise batch.error
                if not task.done():
                    self.read_finished()
                    try:
                        if self.deadline is None:
                            task.result()
                        else:
                            task.result(self.deadline - time.monotonic())
                    except TimeoutError as exc:
                        if isinstance(exc, TaskError):
                            raise  # the batch's own error, not our wait running out
                        raise self.late(task.id) from None
                out, error = self.read(batch, task)
                del pending[0]
                self.fill()
                if out:
                    yield out
                if error is not None:
                    raise exception_from_record(error, task.id)
        finally:
            self.cancel()


class _MapIterator(itertools.chain[T]):
    """The iterator ``map`` returns: C-speed iteration over the batches' lists.

    ``close()``, or dropping the iterator, cancels the batches not consumed
    yet (also when iteration never started).
    """

    __slots__ = ("_batches", "_run")

    _batches: Generator[list[Any], None, None]
    _run: _MapRun

    def close(self) -> None:
        """Stop: cancel the batches not consumed yet; ``next()`` then raises StopIteration."""
        self._batches.close()
        self._run.cancel()
        collections.deque(self, maxlen=0)  # drop what is left of the current batch

    def __del__(self) -> None:
        try:
            self._run.cancel()
        except Exception:  # pragma: no cover - interpreter shutdown, a closed bridge
            pass


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
