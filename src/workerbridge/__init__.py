"""workerbridge: move heavy work off the main thread into worker processes."""

from __future__ import annotations

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

__version__ = "0.1.0"

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
