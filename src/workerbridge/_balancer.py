"""Choosing a worker: pure functions over a snapshot of worker state.

Data flow::

    dispatcher (under its lock) --WorkerView snapshots--> choose(strategy, views, last)
                                <-- index of an idle worker, or None

Keeping the balancer a pure function (as piscina does) makes it trivial to test
and to swap: it sees only :class:`WorkerView` records, never processes or locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

__all__ = ["STRATEGIES", "Strategy", "WorkerView", "choose", "choose_affinity_home"]

Strategy = Literal["least-busy", "round-robin"]
STRATEGIES: Final = ("least-busy", "round-robin")


class WorkerView:
    """What the balancer may know about one worker (a snapshot, built per pick)."""

    __slots__ = ("affinity_keys", "busy_seconds", "idle", "index", "inflight", "warm")

    def __init__(
        self,
        index: int,
        idle: bool,
        inflight: int,
        busy_seconds: float,
        affinity_keys: int = 0,
        warm: bool = False,
    ) -> None:
        self.index = index
        self.idle = idle
        self.inflight = inflight
        self.busy_seconds = busy_seconds
        self.affinity_keys = affinity_keys
        #: it answered so recently that it is still spinning for its next task
        #: (see workerbridge._spin): a task given to it starts without a wake-up
        self.warm = warm

    def __repr__(self) -> str:
        return (
            f"WorkerView(index={self.index}, idle={self.idle}, inflight={self.inflight}, "
            f"busy_seconds={self.busy_seconds:.3f}, affinity_keys={self.affinity_keys}, "
            f"warm={self.warm})"
        )


def choose(
    strategy: Strategy, workers: Sequence[WorkerView], last: int, size: int | None = None
) -> int | None:
    """Pick an idle worker for the next task, or ``None`` when none is idle.

    ``round-robin`` takes the first idle worker after ``last`` (the previous
    choice), cyclically.  ``least-busy`` takes the idle worker with the fewest
    tasks in flight, then a warm one (still spinning for work, so it starts at
    once), then the least accumulated busy time, so load spreads evenly and a
    worker that just finished a long task rests.  ``size`` is
    the number of workers in the pool when ``workers`` holds only some of
    them (the idle ones, say).
    """
    idle = [w for w in workers if w.idle]
    if not idle:
        return None
    if strategy == "round-robin":
        n = len(workers) if size is None else size
        return min(idle, key=lambda w: (w.index - last - 1) % n if n else 0).index
    return min(idle, key=lambda w: (w.inflight, not w.warm, w.busy_seconds, w.index)).index


def choose_affinity_home(workers: Sequence[WorkerView]) -> int:
    """Pick the worker that will own a new affinity key: the one owning fewest keys."""
    return min(workers, key=lambda w: (w.affinity_keys, w.inflight, w.index)).index
