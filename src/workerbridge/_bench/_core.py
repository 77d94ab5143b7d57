"""The pool cases: round trip, map, echo and cold start, workerbridge beside every peer.

Data flow::

    case(cfg)
      start every pool with cfg.workers workers (peers first: the fork-based ones
      then fork a process without workerbridge's threads), a peer that cannot
      start gets a row with its reason and nothing else
      warm every pool (first calls, imports in the workers, arenas)
      alternate(runners, rounds)       each round: wb, peer1, peer2, ... in a seeded shuffle
      close every pool
      --> CaseResult rows: median and p10-p90, ratio against workerbridge, targets

Cold start runs each contestant in fresh interpreters (``python -c``), so
nothing is imported or warm beforehand.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._config import Config
from ._measure import CpuMonitor, Series, Summary, alternate, quantile, summarize
from ._peers import Peer, StdlibPPE, WorkerbridgeExecutor, peers, wait_ready
from ._report import CaseResult, judge, rate_row, speedup, time_row

if TYPE_CHECKING:
    from workerbridge import WorkerBridge

__all__ = ["child_env", "cold_start", "echo", "map_case", "round_trip"]

PPE = StdlibPPE.name
POOL = "multiprocessing.Pool"
WB = "workerbridge"


@contextlib.contextmanager
def _bridge(workers: int) -> Iterator[WorkerBridge]:
    """A WorkerBridge with every worker started (see :func:`wait_ready`), closed on exit."""
    import workerbridge as wb

    with wb.WorkerBridge(workers=workers, fallback="never") as bridge:
        wait_ready(bridge)
        yield bridge


@contextlib.contextmanager
def _started(contestants: list[Peer], workers: int) -> Iterator[dict[str, str]]:
    """Start every contestant in order; yield name -> reason for those that cannot run.

    workerbridge's contestants must come first (see :func:`wait_ready`).  On
    exit every pool is closed, in reverse order.
    """
    down: dict[str, str] = {}
    try:
        for peer in contestants:
            reason = peer.missing()
            if reason is None:
                try:
                    peer.start(workers)
                except Exception as exc:
                    reason = f"error: {type(exc).__name__}: {exc}"[:140]
            if reason is not None:
                down[peer.name] = reason
        yield down
    finally:
        for peer in reversed(contestants):
            with contextlib.suppress(Exception):
                peer.close()


def _warm(fn: Callable[[], object], times: int) -> str | None:
    try:
        for _ in range(times):
            fn()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:140]
    return None


def _block(fn: Callable[[], object], calls: int) -> Callable[[], list[float]]:
    """A runner timing ``calls`` calls of ``fn`` one by one."""
    clock = time.perf_counter

    def run() -> list[float]:
        out = []
        for _ in range(calls):
            t = clock()
            fn()
            out.append(clock() - t)
        return out

    return run


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    clock = time.perf_counter

    def run() -> float:
        t = clock()
        fn()
        return clock() - t

    return run


def _pooled(series: Series, q: float) -> Summary | None:
    """Percentile ``q`` of every call; spread: p10-p90 of that percentile per block."""
    if not series.ok or not series.calls:
        return None
    per_block = [quantile(b, q) for b in series.per_rep if b]
    return Summary(
        median=quantile(series.calls, q),
        p10=quantile(per_block, 0.1),
        p90=quantile(per_block, 0.9),
        n=len(series.calls),
    )


def _summary(series: Series) -> Summary | None:
    return summarize(series.samples) if series.ok and series.samples else None


# -- (1) round trip ------------------------------------------------------------------------


def round_trip(cfg: Config) -> CaseResult:
    """One empty task at a time: p50 and p99 latency of every contestant."""
    case = CaseResult(
        "round_trip",
        "round trip of an empty task, one call at a time",
        f"{cfg.workers} workers; {cfg.rt_blocks} alternating blocks of {cfg.rt_block_calls} "
        f"calls each; spread: p10-p90 of the per-block percentile; ratio: how many times "
        f"faster workerbridge run() is than the row (on other workerbridge rows: than PPE)",
    )
    others = peers()
    executor = WorkerbridgeExecutor()
    with (
        CpuMonitor() as mon,
        _bridge(cfg.workers) as bridge,
        _started([executor, *others], cfg.workers) as down,
    ):
        runners: dict[str, Callable[[], float | list[float]] | None] = {}
        calls: dict[str, Callable[[], object]] = {
            f"{WB} run()": lambda: bridge.run("_wb", "noop"),
        }
        for peer in [executor, *others]:
            calls[peer.name] = peer.call
        for name, fn in calls.items():
            if name in down:
                runners[name] = None
                continue
            problem = _warm(fn, cfg.rt_warm_calls)
            if problem:
                down[name] = problem
                runners[name] = None
            else:
                runners[name] = _block(fn, cfg.rt_block_calls)
        series = alternate(runners, cfg.rt_blocks, unavailable=down)
    case.record_cpu(mon)
    for name, s in series.items():
        label = f"{WB} Executor.submit()" if name == executor.name else name
        for metric, q in (("p50", 0.5), ("p99", 0.99)):
            case.rows.append(
                time_row(f"{label} {metric}", name, metric, _pooled(s, q), "us", status=s.status)
            )
    ours = {m: case.find(f"{WB} run()", m) for m in ("p50", "p99")}
    for row in case.rows:
        if row.contestant == f"{WB} run()":
            continue
        if row.contestant == executor.name:
            row.ratio = speedup(row, case.find(PPE, row.variant))
        elif row.contestant == PPE:
            minimum = 8.0 if row.variant == "p50" else 4.0
            judge(row, speedup(ours[row.variant], row), minimum, f">= {minimum:g}x")
        else:
            row.ratio = speedup(ours[row.variant], row)
    case.extra["calls_per_contestant"] = {n: len(s.calls) for n, s in series.items()}
    return case


# -- (2) map ---------------------------------------------------------------------------------


def _candidates(n: int) -> list[int]:
    return sorted({max(1, n // d) for d in (2, 4, 8, 16, 64, 256)})


def map_case(cfg: Config) -> CaseResult:
    """``map`` of many tiny tasks: default and tuned chunk sizes of every contestant."""
    n = cfg.map_items
    items = list(range(n))
    expected = [x * x for x in items]
    contestants: list[Peer] = [WorkerbridgeExecutor(), *peers()]
    case = CaseResult(
        "map",
        f"Executor.map of {n:,} tiny tasks (x*x), results in order",
        f"{cfg.workers} workers; default chunk size, and tuned: the fastest of "
        f"{_candidates(n)} for each contestant; up to {cfg.map_rounds} alternating "
        f"repetitions (slow ones stop after {cfg.map_budget_s:g} s of them); ratio: how many "
        f"times faster workerbridge's default is than the row",
    )
    chosen: dict[str, dict[str, int]] = {}
    with CpuMonitor() as mon, _started(contestants, cfg.workers) as down:
        alive = [p for p in contestants if p.name not in down]
        warm = items[: max(1, n // 10)]
        for peer in alive:
            try:
                if peer.map(warm, None) != expected[: len(warm)]:
                    down[peer.name] = "error: wrong results"
            except Exception as exc:
                down[peer.name] = f"error: {type(exc).__name__}: {exc}"[:140]
        alive = [p for p in alive if p.name not in down]
        # Tune: every contestant tries every candidate, alternating contestants.
        best: dict[str, tuple[float, int]] = {}
        for size in _candidates(n):
            for _ in range(cfg.map_tune_runs):
                for peer in alive:
                    try:
                        t = _timed(functools.partial(peer.map, items, size))()
                    except Exception:
                        continue
                    if peer.name not in best or t < best[peer.name][0]:
                        best[peer.name] = (t, size)
        runners: dict[str, Callable[[], float | list[float]] | None] = {}
        reasons: dict[str, str] = {}
        for peer in contestants:
            default = peer.default_chunksize(n, cfg.workers)
            tuned = best.get(peer.name, (0.0, default))[1]
            chosen[peer.name] = {"default": default, "tuned": tuned}
            for variant, chunk in (("default", None), ("tuned", tuned)):
                key = f"{peer.name}|{variant}"
                if peer.name in down:
                    runners[key] = None
                    reasons[key] = down[peer.name]
                else:
                    runners[key] = _timed(functools.partial(peer.map, items, chunk))
        series = alternate(
            runners,
            cfg.map_rounds,
            min_rounds=cfg.map_min_rounds,
            budget_s=cfg.map_budget_s,
            unavailable=reasons,
        )
    case.record_cpu(mon)
    for key, s in series.items():
        name, variant = key.split("|")
        chunk = chosen[name][variant]
        label = f"{name} {variant} (chunksize={chunk})"
        if name == WorkerbridgeExecutor.name:
            label = f"{WB} Executor.map {variant} (chunksize={chunk})"
        case.rows.append(time_row(label, name, variant, _summary(s), "ms", status=s.status))
    ours = case.find(WorkerbridgeExecutor.name, "default")
    for row in case.rows:
        if row.contestant != WorkerbridgeExecutor.name:
            row.ratio = speedup(ours, row)
    ppe = case.find(PPE, "default")
    if ppe is not None:
        judge(ppe, ppe.ratio, 100.0, ">= 100x")
    pool_rows = [r for r in (case.find(POOL, "default"), case.find(POOL, "tuned")) if r and r.ok]
    if pool_rows:
        best_pool = min(pool_rows, key=lambda r: r.value or float("inf"))
        judge(best_pool, best_pool.ratio, 1.0, ">= 1x (Pool's best)")
    case.extra["chunksizes"] = chosen
    return case


# -- (3) echo --------------------------------------------------------------------------------


def echo(cfg: Config) -> CaseResult:
    """A bytes payload sent to a worker and returned, and the same through ``allocate``."""

    size = cfg.echo_bytes
    mib = f"{size / (1 << 20):g} MiB"
    case = CaseResult(
        "echo",
        f"{mib} bytes payload echoed by a worker (there and back)",
        f"{cfg.workers} workers; {cfg.echo_rounds} alternating repetitions; throughput = "
        f"payload size / round-trip time; ratio: how many times faster workerbridge run() "
        f"is than the row (on other workerbridge rows: than PPE)",
    )
    others = peers()
    executor = WorkerbridgeExecutor()
    fills: list[float] = []
    with (
        CpuMonitor() as mon,
        _bridge(cfg.workers) as bridge,
        _started([executor, *others], cfg.workers) as down,
    ):
        payload = os.urandom(size)
        clock = time.perf_counter

        def checked(fn: Callable[[], Any]) -> Callable[[], float]:
            def run() -> float:
                t = clock()
                out = fn()
                elapsed = clock() - t
                if len(out) != size:
                    raise RuntimeError(f"echo returned {len(out)} bytes, not {size}")
                return elapsed

            return run

        def through_allocate() -> float:
            t0 = clock()
            buf = bridge.allocate(size)
            t1 = clock()
            buf.view[:] = payload  # the caller producing its data in place: not timed
            t2 = clock()
            out = bridge.run("_wb", "echo", buf)  # the handler gives the buffer back
            t3 = clock()
            if len(out) != size:
                raise RuntimeError(f"echo returned {len(out)} bytes, not {size}")
            out.close()  # as a peer's result is freed: not timed
            fills.append(t3 - t0)
            return (t1 - t0) + (t3 - t2)

        fns: dict[str, Callable[[], float]] = {
            f"{WB} run()": checked(lambda: bridge.run("_wb", "echo", payload)),
            f"{WB} allocate()": through_allocate,
        }
        for peer in [executor, *others]:
            if peer.name not in down:
                fns[peer.name] = checked(functools.partial(peer.echo, payload))
        runners: dict[str, Callable[[], float | list[float]] | None] = {}
        for name in [f"{WB} run()", f"{WB} allocate()", executor.name] + [p.name for p in others]:
            fn = fns.get(name)
            problem = None if fn is None else _warm(fn, 2)
            if problem:
                down[name] = problem
            runners[name] = None if (fn is None or problem) else fn
        series = alternate(runners, cfg.echo_rounds, unavailable=down)
    case.record_cpu(mon)
    gb = size / 1e9
    for name, s in series.items():
        label = name
        if name == executor.name:
            label = f"{WB} Executor.submit()"
        elif name == f"{WB} allocate()":
            label = f"{WB} allocate() + run(), given back (fill not timed)"
        case.rows.append(rate_row(label, name, "echo", _summary(s), gb, "GB/s", status=s.status))
        if name == f"{WB} allocate()" and s.ok and fills:
            case.rows.append(
                rate_row(
                    f"{WB} allocate() + run(), fill timed",
                    name,
                    "echo incl. fill",
                    summarize(fills[-len(s.samples) :]),
                    gb,
                    "GB/s",
                )
            )
    ours = case.find(f"{WB} run()", "echo")
    ppe = case.find(PPE, "echo")
    for row in case.rows:
        if row.contestant == f"{WB} run()":
            continue
        if row.contestant.startswith(WB):
            row.ratio = speedup(row, ppe)
            if row.variant == "echo" and row.contestant == f"{WB} allocate()":
                judge(row, row.ratio, 25.0, ">= 25x vs PPE")
        elif row.contestant == PPE:
            judge(row, speedup(ours, row), 10.0, ">= 10x")
        else:
            row.ratio = speedup(ours, row)
    return case


# -- (5) cold start --------------------------------------------------------------------------

_PRELUDE = "import time\nt0 = time.perf_counter()\n"
_REPORT = "print('COLD', t1 - t0, time.perf_counter() - t0, flush=True)\n"

#: name -> (import statement, code creating the pool and waiting for one result, closing code)
_COLD: dict[str, tuple[str, str, str]] = {
    f"{WB} WorkerBridge": (
        "import workerbridge",
        "p = workerbridge.WorkerBridge(workers=W, fallback='never')\np.run('_wb', 'noop')",
        "p.close()",
    ),
    f"{WB} Executor": (
        "import workerbridge, os",
        "p = workerbridge.Executor(max_workers=W, fallback='never')\np.submit(os.getpid).result()",
        "p.shutdown()",
    ),
    "ProcessPoolExecutor": (
        "import concurrent.futures, os",
        "p = concurrent.futures.ProcessPoolExecutor(max_workers=W)\np.submit(os.getpid).result()",
        "p.shutdown()",
    ),
    "multiprocessing.Pool": (
        "import multiprocessing, os",
        "p = multiprocessing.Pool(processes=W)\np.apply(os.getpid)",
        "p.close()\np.join()",
    ),
    "loky": (
        "import loky, os",
        "p = loky.get_reusable_executor(max_workers=W)\np.submit(os.getpid).result()",
        "p.shutdown()",
    ),
    "pebble": (
        "import pebble, os",
        "p = pebble.ProcessPool(max_workers=W)\np.schedule(os.getpid).result()",
        "p.close()\np.join()",
    ),
    "mpire": (
        "import mpire, os",
        "p = mpire.WorkerPool(n_jobs=W, keep_alive=True)\np.apply(os.getpid)",
        "p.terminate()",
    ),
}


def _cold_script(name: str, workers: int) -> str:
    imp, first, close = _COLD[name]
    body = f"W = {workers}\n{imp}\nt1 = time.perf_counter()\n{first}\n"
    return f"{_PRELUDE}{body}{_REPORT}{close}\n"


def child_env() -> dict[str, str]:
    import workerbridge

    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(workerbridge.__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cold_once(name: str, workers: int, env: dict[str, str]) -> tuple[float, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _cold_script(name, workers)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("COLD "):
            _, imp, total = line.split()
            return float(imp), float(total)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"exit {proc.returncode}: {tail[:120]}")


def cold_start(cfg: Config) -> CaseResult:
    """Fresh interpreter: import, create the pool, first result."""
    case = CaseResult(
        "cold_start",
        "cold start to first result (fresh interpreter: import + pool start + one task)",
        f"{cfg.workers} workers; {cfg.cold_rounds} alternating fresh interpreters per "
        f"contestant, timed inside the child from before its import to the first result "
        f"(interpreter start-up and exit excluded); ratio: how many times faster "
        f"workerbridge WorkerBridge is than the row",
    )
    env = child_env()
    imports: dict[str, list[float]] = {n: [] for n in _COLD}
    installed = {p.name: p.missing() for p in peers()}

    def runner(name: str) -> Callable[[], float]:
        def run() -> float:
            imp, total = _cold_once(name, cfg.workers, env)
            imports[name].append(imp)
            return total

        return run

    runners: dict[str, Callable[[], float | list[float]] | None] = {}
    reasons: dict[str, str] = {}
    for name in _COLD:
        reason = installed.get(name)
        runners[name] = None if reason else runner(name)
        if reason:
            reasons[name] = reason
    with CpuMonitor() as mon:
        series = alternate(runners, cfg.cold_rounds, unavailable=reasons)
    case.record_cpu(mon)
    for name, s in series.items():
        case.rows.append(time_row(name, name, "cold", _summary(s), "ms", status=s.status))
    ours = case.find(f"{WB} WorkerBridge", "cold")
    for row in case.rows:
        if row is not ours:
            row.ratio = speedup(ours, row)
    medians = {n: sorted(v)[len(v) // 2] * 1e3 for n, v in imports.items() if v}
    case.extra["import_ms"] = medians
    if medians:
        case.notes.append(
            "of which import: " + ", ".join(f"{n} {v:.0f} ms" for n, v in medians.items())
        )
    return case
