"""The dispatcher: request table, queue, deadlines, progress fan-in, cancel fan-out.

Data flow::

    submit() ──validate, encode──> _Request ──> idle slot? ──yes──> Slot.start(req)
                                      │no                                │
                                      v                                  v
                       priority heap (global, or the affinity     worker runs the handler
                       home's own heap), bounded by max_queue     (process, or thread in
                                      │                            the in-process backend)
                 slot frees up ───────┘                                  │
                                                                         v
    Task resolved <── on_result(slot, id, ok, value) <──── response / error frame

    supervisor thread (one per dispatcher), every PROGRESS_INTERVAL while needed:
      queued past deadline  -> removed, TaskTimeoutError (never runs)
      running past deadline -> TaskTimeoutError now, cancel flag raised,
                               worker killed if still on it after CANCEL_GRACE
      progress slots        -> on_progress(Progress) when changed
      cancellation tokens   -> cancelled from another process? cancel the task

One dispatcher serves both fronts (:class:`WorkerBridge` and
:class:`AsyncWorkerBridge`) and both backends (worker processes, and the
in-process fallback), which implement the small :class:`Slot` interface.
Futures are always resolved outside the lock.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from ._balancer import Strategy, WorkerView, choose, choose_affinity_home
from ._errors import (
    BrokenPoolError,
    PoolClosedError,
    QueueFullError,
    TaskCancelledError,
    TaskTimeoutError,
    ValidationError,
    WorkerCrashedError,
    describe_exit,
)
from ._task import Progress, Task

if TYPE_CHECKING:
    from ._shared import CancellationToken

__all__ = [
    "CANCEL_GRACE",
    "PROGRESS_INTERVAL",
    "UNSET",
    "Backend",
    "Dispatcher",
    "Request",
    "Slot",
]

logger = logging.getLogger("workerbridge")

#: Seconds a running task has to notice its cancel flag before its worker is
#: killed and replaced.  Shorter stops runaway work sooner but kills handlers
#: that check ``ctx.cancelled`` only every few hundred milliseconds.
CANCEL_GRACE: Final = 0.25

#: Seconds between progress deliveries (and cross-process token polls).
#: Shorter means livelier progress bars at the cost of a busier supervisor.
PROGRESS_INTERVAL: Final = 0.05

#: Unexpected worker deaths tolerated within RESTART_WINDOW seconds before the
#: pool is declared broken.  Deaths we caused (timeouts, cancellation) do not count.
RESTART_BUDGET: Final = 10
RESTART_WINDOW: Final = 60.0

QUEUED, RUNNING, STOPPING, DONE = "queued", "running", "stopping", "done"

#: "no value here: wait on the task" (see :meth:`Dispatcher.wait_direct`)
UNSET: Final = object()
#: ``finishing``: the slot's task answered and its future's callbacks are running; the
#: slot takes its next task only after them, so a callback that closes the bridge never
#: waits on a task already handed to its own thread.
SlotState = Literal["starting", "idle", "busy", "finishing", "stopping", "dead"]

_internal = threading.local()


def mark_internal_thread() -> None:
    """Mark the calling thread as one the bridge needs to make progress.

    Worker lanes' result threads and the supervisor call this first: a
    ``close(wait=True)`` from one of them (a done callback or ``on_progress``)
    cannot wait there for work that this very thread must deliver.
    """
    _internal.active = True


def _on_internal_thread() -> bool:
    return bool(getattr(_internal, "active", False))


@dataclass(eq=False, slots=True)
class Request:
    """Everything the dispatcher knows about one task (private record, like ``_WorkItem``)."""

    id: int
    channel: str
    op: str
    payload: bytes
    buffers: list[Any]
    priority: int
    deadline: float | None
    timeout: float | None
    task: Task[Any]
    on_progress: Callable[[Progress], object] | None
    token: CancellationToken | None
    affinity: object
    retries: int
    seq: int
    submitted: float
    state: str = QUEUED
    slot: int | None = None
    started: float = 0.0
    kill_at: float | None = None
    token_handle: object = None
    last_progress: tuple[int, int] | None = None
    home: int | None = None
    #: started at once for a caller that reads the answer itself (see ``wait_direct``)
    direct: bool = False
    lane: Slot | None = None

    def sort_key(self) -> tuple[int, float, int]:
        return (
            -self.priority,
            self.deadline if self.deadline is not None else float("inf"),
            self.seq,
        )


class Slot(Protocol):
    """One execution lane: a worker process, or a thread of the in-process backend."""

    index: int

    def start(self, req: Request) -> None:
        """Begin running ``req`` (called outside the dispatcher lock)."""

    def cancel(self, task_id: int) -> None:
        """Raise the cancel flag of ``task_id`` if it is the running task."""

    def progress(self, task_id: int) -> tuple[int, int] | None:
        """Return ``(current, total)`` last reported by ``task_id``, if any."""

    def kill(self) -> None:
        """Stop by force whatever runs; the slot then reports itself dead."""

    def read_direct(self, req: Request) -> Any:
        """Read ``req``'s answer on the calling thread (only for ``req.direct`` tasks).

        Returns what :meth:`Dispatcher.settle_direct` returns, or :data:`UNSET`.
        """

    def shutdown(self, wait: bool) -> None:
        """Stop after the current task (``wait``) or at once, and release resources."""

    def info(self) -> dict[str, Any]:
        """Backend details for ``stats()`` (pid, ...)."""


class Backend(Protocol):
    """Creates slots; the pool's starts worker processes, the fallback's threads."""

    mode: Literal["pool", "inprocess"]
    #: seconds a worker that answered keeps spinning for its next task (0: it sleeps
    #: at once); least-busy gives an idle worker still within it the next task first
    spin: float

    def new_slot(self, index: int, dispatcher: Dispatcher) -> Slot:
        """Create lane ``index``; it calls ``dispatcher.slot_ready`` when it can run tasks."""

    def close(self) -> None:
        """Release what the backend holds (shared memory, ...) once all slots are gone."""


@dataclass
class _SlotRecord:
    slot: Slot
    state: SlotState = "starting"
    current: Request | None = None
    completed: int = 0
    failed: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0
    affinity_keys: int = 0
    heap: list[tuple[tuple[int, float, int], Request]] = field(default_factory=list)
    killed: bool = False
    started_at: float = field(default_factory=time.monotonic)
    #: monotonic time of its last answer: while it is younger than the backend's spin
    #: budget the worker is awake, spinning for its next task
    answered: float = float("-inf")
    #: a lane of the backend given up by a fallback switch: replaced once its task ends
    retire: bool = False


class Dispatcher:
    """Request table and scheduler shared by both fronts and both backends."""

    def __init__(
        self,
        backend: Backend,
        workers: int,
        *,
        strategy: Strategy,
        max_queue: int,
        default_timeout: float | None,
        fallback: str,
        make_fallback: Callable[[], Backend] | None,
    ) -> None:
        # Reentrant only so that close() can tell it was called from a signal handler that
        # interrupted this thread inside the lock (it then closes from another thread).
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._sup_wake = threading.Condition(self._lock)
        self._backend = backend
        self._nworkers = workers
        self._strategy: Strategy = strategy
        self._max_queue = max_queue
        self._default_timeout = default_timeout
        self._fallback = fallback
        self._make_fallback = make_fallback
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._tasks: dict[int, Request] = {}
        self._heap: list[tuple[tuple[int, float, int], Request]] = []
        self._queued = 0
        self._deadlines: list[tuple[float, int]] = []
        self._watched: set[int] = set()  # ids with on_progress or a token
        self._affinity: dict[object, int] = {}
        self._last_choice = -1
        self._crashes: deque[float] = deque()
        self._closing = False
        self._closed = False
        self._broken: str | None = None
        self._room_waiters: list[Callable[[], None]] = []
        self._drain = False
        self._closed_event = threading.Event()
        self._close_requested = False  # set by a deferred close before it gets the lock
        self._retiring = 0  # lanes of a backend given up by a fallback switch, still busy
        self._retirers: list[threading.Thread] = []
        # statistics
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._timed_out = 0
        self._latencies: deque[float] = deque(maxlen=2048)
        self._slots: list[_SlotRecord] = []
        with self._lock:  # slots report readiness from their own threads, after this
            for i in range(workers):
                self._slots.append(_SlotRecord(backend.new_slot(i, self)))
        self._supervisor = threading.Thread(
            target=self._supervise, name="workerbridge-supervisor", daemon=True
        )
        self._supervisor.start()

    # -- properties -------------------------------------------------------------------

    @property
    def mode(self) -> Literal["pool", "inprocess"]:
        return self._backend.mode

    @property
    def closed(self) -> bool:
        return self._closed or self._closing or self._close_requested

    # -- submission -------------------------------------------------------------------

    def submit(
        self,
        channel: str,
        op: str,
        payload: bytes,
        buffers: list[Any],
        *,
        timeout: float | None,
        priority: int,
        cancel: CancellationToken | None,
        on_progress: Callable[[Progress], object] | None,
        affinity: object,
        retries: int,
        block: bool | float,
        direct: bool = False,
    ) -> Task[Any]:
        """Queue or start one task; see :meth:`WorkerBridge.submit`.

        ``direct``: the caller will wait for the result at once (``run()``); if the
        task starts right away on a worker process, its answer comes back on that
        worker's direct pipe for :meth:`wait_direct` to read, without a thread hop.
        """
        if timeout is None:
            timeout = self._default_timeout
        now = time.monotonic()
        start: Request | None = None
        with self._lock:
            self._check_open()
            if self._queued >= self._max_queue and self._free_slot_for(affinity) is None:
                if block is False:
                    raise QueueFullError(
                        f"{self._queued} tasks are queued (max_queue={self._max_queue}); "
                        "submit with block=True to wait for room"
                    )
                wait_until = None if block is True else now + float(block)
                while self._queued >= self._max_queue and self._free_slot_for(affinity) is None:
                    left = None if wait_until is None else wait_until - time.monotonic()
                    if left is not None and left <= 0:
                        raise QueueFullError(
                            f"no room in the queue after {float(block):.3g} s "
                            f"(max_queue={self._max_queue})"
                        )
                    self._room.wait(left)
                    self._check_open()
                now = time.monotonic()
            task_id = next(self._ids)
            task: Task[Any] = Task(task_id, channel, op, self)
            req = Request(
                id=task_id,
                channel=channel,
                op=op,
                payload=payload,
                buffers=buffers,
                priority=priority,
                deadline=None if timeout is None else now + timeout,
                timeout=timeout,
                task=task,
                on_progress=on_progress,
                token=cancel,
                affinity=affinity,
                retries=retries,
                seq=next(self._seq),
                submitted=now,
            )
            self._tasks[task_id] = req
            self._submitted += 1
            if req.deadline is not None:
                heapq.heappush(self._deadlines, (req.deadline, task_id))
            if on_progress is not None or cancel is not None:
                self._watched.add(task_id)
            if affinity is not None:
                req.home = self._home_for(affinity)
            start = self._place(req)
            if direct and start is req and self._backend.mode == "pool":
                req.direct = True
                req.lane = self._slots[req.slot].slot  # type: ignore[index]
            if req.deadline is not None or cancel is not None or on_progress is not None:
                self._sup_wake.notify()
        if cancel is not None:

            def on_token() -> None:
                self.cancel(task_id)

            req.token_handle = cancel._add_callback(on_token)
        if start is not None:
            self._start(start)
        return task

    def wait_direct(self, task: Task[Any]) -> Any:
        """For a ``direct`` task: read its answer on this thread, if it is still running.

        Returns the task's result when it succeeded and nothing but the caller
        observes the task (then the task itself is left unresolved: nobody else
        holds it).  Otherwise returns :data:`UNSET` once the task is resolved,
        stopped (timeout, cancellation, close) or its worker died; the caller
        then waits on ``task`` as usual.
        """
        req = self._tasks.get(task.id)
        if req is not None and req.direct and req.lane is not None:
            return req.lane.read_direct(req)
        return UNSET

    def settle_direct(self, slot: Slot, req: Request, value: Any) -> Any:
        """A direct task's successful answer, read by its caller: settle it in one lock hold.

        Returns ``value`` for the caller to return as it is, or :data:`UNSET` when
        the task went the general way (:meth:`on_result`) and is resolved.
        """
        now = time.monotonic()
        start: Request | None = None
        with self._lock:
            rec = self._slots[slot.index]
            if (
                rec.slot is not slot
                or rec.current is not req
                or req.state != RUNNING
                or rec.retire
                or req.task._observed
                or req.on_progress is not None
                or req.token is not None
            ):
                quick = False
            else:
                quick = True
                self._record_answer(rec, req, True, now)
                rec.state = "idle"
                start = self._take_next(slot.index)
        if not quick:
            self.on_result(slot, req.id, True, value)
            return UNSET
        if start is not None:
            self._start(start)
        return value

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block until the queue has room (or ``timeout`` passes); ``False`` on timeout."""
        with self._lock:
            return self._room.wait_for(
                lambda: self._closing or self._queued < self._max_queue, timeout
            )

    def add_room_waiter(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) the next time room may have appeared."""
        with self._lock:
            if self._closing or self._queued < self._max_queue:
                fire = True
            else:
                self._room_waiters.append(callback)
                fire = False
        if fire:
            callback()

    def has_room(self) -> bool:
        with self._lock:
            return self._queued < self._max_queue or any(r.state == "idle" for r in self._slots)

    def _check_open(self) -> None:
        if self._closed or self._closing or self._close_requested:
            raise PoolClosedError("the bridge is closed")
        if self._broken is not None:
            raise BrokenPoolError(self._broken)

    def _home_for(self, key: object) -> int:
        try:
            home = self._affinity.get(key)
        except TypeError:
            raise ValidationError("affinity keys must be hashable") from None
        if home is None:
            home = choose_affinity_home(self._views())
            self._affinity[key] = home
            self._slots[home].affinity_keys += 1
        return home

    def _free_slot_for(self, affinity: object) -> int | None:
        if affinity is not None:
            home = self._affinity.get(affinity)
            if home is None:
                return 0 if any(r.state == "idle" for r in self._slots) else None
            return home if self._slots[home].state == "idle" else None
        return next((i for i, r in enumerate(self._slots) if r.state == "idle"), None)

    def _views(self) -> list[WorkerView]:
        return [
            WorkerView(
                index=i,
                idle=r.state == "idle",
                inflight=0 if r.current is None else 1,
                busy_seconds=r.busy_seconds,
                affinity_keys=r.affinity_keys,
            )
            for i, r in enumerate(self._slots)
        ]

    def _choose_idle(self, now: float) -> int | None:
        """Under the lock: the balancer's pick among the idle slots (``None``: none idle)."""
        slots = self._slots
        warm_since = now - self._backend.spin  # the current backend's: a fallback has 0
        if self._strategy == "least-busy":
            # balancer.choose's rule, inlined for the hot path (tests check they agree):
            # idle workers have nothing in flight, so a warm one first, then the least
            # busy time, then the index
            best, best_cold, least = None, True, 0.0
            for i, r in enumerate(slots):
                if r.state != "idle":
                    continue
                cold = r.answered <= warm_since
                if (
                    best is None
                    or (best_cold and not cold)
                    or (cold == best_cold and r.busy_seconds < least)
                ):
                    best, best_cold, least = i, cold, r.busy_seconds
            return best
        idle = [i for i, r in enumerate(slots) if r.state == "idle"]
        if len(idle) <= 1:
            return idle[0] if idle else None  # one candidate: every strategy agrees
        views = [
            WorkerView(
                i,
                True,
                0,
                slots[i].busy_seconds,
                slots[i].affinity_keys,
                slots[i].answered > warm_since,
            )
            for i in idle
        ]
        return choose(self._strategy, views, self._last_choice, len(slots))

    def _place(self, req: Request) -> Request | None:
        """Under the lock: start ``req`` on an idle slot, or queue it.  Returns req to start."""
        if req.home is not None:
            rec = self._slots[req.home]
            if rec.state == "idle" and not rec.heap:
                self._assign(req.home, req)
                return req
            heapq.heappush(rec.heap, (req.sort_key(), req))
        else:
            index = None
            if not self._heap:
                index = self._choose_idle(req.submitted)
            if index is not None:
                self._last_choice = index
                self._assign(index, req)
                return req
            heapq.heappush(self._heap, (req.sort_key(), req))
        req.state = QUEUED
        self._queued += 1
        return None

    def _assign(self, index: int, req: Request) -> None:
        rec = self._slots[index]
        rec.state = "busy"
        rec.current = req
        req.state = RUNNING
        req.slot = index
        req.started = time.monotonic()
        req.task._started = True

    def _next_for(self, index: int) -> Request | None:
        """Under the lock: pop the best queued task this slot may run."""
        rec = self._slots[index]
        while True:
            own = rec.heap[0] if rec.heap else None
            glob = self._heap[0] if self._heap else None
            if own is None and glob is None:
                return None
            if glob is None or (own is not None and own[0] <= glob[0]):
                _, req = heapq.heappop(rec.heap)
            else:
                _, req = heapq.heappop(self._heap)
            if req.state != QUEUED:
                continue  # cancelled or expired while queued (lazy deletion)
            self._queued -= 1
            self._notify_room()
            return req

    def _notify_room(self) -> None:
        self._room.notify()
        if self._room_waiters:
            waiters, self._room_waiters = self._room_waiters, []
            # called under the lock; callbacks only schedule work (call_soon_threadsafe)
            for cb in waiters:
                try:
                    cb()
                except Exception:  # pragma: no cover - defensive
                    logger.exception("room waiter failed")

    def _start(self, req: Request) -> None:
        rec = self._slots[req.slot] if req.slot is not None else None
        if rec is None:
            return
        try:
            rec.slot.start(req)
        except Exception as exc:
            logger.warning("could not start task %d on worker %d: %s", req.id, req.slot, exc)
            rec.slot.kill()

    # -- results ----------------------------------------------------------------------

    def slot_ready(self, slot: Slot) -> None:
        """Called by a slot once it can run tasks (after its handshake)."""
        with self._lock:
            rec = self._slots[slot.index]
            if rec.slot is not slot:
                return
            rec.state = "idle"
            start = self._take_next(slot.index)
        if start is not None:
            self._start(start)

    def _take_next(self, index: int) -> Request | None:
        if self._closing and not self._drain:
            self._idle.notify_all()
            return None
        req = self._next_for(index)
        if req is not None:
            self._assign(index, req)
        else:
            self._idle.notify_all()
        return req

    def on_result(self, slot: Slot, task_id: int | None, ok: bool, value: Any) -> None:
        """Called by a slot when its task answered (``ok`` result, or an exception)."""
        now = time.monotonic()
        finish: Request | None = None
        start: Request | None = None
        with self._lock:
            rec = self._slots[slot.index]
            if rec.slot is not slot:
                return
            req = rec.current
            if task_id is None:
                # a frame-level complaint (garbage on the worker's pipe): never a task's result
                logger.warning("worker %d reported: %s", slot.index, value)
                return
            if req is None or req.id != task_id:
                return
            rec.state = "finishing"
            if self._record_answer(rec, req, ok, now):
                finish = req
            settled = req.direct and not rec.retire
            if settled:
                # The answer came to the caller blocked in run(), on its own thread: the
                # lane's next task never waits on that thread, so no "finishing" pause.
                rec.state = "idle"
                start = self._take_next(slot.index)
        if finish is not None:
            self._finish(finish, ok, value, slot)
        if not settled:
            with self._lock:
                if rec.slot is slot and rec.state == "finishing":
                    if rec.retire:
                        self._replace_retired(rec)
                    else:
                        rec.state = "idle"
                        start = self._take_next(slot.index)
        if start is not None:
            self._start(start)

    def _record_answer(self, rec: _SlotRecord, req: Request, ok: bool, now: float) -> bool:
        """Under the lock: take ``req`` off its lane and count its answer.

        Returns ``True`` if the task was still running, so its future is to be
        resolved; ``False`` if it was stopped meanwhile (timeout, cancellation).
        """
        rec.current = None
        rec.answered = now
        rec.busy_seconds += now - req.started
        if req.state != RUNNING:
            return False
        req.state = DONE
        self._tasks.pop(req.id, None)
        self._watched.discard(req.id)
        self._latencies.append(now - req.submitted)
        if ok:
            self._completed += 1
            rec.completed += 1
        else:
            self._failed += 1
            rec.failed += 1
        return True

    def _finish(self, req: Request, ok: bool, value: Any, slot: Slot | None) -> None:
        if req.token is not None and req.token_handle is not None:
            req.token._remove_callback(req.token_handle)
        if ok and req.on_progress is not None:
            last = slot.progress(req.id) if slot is not None else None
            total = last[1] if last is not None and last[1] > 0 else 1
            self._deliver(req, Progress(total, total))
        task = req.task
        if task.done():
            return
        try:
            if ok:
                task.set_result(value)
            else:
                if isinstance(value, TaskCancelledError):
                    # the handler stopped on a flag we did not raise: still an error
                    value.task_id = req.id
                task.set_exception(value)
        except Exception:  # InvalidStateError: resolved concurrently
            pass

    def _deliver(self, req: Request, progress: Progress) -> None:
        cb = req.on_progress
        if cb is None:
            return
        try:
            cb(progress)
        except Exception:
            logger.exception("on_progress callback of task %d raised", req.id)

    # -- cancellation and timeouts ---------------------------------------------------

    def cancel(self, task_id: int) -> bool:
        """Cancel a queued or running task; ``False`` if it already finished."""
        with self._lock:
            req = self._tasks.get(task_id)
            if req is None or req.state in (DONE, STOPPING):
                return False
            self._stop(req, time.monotonic())
            self._cancelled += 1
        if req.token is not None and req.token_handle is not None:
            req.token._remove_callback(req.token_handle)
        req.task._cancel_now()
        return True

    def _stop(self, req: Request, now: float) -> None:
        """Under the lock: take ``req`` out of play (remove if queued, flag if running)."""
        self._tasks.pop(req.id, None)
        self._watched.discard(req.id)
        if req.state == QUEUED:
            req.state = DONE
            self._queued -= 1
            self._notify_room()
        elif req.state == RUNNING:
            req.state = STOPPING
            req.kill_at = now + CANCEL_GRACE
            assert req.slot is not None
            rec = self._slots[req.slot]
            rec.state = "stopping"
            rec.slot.cancel(req.id)
            heapq.heappush(self._deadlines, (req.kill_at, -req.id))
            self._sup_wake.notify()

    def _supervise(self) -> None:
        mark_internal_thread()
        while True:
            timeouts: list[Request] = []
            kills: list[Slot] = []
            progress: list[tuple[Request, Progress]] = []
            token_cancels: list[int] = []
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, key = heapq.heappop(self._deadlines)
                    if key > 0:
                        req = self._tasks.get(key)
                        if req is not None and req.state in (QUEUED, RUNNING):
                            self._stop(req, now)
                            self._timed_out += 1
                            timeouts.append(req)
                    else:
                        kills.extend(self._overdue(-key, now))
                for task_id in list(self._watched):
                    req = self._tasks.get(task_id)
                    if req is None:
                        self._watched.discard(task_id)
                        continue
                    if req.token is not None and _token_cancelled(req.token):
                        token_cancels.append(task_id)
                    if req.on_progress is not None and req.state == RUNNING:
                        assert req.slot is not None
                        sample = self._slots[req.slot].slot.progress(req.id)
                        if sample is not None and sample != req.last_progress:
                            req.last_progress = sample
                            progress.append((req, Progress(*sample)))
            for req in timeouts:
                if req.token is not None and req.token_handle is not None:
                    req.token._remove_callback(req.token_handle)
                where = "in the queue" if req.slot is None else "while running"
                exc = TaskTimeoutError(
                    f"task {req.id} ({req.channel}/{req.op}) timed out after "
                    f"{req.timeout:.3g} s {where}",
                    req.id,
                )
                with contextlib.suppress(Exception):
                    req.task.set_exception(exc)
            for slot in kills:
                slot.kill()
            for req, report in progress:
                if not req.task.done():
                    self._deliver(req, report)
            for task_id in token_cancels:
                self.cancel(task_id)
            with self._lock:
                if self._is_closed():
                    return
                if not (timeouts or kills or progress or token_cancels):
                    # computed afresh under this hold of the lock: a submit that pushed a
                    # deadline while the lock was released above notified nobody
                    self._sup_wake.wait(self._next_wake(time.monotonic()))

    def _next_wake(self, now: float) -> float | None:
        """Under the lock: how long the supervisor may sleep (``None``: until notified)."""
        wait: float | None = None
        if self._deadlines:
            wait = max(0.0, self._deadlines[0][0] - now)
        if self._watched:
            wait = PROGRESS_INTERVAL if wait is None else min(wait, PROGRESS_INTERVAL)
        return wait

    def _is_closed(self) -> bool:
        return self._closed

    def _overdue(self, task_id: int, now: float) -> list[Slot]:
        """Under the lock: the grace of a stopped task ran out: kill its worker if still on it."""
        for rec in self._slots:
            cur = rec.current
            if cur is not None and cur.id == task_id and cur.state == STOPPING:
                rec.killed = True
                logger.info(
                    "worker %d ignored the cancel flag of task %d for %.2f s: killing it",
                    rec.slot.index,
                    task_id,
                    CANCEL_GRACE,
                )
                return [rec.slot]
        return []

    # -- worker death -----------------------------------------------------------------

    def slot_dead(self, slot: Slot, exitcode: int | None, starting: bool) -> None:
        """Called by a slot whose process died (or failed to start)."""
        now = time.monotonic()
        fail: Request | None = None
        broken: str | None = None
        with self._lock:
            rec = self._slots[slot.index]
            if rec.slot is not slot:
                return
            req = rec.current
            rec.current = None
            rec.state = "dead"
            intentional = rec.killed
            rec.killed = False
            if rec.retire:  # a lane of the backend a fallback switch gave up
                rec.retire = False
                self._retiring -= 1
                self._idle.notify_all()
            if req is not None:
                rec.busy_seconds += now - req.started
                if req.state == RUNNING:
                    if req.retries > 0 and not self._closing:
                        req.retries -= 1
                        req.slot = None
                        req.direct = False  # whoever starts it again is not its caller
                        req.lane = None
                        req.task._started = False
                        req.state = QUEUED
                        self._queued += 1
                        heap = self._slots[req.home].heap if req.home is not None else self._heap
                        heapq.heappush(heap, (req.sort_key(), req))
                        logger.info("retrying task %d after its worker died", req.id)
                    else:
                        req.state = DONE
                        self._tasks.pop(req.id, None)
                        self._watched.discard(req.id)
                        self._failed += 1
                        rec.failed += 1
                        fail = req
            if self._closing:
                self._idle.notify_all()
            else:
                if not intentional:
                    self._crashes.append(now)
                    while self._crashes and self._crashes[0] < now - RESTART_WINDOW:
                        self._crashes.popleft()
                    logger.warning(
                        "worker %d died (%s)%s",
                        slot.index,
                        describe_exit(exitcode),
                        " while starting" if starting else "",
                    )
                if len(self._crashes) > RESTART_BUDGET:
                    broken = (
                        f"{len(self._crashes)} worker deaths within {RESTART_WINDOW:.0f} s "
                        f"(last: {describe_exit(exitcode)})"
                    )
                else:
                    rec.restarts += 1
                    rec.slot = self._backend.new_slot(slot.index, self)
                    rec.state = "starting"
                    rec.started_at = now
        if fail is not None:
            exc = WorkerCrashedError(
                f"worker {slot.index} died while running task {fail.id} "
                f"({fail.channel}/{fail.op}): {describe_exit(exitcode)}",
                fail.id,
                exitcode=exitcode,
            )
            self._finish(fail, False, exc, None)
        if not self._closing and broken is not None:
            self._break(broken)

    def _replace_retired(self, rec: _SlotRecord) -> None:
        """Under the lock: a retiring lane finished its task; put a current one in its place."""
        rec.retire = False
        self._retiring -= 1
        self._idle.notify_all()  # wakes the retire thread (and a waiting close)
        if self._closing:
            rec.state = "idle"  # close() stops it with the others
            return
        index = self._slots.index(rec)
        rec.slot = self._backend.new_slot(index, self)
        rec.state = "starting"
        rec.started_at = time.monotonic()

    def _retire(self, old: Backend, idle: list[Slot], busy: list[Slot]) -> None:
        """The retire thread of a fallback switch: stop the old backend's lanes, then free it.

        Lanes that were idle stop at once; busy ones once their task has ended
        (``_retiring`` reaches 0) or the bridge closes.  The backend's shared
        memory is released only after every lane's thread is gone.
        """
        for slot in idle:
            with contextlib.suppress(Exception):
                slot.shutdown(False)
        with self._lock:
            self._idle.wait_for(lambda: self._retiring == 0 or self._closing)
        for slot in busy:
            with contextlib.suppress(Exception):
                slot.shutdown(False)
        old.close()

    def _break(self, reason: str) -> None:
        if self._fallback == "auto" and self._make_fallback is not None:
            logger.warning("worker pool broken (%s): falling back to in-process execution", reason)
            old = self._backend
            backend = self._make_fallback()
            idle: list[Slot] = []
            busy: list[Slot] = []
            with self._lock:
                self._backend = backend
                self._crashes.clear()
                for i, rec in enumerate(self._slots):
                    if rec.state in ("starting", "idle", "dead"):
                        idle.append(rec.slot)
                        rec.slot = backend.new_slot(i, self)
                        rec.state = "starting"
                    elif not rec.retire:
                        # a healthy worker in the middle of a task finishes it first
                        busy.append(rec.slot)
                        rec.retire = True
                        self._retiring += 1
                retire = threading.Thread(
                    target=self._retire,
                    args=(old, idle, busy),
                    name="workerbridge-retire",
                    daemon=True,
                )
                self._retirers.append(retire)
            retire.start()
            return
        failed: list[Request] = []
        with self._lock:
            self._broken = reason
            for req in list(self._tasks.values()):
                if req.state == QUEUED:
                    req.state = DONE
                    failed.append(req)
            self._tasks = {k: v for k, v in self._tasks.items() if v.state != DONE}
            self._queued = 0
            self._heap.clear()
            for rec in self._slots:
                rec.heap.clear()
            self._notify_room()
            self._room.notify_all()
        logger.error("worker pool broken: %s", reason)
        for req in failed:
            self._finish(req, False, BrokenPoolError(f"the pool is broken: {reason}"), None)

    # -- shutdown ---------------------------------------------------------------------

    def close(self, wait: bool = True, cancel_pending: bool = True) -> None:
        """Close: fail or drain the queue, stop the slots, stop the supervisor.

        Called where it cannot wait -- a signal handler that interrupted this
        thread inside the dispatcher's lock, or (with ``wait``) a callback running
        on a thread that delivers results -- the part that would wait runs on a
        ``workerbridge-close`` thread and this call returns without waiting.
        """
        if self._lock._is_owned():  # type: ignore[attr-defined]
            self._close_requested = True  # later submits fail at once
            self._close_elsewhere(self.close, wait, cancel_pending)
            return
        pending: list[Request] = []
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._drain = not cancel_pending
                if cancel_pending:
                    for req in list(self._tasks.values()):
                        if req.state == QUEUED:
                            req.state = DONE
                            pending.append(req)
                            self._tasks.pop(req.id, None)
                    self._queued = 0
                    self._heap.clear()
                    for rec in self._slots:
                        rec.heap.clear()
                self._room.notify_all()
                self._idle.notify_all()  # a retire thread waiting for busy lanes
                if self._room_waiters:
                    self._notify_room()
        if already:
            if not _on_internal_thread():
                self._join_closed()
            return
        for req in pending:
            self._finish(req, False, PoolClosedError("the bridge was closed"), None)
        if wait and _on_internal_thread():
            self._close_elsewhere(self._close_rest, wait)
        else:
            self._close_rest(wait)

    @staticmethod
    def _close_elsewhere(fn: Callable[..., None], *args: bool) -> None:
        threading.Thread(target=fn, args=args, name="workerbridge-close", daemon=True).start()

    def _close_rest(self, wait: bool) -> None:
        """The waiting part of :meth:`close`: drain or stop, then release everything."""
        running: list[Request] = []
        if wait:
            with self._lock:
                self._idle.wait_for(
                    lambda: (
                        (
                            all(r.current is None for r in self._slots)
                            and (self._queued == 0 or self._broken is not None)
                        )
                        or all(r.state == "dead" for r in self._slots)
                    )
                )
        else:
            with self._lock:
                for rec in self._slots:
                    cur = rec.current
                    if cur is not None and cur.state == RUNNING:
                        cur.state = DONE
                        self._tasks.pop(cur.id, None)
                        running.append(cur)
                    rec.killed = True
                for req in list(self._tasks.values()):
                    if req.state == QUEUED:
                        req.state = DONE
                        running.append(req)
                self._tasks.clear()
            for req in running:
                self._finish(req, False, PoolClosedError("the bridge was closed"), None)
        # A drain can end with tasks still queued: the last worker died during it (and no
        # replacement starts while closing), or the pool broke.  They fail, never hang.
        leftover: list[Request] = []
        with self._lock:
            for req in list(self._tasks.values()):
                if req.state == QUEUED:
                    req.state = DONE
                    self._tasks.pop(req.id, None)
                    leftover.append(req)
            self._queued = 0
            self._heap.clear()
            for rec in self._slots:
                rec.heap.clear()
        for req in leftover:
            self._finish(req, False, PoolClosedError("the bridge was closed"), None)
        for rec in self._slots:
            try:
                rec.slot.shutdown(wait)
            except Exception:  # pragma: no cover - defensive
                logger.exception("error while stopping worker %d", rec.slot.index)
        with self._lock:
            self._closed = True
            self._sup_wake.notify_all()
        if self._supervisor is not threading.current_thread():
            self._supervisor.join()
        for retire in self._retirers:
            retire.join()
        self._backend.close()
        self._closed_event.set()

    def _join_closed(self) -> None:
        if self._supervisor is not threading.current_thread():
            self._closed_event.wait()

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self._latencies)
            workers = [
                {
                    "index": i,
                    "state": r.state,
                    "current_task": None if r.current is None else r.current.id,
                    "completed": r.completed,
                    "failed": r.failed,
                    "restarts": r.restarts,
                    "busy_seconds": round(r.busy_seconds, 6),
                    "queued_affinity": len(r.heap),
                    **r.slot.info(),
                }
                for i, r in enumerate(self._slots)
            ]
            return {
                "mode": self._backend.mode,
                "workers": workers,
                "in_flight": sum(1 for r in self._slots if r.current is not None),
                "queued": self._queued,
                "submitted": self._submitted,
                "completed": self._completed,
                "failed": self._failed,
                "cancelled": self._cancelled,
                "timed_out": self._timed_out,
                "restarts": sum(r.restarts for r in self._slots),
                "broken": self._broken,
                "latency": _percentiles(lat),
            }


def _token_cancelled(token: CancellationToken) -> bool:
    """``token.cancelled``, treating a token closed by its owner as not cancelled."""
    try:
        return token.cancelled
    except ValueError:
        return False


def _percentiles(sorted_values: Sequence[float]) -> dict[str, float | None]:
    def pick(q: float) -> float | None:
        if not sorted_values:
            return None
        return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": pick(1.0)}
