"""Typed snapshots returned by :meth:`WorkerBridge.stats`.

Data flow::

    Dispatcher.stats() (dict, under its lock) --> BridgeStats.from_dict() --> caller
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BridgeStats", "LatencyStats", "WorkerStats"]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker (a process in ``"pool"`` mode, a thread in ``"inprocess"`` mode).

    Attributes
    ----------
    index : int
        Lane index, ``0`` .. ``workers - 1``; a replacement keeps the index.
    state : str
        ``"starting"``, ``"idle"``, ``"busy"``, ``"stopping"`` (a cancelled or
        timed-out task has its grace period) or ``"dead"``.
    pid : int or None
        Process ID (``None`` in-process).
    current_task : int or None
        Request ID of the task it is running.
    completed, failed, restarts : int
        Tasks completed and failed on this lane, and how often it was replaced.
    busy_seconds : float
        Time spent running tasks.
    """

    index: int
    state: str
    pid: int | None
    current_task: int | None
    completed: int
    failed: int
    restarts: int
    busy_seconds: float


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Submit-to-result latency over the last 2,048 completed tasks, in seconds."""

    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class BridgeStats:
    """A snapshot of a bridge's health.

    Attributes
    ----------
    mode : str
        ``"pool"`` or ``"inprocess"``.
    workers : tuple of WorkerStats
        One entry per lane.
    in_flight, queued : int
        Tasks running now, and waiting in the queue (the queue depth).
    submitted, completed, failed, cancelled, timed_out, restarts : int
        Totals since the bridge started.
    broken : str or None
        Why the pool is broken, if it is.
    latency : LatencyStats
        Latency percentiles.
    """

    mode: str
    workers: tuple[WorkerStats, ...]
    in_flight: int
    queued: int
    submitted: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    restarts: int
    broken: str | None
    latency: LatencyStats

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BridgeStats:
        workers = tuple(
            WorkerStats(
                index=w["index"],
                state=w["state"],
                pid=w.get("pid"),
                current_task=w["current_task"],
                completed=w["completed"],
                failed=w["failed"],
                restarts=w["restarts"],
                busy_seconds=w["busy_seconds"],
            )
            for w in d["workers"]
        )
        fields = {k: v for k, v in d.items() if k not in ("workers", "latency")}
        return cls(workers=workers, latency=LatencyStats(**d["latency"]), **fields)

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as plain dicts and lists (JSON-ready)."""
        return asdict(self)


for _cls in (WorkerStats, LatencyStats, BridgeStats):
    _cls.__module__ = "workerbridge"
del _cls
