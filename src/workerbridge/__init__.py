"""workerbridge: move heavy work off the main thread into a pool of worker processes.

Request IDs, per-task timeouts that really stop the work, progress from inside
running tasks, cancellation of running tasks, crash recovery, and an automatic
in-process fallback.  Start with :func:`get_bridge` or :class:`WorkerBridge`.
"""

from __future__ import annotations

from . import progress as progress
from ._aio import AsyncWorkerBridge as AsyncWorkerBridge
from ._bridge import WorkerBridge as WorkerBridge
from ._bridge import get_bridge as get_bridge
from ._buffer import SharedBuffer as SharedBuffer
from ._errors import BrokenPoolError as BrokenPoolError
from ._errors import IntegrityError as IntegrityError
from ._errors import NonceReuseError as NonceReuseError
from ._errors import PoolClosedError as PoolClosedError
from ._errors import PoolError as PoolError
from ._errors import ProtocolError as ProtocolError
from ._errors import QueueFullError as QueueFullError
from ._errors import RemoteError as RemoteError
from ._errors import TaskCancelledError as TaskCancelledError
from ._errors import TaskError as TaskError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import ValidationError as ValidationError
from ._errors import WorkerBridgeError as WorkerBridgeError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._executor import Executor as Executor
from ._registry import Context as Context
from ._registry import handler as handler
from ._shared import CancellationToken as CancellationToken
from ._shared import SharedCounter as SharedCounter
from ._shared import SharedProgress as SharedProgress
from ._stats import BridgeStats as BridgeStats
from ._stats import LatencyStats as LatencyStats
from ._stats import WorkerStats as WorkerStats
from ._task import Progress as Progress
from ._task import Task as Task
from .bridges._transfer import HTTPError as HTTPError
from .bridges._transfer import Transfer as Transfer
from .bridges._transfer import TransferError as TransferError

__version__ = "0.1.0"

__all__ = [
    "AsyncWorkerBridge",
    "BridgeStats",
    "BrokenPoolError",
    "CancellationToken",
    "Context",
    "Executor",
    "HTTPError",
    "IntegrityError",
    "LatencyStats",
    "NonceReuseError",
    "PoolClosedError",
    "PoolError",
    "Progress",
    "ProtocolError",
    "QueueFullError",
    "RemoteError",
    "SharedBuffer",
    "SharedCounter",
    "SharedProgress",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskTimeoutError",
    "Transfer",
    "TransferError",
    "ValidationError",
    "WorkerBridge",
    "WorkerBridgeError",
    "WorkerCrashedError",
    "WorkerStats",
    "get_bridge",
    "handler",
]
