"""The in-process backend: the pool's interface, run on threads of this process.

Data flow::

    Dispatcher --start(req)--> ThreadSlot queue --> slot thread:
        run_request(channel, op, payload, resolve=the caller's own buffers)
        result bytes --unpack_payload--> value --> Dispatcher.on_result

Used when worker processes cannot run (``fallback="always"``,
``WORKERBRIDGE_INPROCESS=1``, no shared memory, or a pool broken beyond its
restart budget with ``fallback="auto"``).  Payloads and results still go
through the same msgpack encoding as in the pool, so handlers see the same
types and callers get identical results and errors.

What differs, by necessity: a thread cannot be killed, so a task that ignores
its cancel flag past the grace period is *abandoned* (its slot is replaced by a
fresh thread and its eventual result dropped) rather than stopped; and a crash
in C code takes the whole process down.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Literal

from ._buffer import HandedBuffer
from ._dispatcher import UNSET, mark_internal_thread
from ._execute import run_request
from ._protocol import unpack_payload
from ._registry import Context
from ._remote import exception_from_record

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher, Request

__all__ = ["InProcessBackend", "ThreadSlot"]


class ThreadSlot:
    """One lane of the in-process backend: a thread fed by a queue."""

    def __init__(self, index: int, dispatcher: Dispatcher, debug: bool) -> None:
        self.index = index
        self._dispatcher = dispatcher
        self._debug = debug
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._cancel_id = 0
        self._progress: tuple[int, int, int] = (0, 0, 0)
        self._state: dict[Any, Any] = {}
        self._abandoned = False
        self._thread = threading.Thread(
            target=self._run, name=f"workerbridge-inprocess-{index}", daemon=True
        )
        self._thread.start()

    # TaskControl
    def is_cancelled(self, task_id: int) -> bool:
        return self._cancel_id == task_id or self._abandoned

    def report(self, task_id: int, current: int, total: int) -> None:
        self._progress = (task_id, current, total)

    def abandoned(self) -> bool:
        """``True`` once the dispatcher gave up on this lane (see :meth:`kill`)."""
        return self._abandoned

    # Slot
    def start(self, req: Request) -> None:
        self._queue.put(req)

    def cancel(self, task_id: int) -> None:
        self._cancel_id = task_id

    def progress(self, task_id: int) -> tuple[int, int] | None:
        tid, cur, tot = self._progress
        return (cur, tot) if tid == task_id else None

    def read_direct(self, req: Request) -> Any:
        """Never called: only worker processes take direct tasks."""
        return UNSET

    def kill(self) -> None:
        # A thread cannot be stopped: abandon it and let the dispatcher replace the slot.
        self._abandoned = True
        self._queue.put(None)
        self._dispatcher.slot_dead(self, None, False)

    def shutdown(self, wait: bool) -> None:
        self._queue.put(None)
        if wait and not self._abandoned and self._thread is not threading.current_thread():
            self._thread.join()

    def info(self) -> dict[str, Any]:
        return {"pid": None, "thread": self._thread.name}

    def _run(self) -> None:
        mark_internal_thread()
        self._dispatcher.slot_ready(self)
        while True:
            req = self._queue.get()
            if req is None or self._abandoned:
                return
            buffers = req.buffers
            returned: dict[int, Any] = {}

            def resolve(
                i: int, buffers: list[Any] = buffers, returned: dict[int, Any] = returned
            ) -> object:
                b: Any = buffers[i]
                if not hasattr(b, "_wb_segment_name"):
                    return memoryview(b).toreadonly()
                view = memoryview(b.view).toreadonly()
                returned[id(view)] = b  # given back whole: reclaimed, as from a worker
                return view

            ctx = Context(req.id, self.index, self._state, self)
            ok, data, out = run_request(
                req.channel, req.op, req.payload, resolve, ctx, self._debug, returned
            )
            if self.abandoned():
                return
            value: object
            if ok:

                def copy_out(i: int, out: list[Any] = out) -> object:
                    b = out[i]
                    if isinstance(b, HandedBuffer):
                        return b.reclaim()
                    return bytes(b)

                try:
                    value = unpack_payload(data, copy_out)
                except Exception as exc:  # pragma: no cover - defensive
                    ok, value = False, exc
            else:
                value = exception_from_record(data, req.id)
            self._dispatcher.on_result(self, req.id, ok, value)


class InProcessBackend:
    """Creates :class:`ThreadSlot` lanes; holds nothing else."""

    mode: Literal["pool", "inprocess"] = "inprocess"
    #: threads wait on their own queues: nothing spins
    spin: float = 0.0

    def __init__(self, debug: bool = False) -> None:
        self._debug = debug

    def new_slot(self, index: int, dispatcher: Dispatcher) -> ThreadSlot:
        return ThreadSlot(index, dispatcher, self._debug)

    def close(self) -> None:
        pass
