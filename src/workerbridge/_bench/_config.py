"""The sizes and repetition counts of the three run modes.

``full`` is the published configuration (about six minutes on two cores),
``quick`` keeps every case at reduced repetitions and sizes (about a minute),
and ``tiny`` (hidden; for the smoke test) shrinks everything until the run
only checks that every case works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = ["CASES", "Config", "Mode", "config_for"]

Mode = Literal["tiny", "quick", "full"]

#: Every case, in run order.
CASES = ("round_trip", "map", "echo", "bridges", "cold_start", "memory")

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class Config:
    """What one run measures; recorded in the JSON document.

    Attributes
    ----------
    mode
        ``"tiny"``, ``"quick"`` or ``"full"``.
    workers
        Worker processes of every pool (workerbridge and each peer alike).
    rt_blocks, rt_block_calls, rt_warm_calls
        Round trip: alternating blocks per contestant, calls per block (each
        call timed on its own), and untimed calls first.
    map_items, map_rounds, map_budget_s, map_min_rounds, map_tune_runs
        Map: tasks per ``map`` call, most repetitions per contestant, the
        measured seconds after which a slow contestant stops (once it has
        ``map_min_rounds``), and the runs per candidate chunk size when tuning.
    echo_bytes, echo_rounds
        Echo: payload size and repetitions.
    bridge_sizes, bridge_rounds, bridge_rounds_large, bridge_batch_s
        Bridges: (name, bytes) sizes; batches per operation (small sizes, and
        sizes of 16 MiB and more); the target length of one batch of calls.
    cold_rounds
        Cold start: fresh interpreters per contestant.
    memory_bytes, memory_rounds, memory_warm_bytes
        Memory: size of the file encrypted and compressed, fresh processes
        per operation, and the size of the file each warms up on (32 MiB:
        large enough to take the parallel path with two workers).
    """

    mode: Mode
    workers: int = 2
    rt_blocks: int = 20
    rt_block_calls: int = 250
    rt_warm_calls: int = 50
    map_items: int = 20_000
    map_rounds: int = 10
    map_budget_s: float = 12.0
    map_min_rounds: int = 2
    map_tune_runs: int = 2
    echo_bytes: int = 64 * MiB
    echo_rounds: int = 10
    bridge_sizes: tuple[tuple[str, int], ...] = (
        ("1 KiB", KiB),
        ("1 MiB", MiB),
        ("256 MiB", 256 * MiB),
    )
    bridge_rounds: int = 15
    bridge_rounds_large: int = 5
    bridge_batch_s: float = 0.05
    cold_rounds: int = 7
    memory_bytes: int = 2 * GiB
    memory_rounds: int = 2
    memory_warm_bytes: int = 32 * MiB

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["bridge_sizes"] = [list(s) for s in self.bridge_sizes]
        return d


def config_for(mode: Mode, workers: int = 2) -> Config:
    """The configuration of ``mode`` with ``workers`` workers."""
    full = Config(mode="full", workers=workers)
    if mode == "full":
        return full
    if mode == "quick":
        return replace(
            full,
            mode="quick",
            rt_blocks=8,
            rt_block_calls=200,
            map_rounds=4,
            map_budget_s=3.0,
            map_min_rounds=1,
            map_tune_runs=1,
            echo_rounds=3,
            bridge_sizes=(("1 KiB", KiB), ("1 MiB", MiB), ("32 MiB", 32 * MiB)),
            bridge_rounds=5,
            bridge_rounds_large=3,
            bridge_batch_s=0.02,
            cold_rounds=2,
            memory_bytes=256 * MiB,
            memory_rounds=1,
        )
    return replace(
        full,
        mode="tiny",
        rt_blocks=2,
        rt_block_calls=20,
        rt_warm_calls=5,
        map_items=200,
        map_rounds=2,
        map_budget_s=0.5,
        map_min_rounds=1,
        map_tune_runs=1,
        echo_bytes=256 * KiB,
        echo_rounds=2,
        bridge_sizes=(("1 KiB", KiB), ("64 KiB", 64 * KiB), ("1 MiB", MiB)),
        bridge_rounds=2,
        bridge_rounds_large=2,
        bridge_batch_s=0.002,
        cold_rounds=1,
        memory_bytes=4 * MiB,
        memory_rounds=1,
        memory_warm_bytes=1 * MiB,
    )
