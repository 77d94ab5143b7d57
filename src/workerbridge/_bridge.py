"""WorkerBridge: the synchronous front, and the process-wide singleton.

Data flow::

    WorkerBridge(...)  --chooses a backend--> PoolBackend (worker processes)
                                          or InProcessBackend (threads: fallback)
                       --creates--> Dispatcher (queue, request table, supervisor)
    bridge.submit(ch, op, payload, ...)
        validate options and handler --> pack_payload --> Dispatcher.submit --> Task
    bridge.compression / crypto / file / network
        typed methods that build submits (see workerbridge.bridges)
    get_bridge()  one bridge per process, created on first use, closed at exit,
                  re-created in a child after fork

Nothing here blocks except :meth:`WorkerBridge.submit` with ``block=True``
(waiting for queue room), :meth:`WorkerBridge.run` and :meth:`WorkerBridge.close`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from ._balancer import STRATEGIES, Strategy
from ._buffer import HandedBuffer, SharedBuffer
from ._dispatcher import UNSET, Backend, Dispatcher
from ._errors import BrokenPoolError, PoolClosedError, ValidationError
from ._fallback import InProcessBackend
from ._protocol import pack_payload
from ._registry import lookup
from ._shared import CancellationToken
from ._stats import BridgeStats
from ._task import Progress, Task

if TYPE_CHECKING:
    from .bridges import CompressionBridge, CryptoBridge, FileBridge, NetworkBridge

__all__ = ["WorkerBridge", "get_bridge"]

logger = logging.getLogger("workerbridge")

Fallback = Literal["auto", "never", "always"]
_FALLBACKS = ("auto", "never", "always")

_live: weakref.WeakSet[WorkerBridge] = weakref.WeakSet()


def _main_path() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    return os.path.abspath(path)


def _validate_timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class WorkerBridge:
    """A pool of worker processes with request IDs, real timeouts, progress and cancellation.

    Parameters
    ----------
    workers
        Number of worker processes; ``None`` means :func:`os.cpu_count`.
    strategy
        ``"least-busy"`` (default: the idle worker with the least accumulated
        busy time) or ``"round-robin"``.
    max_queue
        Tasks that may wait in the queue before :meth:`submit` raises
        :exc:`~workerbridge.QueueFullError` (or waits, with ``block=True``).
    fallback
        ``"auto"``: run in-process when worker processes cannot be used (they
        cannot start, shared memory is unavailable, ``WORKERBRIDGE_INPROCESS=1``
        is set, or the pool broke beyond its restart budget); ``"always"``:
        never start processes; ``"never"``: raise
        :exc:`~workerbridge.BrokenPoolError` instead.
    default_timeout
        Timeout in seconds for calls that do not pass ``timeout=``.
    handlers
        Names of modules that register custom handlers with
        :func:`workerbridge.handler`; they are imported here and in every
        worker.  ``"__main__"`` names the running script.
    debug
        Attach the remote traceback to :exc:`~workerbridge.RemoteError`.

    Raises
    ------
    ValidationError
        An option is invalid.
    BrokenPoolError
        ``fallback="never"`` and worker processes cannot be used.

    Examples
    --------
    >>> import workerbridge as wb
    >>> with wb.WorkerBridge(workers=2) as bridge:
    ...     bridge.run("_wb", "echo", b"hello")
    b'hello'
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        strategy: Strategy = "least-busy",
        max_queue: int = 1000,
        fallback: Fallback = "auto",
        default_timeout: float | None = None,
        handlers: Iterable[str] | str = (),
        debug: bool = False,
    ) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValidationError(f"workers must be a positive int or None, got {workers!r}")
        if strategy not in STRATEGIES:
            raise ValidationError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValidationError(f"max_queue must be an int >= 0, got {max_queue!r}")
        if fallback not in _FALLBACKS:
            raise ValidationError(f"fallback must be one of {_FALLBACKS}, got {fallback!r}")
        default_timeout = _validate_timeout("default_timeout", default_timeout)
        modules = [handlers] if isinstance(handlers, str) else list(handlers)
        for name in modules:
            if not isinstance(name, str) or not name:
                raise ValidationError(f"handlers must name modules, got {name!r}")
            if name not in ("__main__", "__mp_main__"):
                importlib.import_module(name)
        self._handler_modules = modules
        self._allowed = set(modules)
        if "__main__" in self._allowed or "__mp_main__" in self._allowed:
            self._allowed |= {"__main__", "__mp_main__"}
        self._debug = bool(debug)
        self._fallback: Fallback = fallback
        self._pid = os.getpid()
        self._forked = False
        self._close_lock = threading.Lock()
        backend = self._choose_backend(workers)
        self._dispatcher = Dispatcher(
            backend,
            workers,
            strategy=strategy,
            max_queue=max_queue,
            default_timeout=default_timeout,
            fallback=fallback,
            make_fallback=(lambda: InProcessBackend(self._debug)) if fallback == "auto" else None,
        )
        self._workers = workers
        _live.add(self)

    def _choose_backend(self, workers: int) -> Backend:
        reason = None
        if self._fallback == "always":
            reason = 'fallback="always"'
        elif os.environ.get("WORKERBRIDGE_INPROCESS", "") not in ("", "0"):
            reason = "WORKERBRIDGE_INPROCESS is set"
        if reason is None:
            try:
                from ._pool import PoolBackend

                return PoolBackend(workers, self._handler_modules, self._debug, _main_path())
            except (OSError, ImportError) as exc:
                reason = f"worker processes cannot be used: {exc}"
        if self._fallback == "never":
            raise BrokenPoolError(reason)
        if self._fallback == "auto":
            logger.info("running in-process: %s", reason)
        return InProcessBackend(self._debug)

    # -- the low-level API -----------------------------------------------------------

    @property
    def mode(self) -> Literal["pool", "inprocess"]:
        """``"pool"`` when tasks run in worker processes, ``"inprocess"`` otherwise."""
        return self._dispatcher.mode

    @property
    def workers(self) -> int:
        """Number of lanes (worker processes, or threads in-process)."""
        return self._workers

    def submit(
        self,
        channel: str,
        op: str,
        payload: object = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        cancel: CancellationToken | None = None,
        on_progress: Callable[[Progress], object] | None = None,
        affinity: object = None,
        retries: int = 0,
        block: bool | float = False,
    ) -> Task[Any]:
        """Submit one task to the handler registered for ``channel``/``op``.

        Parameters
        ----------
        channel, op
            The handler, registered with :func:`workerbridge.handler` in a
            module named in ``handlers=``, or one of workerbridge's own.
        payload
            ``None``, bools, ints, floats, strings, bytes-like objects,
            :class:`SharedBuffer` objects, and lists, tuples and dicts of those.
            Binary values of 64 KiB and more travel through shared memory.
        timeout
            Seconds until the task is *stopped*: a task still queued is removed
            and never runs; a running task has its cancel flag raised and, if
            it has not stopped after a short grace period (0.25 s), its worker
            is killed and replaced.  The task fails with
            :exc:`~workerbridge.TaskTimeoutError` at the deadline either way.
        priority
            Higher runs first; equal priorities run earliest-deadline first,
            then in submission order.
        cancel
            A :class:`CancellationToken`; cancelling it (from any process)
            cancels the task as :meth:`Task.cancel` does.
        on_progress
            Called with a :class:`Progress` (from a background thread) when the
            handler reports progress, at most about every 50 ms, and once more
            with ``current == total`` when the task succeeds.
        affinity
            A hashable key: every task with the same key runs on the same
            worker, whose ``ctx.state`` dict persists between tasks.
        retries
            Run the task again this many times if its worker crashes while
            running it.  Only for idempotent work.
        block
            When the queue is full: ``False`` raises
            :exc:`~workerbridge.QueueFullError`, ``True`` waits for room, a
            number waits at most that many seconds.

        Returns
        -------
        Task
            A :class:`concurrent.futures.Future` whose :attr:`Task.id` is the request ID.

        Raises
        ------
        ValidationError
            Unknown handler, bad option, or a payload that cannot be encoded
            (nothing was sent).
        QueueFullError
            The queue is full and ``block`` is false (or its wait ran out).
        PoolClosedError
            The bridge is closed.
        BrokenPoolError
            The pool broke and ``fallback="never"``.
        """
        return self._submit(
            channel,
            op,
            payload,
            timeout=timeout,
            priority=priority,
            cancel=cancel,
            on_progress=on_progress,
            affinity=affinity,
            retries=retries,
            block=block,
        )

    def _submit(
        self,
        channel: str,
        op: str,
        payload: object = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        cancel: CancellationToken | None = None,
        on_progress: Callable[[Progress], object] | None = None,
        affinity: object = None,
        retries: int = 0,
        block: bool | float = False,
        direct: bool = False,
    ) -> Task[Any]:
        self._check_usable()
        entry = lookup(channel, op)
        module = entry.module
        if module not in self._allowed and not (
            module == "workerbridge" or module.startswith("workerbridge.")
        ):
            raise ValidationError(
                f"handler {channel}/{op} is defined in module {module!r}, which this "
                f"bridge's workers do not import: add it to handlers="
            )
        # each check costs only when its option is given (run()'s hot path gives none)
        if timeout is not None:
            timeout = _validate_timeout("timeout", timeout)
        if type(priority) is not int and (
            isinstance(priority, bool) or not isinstance(priority, int)
        ):
            raise ValidationError(f"priority must be an int, got {priority!r}")
        if cancel is not None and not isinstance(cancel, CancellationToken):
            raise ValidationError("cancel must be a workerbridge.CancellationToken")
        if on_progress is not None and not callable(on_progress):
            raise ValidationError("on_progress must be callable")
        if (
            type(retries) is not int and (isinstance(retries, bool) or not isinstance(retries, int))
        ) or retries < 0:
            raise ValidationError(f"retries must be an int >= 0, got {retries!r}")
        if affinity is not None:
            try:
                hash(affinity)
            except TypeError:
                raise ValidationError("affinity keys must be hashable") from None
        if block is not False and not isinstance(block, bool | int | float):
            raise ValidationError("block must be a bool or a number of seconds")
        packed, buffers = pack_payload(payload)
        handed: list[HandedBuffer] = []
        for i, b in enumerate(buffers):  # empty for most payloads
            if isinstance(b, SharedBuffer):
                buffers[i] = hb = HandedBuffer(b)
                handed.append(hb)
                if self.mode == "pool" and hb.view is not None:
                    hb.view.release()
                    hb.view = None
        try:
            task = self._dispatcher.submit(
                channel,
                op,
                packed,
                buffers,
                timeout=timeout,
                priority=priority,
                cancel=cancel,
                on_progress=on_progress,
                affinity=affinity,
                retries=retries,
                block=block,
                direct=direct,
            )
        except BaseException:
            for hb in handed:
                hb.release()
            raise
        if handed:

            def release_handed(_: object) -> None:
                for hb in handed:
                    hb.release()

            task.add_done_callback(release_handed)
        return task

    def run(self, channel: str, op: str, payload: object = None, **options: Any) -> Any:
        """Submit a task and wait for its result (``submit(...).result()``).

        On timeout raises :exc:`~workerbridge.TaskTimeoutError`; on
        cancellation :exc:`~workerbridge.TaskCancelledError`.  If the waiting
        thread is interrupted (``KeyboardInterrupt``), the task is cancelled.
        """
        task = self._submit(channel, op, payload, direct=True, **options)
        try:
            value = self._dispatcher.wait_direct(task)
            return task.result() if value is UNSET else value
        except BaseException:
            task.cancel()
            raise

    # -- the bridges --------------------------------------------------------------------

    @functools.cached_property
    def compression(self) -> CompressionBridge:
        """The :class:`~workerbridge.bridges.CompressionBridge` of this bridge.

        zstd, snappy, gzip and zlib over bytes and files.  Created on first
        use and kept for the life of this bridge.
        """
        from .bridges._compression import CompressionBridge

        return CompressionBridge(self)

    @functools.cached_property
    def crypto(self) -> CryptoBridge:
        """The :class:`~workerbridge.bridges.CryptoBridge` of this bridge.

        Authenticated encryption of bytes and files, hashes, key derivation.
        Created on first use and kept for the life of this bridge, with the
        bridge's nonce-reuse registry.
        """
        from .bridges._crypto import CryptoBridge

        return CryptoBridge(self)

    @functools.cached_property
    def file(self) -> FileBridge:
        """The :class:`~workerbridge.bridges.FileBridge` of this bridge.

        Streamed hashing, verified copies, ranged reads and atomic writes.
        Created on first use and kept for the life of this bridge.
        """
        from .bridges._file import FileBridge

        return FileBridge(self)

    @functools.cached_property
    def network(self) -> NetworkBridge:
        """The :class:`~workerbridge.bridges.NetworkBridge` of this bridge.

        Resumable downloads and tus or PUT uploads.  Created on first use and
        kept for the life of this bridge.
        """
        from .bridges._network import NetworkBridge

        return NetworkBridge(self)

    def allocate(self, size: int) -> SharedBuffer:
        """Return a :class:`SharedBuffer` of ``size`` bytes to fill in place and submit.

        Handing the buffer to a task moves it there without a copy; see
        :class:`SharedBuffer`.
        """
        self._check_usable()
        return SharedBuffer(size)

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block until the queue has room; ``False`` if ``timeout`` seconds passed first."""
        self._check_usable()
        return self._dispatcher.wait_for_room(timeout)

    def stats(self) -> BridgeStats:
        """Return a :class:`BridgeStats` snapshot (workers, queue depth, totals, latency)."""
        return BridgeStats.from_dict(self._dispatcher.stats())

    # -- lifecycle -------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._forked or self._pid != os.getpid():
            raise PoolClosedError(
                "this bridge belongs to the parent process; after fork use get_bridge() "
                "or create a new WorkerBridge in the child"
            )
        if self._dispatcher.closed:
            raise PoolClosedError("the bridge is closed")

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` was called."""
        return self._dispatcher.closed

    def close(self, wait: bool = True, cancel_pending: bool = True) -> None:
        """Close the bridge; afterwards no process, segment or thread of it remains.

        Calling :meth:`close` again does nothing.

        Parameters
        ----------
        wait
            ``True``: running tasks finish and deliver their results first.
            ``False``: running tasks fail with :exc:`~workerbridge.PoolClosedError`
            and their workers are killed.
        cancel_pending
            ``True``: queued tasks fail with :exc:`~workerbridge.PoolClosedError`
            at once.  ``False`` (with ``wait=True``): they run first.

        Notes
        -----
        Two places cannot wait: a done callback or ``on_progress`` callback
        (they run on the bridge's own result threads, which would be waiting
        on themselves) and a signal handler that interrupted a call into the
        bridge.  From there :meth:`close` stops accepting tasks (and, with
        ``cancel_pending``, fails the queued ones) at once, finishes the rest
        on a separate ``workerbridge-close`` thread, and returns without
        waiting.  A later :meth:`close` from an ordinary thread waits for it.
        """
        if self._forked or self._pid != os.getpid():
            return
        self._dispatcher.close(wait=wait, cancel_pending=cancel_pending)
        _live.discard(self)

    def __enter__(self) -> WorkerBridge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return f"<WorkerBridge workers={self._workers} {state}>"

    def _after_fork_in_child(self) -> None:
        self._forked = True
        backend = self._dispatcher._backend
        for rec in self._dispatcher._slots:
            for attr in ("_wfd", "_rfd", "_lfd", "_dfd", "_wake_r", "_wake_w"):
                fd = getattr(rec.slot, attr, -1)
                if isinstance(fd, int) and fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    setattr(rec.slot, attr, -1)
        del backend


WorkerBridge.__module__ = "workerbridge"

_singleton: WorkerBridge | None = None
_singleton_lock = threading.Lock()


def get_bridge() -> WorkerBridge:
    """Return the process-wide :class:`WorkerBridge`, creating it on first use.

    The same object is returned on every call.  It uses the default options
    (``workers=os.cpu_count()``, ``fallback="auto"``), is closed at interpreter
    exit, and a child process created by :func:`os.fork` gets a fresh one.
    """
    global _singleton
    with _singleton_lock:
        bridge = _singleton
        if bridge is None or bridge.closed or bridge._pid != os.getpid():
            bridge = _singleton = WorkerBridge()
        return bridge


def _close_all_at_exit() -> None:
    for bridge in list(_live):
        try:
            bridge.close(wait=False)
        except Exception:  # pragma: no cover - interpreter is going away
            pass


def _after_fork_in_child() -> None:
    global _singleton, _singleton_lock
    _singleton = None
    _singleton_lock = threading.Lock()
    for bridge in list(_live):
        bridge._after_fork_in_child()
    _live.clear()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
