"""Plans and drivers: one implementation of every bridge operation, run sync or async.

Data flow::

    bridge.compression.compress(data, ...)      CompressionBridge: a thin signature
      op   = Operation(bridge, channel, timeout, on_progress, cancel, priority)
      plan = compress_plan(op, data, ...)       a generator holding the whole operation
      drive(op, plan)
        next(plan) ──> the plan validates its arguments in this process, then
                         op.inline(fn, payload)   tiny input: the handler runs right here
                         op.submit(name, payload) -> Task   (WorkerBridge.submit)
                         yield [task, ...]        "resume me when one of these is done"
                  <── concurrent.futures.wait(FIRST_COMPLETED)   (sync driver)
                      asyncio.wait(FIRST_COMPLETED)              (async driver)
        plan.send(None) ──> op.result(task) ... more submits ... return value
      finally: op.close() cancels every task still queued or running;
               plan.close() runs the plan's own cleanup (temporary files)

    shortcut: a small call with no on_progress, no token and plain options
      (BaseBridge._fits / _quick) calls the engine itself right here: no
      Operation, no plan, no driver; errors are mapped as op.inline maps them.
      The hot methods test the commonest call (bytes, no option at all) inline
      first: at 1 KiB every call layer costs a few percent.
    file shortcut: a sync file call with nothing to stop (no deadline, token
      or progress) on a small file (BaseBridge._file_max) runs its engine
      right here too: it waits for the disk either way

    progress: each task's on_progress ─> _Aggregate (every part weighs its bytes)
              ─> one monotone Progress(current, total) for the caller's callback
              (on the event loop's thread for the async classes)

The sync classes (``CompressionBridge``, ...) and the async ones
(``AsyncCompressionBridge``, ...) differ only in calling :func:`drive` or
:func:`drive_async` on the same plan, so every operation exists once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import io
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from .._dispatcher import Dispatcher
from .._errors import PoolError, TaskCancelledError, TaskTimeoutError, ValidationError
from .._execute import tmp_tag
from .._registry import Context
from .._remote import error_record, exception_from_record
from .._shared import CancellationToken
from .._task import Progress, Task
from ._files import as_buffer, remove_tmp_files_of

if TYPE_CHECKING:
    from .._bridge import WorkerBridge

__all__ = [
    "INLINE_MAX",
    "INLINE_MIN_TIMEOUT",
    "PART_SIZE",
    "SPLIT_PER_WORKER",
    "WINDOW_PER_WORKER",
    "AsyncBaseBridge",
    "BaseBridge",
    "Bytes",
    "Operation",
    "Plan",
    "ProgressCallback",
    "Tuning",
    "Job",
    "attached",
    "byte_length",
    "copy_docs",
    "documented",
    "drive",
    "drive_async",
    "engine_failure",
    "gather",
    "gather_bytes",
    "run_one",
    "split_ranges",
]

logger = logging.getLogger("workerbridge")

R = TypeVar("R")

#: A plan yields the tasks it waits for (it is resumed when one of them is
#: done), receives nothing, and returns the operation's result.
Plan = Generator[Sequence[concurrent.futures.Future[Any]], None, R]

ProgressCallback = Callable[[Progress], object]

#: What the bridges accept as binary input.
Bytes = bytes | bytearray | memoryview

#: Inputs up to this many bytes run in the calling thread instead of a worker:
#: a round trip to a worker costs about 100 µs, more than compressing,
#: encrypting or hashing 16 KiB takes.  Larger values save round trips on
#: mid-sized inputs but block the caller (or the event loop) for longer.
INLINE_MAX: Final = 16 * 1024

#: Calls with a timeout shorter than this always go to a worker, where the
#: timeout stops the work; inline work is never interrupted, so it only runs
#: where its timeout cannot expire.
INLINE_MIN_TIMEOUT: Final = 0.1

#: Parallel operations split an input only from this many bytes per worker
#: (16 MiB with two workers): below it, the round trips, the extra frames and
#: the final assembly cost more than the second core saves.
SPLIT_PER_WORKER: Final = 8 * 1024 * 1024

#: Size of the parts (the last one may be smaller; small inputs get one part
#: per worker).  Smaller parts balance the workers better, bound how long a
#: part that cannot check for cancellation (compressing bytes) runs, and keep
#: every buffer below glibc's mmap threshold (32 MiB), where memory is reused
#: instead of page-faulted afresh; larger ones cost fewer round trips and fewer
#: zstd frames or gzip members.  4 MiB measured fastest for 256 MiB of zstd.
PART_SIZE: Final = 4 * 1024 * 1024

#: Parts in flight per worker: two keep every worker busy (the next part waits
#: in the queue while one runs) without flooding the queue for huge files.
WINDOW_PER_WORKER: Final = 2


@dataclass(frozen=True, slots=True)
class Tuning:
    """Size thresholds of one bridge object (tests lower them to exercise every path)."""

    inline_max: int = INLINE_MAX
    inline_min_timeout: float = INLINE_MIN_TIMEOUT
    split_per_worker: int = SPLIT_PER_WORKER
    part_size: int = PART_SIZE
    window_per_worker: int = WINDOW_PER_WORKER


def byte_length(data: object, name: str = "data") -> int:
    """Length of a bytes-like argument; :exc:`ValidationError` for anything else.

    The common case, :class:`bytes`, skips building a memoryview: this runs on
    every call, inline ones included.
    """
    if type(data) is bytes:
        return len(data)
    return len(as_buffer(data, name))


def split_ranges(
    size: int, workers: int, tuning: Tuning, align: int = 1
) -> list[tuple[int, int]] | None:
    """Cut ``size`` bytes into ``(offset, length)`` parts, or ``None`` when not worth it.

    Only inputs of at least ``tuning.split_per_worker * workers`` bytes are
    split, into at least ``workers`` parts of about ``tuning.part_size``
    bytes, equal but the last, each a multiple of ``align``.
    """
    if workers < 2 or size < tuning.split_per_worker * workers:
        return None
    count = max(workers, math.ceil(size / tuning.part_size))
    part = math.ceil(math.ceil(size / count) / align) * align
    if part >= size:
        return None
    return [(offset, min(part, size - offset)) for offset in range(0, size, part)]


# --------------------------------------------------------------------------- progress


class _Aggregate:
    """Fold the progress of an operation's tasks into one monotone :class:`Progress`.

    Every task carries a weight: the bytes it stands for.  A task's own report
    ``(current, total)`` is scaled onto its weight, so engines may count in any
    unit; a task of unknown weight (``None``: a download, whose size only the
    server knows) counts its own ``current`` and ``total``.  The caller sees
    the sums; ``current`` never goes back.
    """

    __slots__ = ("_callback", "_delivered", "_expected", "_last", "_lock", "_loop", "_parts")

    def __init__(self, callback: ProgressCallback, loop: asyncio.AbstractEventLoop | None) -> None:
        self._callback = callback
        self._loop = loop
        self._lock = threading.Lock()
        self._delivered = threading.Lock()
        self._parts: list[list[int]] = []  # [done, total, weight or -1]
        self._expected = 0
        self._last = (-1, -1)

    def expect(self, total: int) -> None:
        with self._lock:
            self._expected = total

    def add(self, weight: int | None) -> int:
        with self._lock:
            if weight is None:
                self._parts.append([0, 0, -1])
            else:
                self._parts.append([0, weight, weight])
            return len(self._parts) - 1

    def hook(self, index: int) -> Callable[[Progress], None]:
        def on_progress(report: Progress) -> None:
            self.update(index, report.current, report.total)

        return on_progress

    def update(self, index: int, current: int, total: int) -> None:
        with self._lock:
            part = self._parts[index]
            weight = part[2]
            if weight >= 0:
                if total > 0:
                    done = weight if current >= total else current * weight // total
                else:
                    done = current
                part[0] = max(part[0], min(done, weight))
            else:
                part[0] = max(part[0], current)
                part[1] = max(total, part[0])
            snapshot = self._snapshot()
        self._emit(snapshot)

    def complete(self, index: int) -> None:
        with self._lock:
            part = self._parts[index]
            part[0] = part[1] = max(part[0], part[1], part[2])
            snapshot = self._snapshot()
        self._emit(snapshot)

    def finish(self) -> None:
        """Deliver the final report (``current == total``) in the caller's thread."""
        with self._lock:
            for part in self._parts:
                part[0] = part[1] = max(part[0], part[1], part[2])
            snapshot = self._snapshot()
        self._deliver(snapshot)

    def _snapshot(self) -> Progress:
        total = max(self._expected, sum(p[1] for p in self._parts))
        return Progress(sum(p[0] for p in self._parts), total)

    def _emit(self, report: Progress) -> None:
        if self._loop is None:
            self._deliver(report)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, report)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _deliver(self, report: Progress) -> None:
        with self._delivered:
            last_current, last_total = self._last
            if report.current < last_current or (
                report.current == last_current and report.total == last_total
            ):
                return
            self._last = (report.current, report.total)
            try:
                self._callback(report)
            except Exception:
                logger.exception("on_progress callback of a bridge call raised")


