"""Type aliases and protocols shared across workerbridge's modules.

``WorkContext`` is the narrow view of a running task that the bridges' engines
(compression, crypto, file, network) need: report progress, notice
cancellation.  :class:`workerbridge.Context` implements it in workers and in
the in-process fallback; tests may pass any object with these members.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["WorkContext"]


@runtime_checkable
class WorkContext(Protocol):
    """What a running piece of work may ask of its task."""

    @property
    def cancelled(self) -> bool:
        """``True`` once the task was cancelled or its timeout expired."""
        ...

    def check_cancelled(self) -> None:
        """Raise :exc:`workerbridge.TaskCancelledError` if :attr:`cancelled` is set."""
        ...

    def report(self, current: int, total: int | None = None) -> None:
        """Publish progress (bytes for streamed work); cheap, call it often."""
        ...
