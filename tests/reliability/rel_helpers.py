"""Measuring helpers for the reliability scenarios: processes, memory, segments, figures.

Everything here reads ``/proc`` and ``/dev/shm`` directly (Linux only) so the
scenarios need nothing beyond the standard library and workerbridge.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from workerbridge._shm import list_segments, parse_name

WORKER_MARK = "workerbridge._worker"

# -- processes ----------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``"Z"`` for a zombie), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (zombies count as dead)."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def children(pid: int | None = None) -> set[int]:
    """Direct children of ``pid`` (default: this process), zombies included."""
    pid = os.getpid() if pid is None else pid
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{tid}/children") as f,
        ):
            out.update(int(p) for p in f.read().split())
    return out


def zombies(pids: Iterable[int]) -> list[int]:
    return sorted(p for p in pids if proc_state(p) == "Z")


def is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return WORKER_MARK.encode() in f.read()
    except OSError:
        return False


def orphan_workers(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` that still run a workerbridge worker."""
    return sorted(p for p in pids if alive(p) and is_worker(p))


def kill_child(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid`` only if it is still a worker child of this process.

    A pidfd pins the process first, so a recycled pid can never be hit.
    """
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if proc_ppid(pid) != os.getpid() or not is_worker(pid):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- memory -------------------------------------------------------------------------------


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) in KiB; 0 if it is gone."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_pids(bridge: Any) -> list[int]:
    return [w.pid for w in bridge.stats().workers if w.pid]


class RssSampler:
    """Samples this process's RSS (and optionally the workers') in a thread."""

    def __init__(self, interval: float = 0.02, bridge: Any = None) -> None:
        self.interval = interval
        self.bridge = bridge
        self.parent: list[int] = []
        self.workers_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rel-rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.parent.append(rss_kib())
            if self.bridge is not None:
                with contextlib.suppress(Exception):
                    for pid in worker_pids(self.bridge):
                        self.workers_max = max(self.workers_max, rss_kib(pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.parent.append(rss_kib())

    @property
    def peak(self) -> int:
        return max(self.parent, default=rss_kib())


# -- shared memory ------------------------------------------------------------------------


def segments_of(pids: Iterable[int]) -> list[str]:
    """``wb_`` segments created by any of ``pids``."""
    wanted = set(pids)
    out = []
    for name in list_segments():
        parsed = parse_name(name)
        if parsed is not None and parsed[0] in wanted:
            out.append(name)
    return out


def wait_no_segments(pids: Iterable[int], timeout: float = 5.0) -> list[str]:
    pids = set(pids)
    left: list[str] = []

    def clean() -> bool:
        nonlocal left
        left = segments_of(pids)
        return not left

    wait_until(clean, timeout)
    return left


# -- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(values: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """min / p50 / p90 / p99 / max of ``values`` times ``scale`` (3 decimals)."""
    vals = sorted(v * scale for v in values)
    if not vals:
        return {"n": 0}
    return {
        "n": len(vals),
        "min": round(vals[0], 3),
        "p50": round(percentile(vals, 0.50), 3),
        "p90": round(percentile(vals, 0.90), 3),
        "p99": round(percentile(vals, 0.99), 3),
        "max": round(vals[-1], 3),
    }


# -- figures ------------------------------------------------------------------------------

FIGURES_ENV = "WB_RELIABILITY_JSON"


def record(result: dict[str, Any]) -> dict[str, Any]:
    """Print a scenario's figures; append them to ``$WB_RELIABILITY_JSON`` if set."""
    line = json.dumps(result, sort_keys=True, default=str)
    print(f"\n[reliability] {line}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    return result


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start