# --------------------------------------------------------------------------- operation


class _InlineControl:
    """The :class:`~workerbridge._registry.TaskControl` of a handler run in the caller's thread."""

    __slots__ = ("_token",)

    def __init__(self, token: CancellationToken | None) -> None:
        self._token = token

    def is_cancelled(self, task_id: int) -> bool:
        return self._token is not None and self._token.cancelled

    def report(self, task_id: int, current: int, total: int) -> None:
        pass


class _InlineContext(Context):
    """The context of a handler run in the caller's thread: the token, and no progress.

    Progress of inline work is reported once, at the end, by the operation.
    """

    __slots__ = ()

    def __init__(self, token: CancellationToken | None) -> None:
        super().__init__(0, -1, {}, _InlineControl(token))

    def report(self, current: int, total: int | None = None) -> None:
        pass


# Inline work without a token shares one context: it holds nothing per call.
_UNCANCELLABLE: Final = _InlineContext(None)


def _check_options(
    timeout: object, on_progress: object, cancel: object, priority: object
) -> float | None:
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValidationError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValidationError(f"timeout must be a positive finite number, got {timeout!r}")
        timeout = float(timeout)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(f"priority must be an int, got {priority!r}")
    if cancel is not None and not isinstance(cancel, CancellationToken):
        raise ValidationError("cancel must be a workerbridge.CancellationToken")
    if on_progress is not None and not callable(on_progress):
        raise ValidationError("on_progress must be callable")
    return timeout


