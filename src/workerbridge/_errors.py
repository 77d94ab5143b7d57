"""The exception hierarchy of workerbridge.

Every error workerbridge raises on purpose is one of these classes, so callers
match on types, never on message strings::

    WorkerBridgeError
    ├── ProtocolError            malformed or incompatible message
    ├── ValidationError          bad arguments (also a ValueError)
    ├── TaskError                carries .task_id
    │   ├── TaskTimeoutError     also a TimeoutError
    │   ├── TaskCancelledError   also a concurrent.futures.CancelledError
    │   ├── RemoteError          the handler raised; sanitized type name and message
    │   └── WorkerCrashedError   the worker died while running this task; .exitcode
    ├── IntegrityError           authentication failed (wrong key, tampered or truncated data)
    ├── NonceReuseError
    └── PoolError
        ├── BrokenPoolError      the pool cannot run tasks and fallback is off
        ├── PoolClosedError      you closed it
        └── QueueFullError       backpressure: max_queue reached

Two contrasts matter when handling pool errors: :exc:`PoolClosedError` means
*you* closed the bridge, :exc:`BrokenPoolError` means it broke underneath you
(workers kept dying beyond the restart budget and ``fallback="never"``).

All classes pickle and unpickle unchanged (their extra attributes are keyword
arguments with defaults), because they cross process boundaries.
"""

from __future__ import annotations

import concurrent.futures
import signal

__all__ = [
    "BrokenPoolError",
    "IntegrityError",
    "NonceReuseError",
    "PoolClosedError",
    "PoolError",
    "ProtocolError",
    "QueueFullError",
    "RemoteError",
    "TaskCancelledError",
    "TaskError",
    "TaskTimeoutError",
    "ValidationError",
    "WorkerBridgeError",
    "WorkerCrashedError",
]


class WorkerBridgeError(Exception):
    """Base class of every error raised by workerbridge."""


class ProtocolError(WorkerBridgeError):
    """A frame was malformed, truncated, oversized, of an unknown kind or version."""


class ValidationError(WorkerBridgeError, ValueError):
    """The arguments of a call were rejected before anything was sent."""


class TaskError(WorkerBridgeError):
    """A task failed; :attr:`task_id` is the request ID of that task.

    Parameters
    ----------
    message
        Human-readable description.
    task_id
        The request ID (:attr:`workerbridge.Task.id`), or ``None`` when unknown.
    """

    def __init__(self, message: str = "", task_id: int | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.task_id), self.__dict__)

    def __str__(self) -> str:
        text = super().__str__()
        if self.task_id is not None and "task " not in text:
            return f"{text} (task {self.task_id})"
        return text


class TaskTimeoutError(TaskError, TimeoutError):
    """The task did not finish within its ``timeout``.

    The work was stopped, not abandoned: a queued task was removed before it
    ran; a running task had its cancel flag raised and, if it did not stop
    within the grace period, its worker was killed and replaced.
    """


class TaskCancelledError(TaskError, concurrent.futures.CancelledError):
    """The task was cancelled (by :meth:`Task.cancel` or a :class:`CancellationToken`).

    A queued task was removed before it ran; a running task saw the cancel flag
    (``ctx.cancelled``) or, if it ignored it past the grace period, its worker
    was killed and replaced.
    """


class RemoteError(TaskError):
    """The handler raised an exception.

    Only the exception's type name (:attr:`remote_type`) and message cross the
    process boundary: no locals, no payload bytes.  :attr:`remote_traceback` is
    filled only when the bridge was created with ``debug=True``.
    """

    def __init__(
        self,
        message: str = "",
        task_id: int | None = None,
        remote_type: str = "Exception",
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(message, task_id)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (str(self), self.task_id, self.remote_type, self.remote_traceback),
            self.__dict__,
        )


class WorkerCrashedError(TaskError):
    """The worker process died while running this task.

    :attr:`exitcode` is the process's exit status; a negative value ``-N``
    means it was killed by signal ``N`` (for example ``-11``, a segmentation
    fault in C code, or ``-9``, SIGKILL, often the kernel's out-of-memory
    killer).  The worker was replaced; other tasks were not affected.
    """

    def __init__(
        self, message: str = "", task_id: int | None = None, exitcode: int | None = None
    ) -> None:
        super().__init__(message, task_id)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.task_id, self.exitcode), self.__dict__)


def describe_exit(exitcode: int | None) -> str:
    """Return a short human description of a process exit status."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        hints = {
            signal.SIGSEGV: " (segmentation fault, usually a bug in C code)",
            signal.SIGKILL: " (killed; the out-of-memory killer does this)",
            signal.SIGABRT: " (aborted, usually a failed C assertion)",
            signal.SIGBUS: " (bus error, often a truncated memory-mapped file)",
        }
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"killed by signal {-exitcode}"
        name, hint = sig.name, hints.get(sig, "")
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


class IntegrityError(WorkerBridgeError):
    """Authentication failed: wrong key, or tampered, truncated or reordered data.

    Nothing was written: file operations leave no destination file.
    """


class NonceReuseError(WorkerBridgeError):
    """An explicit nonce was used twice with the same key on this bridge."""


class PoolError(WorkerBridgeError):
    """Base class of errors about the pool as a whole."""


class BrokenPoolError(PoolError):
    """The pool cannot run tasks (workers died beyond the restart budget) and fallback is off."""


class PoolClosedError(PoolError):
    """The bridge was closed by you; tasks still pending when it closed fail with this."""


class QueueFullError(PoolError):
    """Backpressure: ``max_queue`` tasks are already waiting.

    Submit with ``block=True`` to wait for room instead.
    """


for _cls in (
    WorkerBridgeError,
    ProtocolError,
    ValidationError,
    TaskError,
    TaskTimeoutError,
    TaskCancelledError,
    RemoteError,
    WorkerCrashedError,
    IntegrityError,
    NonceReuseError,
    PoolError,
    BrokenPoolError,
    PoolClosedError,
    QueueFullError,
):
    _cls.__module__ = "workerbridge"
del _cls
