"""The :class:`Task` future and the :class:`Progress` record.

Data flow::

    WorkerBridge.submit() -> Dispatcher creates Task(id) -> caller holds it
    Dispatcher resolves it (result / typed error / cancelled) from its threads
    Task.cancel() -> Dispatcher.cancel(id): a queued task is removed, a running
                     one has its cancel flag raised and is stopped by force after
                     a grace period

:class:`Task` is a real :class:`concurrent.futures.Future`, so
:func:`concurrent.futures.wait` and :func:`concurrent.futures.as_completed`
work, and it is awaitable from asyncio.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures._base
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

from ._errors import TaskCancelledError

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher

__all__ = ["Progress", "Task"]

T = TypeVar("T")

_PENDING: Final = concurrent.futures._base.PENDING
#: held only to make a task's Condition, once per task that needs one
_condition_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: ``current`` units done out of ``total``.

    ``total`` is ``0`` when the handler did not say how much work there is.
    """

    current: int
    total: int

    @property
    def fraction(self) -> float:
        """``current / total`` clamped to ``[0.0, 1.0]``; ``0.0`` while the total is unknown."""
        if self.total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.current / self.total))


class Task(concurrent.futures.Future[T], Generic[T]):
    """A submitted task: a :class:`concurrent.futures.Future` with a request ID.

    Attributes
    ----------
    id : int
        The request ID, unique per bridge; it appears in every
        :exc:`~workerbridge.TaskError` raised for this task.
    channel, op : str
        The handler this task runs.
    """

    def __init__(self, id: int, channel: str, op: str, dispatcher: Dispatcher | None) -> None:
        # Future.__init__ without its Condition, which costs more than the rest of a
        # small task's bookkeeping: most tasks are never waited on by another thread
        # (run() reads its answer itself), so it is made on first use (_condition).
        self._cond: threading.Condition | None = None
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[T]], object]] = []
        self.id = id
        self.channel = channel
        self.op = op
        self._dispatcher = dispatcher
        self._started = False
        #: someone may wait on this future besides the caller that submitted it
        #: (a done callback); until then run() may take a direct answer without it
        self._observed = False

    @property
    def _condition(self) -> threading.Condition:
        """The Future's Condition, made on first use (all of Future's methods take it)."""
        cond = self._cond
        if cond is None:
            with _condition_lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    @_condition.setter
    def _condition(self, cond: threading.Condition) -> None:
        self._cond = cond

    def cancel(self) -> bool:
        """Cancel the task, queued or running.

        A queued task is removed and never runs.  A running task has its
        cancel flag raised (``ctx.cancelled`` turns ``True``); if the handler
        does not stop within the grace period its worker is killed and
        replaced.  Either way this future is resolved as cancelled at once and
        :meth:`result` raises :exc:`~workerbridge.TaskCancelledError`.

        Returns
        -------
        bool
            ``False`` if the task had already finished.
        """
        if self._dispatcher is not None:
            return self._dispatcher.cancel(self.id)
        return super().cancel()

    def running(self) -> bool:
        """``True`` while a worker is running the task."""
        return self._started and not self.done()

    def _cancel_now(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # wakes wait() / as_completed()
        return True

    def result(self, timeout: float | None = None) -> T:
        """Wait for and return the task's result.

        Parameters
        ----------
        timeout
            Seconds to *wait*; on expiry :exc:`TimeoutError` is raised and the
            task keeps running (use ``timeout=`` on submit to stop the task).

        Raises
        ------
        TaskCancelledError
            The task was cancelled.
        TaskError
            The task failed; the subclass says how.
        """
        try:
            return super().result(timeout)
        except concurrent.futures.CancelledError as exc:
            if isinstance(exc, TaskCancelledError):
                raise
            raise TaskCancelledError("task cancelled", self.id) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the task and return its exception (``None`` on success)."""
        try:
            return super().exception(timeout)
        except concurrent.futures.CancelledError as exc:
            if isinstance(exc, TaskCancelledError):
                raise
            raise TaskCancelledError("task cancelled", self.id) from None

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        """Call ``fn(task)`` when the task finishes (at once if it already has)."""
        self._observed = True
        super().add_done_callback(fn)

    def __await__(self) -> Generator[Any, None, T]:
        import asyncio  # only awaiting needs it; workers never import asyncio

        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()

        def transfer(_: concurrent.futures.Future[T]) -> None:
            def apply() -> None:
                if afut.done():
                    return
                try:
                    afut.set_result(self.result(0))
                except BaseException as exc:
                    afut.set_exception(exc)

            loop.call_soon_threadsafe(apply)

        self.add_done_callback(transfer)
        try:
            return (yield from afut.__await__())
        except asyncio.CancelledError:
            self.cancel()
            raise

    def __repr__(self) -> str:
        if self.running():
            state = "running"
        elif self.cancelled():
            state = "cancelled"
        elif self.done():
            state = "failed" if super().exception(0) is not None else "finished"
        else:
            state = "pending"
        return f"<Task {self.id} {self.channel}/{self.op} {state}>"


Task.__module__ = "workerbridge"
Progress.__module__ = "workerbridge"
