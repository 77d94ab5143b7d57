"""Core benchmarks: workerbridge against concurrent.futures.ProcessPoolExecutor.

Data flow::

    run(quick) -> for each case: start both pools, warm them, then alternate
                  repetitions (wb, peer, wb, peer, ...) so drift and outside load
                  hit both equally -> medians, p99, ratios -> table (and JSON)

Cases here: the round trip of an empty task (one call at a time) and a 64 MiB
bytes payload echoed by a worker.  The full suite with every peer is planned
(see the performance page of the docs).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main", "run"]


def _echo(x: Any) -> Any:
    return x


def _noop() -> None:
    return None


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cpu_busy_other() -> float:
    """Fraction of the machine's CPU time used by other processes over 0.2 s."""
    try:

        def read() -> tuple[int, int]:
            with open("/proc/stat") as f:
                parts = [int(x) for x in f.readline().split()[1:]]
            idle = parts[3] + parts[4]
            return sum(parts), idle

        t0, i0 = read()
        time.sleep(0.2)
        t1, i1 = read()
        return 1.0 - (i1 - i0) / max(1, t1 - t0)
    except OSError:
        return 0.0


def run(quick: bool = True, workers: int = 2) -> dict[str, Any]:
    """Run the core cases; return the figures as a dict."""
    import workerbridge as wb

    reps_rt = 300 if quick else 3000
    reps_echo = 3 if quick else 10
    size = (16 if quick else 64) << 20
    payload = os.urandom(size)
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "busy_before": round(_cpu_busy_other(), 3),
        },
        "config": {"workers": workers, "quick": quick, "echo_bytes": size},
        "cases": {},
    }
    with (
        wb.WorkerBridge(workers=workers, fallback="never") as bridge,
        concurrent.futures.ProcessPoolExecutor(workers) as ppe,
    ):
        bridge.run("_wb", "noop")
        ppe.submit(_noop).result()
        wb_rt: list[float] = []
        ppe_rt: list[float] = []
        for _ in range(reps_rt):
            wb_rt.append(_time(lambda: bridge.run("_wb", "noop")))
            ppe_rt.append(_time(lambda: ppe.submit(_noop).result()))
        wb_echo: list[float] = []
        ppe_echo: list[float] = []
        bridge.run("_wb", "echo", payload)
        ppe.submit(_echo, payload).result()
        for _ in range(reps_echo):
            wb_echo.append(_time(lambda: bridge.run("_wb", "echo", payload)))
            ppe_echo.append(_time(lambda: ppe.submit(_echo, payload).result()))

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    results["cases"]["round_trip_us"] = {
        "workerbridge": {"p50": pct(wb_rt, 0.5) * 1e6, "p99": pct(wb_rt, 0.99) * 1e6},
        "ProcessPoolExecutor": {"p50": pct(ppe_rt, 0.5) * 1e6, "p99": pct(ppe_rt, 0.99) * 1e6},
    }
    results["cases"]["echo_GBps"] = {
        "workerbridge": size / statistics.median(wb_echo) / 1e9,
        "ProcessPoolExecutor": size / statistics.median(ppe_echo) / 1e9,
    }
    results["machine"]["busy_after"] = round(_cpu_busy_other(), 3)
    return results


def _report(r: dict[str, Any]) -> str:
    rt = r["cases"]["round_trip_us"]
    echo = r["cases"]["echo_GBps"]
    mb = r["config"]["echo_bytes"] >> 20
    lines = [
        f"{'case':<28}{'workerbridge':>14}{'PPE':>14}{'ratio':>10}",
        f"{'round trip p50 (us)':<28}{rt['workerbridge']['p50']:>14.1f}"
        f"{rt['ProcessPoolExecutor']['p50']:>14.1f}"
        f"{rt['ProcessPoolExecutor']['p50'] / rt['workerbridge']['p50']:>9.2f}x",
        f"{'round trip p99 (us)':<28}{rt['workerbridge']['p99']:>14.1f}"
        f"{rt['ProcessPoolExecutor']['p99']:>14.1f}"
        f"{rt['ProcessPoolExecutor']['p99'] / rt['workerbridge']['p99']:>9.2f}x",
        f"{f'{mb} MiB echo (GB/s)':<28}{echo['workerbridge']:>14.3f}"
        f"{echo['ProcessPoolExecutor']:>14.3f}"
        f"{echo['workerbridge'] / echo['ProcessPoolExecutor']:>9.2f}x",
    ]
    busy = max(r["machine"]["busy_before"], r["machine"]["busy_after"])
    if busy > 0.2:
        lines.append(f"WARNING: other processes used {busy:.0%} of the CPU: figures are unreliable")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m workerbridge bench [--full] [--json PATH] [--workers N]``."""
    quick = "--full" not in argv
    workers = 2
    if "--workers" in argv:
        workers = int(argv[argv.index("--workers") + 1])
    r = run(quick=quick, workers=workers)
    print(_report(r))
    if "--json" in argv:
        with open(argv[argv.index("--json") + 1], "w") as f:
            json.dump(r, f, indent=2)
    return 0
