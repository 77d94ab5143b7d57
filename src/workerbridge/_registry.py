"""Handler registry and the :class:`Context` a handler receives.

Data flow::

    @handler("myapp", "resize")          module import (parent, and every worker that
    def resize(ctx, payload): ...   -->  imports the modules named in ``handlers=``)
                                          registers ("myapp", "resize") -> resize
    submit("myapp", "resize", p)   -->   lookup() in the parent: unknown pairs are
                                          rejected before anything is sent
    worker receives a request      -->   lookup() in the worker: only registered
                                          pairs run; nothing is imported on request
                                          except workerbridge's own bridge modules

Only ``channel``/``op`` pairs registered by workerbridge's bridges or by
:func:`handler` in modules the application named run.  Channels starting with
``_`` are reserved for workerbridge itself.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from ._errors import TaskCancelledError, ValidationError

__all__ = [
    "BUILTIN_CHANNELS",
    "Context",
    "HandlerEntry",
    "TaskControl",
    "handler",
    "lookup",
    "registered",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")

#: Channels served by workerbridge's own modules, imported lazily on first use
#: (in the parent and in each worker) so a worker that never encrypts never
#: pays for importing ``cryptography``.
BUILTIN_CHANNELS: Final[dict[str, str]] = {
    "_wb": "workerbridge._builtin_handlers",
    "compression": "workerbridge.bridges._compression_handlers",
    "crypto": "workerbridge.bridges._crypto_handlers",
    "file": "workerbridge.bridges._file_handlers",
    "network": "workerbridge.bridges._network_handlers",
}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class HandlerEntry:
    """One registered handler."""

    channel: str
    op: str
    fn: Callable[[Context, Any], Any]
    module: str


_registry: dict[tuple[str, str], HandlerEntry] = {}
_lock = threading.Lock()


def handler(channel: str, op: str) -> Callable[[F], F]:
    """Register a function as the handler of ``channel``/``op``.

    The function is called as ``fn(ctx, payload)`` in a worker process (or a
    thread of the in-process fallback) and returns a msgpack-encodable result.

    Parameters
    ----------
    channel, op
        Names of 1 to 64 letters, digits, ``_``, ``.`` or ``-``.  Channels
        starting with ``_`` and the bridges' channels (``compression``,
        ``crypto``, ``file``, ``network``) are reserved.

    Notes
    -----
    Workers import only the modules named in the bridge's ``handlers=`` option;
    a handler defined elsewhere is rejected by :meth:`WorkerBridge.submit
    <workerbridge.WorkerBridge.submit>` with :exc:`ValidationError`.

    Examples
    --------
    >>> import workerbridge as wb
    >>> @wb.handler("docs", "double")
    ... def double(ctx, payload):
    ...     return payload * 2
    """
    _check_name("channel", channel)
    _check_name("op", op)
    module_of_caller = _caller_module()
    if (channel.startswith("_") or channel in BUILTIN_CHANNELS) and not (
        module_of_caller.startswith("workerbridge.") or module_of_caller == "workerbridge"
    ):
        raise ValidationError(f"channel {channel!r} is reserved for workerbridge")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ValidationError("handler() decorates a callable")
        module = getattr(fn, "__module__", None) or module_of_caller
        entry = HandlerEntry(channel, op, fn, module)
        with _lock:
            old = _registry.get((channel, op))
            if old is not None and old.fn is not fn and not _same_definition(old, entry):
                raise ValidationError(
                    f"handler {channel}/{op} is already registered by {old.module}"
                )
            _registry[(channel, op)] = entry
        return fn

    return decorate


def _same_definition(a: HandlerEntry, b: HandlerEntry) -> bool:
    # A module imported twice (``__main__`` and ``__mp_main__``, or a reload)
    # registers the same function again: allow it.
    aliases = {"__main__", "__mp_main__"}
    same_module = a.module == b.module or {a.module, b.module} <= aliases
    return same_module and getattr(a.fn, "__qualname__", None) == getattr(
        b.fn, "__qualname__", None
    )


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(f"{what} must be 1-64 letters, digits, '_', '.' or '-', got {name!r}")


def _caller_module() -> str:
    import sys

    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", ""))


def lookup(channel: str, op: str) -> HandlerEntry:
    """Return the handler for ``channel``/``op``, importing a built-in bridge module if needed.

    Raises
    ------
    ValidationError
        No handler is registered for the pair.
    """
    entry = _registry.get((channel, op))
    if entry is not None:
        return entry
    module = BUILTIN_CHANNELS.get(channel)
    if module is not None:
        importlib.import_module(module)
        entry = _registry.get((channel, op))
        if entry is not None:
            return entry
    raise ValidationError(f"no handler is registered for {channel!r}/{op!r}")


def registered() -> list[tuple[str, str]]:
    """Return the registered ``(channel, op)`` pairs, sorted."""
    with _lock:
        return sorted(_registry)


class TaskControl(Protocol):
    """Backend hooks behind a :class:`Context` (shared-memory slot or in-process state)."""

    def is_cancelled(self, task_id: int) -> bool: ...

    def report(self, task_id: int, current: int, total: int) -> None: ...


class Context:
    """What a handler knows about the task it is running.

    A :class:`Context` is created by workerbridge for each task and passed as
    the handler's first argument.

    Attributes
    ----------
    task_id : int
        The request ID of this task (:attr:`workerbridge.Task.id`).
    worker : int
        Index of the worker running the task (``0`` .. ``workers - 1``).
    state : dict
        This worker's private dictionary, kept between tasks.  With
        ``affinity=key`` every task with that key runs on the same worker, so
        state stored here under that key is there for the next task.  It is
        lost if the worker crashes or is replaced after a timeout.
    """

    __slots__ = ("_control", "_last_report", "state", "task_id", "worker")

    def __init__(
        self, task_id: int, worker: int, state: dict[Any, Any], control: TaskControl
    ) -> None:
        self.task_id = task_id
        self.worker = worker
        self.state = state
        self._control = control
        self._last_report: tuple[int, int] | None = None

    @property
    def cancelled(self) -> bool:
        """``True`` once the task was cancelled or its timeout expired.

        Long-running handlers should look at this (or call
        :meth:`check_cancelled`) regularly; a handler that ignores it is
        stopped by force after a short grace period (its worker is killed
        and replaced).
        """
        return self._control.is_cancelled(self.task_id)

    def check_cancelled(self) -> None:
        """Raise :exc:`~workerbridge.TaskCancelledError` if the task was cancelled.

        Raises
        ------
        TaskCancelledError
            The task was cancelled or timed out.
        """
        if self._control.is_cancelled(self.task_id):
            raise TaskCancelledError("task cancelled", self.task_id)

    def report(self, current: int, total: int | None = None) -> None:
        """Publish progress: ``current`` units done out of ``total``.

        Cheap (two stores into shared memory): call it as often as you like;
        the caller's ``on_progress`` sees the latest value about every 50 ms
        and once more when the task ends.

        Parameters
        ----------
        current
            Units done so far (bytes for streamed work).
        total
            Units in all; ``None`` keeps the last total given (or ``0``, unknown).
        """
        if total is None:
            total = self._last_report[1] if self._last_report is not None else 0
        current, total = int(current), int(total)
        self._last_report = (current, total)
        self._control.report(self.task_id, current, total)

    def __repr__(self) -> str:
        return f"<Context task={self.task_id} worker={self.worker}>"


Context.__module__ = "workerbridge"