def _succeeded(task: Task[Any]) -> bool:
    return not task.cancelled() and task.exception(0) is None


class Operation:
    """One bridge call in progress: the common options, its tasks, its progress.

    Plans submit through it (so every part gets the operation's priority, its
    cancellation token and the time left before the operation's deadline), run
    tiny work inline through it, and read results through it.
    """

    __slots__ = (
        "_afutures",
        "_outputs",
        "_progress",
        "_tasks",
        "bridge",
        "cancel",
        "channel",
        "deadline",
        "priority",
        "timeout",
        "tuning",
    )

    def __init__(
        self,
        bridge: WorkerBridge,
        channel: str,
        tuning: Tuning,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        cancel: CancellationToken | None,
        priority: int,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not (
            timeout is None and on_progress is None and cancel is None and type(priority) is int
        ):
            timeout = _check_options(timeout, on_progress, cancel, priority)
        if timeout is None:
            timeout = bridge._dispatcher._default_timeout
        self.bridge = bridge
        self.channel = channel
        self.tuning = tuning
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.cancel = cancel
        self.priority = priority
        self._progress = None if on_progress is None else _Aggregate(on_progress, loop)
        self._tasks: dict[Task[Any], int] = {}
        self._outputs: dict[Task[Any], str] = {}  # task -> file its worker writes atomically
        self._afutures: dict[concurrent.futures.Future[Any], asyncio.Future[None]] | None = None

    @property
    def workers(self) -> int:
        """Lanes of the bridge (worker processes, or threads in-process)."""
        return self.bridge.workers

    # -- running work -----------------------------------------------------------------

    def expect(self, total: int) -> None:
        """Announce the operation's total bytes before all its tasks are submitted."""
        if self._progress is not None:
            self._progress.expect(total)

    def can_inline(self, size: int) -> bool:
        """Whether work on ``size`` bytes should run in the caller's thread.

        Plans check this before validating their arguments: inline work sends
        nothing, and the handler's engine validates them (raising the same
        errors) at a fraction of the cost of a second validation here.
        """
        return size <= self.tuning.inline_max and (
            self.timeout is None or self.timeout >= self.tuning.inline_min_timeout
        )

    def inline(self, fn: Callable[[Context, Any], R], payload: object, weight: int) -> R:
        """Run handler ``fn`` in this thread, with the errors it would raise from a worker.

        Raises
        ------
        PoolClosedError
            The bridge is closed.
        TaskCancelledError
            The cancellation token was already cancelled (or was during the run).
        """
        bridge = self.bridge
        if bridge._forked or bridge._dispatcher.closed:
            bridge._check_usable()
        ctx = _UNCANCELLABLE
        if self.cancel is not None:
            self.check()
            ctx = _InlineContext(self.cancel)
        try:
            result = fn(ctx, payload)
        except Exception as exc:
            raise engine_failure(exc, bridge) from None
        if self._progress is not None:
            self._progress.update(self._progress.add(weight), weight, weight)
        return result

    def submit(
        self,
        name: str,
        payload: object,
        weight: int | None,
        *,
        channel: str | None = None,
        output: str | None = None,
    ) -> Task[Any]:
        """Submit ``name`` on the bridge's channel (or ``channel``) with the operation's options.

        ``weight`` is the bytes the task stands for in the operation's progress
        (``None``: unknown in advance, the task's own reports count).
        ``output``: the file the task writes with ``atomic_writer``; if the task
        fails, its temporary file is removed here too (its worker may have been
        killed before it could).

        Raises
        ------
        TaskTimeoutError
            The operation's deadline has passed (nothing was submitted).
        TaskCancelledError
            The operation's token was cancelled (nothing was submitted).
        """
        timeout = self.check()
        progress = self._progress
        index = -1
        hook: Callable[[Progress], None] | None = None
        if progress is not None:
            index = progress.add(weight)
            hook = progress.hook(index)
        task = self.bridge.submit(
            channel or self.channel,
            name,
            payload,
            timeout=timeout,
            priority=self.priority,
            cancel=self.cancel,
            on_progress=hook,
        )
        self._tasks[task] = index
        if output is not None:
            self._outputs[task] = output
        return task

    def check(self) -> float | None:
        """Raise if the operation was cancelled or ran out of time; return the time left."""
        if self.cancel is not None and self.cancel.cancelled:
            raise TaskCancelledError("operation cancelled")
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TaskTimeoutError(f"operation timed out after {self.timeout:.3g} s")
        return left

    def result(self, task: Task[R]) -> R:
        """Return the result of a finished task (raising its error) and forget the task."""
        index = self._tasks.pop(task, -1)
        if self._afutures is not None:
            self._afutures.pop(task, None)
        output = self._outputs.pop(task, None) if self._outputs else None
        if output is not None and not _succeeded(task):
            _remove_tmp(task, output)
        value = task.result(0)
        if index >= 0 and self._progress is not None:
            self._progress.complete(index)
        return value

    def done(self, tasks: Sequence[Task[Any]]) -> list[Task[Any]]:
        """The finished tasks of ``tasks``, failed ones first (so a failure is seen at once)."""
        finished = [t for t in tasks if t.done()]
        finished.sort(key=_succeeded)
        return finished

    # -- ending -----------------------------------------------------------------------

    def succeed(self) -> None:
        if self._progress is not None:
            self._progress.finish()

    def close(self) -> None:
        """Cancel every task still queued or running (a no-op after success)."""
        if self._tasks:
            tasks, self._tasks = list(self._tasks), {}
            self._afutures = None
            for task in tasks:
                task.cancel()
        if self._outputs:
            outputs, self._outputs = self._outputs, {}
            for task, output in outputs.items():
                _remove_tmp(task, output)

    async def wait_async(self, tasks: Sequence[concurrent.futures.Future[Any]]) -> None:
        """Wait on the running loop until one of ``tasks`` is done."""
        loop = asyncio.get_running_loop()
        if self._afutures is None:
            self._afutures = {}
        signals = []
        for task in tasks:
            if task.done():
                return
            signal = self._afutures.get(task)
            if signal is None:
                signal = self._afutures[task] = _done_signal(task, loop)
            signals.append(signal)
        await asyncio.wait(signals, return_when=asyncio.FIRST_COMPLETED)


def engine_failure(exc: Exception, bridge: WorkerBridge) -> BaseException:
    """What the caller gets for ``exc`` raised by an engine in this process (as from a handler)."""
    return exception_from_record(error_record(exc, bridge._debug), None)


def _done_signal(
    task: concurrent.futures.Future[Any], loop: asyncio.AbstractEventLoop
) -> asyncio.Future[None]:
    """A loop future resolved (with ``None``) when ``task`` finishes, however it finishes.

    Unlike :func:`asyncio.wrap_future` it carries no exception (the plan reads
    the task itself), so a failure is never reported as "never retrieved".
    """
    signal: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not signal.done():
            signal.set_result(None)

    def on_done(_: object) -> None:
        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    task.add_done_callback(on_done)
    return signal


# --------------------------------------------------------------------------- plan pieces

#: One task of a fan-out: handler name, payload, weight in bytes (``None``: unknown).
Job = tuple[str, object, int | None]


def gather(
    op: Operation,
    jobs: Iterable[Job],
    *,
    limit: int | None = None,
    convert: Callable[[Any], Any] | None = None,
    return_exceptions: bool = False,
    sink: Callable[[int, Any], None] | None = None,
) -> Generator[Sequence[Task[Any]], None, list[Any]]:
    """Run ``jobs`` with at most ``limit`` in flight; return their results in order.

    A sub-plan (``results = yield from gather(op, jobs)``).  ``limit`` defaults
    to :data:`WINDOW_PER_WORKER` per worker.  ``convert`` is applied to each
    result as it arrives (and may raise).  The first failure is raised at once
    (the driver then cancels the rest), unless ``return_exceptions`` is true:
    then a job's own error takes its place in the list, while cancellation,
    the operation's timeout and a broken or closed pool are still raised.
    ``jobs`` is consumed lazily, one job per free place.  With ``sink``, each
    result goes to ``sink(index, result)`` as it arrives instead, and the
    returned list is empty.
    """
    window = limit if limit is not None else max(1, op.workers * op.tuning.window_per_worker)
    results: dict[int, object] = {}
    store = results.__setitem__ if sink is None else sink
    pending: dict[Task[Any], int] = {}
    count = 0
    for name, payload, weight in jobs:
        while len(pending) >= window:
            yield list(pending)
            _collect(op, pending, store, convert, return_exceptions)
        pending[op.submit(name, payload, weight)] = count
        count += 1
    while pending:
        yield list(pending)
        _collect(op, pending, store, convert, return_exceptions)
    return [] if sink is not None else [results[i] for i in range(count)]


def gather_bytes(op: Operation, jobs: Iterable[Job]) -> Generator[Sequence[Task[Any]], None, bytes]:
    """Run ``jobs`` as :func:`gather` does and return their ``bytes`` results joined in order.

    Each result is appended to the output as soon as every earlier one is in,
    and dropped: only about a window of parts is held at once, and the memory
    each held serves the next instead of being faulted in afresh.  Joining all
    parts at the end would hold every part and the whole output together, and
    on a 256 MiB compression cost the calling process twice the page faults.
    """
    joined = _InOrder()
    yield from gather(op, jobs, sink=joined.put)
    return joined.value()


class _InOrder:
    """Append parts numbered 0, 1, 2, ... to one buffer in order, whatever order they come in."""

    __slots__ = ("_early", "_next", "_out")

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._early: dict[int, bytes] = {}
        self._next = 0

    def put(self, index: int, part: bytes) -> None:
        if index != self._next:
            self._early[index] = part
            return
        write, early = self._out.write, self._early
        write(part)
        self._next += 1
        while self._next in early:
            write(early.pop(self._next))
            self._next += 1

    def value(self) -> bytes:
        """The joined parts (``BytesIO.getvalue`` hands over its buffer without a copy)."""
        if self._early:  # pragma: no cover - gather delivers every index before returning
            raise AssertionError("parts missing before the end")
        return self._out.getvalue()


def _collect(
    op: Operation,
    pending: dict[Task[Any], int],
    store: Callable[[int, Any], None],
    convert: Callable[[Any], Any] | None,
    keep: bool,
) -> None:
    for task in op.done(list(pending)):
        index = pending.pop(task)
        try:
            value = op.result(task)
            store(index, value if convert is None else convert(value))
        except (TaskCancelledError, TaskTimeoutError, PoolError):
            raise  # about the whole operation, not this job
        except Exception as exc:
            if not keep:
                raise
            store(index, exc)


def _remove_tmp(task: Task[Any], output: str) -> None:
    """Remove the temporary files of ``task``'s atomic output (see ``atomic_writer``)."""
    try:
        removed = remove_tmp_files_of(output, tmp_tag(task.id, os.getpid()))
    except OSError:  # pragma: no cover - the directory went away: nothing left to remove
        return
    if removed:
        logger.debug("removed %d temporary file(s) of failed task %d", removed, task.id)


def run_one(
    op: Operation, name: str, payload: object, weight: int | None, *, output: str | None = None
) -> Generator[Sequence[Task[Any]], None, Any]:
    """Sub-plan of a single task: submit, wait, return its result."""
    task = op.submit(name, payload, weight, output=output)
    yield (task,)
    return op.result(task)


# --------------------------------------------------------------------------- drivers


def drive(op: Operation, plan: Plan[R]) -> R:
    """Run ``plan`` to completion in this thread, blocking while it waits for tasks.

    If the wait is interrupted (``KeyboardInterrupt``) or the plan fails, the
    operation's remaining tasks are cancelled and the plan's cleanup runs.
    """
    try:
        step = next(plan)
        while True:
            if not any(task.done() for task in step):
                concurrent.futures.wait(step, return_when=concurrent.futures.FIRST_COMPLETED)
            step = plan.send(None)
    except StopIteration as stop:
        op.succeed()
        result: R = stop.value
        return result
    finally:
        op.close()
        plan.close()


async def drive_async(op: Operation, plan: Plan[R]) -> R:
    """Run ``plan`` to completion on the running event loop, never blocking it.

    Cancelling the awaiting coroutine cancels the operation's remaining tasks
    and runs the plan's cleanup.
    """
    try:
        step = next(plan)
        while True:
            await op.wait_async(step)
            step = plan.send(None)
    except StopIteration as stop:
        op.succeed()
        result: R = stop.value
        return result
    finally:
        op.close()
        plan.close()


# --------------------------------------------------------------------------- bridge classes

_attach_lock = threading.Lock()


def _closed_getter() -> Callable[[Dispatcher], bool]:
    """The getter of :attr:`Dispatcher.closed`, to call directly.

    Python 3.11 does not specialize property lookups: ``dispatcher.closed``
    costs several times more than calling its getter, which the hot path does
    on every small call.  Calling the getter keeps the dispatcher's own
    definition of closed.
    """
    closed = inspect.getattr_static(Dispatcher, "closed")
    if not isinstance(closed, property) or closed.fget is None:  # pragma: no cover
        raise TypeError("workerbridge: Dispatcher.closed is no longer a property")
    getter: Callable[[Dispatcher], bool] = closed.fget
    return getter


_dispatcher_closed: Final = _closed_getter()


class BaseBridge:
    """Base of the bridges: a :class:`~workerbridge.WorkerBridge`, a channel and its tuning.

    The synchronous bridges drive their plans with :func:`drive`; the asyncio
    ones (:class:`AsyncBaseBridge`) with :func:`drive_async`.

    The hot small-call methods (``encrypt``, ``decrypt``, ``hash``,
    ``compress``, ``decompress``) first test, inline, the call they get most:
    ``bytes`` of at most ``_plain_max`` bytes, no option given, and a bridge
    that is not closed; only any other call pays for :meth:`_fits`.  Both
    tests agree: the inline one only ever accepts what :meth:`_fits` accepts.
    """

    __slots__ = ("__weakref__", "_bridge", "_dispatcher", "_plain_max", "_thresholds")

    _channel: ClassVar[str] = ""

    def __init__(self, bridge: WorkerBridge) -> None:
        self._bridge = bridge
        # A bridge keeps its dispatcher for life; one lookup here spares one per call.
        self._dispatcher = bridge._dispatcher
        self._tuning = Tuning()
        _all_bridges.add(self)

    @property
    def _tuning(self) -> Tuning:
        """This bridge object's size thresholds (tests swap them to reach every path)."""
        return self._thresholds

    @_tuning.setter
    def _tuning(self, tuning: Tuning) -> None:
        self._thresholds = tuning
        self._plain_max = self._plain_limit(tuning)

    def _plain_limit(self, tuning: Tuning) -> int:
        """The largest input a call without options may handle right here (-1: none).

        Everything that decides it but the bridge's closing is fixed once the
        bridge exists: the bridge's default timeout (a short one sends all work
        to a worker, see :meth:`_quick`), the tuning (set here), and whether
        this process is a fork of the bridge's own (then -1, set by
        :func:`_after_fork_in_child`), so the hot path tests one number.
        """
        default = self._dispatcher._default_timeout
        if self._bridge._forked or (default is not None and default < tuning.inline_min_timeout):
            return -1
        return tuning.inline_max

    def _op(
        self,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        cancel: CancellationToken | None,
        priority: int,
    ) -> Operation:
        return Operation(
            self._bridge,
            self._channel,
            self._tuning,
            timeout,
            on_progress,
            cancel,
            priority,
            self._loop(),
        )

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop progress is delivered on (``None``: the calling threads)."""
        return None

    def _quick(
        self,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        cancel: CancellationToken | None,
        priority: int,
    ) -> int:
        """The input size up to which this call may run its engine right here, skipping the plan.

        Calls whose plan would run inline (:meth:`Operation.can_inline`) and
        that have nothing for an :class:`Operation` to track (no progress
        callback, no token, options that need no validation) may call the
        engine directly, mapping its errors with :meth:`_failure`; skipping
        the operation, the plan generator and the driver saves about 2 µs, a
        third of a 1 KiB encryption.  Any other call (and any call on a closed
        bridge, whose plan raises) gets -1: no size qualifies.
        """
        if (
            on_progress is not None
            or cancel is not None
            or type(priority) is not int
            or not self._open()
        ):
            return -1
        if timeout is None:
            return self._plain_max  # the bridge's default timeout decides (_plain_limit)
        tuning = self._tuning
        if type(timeout) not in (float, int) or not (
            tuning.inline_min_timeout <= timeout < math.inf
        ):
            return -1
        return tuning.inline_max

    def _fits(
        self,
        data: object,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        cancel: CancellationToken | None,
        priority: int,
        name: str = "data",
    ) -> bool:
        """Whether a call on the bytes-like ``data`` may skip its plan (:meth:`_quick`).

        ``_quick(...) >= byte_length(data, name)`` in one call, with the
        options every small call passes (none) tested first, against
        ``_plain_max``.  ``data`` that is not bytes-like raises
        :exc:`ValidationError` whatever the options.
        """
        size = len(data) if type(data) is bytes else len(as_buffer(data, name))
        if timeout is None and on_progress is None and cancel is None and type(priority) is int:
            return size <= self._plain_max and not _dispatcher_closed(self._dispatcher)
        return size <= self._quick(timeout, on_progress, cancel, priority)

    def _file_max(
        self,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        cancel: CancellationToken | None,
        priority: int,
    ) -> int:
        """The file size up to which a *synchronous* file call may run right here (-1: none).

        A file call waits for the disk (``fsync`` of the file and of its
        directory), which no size bound keeps short, and work in this thread
        cannot be stopped; so only a call that has nothing to stop qualifies:
        no ``timeout`` and no ``default_timeout`` on the bridge, no token, no
        progress callback.  The caller of a synchronous method blocks until
        the result either way; running here spares the round trip to a
        worker, which costs as much as the work for a small file.  The asyncio
        bridges never do this (the wait would block the event loop).
        """
        if (
            timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and self._dispatcher._default_timeout is None
            and self._open()
        ):
            return self._tuning.inline_max
        return -1

    def _open(self) -> bool:
        """Whether the bridge takes calls: not closed, and not inherited through a fork."""
        return not self._bridge._forked and not _dispatcher_closed(self._dispatcher)

    def _failure(self, exc: Exception) -> BaseException:
        """What the caller gets for ``exc`` raised by an engine in this thread (as by a handler)."""
        return engine_failure(exc, self._bridge)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._bridge!r}>"


#: Every bridge object, for :func:`_after_fork_in_child` (held weakly).
_all_bridges: Final[weakref.WeakSet[BaseBridge]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """In a forked child, no bridge object of the parent's bridges runs work any more.

    (Their :class:`~workerbridge.WorkerBridge` is marked forked by its own
    hook; this takes their ``_plain_max`` along, which the hot path tests.)
    """
    for bridge in list(_all_bridges):
        bridge._plain_max = -1


os.register_at_fork(after_in_child=_after_fork_in_child)


class AsyncBaseBridge(BaseBridge):
    """Base of the asyncio bridges: the same plans, driven on the running event loop."""

    __slots__ = ()

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return asyncio.get_running_loop()


T = TypeVar("T")


def attached(owner: object, key: str, factory: Callable[[], T]) -> T:
    """Return ``owner``'s object stored under ``key``, creating it once (thread-safe)."""
    store: dict[str, Any] = owner.__dict__
    found = store.get(key)
    if found is None:
        with _attach_lock:
            found = store.get(key)
            if found is None:
                found = store[key] = factory()
    result: T = found
    return result


_OPTIONS_DOC = """\
timeout
    Seconds for the whole call (``None``: the bridge's ``default_timeout``).
    At the deadline the work is stopped, not abandoned: queued tasks are
    removed, running ones see their cancel flag and are killed with their
    worker if they do not stop within 0.25 s, nothing is left behind, and
    :exc:`~workerbridge.TaskTimeoutError` is raised.
on_progress
    Called with a :class:`~workerbridge.Progress` in bytes (from a background
    thread); ``current`` never goes back, and the last call, on success, has
    ``current == total``.
cancel
    A :class:`~workerbridge.CancellationToken`: cancelling it, from any
    process, stops the call as a timeout does and raises
    :exc:`~workerbridge.TaskCancelledError`.
priority
    Higher runs first; see :meth:`workerbridge.WorkerBridge.submit`."""

_ERRORS_DOC = """\
workerbridge.TaskTimeoutError
    ``timeout`` expired; the work was stopped.
workerbridge.TaskCancelledError
    ``cancel`` was cancelled; the work was stopped.
workerbridge.PoolClosedError
    The bridge is closed.
workerbridge.QueueFullError
    The bridge's queue is full (``max_queue``).
workerbridge.WorkerCrashedError
    The worker process running the work died (a crash, or killed from outside).
workerbridge.BrokenPoolError
    Workers kept dying and the bridge has no fallback (``fallback="never"``)."""

F = TypeVar("F", bound=Callable[..., Any])


def _expand(doc: str, marker: str, text: str) -> str:
    lines = doc.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == marker:
            indent = line[: len(line) - len(line.lstrip())]
            lines[i : i + 1] = [indent + row if row else row for row in text.split("\n")]
    return "\n".join(lines)


def documented(fn: F) -> F:
    """Fill the ``{options}`` and ``{errors}`` lines of a bridge method's docstring."""
    doc = fn.__doc__ or ""
    fn.__doc__ = _expand(_expand(doc, "{options}", _OPTIONS_DOC), "{errors}", _ERRORS_DOC)
    return fn


_ASYNC_NOTE = """\
This is a coroutine: it waits without blocking the event loop, and
``on_progress`` is called on the loop's thread.  Cancelling the awaiting task
cancels the operation as ``cancel=`` does: queued parts are removed, running
ones stopped, and no output is left."""


def copy_docs(async_cls: type, sync_cls: type) -> None:
    """Give every public coroutine of ``async_cls`` its sync twin's docstring plus a note."""
    for name, member in vars(async_cls).items():
        if name.startswith("_") or not callable(member):
            continue
        doc = inspect.cleandoc(getattr(sync_cls, name).__doc__ or "")
        summary, _, rest = doc.partition("\n\n")
        member.__doc__ = f"{summary}\n\n{_ASYNC_NOTE}\n\n{rest}"
