"""The reliability scenarios of issue 7: each runs, checks and returns its figures.

Every scenario is a plain function taking its size as keyword arguments and
returning a JSON-ready dict ``{"scenario": name, "figures": {...}, "failures":
[...]}``; ``failures`` lists every broken promise found (empty when all held).
The pytest modules next to this one run them at the sizes of :data:`SIZES`
(``small`` by default, ``heavy`` with ``-m heavy``) and assert on the
failures; ``scripts/reliability.py`` runs them and prints the figures.

Timings are measured and reported, never asserted tightly: the only timing
checks are generous sanity bounds, and every loop is bounded in time and count.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
from rel_helpers import (
    RssSampler,
    alive,
    children,
    is_worker,
    kill_child,
    orphan_workers,
    rss_kib,
    segments_of,
    summary,
    wait_no_segments,
    wait_until,
    worker_pids,
    zombies,
)

import workerbridge as wb
from workerbridge import _protocol
from workerbridge._shm import list_segments, unlink_by_name

HERE = Path(__file__).resolve().parent
HANDLERS = ["rel_handlers"]

#: Sizes of every scenario: ``small`` runs in ``make test``, ``heavy`` in ``make reliability``.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "chaos": {
        "small": {"tasks": 600, "workers": 2, "kill_interval": 0.1, "task_ms": 2.0},
        "heavy": {"tasks": 10_000, "workers": 2, "kill_interval": 0.1, "task_ms": 2.0},
    },
    "chaos_budget": {
        "small": {"tasks": 200},
        "heavy": {"tasks": 2_000},
    },
    "parent_kill": {
        "small": {"states": ("spin_c", "starting", "chaos"), "atomics": ("c",), "trials": 1},
        "heavy": {
            "states": ("idle", "spin", "spin_c", "starting", "chaos"),
            "atomics": ("c", "python"),
            "trials": 3,
        },
    },
    "hangs": {
        "small": {"trials": 2},
        "heavy": {"trials": 25},
    },
    "coop_cancel": {
        "small": {"trials": 10},
        "heavy": {"trials": 200},
    },
    "fuzz_frames": {
        "small": {"inputs": 4_000, "hypothesis": 200},
        "heavy": {"inputs": 120_000, "hypothesis": 5_000},
    },
    "fuzz_channel": {
        "small": {"frames": 3_000},
        "heavy": {"frames": 100_000},
    },
    "fuzz_handlers": {
        "small": {"inputs": 2_000},
        "heavy": {"inputs": 100_000},
    },
    "tamper": {
        "small": {"files": 120, "public": 40},
        "heavy": {"files": 1_200, "public": 1_200},
    },
    "overload": {
        "small": {"submits": 5_000, "max_queue": 100},
        "heavy": {"submits": 100_000, "max_queue": 1_000},
    },
    "soak": {
        "small": {"tasks": 20_000, "checkpoints": 2, "probe": 100},
        "heavy": {"tasks": 1_000_000, "checkpoints": 10},
    },
    "shutdown_races": {
        "small": {"trials": 6},
        "heavy": {"trials": 80},
    },
    "signal_close": {
        "small": {"trials": 0},
        "heavy": {"trials": 30},
    },
}


def size(name: str, heavy: bool) -> dict[str, Any]:
    return dict(SIZES[name]["heavy" if heavy else "small"])


def _result(name: str, figures: dict[str, Any], failures: list[str]) -> dict[str, Any]:
    return {"scenario": name, "figures": figures, "failures": failures[:20]}


def _ensure_path() -> None:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))


def new_bridge(**options: Any) -> wb.WorkerBridge:
    _ensure_path()
    options.setdefault("workers", 2)
    options.setdefault("handlers", HANDLERS)
    options.setdefault("fallback", "never")
    return wb.WorkerBridge(**options)


def _ready(bridge: wb.WorkerBridge) -> bool:
    return all(w.state == "idle" and w.pid for w in bridge.stats().workers)


@contextlib.contextmanager
def restart_budget(n: int | None) -> Iterator[None]:
    """Temporarily raise the pool's restart budget (``None``: leave the default)."""
    from workerbridge import _dispatcher

    old = _dispatcher.RESTART_BUDGET
    if n is not None:
        _dispatcher.RESTART_BUDGET = n
    try:
        yield
    finally:
        _dispatcher.RESTART_BUDGET = old


@contextlib.contextmanager
def count_resolutions() -> Iterator[collections.Counter[int]]:
    """Count every attempt to resolve a Task (result or exception), per task id."""
    from workerbridge._task import Task

    counts: collections.Counter[int] = collections.Counter()
    saved = {k: Task.__dict__.get(k) for k in ("set_result", "set_exception")}
    base = concurrent.futures.Future

    def set_result(self: Any, value: Any) -> None:
        counts[self.id] += 1
        base.set_result(self, value)

    def set_exception(self: Any, exc: Any) -> None:
        counts[self.id] += 1
        base.set_exception(self, exc)

    Task.set_result = set_result  # type: ignore[method-assign]
    Task.set_exception = set_exception  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        for k, v in saved.items():
            if v is None:
                delattr(Task, k)
            else:
                setattr(Task, k, v)


class ChildTracker:
    """Polls this process's children every few ms and remembers every pid seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.seen: set[int] = set()
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rel-child-tracker", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= {p for p in children() if is_worker(p)}
            self._stop.wait(self.interval)

    def __enter__(self) -> ChildTracker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen |= {p for p in children() if is_worker(p)}


class Killer:
    """SIGKILLs a random ready worker of ``bridge`` about every ``interval`` seconds."""

    def __init__(self, bridge: wb.WorkerBridge, interval: float, rng: random.Random) -> None:
        self.bridge = bridge
        self.interval = interval
        self.rng = rng
        self.kills: list[float] = []
        self.skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rel-killer", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval * self.rng.uniform(0.5, 1.5)):
            if len(self.kills) > 100_000:  # bounded
                return
            try:
                workers = self.bridge.stats().workers
            except Exception:
                return
            ready = [w.pid for w in workers if w.pid and w.state in ("idle", "busy")]
            if not ready:
                self.skipped += 1
                continue
            if kill_child(self.rng.choice(ready)):
                self.kills.append(time.monotonic())
            else:
                self.skipped += 1

    def start(self) -> Killer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _leak_check(
    seen: set[int], before: set[str], failures: list[str], figures: dict[str, Any]
) -> None:
    """After a bridge closed: no live worker, no zombie, no new segment of ours."""
    ours = seen | {os.getpid()}
    left = [n for n in wait_no_segments(ours, timeout=5.0) if n not in before]
    wait_until(lambda: not orphan_workers(seen), 5.0)
    still = orphan_workers(seen)
    zom = zombies(children())
    figures["leaked_segments"] = len(left)
    figures["live_workers_after_close"] = len(still)
    figures["zombies_after_close"] = len(zom)
    if left:
        failures.append(f"segments left behind: {left[:5]}")
    if still:
        failures.append(f"workers still running after close: {still}")
    if zom:
        failures.append(f"zombie children after close: {zom}")


# =========================================================================================
# Chaos
# =========================================================================================


def chaos(
    tasks: int = 1_000,
    workers: int = 2,
    kill_interval: float = 0.1,
    task_ms: float = 2.0,
    seed: int = 7,
    budget: int = 1_000_000,
) -> dict[str, Any]:
    """``tasks`` small tasks while a random worker is SIGKILLed about every ``kill_interval``.

    Half of the tasks are submitted without retries (each ends with its result
    or :exc:`WorkerCrashedError`), half with ``retries=`` (each must end with
    its result).  The pool's restart budget is raised to ``budget`` for the
    run: with the default budget (10 deaths a minute) the pool is, as
    documented, declared broken after about a second of this; see
    :func:`chaos_budget` for that case.
    """
    rng = random.Random(seed)
    failures: list[str] = []
    figures: dict[str, Any] = {
        "tasks": tasks,
        "workers": workers,
        "kill_interval_s": kill_interval,
        "task_ms": task_ms,
    }
    before = set(list_segments())
    with (
        restart_budget(budget),
        count_resolutions() as resolutions,
        ChildTracker() as tracker,
    ):
        bridge = new_bridge(workers=workers, max_queue=tasks + 100)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            done_calls: collections.Counter[int] = collections.Counter()
            lock = threading.Lock()

            def on_done(fut: Any) -> None:
                with lock:
                    done_calls[fut.id] += 1

            start = time.monotonic()
            killer = Killer(bridge, kill_interval, rng).start()
            plain: list[tuple[int, Any]] = []
            retried: list[tuple[int, Any]] = []
            try:
                for i in range(tasks):
                    with_retries = i % 2 == 1
                    task = bridge.submit(
                        "rel",
                        "work",
                        {"id": i, "ms": task_ms},
                        retries=1_000 if with_retries else 0,
                    )
                    task.add_done_callback(on_done)
                    (retried if with_retries else plain).append((i, task))
                all_tasks = [t for _, t in plain + retried]
                _, pending = concurrent.futures.wait(all_tasks, timeout=max(120.0, tasks * 0.05))
            finally:
                killer.stop()
            elapsed = time.monotonic() - start
            if pending:
                failures.append(f"{len(pending)} tasks never ended")
            plain_ok = crashed = 0
            for i, task in plain:
                if not task.done():
                    continue
                exc = task.exception()
                if exc is None:
                    if task.result() != i:
                        failures.append(f"task {i}: wrong result {task.result()!r}")
                    plain_ok += 1
                elif isinstance(exc, wb.WorkerCrashedError):
                    crashed += 1
                else:
                    failures.append(f"task {i} (no retries): unexpected {exc!r}")
            retried_ok = 0
            for i, task in retried:
                if not task.done():
                    continue
                exc = task.exception()
                if exc is not None:
                    failures.append(f"task {i} (retries): {exc!r}")
                elif task.result() != i:
                    failures.append(f"task {i}: wrong result {task.result()!r}")
                else:
                    retried_ok += 1
            multi = {k: v for k, v in done_calls.items() if v != 1}
            extra = {k: v for k, v in resolutions.items() if v != 1}
            ended = len(done_calls)
            if multi:
                failures.append(f"tasks whose callbacks ran more than once: {list(multi)[:5]}")
            if extra:
                failures.append(f"tasks resolved more than once: {list(extra)[:5]}")
            if ended != tasks:
                failures.append(f"{tasks - ended} tasks never ended")
            # recovery: back to full strength after the last kill
            t0 = time.monotonic()
            recovered = wait_until(lambda: _ready(bridge), 60)
            recovery = time.monotonic() - t0
            stats = bridge.stats()
            # the pool keeps serving
            after = [bridge.submit("rel", "work", {"id": i, "ms": 0}) for i in range(200)]
            serving = all(t.result(timeout=60) == i for i, t in enumerate(after))
            if not (recovered and serving and bridge.mode == "pool" and stats.broken is None):
                failures.append(
                    f"pool not serving after chaos: recovered={recovered} serving={serving} "
                    f"mode={bridge.mode} broken={stats.broken}"
                )
            figures.update(
                {
                    "duration_s": round(elapsed, 2),
                    "tasks_per_s": round(tasks / elapsed, 1),
                    "kills": len(killer.kills),
                    "kill_ticks_skipped": killer.skipped,
                    "restarts": stats.restarts,
                    "plain_ok": plain_ok,
                    "plain_worker_crashed": crashed,
                    "retried_ok": retried_ok,
                    "retried_total": len(retried),
                    "ended_exactly_once": sum(1 for v in done_calls.values() if v == 1),
                    "extra_resolution_attempts": sum(v - 1 for v in extra.values()),
                    "recovery_after_last_kill_s": round(recovery, 3),
                    "workers_seen": len(tracker.seen),
                }
            )
        finally:
            bridge.close(wait=False)
    _leak_check(tracker.seen, before, failures, figures)
    return _result("chaos", figures, failures)


def chaos_budget(tasks: int = 400, fallback: str = "auto", seed: int = 11) -> dict[str, Any]:
    """Chaos with the default restart budget: the pool breaks, as documented.

    ``fallback="auto"``: every task still ends exactly once (result, or
    :exc:`WorkerCrashedError` for those whose worker was killed) and later work
    runs in-process.  ``"never"``: tasks end with their result,
    :exc:`WorkerCrashedError` or :exc:`BrokenPoolError`, and later submits raise
    :exc:`BrokenPoolError`.
    """
    rng = random.Random(seed)
    failures: list[str] = []
    figures: dict[str, Any] = {"tasks": tasks, "fallback": fallback}
    before = set(list_segments())
    with count_resolutions() as resolutions, ChildTracker() as tracker:
        bridge = new_bridge(workers=2, fallback=fallback, max_queue=tasks + 10)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            start = time.monotonic()
            killer = Killer(bridge, 0.1, rng).start()
            try:
                futures = [bridge.submit("rel", "work", {"id": i, "ms": 5.0}) for i in range(tasks)]
                _, pending = concurrent.futures.wait(futures, timeout=120)
                # the tasks may all be done before the budget ran out: keep killing until then
                broke = wait_until(
                    lambda: bridge.mode == "inprocess" or bridge.stats().broken is not None, 60
                )
                if not broke:
                    failures.append("the pool was never declared broken")
            finally:
                killer.stop()
            broke_after = time.monotonic() - start
            outcomes: collections.Counter[str] = collections.Counter()
            for i, f in enumerate(futures):
                if not f.done():
                    continue
                exc = f.exception()
                if exc is None:
                    outcomes["ok"] += 1
                    if f.result() != i:
                        failures.append(f"task {i}: wrong result")
                else:
                    outcomes[type(exc).__name__] += 1
            allowed = {"ok", "WorkerCrashedError"} | (
                {"BrokenPoolError"} if fallback == "never" else set()
            )
            if set(outcomes) - allowed:
                failures.append(f"unexpected outcomes: {dict(outcomes)}")
            if pending:
                failures.append(f"{len(pending)} tasks never ended")
            extra = sum(v - 1 for v in resolutions.values() if v != 1)
            if extra:
                failures.append(f"{extra} extra resolution attempts")
            stats = bridge.stats()
            if fallback == "auto":
                later_ok = bridge.run("rel", "work", {"id": 5, "ms": 0}, timeout=30) == 5
                if bridge.mode != "inprocess" or not later_ok:
                    failures.append(f"no in-process fallback: mode={bridge.mode}")
            else:
                try:
                    bridge.submit("rel", "echo", 1)
                    failures.append("submit on a broken pool did not raise")
                except wb.BrokenPoolError:
                    pass
            figures.update(
                {
                    "kills": len(killer.kills),
                    "seconds_until_all_ended": round(broke_after, 2),
                    "mode_after": bridge.mode,
                    "broken": stats.broken is not None,
                    "outcomes": dict(outcomes),
                }
            )
        finally:
            bridge.close(wait=False)
    _leak_check(tracker.seen, before, failures, figures)
    return _result(f"chaos_budget[{fallback}]", figures, failures)


# =========================================================================================
# Parent killed with SIGKILL
# =========================================================================================

_PARENT_SCRIPT = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    sys.path.insert(0, sys.argv[2])
    import workerbridge as wb
    from rel_helpers import children, kill_child, wait_until
    state = sys.argv[1]
    b = wb.WorkerBridge(workers=2, handlers=["rel_handlers"], fallback="never")
    b.run("rel", "echo", b"x" * (1 << 17), timeout=60)      # maps the request arena
    if state in ("spin", "spin_c"):
        ts = [b.submit("rel", state) for _ in range(2)]
        wait_until(lambda: all(w.state == "busy" for w in b.stats().workers), 30)
        time.sleep(0.2)
    elif state == "starting":
        old = b.stats().workers[0].pid
        kill_child(old)
        wait_until(lambda: b.stats().workers[0].pid not in (None, old), 30, 0.0005)
    elif state == "chaos":
        rng = random.Random(int(sys.argv[3]))
        ts = [b.submit("rel", "work", {"id": i, "ms": 2}, retries=100) for i in range(300)]
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.05, 0.15))
            pids = [w.pid for w in b.stats().workers if w.pid and w.state in ("idle", "busy")]
            if pids:
                kill_child(rng.choice(pids))
    pids = sorted({w.pid for w in b.stats().workers if w.pid} | children())
    states = [w.state for w in b.stats().workers]
    print(json.dumps({"pids": pids, "states": states}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else b""


def parent_kill_once(
    state: str, atomics: str = "c", window: float = 5.0, seed: int = 0
) -> dict[str, Any]:
    """Start a bridge in a child, bring its workers to ``state``, SIGKILL the child.

    Returns how long its workers outlived it and what they left in /dev/shm.
    Workers still alive after ``window`` seconds are killed here (they are
    reported as orphans) and their segments removed.
    """
    env = dict(os.environ)
    env["WORKERBRIDGE_PURE_ATOMICS"] = "1" if atomics == "python" else "0"
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PARENT_SCRIPT, state, str(HERE), str(seed)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            line = _read_line(proc, 90)
            rc = proc.wait(timeout=30)
            dead_at = time.monotonic()
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
        if not line:
            err.seek(0)
            raise RuntimeError(f"child printed nothing (rc={rc}): {err.read()[-2000:]!r}")
    info = json.loads(line)
    pids: list[int] = info["pids"]
    gone = wait_until(lambda: not any(alive(p) for p in pids), window, 0.002)
    outlived = time.monotonic() - dead_at
    orphans = orphan_workers(pids)
    for pid in orphans:  # clean up after a failed trial: only our own child's workers
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in pids), 5.0)
    owners = [*pids, proc.pid]
    left = wait_no_segments(owners, timeout=2.0)
    after_next = left
    if left:
        # segments of processes that died without cleaning up are swept by the next
        # bridge that starts (PoolBackend); check that they are
        with new_bridge(workers=1):
            pass
        after_next = segments_of(owners)
        for name in after_next:
            unlink_by_name(name)
    return {
        "state": state,
        "atomics": atomics,
        "rc": rc,
        "workers": len(pids),
        "worker_states": info["states"],
        "outlived_s": round(outlived, 3) if gone else None,
        "orphans_after_window": len(orphans),
        "segments_left": len(left),
        "segments_left_after_next_bridge": len(after_next),
    }


def parent_kill(
    states: tuple[str, ...] = ("spin_c",),
    atomics: tuple[str, ...] = ("c",),
    trials: int = 1,
    window: float = 5.0,
    known: tuple[str, ...] = (),
) -> dict[str, Any]:
    """:func:`parent_kill_once` for every implementation of the atomics and every state.

    A worker still running ``window`` seconds after its parent died fails the
    run, and so does a segment that even the next bridge's start-up sweep
    leaves behind.  Segments left until that sweep are counted.  Combinations
    listed in ``known`` (bugs with their own xfail test) are measured and
    reported under ``known_failures`` instead of failing the run.
    """
    failures: list[str] = []
    known_failures: list[str] = []
    rows = []
    figures: dict[str, Any] = {"window_s": window}
    for impl in atomics:
        for state in states:
            outlived = []
            orphans = segs = stuck = 0
            for t in range(trials):
                r = parent_kill_once(state, impl, window, seed=t)
                rows.append(r)
                if r["outlived_s"] is not None:
                    outlived.append(r["outlived_s"])
                orphans += r["orphans_after_window"]
                segs += r["segments_left"]
                stuck += r["segments_left_after_next_bridge"]
            key = f"{impl}/{state}"
            figures[key] = {
                "trials": trials,
                "outlived_s": summary(outlived),
                "orphans": orphans,
                "segments_left_until_next_bridge": segs,
                "segments_left_after_next_bridge": stuck,
            }
            if orphans or stuck:
                (known_failures if key in known else failures).append(
                    f"{key}: {orphans} workers outlived their SIGKILLed parent by more than "
                    f"{window} s, {stuck} segments survived the next bridge's sweep"
                )
    figures["known_failures"] = known_failures
    return _result("parent_kill", figures, failures)


# =========================================================================================
# Hangs: non-cooperative loops with timeout=0.5, cooperative cancellation
# =========================================================================================


def hangs(trials: int = 3, timeout: float = 0.5) -> dict[str, Any]:
    """Pure-Python and GIL-holding loops with ``timeout``: when they fail, when replaced."""
    failures: list[str] = []
    figures: dict[str, Any] = {"timeout_s": timeout, "trials": trials}
    before = set(list_segments())
    with ChildTracker() as tracker:
        bridge = new_bridge(workers=2)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            for kind in ("spin", "spin_c"):
                fail_after, replaced_after = [], []
                for _ in range(trials):
                    if not wait_until(lambda: _ready(bridge), 60):
                        failures.append("pool did not get back to full strength")
                        break
                    restarts = bridge.stats().restarts
                    t0 = time.monotonic()
                    task = bridge.submit("rel", kind, timeout=timeout)
                    try:
                        exc = task.exception(timeout=30)
                    except TimeoutError:
                        exc = None
                    failed = time.monotonic() - t0
                    if not isinstance(exc, wb.TaskTimeoutError):
                        failures.append(f"{kind}: expected TaskTimeoutError, got {exc!r}")
                        continue
                    fail_after.append(failed)
                    ok = wait_until(
                        lambda r=restarts: bridge.stats().restarts > r and _ready(bridge),
                        60,
                        0.002,
                    )
                    if not ok:
                        failures.append(f"{kind}: worker not replaced within 60 s")
                        continue
                    replaced_after.append(time.monotonic() - t0)
                    if bridge.run("rel", "work", {"id": 3, "ms": 0}, timeout=30) != 3:
                        failures.append("pool not serving after a hang")
                if fail_after and max(fail_after) > 5.0:  # sanity bound, not the target
                    failures.append(f"{kind}: a hang took {max(fail_after):.2f} s to fail")
                figures[kind] = {
                    "fail_after_s": summary(fail_after),
                    "failed_within_1s": f"{sum(f <= 1.0 for f in fail_after)}/{len(fail_after)}",
                    "replaced_after_s": summary(replaced_after),
                }
            figures["restarts"] = bridge.stats().restarts
        finally:
            bridge.close(wait=False)
    _leak_check(tracker.seen, before, failures, figures)
    return _result("hangs", figures, failures)


def coop_cancel(trials: int = 10, seed: int = 3) -> dict[str, Any]:
    """A handler polling ``ctx.cancelled`` every 1 ms: cancel to flag seen, to worker free.

    Also a cooperative handler whose ``timeout=0.3`` expires: deadline to flag seen.
    """
    rng = random.Random(seed)
    failures: list[str] = []
    figures: dict[str, Any] = {"trials": trials, "poll_s": 0.001}
    before = set(list_segments())
    with tempfile.TemporaryDirectory() as tmp, ChildTracker() as tracker:
        bridge = new_bridge(workers=2)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            pids = set(worker_pids(bridge))
            seen_cancel, free_cancel, seen_timeout = [], [], []
            for i in range(trials):
                mark = os.path.join(tmp, f"m{i}")
                use_timeout = i % 2 == 1
                t_sub = time.monotonic()
                task = bridge.submit(
                    "rel",
                    "coop",
                    {"poll": 0.001, "mark": mark, "limit": 30},
                    timeout=0.3 if use_timeout else None,
                )
                if use_timeout:
                    t_flag = t_sub + 0.3
                else:
                    wait_until(task.running, 10, 0.001)
                    time.sleep(rng.uniform(0.02, 0.08))
                    t_flag = time.monotonic()
                    if not task.cancel():
                        failures.append("cancel() of a running task returned False")
                try:
                    task.result(timeout=30)
                    failures.append("a stopped task delivered a result")
                except (wb.TaskCancelledError, wb.TaskTimeoutError):
                    pass
                if not wait_until(lambda m=mark: os.path.exists(m), 10, 0.001):
                    failures.append("the handler never saw its cancel flag")
                    continue
                wait_until(lambda m=mark: os.path.getsize(m) > 0, 1, 0.001)
                with open(mark) as f:
                    seen = float(f.read())
                freed = wait_until(lambda: _ready(bridge), 10, 0.0005)
                free_at = time.monotonic()
                if use_timeout:
                    seen_timeout.append(seen - t_flag)
                else:
                    seen_cancel.append(seen - t_flag)
                    if freed:
                        free_cancel.append(free_at - t_flag)
            stats = bridge.stats()
            if stats.restarts or set(worker_pids(bridge)) != pids:
                failures.append(f"cooperative stops killed workers (restarts={stats.restarts})")
            if seen_cancel and max(seen_cancel) > 1.0:
                failures.append(f"a cancel took {max(seen_cancel):.3f} s to reach the handler")
            figures.update(
                {
                    "cancel_to_flag_seen_ms": summary(seen_cancel, 1000),
                    "cancel_to_worker_free_ms": summary(free_cancel, 1000),
                    "within_50ms": f"{sum(s <= 0.05 for s in seen_cancel)}/{len(seen_cancel)}",
                    "deadline_to_flag_seen_ms": summary(seen_timeout, 1000),
                    "restarts": stats.restarts,
                }
            )
        finally:
            bridge.close(wait=False)
    _leak_check(tracker.seen, before, failures, figures)
    return _result("coop_cancel", figures, failures)


# =========================================================================================
# Fuzzing
# =========================================================================================

_SAFE_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-é中\u0000"


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-encodable value (strings never contain '/' or '.')."""
    r = rng.random()
    if depth > 3 or r < 0.55:
        kind = rng.randrange(9)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice([0, 1, -1, 7, 255, 2**31, -(2**31), 2**63 - 1, -(2**63), 2**64 - 1])
        if kind == 3:
            return rng.randint(-1000, 100_000)
        if kind == 4:
            return rng.choice([0.0, -0.5, 1e300, float("inf"), float("-inf"), float("nan")])
        if kind == 5:
            return "".join(rng.choice(_SAFE_ALPHABET) for _ in range(rng.randrange(12)))
        if kind == 6:
            return rng.randbytes(rng.choice([0, 1, 5, 16, 32, 100]))
        if kind == 7:
            return rng.randbytes(rng.choice([300, 4096]))
        return ""
    if r < 0.8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        random_value(rng, 4) if rng.random() < 0.2 else f"k{rng.randrange(9)}": random_value(
            rng, depth + 1
        )
        for _ in range(rng.randrange(4))
    }


def _frame_corpus(rng: random.Random) -> list[bytes]:
    objs: list[Any] = [
        None,
        1,
        "text",
        b"\x00\x01",
        [1, "a", None, [b"x"]],
        {"a": 1, "b": [1.5, None], "c": {"d": b"e"}},
        {"big": b"z" * 70_000},
    ]
    corpus = []
    for kind in sorted(_protocol.KINDS):
        for obj in objs:
            packed, bufs = _protocol.pack_payload(obj)
            table = [["wb_12345_req_0123456789abcdef", 64 * i, len(b)] for i, b in enumerate(bufs)]
            corpus.append(
                _protocol.encode_frame(kind, rng.randrange(1, 10**6), "chan", "op", packed, table)
            )
    return corpus


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One random mutation (or a stack of 1-3) of ``data``."""
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(11)
        n = len(out)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set bytes to interesting values
            for _ in range(rng.randint(1, 4)):
                out[rng.randrange(n)] = rng.choice([0, 0x7F, 0x80, 0xC0, 0xC1, 0xD9, 0xFF])
        elif op == 2:  # insert random bytes
            pos = rng.randrange(n + 1)
            out[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:  # delete a range
            a = rng.randrange(n)
            del out[a : a + rng.randint(1, 16)]
        elif op == 4 and n:  # truncate
            del out[rng.randrange(n) :]
        elif op == 5 and n:  # duplicate a range
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 32))
            out[b:b] = out[a:b]
        elif op == 6:  # splice with another frame
            other = rng.choice(corpus)
            cut = rng.randrange(len(out) + 1)
            out = out[:cut] + other[rng.randrange(len(other)) :]
        elif op == 7:  # random bytes
            out = bytearray(rng.randbytes(rng.randrange(64)))
        elif op == 8:  # deep nesting
            depth = rng.choice([100, 1000, 100_000])
            out = bytearray(b"\x91" * depth + b"\xc0")
        elif op == 9:  # structured: a frame map with one field replaced
            with contextlib.suppress(Exception):
                obj = msgpack.unpackb(bytes(out), raw=False, strict_map_key=False)
                if isinstance(obj, dict):
                    key = rng.choice([*obj.keys(), "v", "id", "kind", "bufs", "payload", "x"])
                    obj[key] = random_value(rng)
                    out = bytearray(msgpack.packb(obj, use_bin_type=True))
        else:  # huge declared lengths
            out = bytearray(rng.choice([b"\xdb", b"\xc6", b"\xdd", b"\xdf"]) + b"\xff\xff\xff\xf0")
    return bytes(out)


def _resolver(i: int) -> object:
    if 0 <= i < 2:
        return b"buffer"
    raise wb.ProtocolError("payload references a missing buffer")


def fuzz_frames(inputs: int = 6_000, hypothesis: int = 300, seed: int = 1) -> dict[str, Any]:
    """decode_frame, unpack_payload and FrameReader on mutated and generated input.

    Only :exc:`ProtocolError` may come out; each input must be handled fast.
    """
    rng = random.Random(seed)
    failures: list[str] = []
    corpus = _frame_corpus(rng)
    payloads = [_protocol.pack_payload(random_value(rng))[0] for _ in range(200)]
    payloads += [_protocol.pack_payload({"x": b"y" * 70_000, "z": [b"w" * 65_536]})[0]]
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = 0.0

    def check(fn: Callable[[bytes], object], data: bytes, what: str) -> None:
        nonlocal slowest
        t0 = time.perf_counter()
        try:
            fn(data)
            outcomes[f"{what}:accepted"] += 1
        except wb.ProtocolError:
            outcomes[f"{what}:ProtocolError"] += 1
        except Exception as exc:
            outcomes[f"{what}:{type(exc).__name__}"] += 1
            failures.append(f"{what} raised {type(exc).__name__}: {exc!r} on {data[:64]!r}")
        slowest = max(slowest, time.perf_counter() - t0)

    def decode_all(data: bytes) -> None:
        frame = _protocol.decode_frame(data)
        if frame.payload is not None:
            _protocol.unpack_payload(frame.payload, _resolver)

    start = time.monotonic()
    for _ in range(inputs):
        check(decode_all, mutate(rng.choice(corpus), rng, corpus), "decode_frame")
        check(
            lambda d: _protocol.unpack_payload(d, _resolver),
            mutate(rng.choice(payloads), rng, payloads),
            "unpack_payload",
        )
    # FrameReader: random streams through a real pipe, small frame limit
    streams = max(50, inputs // 200)
    reader_frames = 0
    for _ in range(streams):
        parts = []
        for _ in range(rng.randint(1, 30)):
            body = mutate(rng.choice(corpus), rng, corpus)[:4000]
            length = len(body) if rng.random() < 0.7 else rng.choice([0, 1, 4096, 2**32 - 1])
            parts.append(length.to_bytes(4, "little") + body)
        stream = b"".join(parts)[: 60_000 + rng.randrange(4)]
        r, w = os.pipe()
        try:
            writer = threading.Thread(target=_write_all, args=(w, stream), daemon=True)
            writer.start()
            reader = _protocol.FrameReader(r, max_frame=rng.choice([64, 1024, 8192]))
            for _ in range(10_000):  # bounded
                try:
                    data = reader.read_frame()
                except wb.ProtocolError:
                    outcomes["FrameReader:ProtocolError"] += 1
                    continue
                except Exception as exc:
                    failures.append(f"FrameReader raised {exc!r}")
                    break
                if data is None:
                    break
                reader_frames += 1
                check(decode_all, data, "decode_frame")
            writer.join(10)
        finally:
            os.close(r)
    mutated_elapsed = time.monotonic() - start
    hyp = _hypothesis_frames(hypothesis, failures) if hypothesis else 0
    figures = {
        "mutated_frames": inputs,
        "mutated_payloads": inputs,
        "reader_streams": streams,
        "reader_frames": reader_frames,
        "hypothesis_examples": hyp,
        "total_inputs": 2 * inputs + reader_frames + hyp,
        "outcomes": dict(sorted(outcomes.items())),
        "slowest_input_ms": round(slowest * 1000, 3),
        "mutation_seconds": round(mutated_elapsed, 2),
    }
    if slowest > 2.0:
        failures.append(f"an input took {slowest:.2f} s to reject")
    return _result("fuzz_frames", figures, failures)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        os.close(fd)


def _hypothesis_frames(examples: int, failures: list[str]) -> int:
    """Generated frames (structured maps and raw bytes) through decode_frame."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    count = [0]
    ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can encode
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        ints,
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=64),
    )
    values = st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=12,
    )
    frames = st.fixed_dictionaries(
        {},
        optional={
            "v": st.one_of(st.just(1), values),
            "id": st.one_of(ints, values),
            "kind": st.one_of(st.sampled_from(sorted(_protocol.KINDS)), values),
            "channel": st.one_of(st.text(max_size=10), values),
            "op": st.one_of(st.text(max_size=10), values),
            "payload": st.one_of(st.binary(max_size=200), values),
            "bufs": st.one_of(
                st.lists(
                    st.lists(st.one_of(st.text(max_size=30), ints), max_size=4),
                    max_size=3,
                ),
                values,
            ),
        },
    )
    cfg = settings(
        max_examples=max(1, examples // 2),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )

    def one(data: bytes) -> None:
        count[0] += 1
        try:
            frame = _protocol.decode_frame(data)
            if frame.payload is not None:
                _protocol.unpack_payload(frame.payload, _resolver)
        except wb.ProtocolError:
            pass

    @cfg
    @given(frames)
    def structured(obj: dict[str, Any]) -> None:
        one(msgpack.packb(obj, use_bin_type=True))

    @cfg
    @given(st.binary(max_size=300))
    def raw(data: bytes) -> None:
        one(data)

    for test in (structured, raw):
        try:
            test()
        except Exception as exc:
            failures.append(f"hypothesis {test.__name__}: {type(exc).__name__}: {exc}")
            if isinstance(exc, BaseExceptionGroup):
                failures.extend(f"  {type(e).__name__}: {e}" for e in exc.exceptions)
    return count[0]


class _ReportCounter(logging.Handler):
    """Counts the parent's "worker N reported: <ProtocolError>" log records."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.protocol_errors = 0
        self.other: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "worker %d reported: %s" and record.args:
            value = record.args[1] if isinstance(record.args, tuple) else None
            if isinstance(value, wb.ProtocolError):
                self.protocol_errors += 1
                return
        self.other.append(record.getMessage()[:200])


def fuzz_channel(frames: int = 3_000, batch: int = 500, seed: int = 5) -> dict[str, Any]:
    """Garbage frames written straight into a live worker's request pipe.

    The worker must answer each with a ProtocolError report and keep serving:
    real tasks between the batches succeed, and no worker dies.  Garbage that
    happens to decode as a valid request or shutdown frame is not sent (it
    would legitimately run or stop the worker); correct length prefixes keep
    the stream in step (a corrupt length prefix desynchronises any
    length-prefixed stream, which is why the pipe is private to the pool).
    """
    rng = random.Random(seed)
    failures: list[str] = []
    corpus = _frame_corpus(rng)
    corpus += [
        _protocol.encode_frame(_protocol.REQUEST, rng.randrange(1, 10**6), "rel", "echo", p)
        for p in (_protocol.pack_payload(random_value(rng))[0] for _ in range(20))
    ]
    counter = _ReportCounter()
    log = logging.getLogger("workerbridge")
    old_propagate = log.propagate
    log.addHandler(counter)
    log.propagate = False
    before = set(list_segments())
    skipped: collections.Counter[str] = collections.Counter()
    sent = 0
    real_ok = 0
    try:
        with ChildTracker() as tracker:
            bridge = new_bridge(workers=1)
            try:
                bridge.run("rel", "echo", 0, timeout=60)
                pid0 = worker_pids(bridge)
                slot = bridge._dispatcher._slots[0].slot
                start = time.monotonic()
                while sent < frames and time.monotonic() - start < 600:
                    chunk = []
                    while len(chunk) < min(batch, frames - sent):
                        data = mutate(rng.choice(corpus), rng, corpus)
                        if len(data) > 1 << 20:
                            continue
                        try:
                            frame = _protocol.decode_frame(data)
                        except wb.ProtocolError:
                            chunk.append(data)
                            continue
                        if frame.kind in (_protocol.REQUEST, _protocol.SHUTDOWN):
                            skipped[frame.kind] += 1
                            continue
                        chunk.append(data)  # valid frame of a kind a worker must refuse
                    with slot._send_lock:
                        for data in chunk:
                            _protocol.write_frame(slot._wfd, data)
                    sent += len(chunk)
                    i = rng.randrange(10**6)
                    if bridge.run("rel", "work", {"id": i, "ms": 0}, timeout=60) == i:
                        real_ok += 1
                    else:
                        failures.append("a real task between garbage batches failed")
                reported = wait_until(lambda: counter.protocol_errors >= sent, 60)
                elapsed = time.monotonic() - start
                stats = bridge.stats()
                if not reported:
                    failures.append(
                        f"{sent} garbage frames sent, {counter.protocol_errors} reported"
                    )
                if counter.protocol_errors > sent:
                    failures.append(f"more reports ({counter.protocol_errors}) than frames")
                if stats.restarts or worker_pids(bridge) != pid0:
                    failures.append(f"the worker died (restarts={stats.restarts})")
                if counter.other:
                    failures.append(f"other warnings: {counter.other[:3]}")
            finally:
                bridge.close(wait=False)
        figures: dict[str, Any] = {
            "garbage_frames_sent": sent,
            "protocol_errors_reported": counter.protocol_errors,
            "not_sent": dict(skipped),
            "real_tasks_between_batches_ok": real_ok,
            "worker_restarts": stats.restarts,
            "seconds": round(elapsed, 2),
        }
        _leak_check(tracker.seen, before, failures, figures)
    finally:
        log.removeHandler(counter)
        log.propagate = old_propagate
    return _result("fuzz_channel", figures, failures)


# -- handler payloads ---------------------------------------------------------------------

_EXPENSIVE_KDFS = ("scrypt", "pbkdf2-hmac-sha256", "argon2id")

#: Payload keys of each handler (as the bridges send them) and the kind of value.
HANDLER_SPECS: dict[tuple[str, str], dict[str, str] | str] = {
    ("_wb", "echo"): "any",
    ("_wb", "noop"): "any",
    ("_wb", "sleep"): "sleep",
    ("compression", "compress"): {"data": "bytes", "codec": "codec", "level": "level"},
    ("compression", "decompress"): {"data": "cbytes", "codec": "codec", "max_output_size": "size"},
    ("compression", "compress_file"): {
        "src": "path",
        "dst": "path",
        "codec": "codec",
        "level": "level",
    },
    ("compression", "decompress_file"): {
        "src": "path",
        "dst": "path",
        "codec": "codec",
        "max_output_size": "size",
    },
    ("compression", "compress_range"): {
        "src": "path",
        "offset": "size",
        "length": "size",
        "codec": "codec",
        "level": "level",
        "part": "path",
    },
    ("crypto", "encrypt"): {
        "data": "bytes",
        "key": "key",
        "nonce": "nonce",
        "aad": "bytes",
        "algorithm": "algorithm",
    },
    ("crypto", "decrypt"): {
        "blob": "bytes",
        "key": "key",
        "aad": "bytes",
        "algorithm": "algorithm",
    },
    ("crypto", "encrypt_file"): {
        "src": "path",
        "dst": "path",
        "key": "key",
        "algorithm": "algorithm",
    },
    ("crypto", "decrypt_file"): {
        "src": "path",
        "dst": "path",
        "key": "key",
        "algorithm": "algorithm",
    },
    ("crypto", "encrypt_range"): {
        "src": "path",
        "key": "key",
        "header": "header",
        "first": "size",
        "count": "size",
        "last": "bool",
        "out": "path",
        "offset": "size",
    },
    ("crypto", "decrypt_range"): {
        "src": "path",
        "key": "key",
        "first": "size",
        "count": "size",
        "last": "bool",
        "algorithm": "algorithm",
        "out": "path",
        "offset": "size",
    },
    ("crypto", "hash"): {"data": "bytes", "algorithm": "hashalg"},
    ("crypto", "derive_key"): {
        "password": "bytes",
        "salt": "bytes",
        "kdf": "kdf",
        "length": "size",
    },
    ("crypto", "generate_key"): {"algorithm": "algorithm"},
    ("file", "hash"): {"path": "path", "algorithm": "hashalg"},
    ("file", "copy"): {"src": "path", "dst": "path"},
    ("file", "read"): {"path": "path", "offset": "size", "length": "size"},
    ("file", "write"): {"path": "path", "data": "bytes"},
    ("file", "assemble"): {
        "tmp": "path",
        "dst": "path",
        "mode": "mode",
        "size": "size",
        "parts": "paths",
    },
    ("network", "download"): {
        "url": "url",
        "dst": "path",
        "resume": "bool",
        "retries": "retries",
        "sha256": "sha",
        "max_size": "size",
        "timeout": "nettimeout",
        "backoff": "backoff",
    },
    ("network", "upload"): {
        "src": "path",
        "url": "url",
        "protocol": "protocol",
        "chunk_size": "size",
        "retries": "retries",
        "timeout": "nettimeout",
        "backoff": "backoff",
    },
}

#: Handlers not fuzzed, and why.
NOT_FUZZED = {
    ("_wb", "call"): "unpickles its payload by design (Executor's private channel)",
    ("_wb", "batch"): "unpickles its payload by design (Executor's private channel)",
}


def _fast_tmp() -> str | None:
    """A tmpfs directory for scratch files (fsync is free there), if there is one."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class _Sandbox:
    """Files the path-valued payload fields point at (all inside one directory)."""

    def __init__(self, root: str, rng: random.Random) -> None:
        from workerbridge.bridges import _aead, _codecs

        self.root = root
        self.key = bytes(32)
        plain = os.path.join(root, "plain.bin")
        with open(plain, "wb") as f:
            f.write(rng.randbytes(150_000))
        enc = os.path.join(root, "enc.wbse")
        _aead.encrypt_file(plain, enc, self.key, chunk_size=1 << 16)
        comp = os.path.join(root, "data.zst")
        with open(comp, "wb") as f:
            f.write(_codecs.compress(rng.randbytes(1000) * 20, "zstd", None))
        os.makedirs(os.path.join(root, "sub"), exist_ok=True)
        os.symlink(plain, os.path.join(root, "link"))
        self.header = _aead.make_header("aes-gcm", 1 << 16)
        self.existing = [plain, enc, comp]

    def path(self, rng: random.Random) -> Any:
        r = rng.random()
        if r < 0.45:
            # a scratch copy, so writers never destroy the fixtures
            name = os.path.join(self.root, "scratch", f"f{rng.randrange(40)}")
            os.makedirs(os.path.dirname(name), exist_ok=True)
            if rng.random() < 0.6 and not os.path.exists(name):
                with open(name, "wb") as f:
                    f.write(rng.randbytes(rng.choice([0, 10, 70_000])))
            return name
        if r < 0.75:
            return rng.choice(self.existing)
        if r < 0.85:
            return rng.choice(
                [
                    self.root,
                    os.path.join(self.root, "missing"),
                    os.path.join(self.root, "nodir", "x"),
                    os.path.join(self.root, "link"),
                    "",
                    "relative-name",
                ]
            )
        # garbage that can never name a file outside the sandbox (cwd is the sandbox)
        return rng.choice([None, 3, 4, -1, 2.5, [], {}, b"", b"relative-bytes", True])


def _plausible(kind: str, rng: random.Random, box: _Sandbox) -> Any:
    from workerbridge.bridges import _aead, _codecs

    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 1, 16, 100, 4096, 70_000]))
    if kind == "cbytes":
        good = _codecs.compress(rng.randbytes(200), rng.choice(_codecs.CODECS), None)
        return mutate(good, rng, [good]) if rng.random() < 0.7 else good
    if kind == "codec":
        return rng.choice([*_codecs.CODECS, "ZSTD", "lz4", "", "zstd "])
    if kind == "level":
        return rng.choice([None, -5, -1, 0, 1, 3, 9, 19, 22, 23, 100, 2**40])
    if kind == "size":
        return rng.choice([0, 1, 7, 16, 32, 1000, 65_536, 1 << 20, -1, 2**31, 2**62])
    if kind == "key":
        return rng.randbytes(rng.choice([0, 15, 16, 24, 32, 33, 64]))
    if kind == "nonce":
        return None if rng.random() < 0.3 else rng.randbytes(rng.choice([0, 11, 12, 13]))
    if kind == "algorithm":
        return rng.choice([*_aead.ALGORITHMS, "AES-GCM", "", "rot13"])
    if kind == "hashalg":
        return rng.choice([*_aead.HASH_ALGORITHMS, "md4", "sha3", ""])
    if kind == "kdf":
        return rng.choice([*_aead.KDFS, "hkdf-sha256", "bcrypt", ""])
    if kind == "header":
        return box.header if rng.random() < 0.5 else mutate(box.header, rng, [box.header])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "path":
        return box.path(rng)
    if kind == "paths":
        return [box.path(rng) for _ in range(rng.randrange(4))]
    if kind == "mode":
        return rng.choice([0o600, 0o644, 0o7777, -1, 2**40])
    if kind == "url":
        return rng.choice(
            [
                "http://127.0.0.1:9/file",
                "https://127.0.0.1:9/x",
                "ftp://127.0.0.1/x",
                "http://",
                "not a url",
                "",
            ]
        )
    if kind == "retries":
        return rng.choice([0, 1, -1])
    if kind == "sha":
        return rng.choice([None, "0" * 64, "xyz", ""])
    if kind == "nettimeout":
        return rng.choice([None, 0.5, 1.0, -1, 0])
    if kind == "backoff":
        return rng.choice([0.0, 0.001, -1.0])
    if kind == "protocol":
        return rng.choice(["auto", "tus", "put", "ftp", ""])
    raise AssertionError(kind)


def _garbage_for(kind: str, rng: random.Random, box: _Sandbox) -> Any:
    if kind in ("path", "paths"):
        return box.path(rng)  # only ever sandbox paths or non-path garbage
    value = random_value(rng)
    if kind in ("retries", "nettimeout", "backoff") and not (
        value is None or isinstance(value, str | bytes | list | dict)
    ):
        return 0  # numbers here would only slow the retry loop, not test validation
    return value


#: Keys never left out: without them a transfer retries with its default backoff
#: (5 retries, 0.5 s doubling) and legitimately outlasts the 10 s hang detector.
_BOUNDING_KINDS = ("retries", "backoff", "nettimeout")


def handler_payload(key: tuple[str, str], rng: random.Random, box: _Sandbox) -> Any:
    spec = HANDLER_SPECS.get(key, "any")
    if spec == "any":
        return random_value(rng)
    if spec == "sleep":
        return rng.choice([0, 0.001, -1.0, float("nan"), float("inf"), "0.001", None, [], b"x"])
    assert isinstance(spec, dict)
    if rng.random() < 0.08:
        return random_value(rng)
    payload: dict[Any, Any] = {}
    for name, kind in spec.items():
        if rng.random() < 0.06 and kind not in _BOUNDING_KINDS:
            continue  # missing key
        payload[name] = (
            _plausible(kind, rng, box) if rng.random() < 0.8 else _garbage_for(kind, rng, box)
        )
    if rng.random() < 0.05:
        payload[rng.choice(["extra", "headers", "ctx", 1, b"k"])] = random_value(rng)
    if key == ("crypto", "derive_key") and payload.get("kdf") in _EXPENSIVE_KDFS:
        payload["salt"] = b"short"  # keep the expensive KDFs on their validation path
    return payload


def _brief(value: Any, limit: int = 300) -> str:
    def short(v: Any) -> Any:
        if isinstance(v, bytes | bytearray) and len(v) > 16:
            return f"<{len(v)} bytes>"
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, list):
            return [short(x) for x in v]
        return v

    return repr(short(value))[:limit]


def fuzz_handlers(inputs: int = 2_000, seed: int = 9, window: int = 64) -> dict[str, Any]:
    """Generated payloads for every handler workerbridge registers, through real workers.

    Outcomes must be a result or a :exc:`WorkerBridgeError`; a hang (the
    10 s task timeout) or a worker death is a failure.  A handler that rejects
    a payload with a plain exception (``KeyError``, ``TypeError``...) shows up
    as :exc:`RemoteError` and is counted per handler.
    """
    from workerbridge import _registry

    rng = random.Random(seed)
    failures: list[str] = []
    for module in _registry.BUILTIN_CHANNELS.values():
        __import__(module)
    keys = sorted(
        k
        for k, e in _registry._registry.items()
        if (e.module == "workerbridge" or e.module.startswith("workerbridge."))
        and k not in NOT_FUZZED
    )
    unknown = [f"{c}/{o}" for c, o in keys if (c, o) not in HANDLER_SPECS]
    outcomes: dict[str, collections.Counter[str]] = {
        f"{c}/{o}": collections.Counter() for c, o in keys
    }
    remote_types: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    before = set(list_segments())
    with (
        tempfile.TemporaryDirectory(dir=_fast_tmp()) as root,
        contextlib.chdir(root),
        ChildTracker() as tracker,
    ):
        box = _Sandbox(root, rng)
        bridge = new_bridge(workers=2, max_queue=window * 4)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            pids = set(worker_pids(bridge))
            inflight: collections.deque[tuple[str, Any, Any]] = collections.deque()
            start = time.monotonic()

            def settle(name: str, task: Any, payload: Any) -> None:
                try:
                    exc = task.exception(timeout=60)
                except TimeoutError:
                    failures.append(f"{name}: no answer within 60 s")
                    return
                if exc is None:
                    outcomes[name]["ok"] += 1
                elif isinstance(exc, wb.TaskTimeoutError):
                    where = "running" if "while running" in str(exc) else "queued"
                    outcomes[name][f"HANG({where})"] += 1
                    failures.append(f"{name}: {exc} -- payload {_brief(payload)}")
                elif isinstance(exc, wb.WorkerCrashedError):
                    outcomes[name]["CRASH"] += 1
                    failures.append(f"{name}: the worker died: {exc}")
                elif isinstance(exc, wb.RemoteError):
                    outcomes[name]["RemoteError"] += 1
                    remote_types[name][exc.remote_type or "?"] += 1
                elif isinstance(exc, wb.WorkerBridgeError):
                    outcomes[name][type(exc).__name__] += 1
                else:
                    outcomes[name][f"UNTYPED:{type(exc).__name__}"] += 1
                    failures.append(f"{name}: untyped {type(exc).__name__}: {exc}")

            submitted = rejected_locally = 0
            for n in range(inputs):
                if time.monotonic() - start > 1800:
                    failures.append("fuzz_handlers ran out of time")
                    break
                key = keys[n % len(keys)]
                name = f"{key[0]}/{key[1]}"
                payload = handler_payload(key, rng, box)
                try:
                    task = bridge.submit(key[0], key[1], payload, timeout=10, block=True)
                except wb.ValidationError:
                    rejected_locally += 1  # not encodable (e.g. a huge int key): nothing sent
                    outcomes[name]["ValidationError(submit)"] += 1
                    continue
                submitted += 1
                inflight.append((name, task, payload))
                while len(inflight) >= window:
                    settle(*inflight.popleft())
            while inflight:
                settle(*inflight.popleft())
            elapsed = time.monotonic() - start
            stats = bridge.stats()
            if stats.restarts or set(worker_pids(bridge)) != pids:
                failures.append(f"workers died during handler fuzzing (restarts={stats.restarts})")
        finally:
            bridge.close(wait=False)
    per_handler = {}
    for name, c in outcomes.items():
        per_handler[name] = {
            "inputs": sum(c.values()),
            **dict(c.most_common()),
            **(
                {"remote_types": dict(remote_types[name].most_common(4))}
                if name in remote_types
                else {}
            ),
        }
    totals: collections.Counter[str] = collections.Counter()
    for c in outcomes.values():
        totals.update(c)
    figures: dict[str, Any] = {
        "inputs": inputs,
        "handlers": len(keys),
        "sent_to_workers": submitted,
        "refused_at_submit": rejected_locally,
        "totals": dict(totals.most_common()),
        "handlers_with_RemoteError": sorted(remote_types),
        "per_handler": per_handler,
        "not_fuzzed": {f"{c}/{o}": why for (c, o), why in NOT_FUZZED.items()},
        "handlers_without_spec": unknown,
        "worker_restarts": stats.restarts,
        "seconds": round(elapsed, 2),
    }
    _leak_check(tracker.seen, before, failures, figures)
    return _result("fuzz_handlers", figures, failures)


# =========================================================================================
# Tampering with encrypted files
# =========================================================================================


def _split(blob: bytes, chunk: int) -> tuple[bytes, list[bytes]]:
    from workerbridge.bridges import _aead

    head, body = blob[: _aead.STREAM_HEADER_SIZE], blob[_aead.STREAM_HEADER_SIZE :]
    sealed = chunk + _aead.TAG_SIZE
    return head, [body[i : i + sealed] for i in range(0, len(body), sealed)] or [b""]


def tamper_ops() -> dict[str, Callable[[bytes, bytes, int, random.Random], bytes | None]]:
    """Named ways to damage a stream file; each returns ``None`` where it does not apply."""
    from workerbridge.bridges import _aead

    hsize = _aead.STREAM_HEADER_SIZE

    def flip(
        b: bytes, o: bytes, c: int, r: random.Random, lo: int = 0, hi: int | None = None
    ) -> bytes:
        out = bytearray(b)
        hi = len(b) if hi is None else hi
        i = r.randrange(lo, hi)
        out[i] ^= 1 << r.randrange(8)
        return bytes(out)

    def chunks_op(
        fn: Callable[[list[bytes], list[bytes], random.Random], list[bytes] | None],
    ) -> Any:
        def op(b: bytes, o: bytes, c: int, r: random.Random) -> bytes | None:
            head, cs = _split(b, c)
            _, ocs = _split(o, c)
            new = fn(cs, ocs, r)
            return None if new is None else head + b"".join(new)

        return op

    def reorder(cs: list[bytes], ocs: list[bytes], r: random.Random) -> list[bytes] | None:
        if len(cs) < 2:
            return None
        i, j = r.sample(range(len(cs)), 2)
        cs = list(cs)
        cs[i], cs[j] = cs[j], cs[i]
        return cs

    def duplicate(cs: list[bytes], ocs: list[bytes], r: random.Random) -> list[bytes]:
        cs = list(cs)
        cs.insert(r.randrange(len(cs) + 1), r.choice(cs))
        return cs

    def drop(cs: list[bytes], ocs: list[bytes], r: random.Random) -> list[bytes] | None:
        if len(cs) < 2:
            return None
        cs = list(cs)
        del cs[r.randrange(len(cs))]
        return cs

    def swap_other(cs: list[bytes], ocs: list[bytes], r: random.Random) -> list[bytes]:
        cs = list(cs)
        i = r.randrange(min(len(cs), len(ocs)))
        cs[i] = ocs[i]
        return cs

    def header_field(b: bytes, o: bytes, c: int, r: random.Random) -> bytes:
        out = bytearray(b)
        pos = r.choice([4, 5, 6])
        choices = {4: [0, 2, 255], 5: [0, 1, 2, 3], 6: [15, 16, 17, 20, 24, 25]}[pos]
        new = r.choice([v for v in choices if v != out[pos]])
        out[pos] = new
        return bytes(out)

    return {
        "bitflip-header": lambda b, o, c, r: flip(b, o, c, r, 0, hsize),
        "bitflip-body": lambda b, o, c, r: flip(b, o, c, r, hsize) if len(b) > hsize else None,
        "multi-bitflip": lambda b, o, c, r: flip(flip(flip(b, o, c, r), o, c, r), o, c, r),
        "header-field-edit": header_field,
        "header-from-other-file": lambda b, o, c, r: o[:hsize] + b[hsize:],
        "truncate-random": lambda b, o, c, r: b[: r.randrange(len(b))],
        "truncate-at-chunk-boundary": lambda b, o, c, r: (
            b[: hsize + r.randrange(1, len(_split(b, c)[1])) * (c + 16)]
            if len(_split(b, c)[1]) > 1
            else None
        ),
        "extend-random-bytes": lambda b, o, c, r: b + r.randbytes(r.randint(1, 2 * c)),
        "extend-with-chunk": lambda b, o, c, r: b + r.choice(_split(r.choice([b, o]), c)[1]),
        "reorder-chunks": chunks_op(reorder),
        "duplicate-chunk": chunks_op(duplicate),
        "drop-chunk": chunks_op(drop),
        "chunk-from-other-file": chunks_op(swap_other),
    }


def tamper(files: int = 120, public: int = 40, seed: int = 13) -> dict[str, Any]:
    """Encrypt ``files`` files, damage each at random, decrypt: IntegrityError, no output.

    Every file goes through the engine (:mod:`workerbridge.bridges._aead`);
    the first ``public`` also through ``bridge.crypto.decrypt_file`` when the
    public bridge has it.
    """
    from workerbridge.bridges import _aead

    rng = random.Random(seed)
    failures: list[str] = []
    ops = tamper_ops()
    per_op: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in ops}
    public_outcomes: collections.Counter[str] = collections.Counter()
    made = 0
    with tempfile.TemporaryDirectory() as root:
        work = Path(root)
        # damaged files go to disk at once: only their names stay in memory
        store = work / "cases"
        store.mkdir()
        cases: list[tuple[str, str, bytes, Path]] = []  # damage, algorithm, key, file
        controls: list[tuple[str, bytes, bytes]] = []  # algorithm, key, plaintext
        start = time.monotonic()
        while made < files:
            algorithm = rng.choice(_aead.ALGORITHMS)
            key = rng.randbytes(32 if algorithm != "aes-gcm" else rng.choice([16, 24, 32]))
            chunk = rng.choice([1 << 16, 1 << 16, 1 << 17])
            blobs = []
            for _ in range(2):  # a pair under one key: the "other file" of the splices
                n = rng.choice(
                    [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 5]
                    + [rng.randrange(1, 5 * chunk)] * 3
                )
                plain = rng.randbytes(n)
                (work / "p").write_bytes(plain)
                _aead.encrypt_file(
                    work / "p", work / "e", key, algorithm=algorithm, chunk_size=chunk
                )
                blobs.append(((work / "e").read_bytes(), plain))
            for (blob, plain), (other, _) in (
                (blobs[0], blobs[1]),
                (blobs[1], blobs[0]),
            ):
                names = list(ops)  # round robin over the damage kinds: even coverage
                names = names[made % len(names) :] + names[: made % len(names)]
                combo = rng.random() < 0.15
                bad: bytes | None = blob
                used = []
                for name in names:
                    out = ops[name](bad, other, chunk, rng)
                    if out is None or out == bad:
                        continue
                    bad, used = out, [*used, name]
                    if not combo or len(used) >= 2:
                        break
                if bad == blob or not used:
                    continue
                label = "+".join(sorted(used)) if len(used) > 1 else used[0]
                path = store / str(made)
                path.write_bytes(bad)
                cases.append((label, algorithm, key, path))
                if len(controls) < 5:
                    controls.append((algorithm, key, plain))
                made += 1
        gen_seconds = time.monotonic() - start
        start = time.monotonic()
        out_dir = work / "out"
        out_dir.mkdir()
        engine_ok = 0
        for i, (label, algorithm, key, src) in enumerate(cases):
            existing = i % 4 == 0
            dst = out_dir / "dst"
            if existing:
                dst.write_bytes(b"keep me")
            try:
                _aead.decrypt_file(src, dst, key, algorithm=algorithm)
                outcome = "ACCEPTED"
            except wb.IntegrityError:
                outcome = "IntegrityError"
            except Exception as exc:
                outcome = type(exc).__name__
            left = sorted(p.name for p in out_dir.iterdir())
            expected = ["dst"] if existing else []
            if existing and dst.read_bytes() != b"keep me":
                outcome += "+dst-changed"
            if left != expected:
                outcome += "+files-left"
            for part in label.split("+"):
                per_op[part][outcome] += 1
            if outcome == "IntegrityError":
                engine_ok += 1
            else:
                failures.append(f"engine, {label}: {outcome}")
            for p in out_dir.iterdir():
                p.unlink()
        engine_seconds = time.monotonic() - start
        # control: untampered files decrypt
        for algorithm, key, plain in controls:
            (work / "p").write_bytes(plain)
            _aead.encrypt_file(work / "p", work / "e", key, algorithm=algorithm, chunk_size=1 << 16)
            _aead.decrypt_file(work / "e", work / "d", key, algorithm=algorithm)
            if (work / "d").read_bytes() != plain:
                failures.append("an untampered file did not decrypt to its plaintext")
        public_note = "not run"
        if public:
            bridge = new_bridge(workers=2)
            try:
                crypto = bridge.crypto
                if not hasattr(crypto, "decrypt_file"):
                    public_note = "bridge.crypto.decrypt_file does not exist yet"
                else:
                    public_note = "bridge.crypto.decrypt_file"
                    listing = sorted(p.name for p in work.iterdir())
                    for label, algorithm, key, src in cases[:public]:
                        dst = out_dir / "dst"
                        try:
                            crypto.decrypt_file(str(src), str(dst), key, algorithm=algorithm)
                            outcome = "ACCEPTED"
                        except wb.IntegrityError:
                            outcome = "IntegrityError"
                        except Exception as exc:
                            outcome = type(exc).__name__
                        left = sorted(p.name for p in out_dir.iterdir())
                        stray = sorted(p.name for p in work.iterdir()) != listing
                        if left or stray:
                            outcome += "+files-left"
                            for p in out_dir.iterdir():
                                p.unlink()
                        public_outcomes[outcome] += 1
                        if outcome != "IntegrityError":
                            failures.append(f"public, {label}: {outcome}")
            finally:
                bridge.close(wait=False)
    total = sum(sum(c.values()) for c in per_op.values())
    figures = {
        "files": len(cases),
        "engine_integrity_errors": engine_ok,
        "combined_damage_files": sum(1 for c in cases if "+" in c[0]),
        "per_damage": {k: dict(v) for k, v in per_op.items()},
        "damage_applications": total,
        "public_path": public_note,
        "public_outcomes": dict(public_outcomes),
        "generate_seconds": round(gen_seconds, 2),
        "engine_seconds": round(engine_seconds, 2),
    }
    return _result("tamper", figures, failures)


# =========================================================================================
# Overload
# =========================================================================================


def overload(
    submits: int = 5_000, max_queue: int = 100, mode: str = "raise", workers: int = 2
) -> dict[str, Any]:
    """``submits`` submits against ``max_queue``: ``raise``, ``block`` or ``block-timeout``.

    Every accepted task must deliver its own result; the queue never holds
    more than ``max_queue``; the parent's RSS is sampled throughout.
    """
    block: bool | float = {"raise": False, "block": True, "block-timeout": 0.002}[mode]
    failures: list[str] = []
    before = set(list_segments())
    with ChildTracker() as tracker:
        bridge = new_bridge(workers=workers, max_queue=max_queue)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            depth_max = [0]
            stop = threading.Event()

            def watch_depth() -> None:
                while not stop.wait(0.005):
                    depth_max[0] = max(depth_max[0], bridge.stats().queued)

            watcher = threading.Thread(target=watch_depth, daemon=True)
            watcher.start()
            base = rss_kib()
            # results are checked in done callbacks, so the test holds no Task objects and
            # the RSS figure is the bridge's own
            counts = {"accepted": 0, "ok": 0, "wrong": 0, "failed": 0}
            clock = threading.Lock()
            all_done = threading.Event()

            def checker(expected: int) -> Callable[[Any], None]:
                def on_done(fut: Any) -> None:
                    try:
                        good = fut.result() == expected
                        key = "ok" if good else "wrong"
                    except BaseException:
                        key = "failed"
                    with clock:
                        counts[key] += 1
                        if submitting_over[0] and _settled() == counts["accepted"]:
                            all_done.set()

                return on_done

            def _settled() -> int:
                return counts["ok"] + counts["wrong"] + counts["failed"]

            submitting_over = [False]
            rejected = 0
            waits = array.array("d")
            start = time.monotonic()
            with RssSampler(0.01, bridge) as rss:
                for i in range(submits):
                    t0 = time.perf_counter()
                    try:
                        task = bridge.submit("rel", "work", {"id": i, "ms": 0}, block=block)
                    except wb.QueueFullError:
                        rejected += 1
                        continue
                    finally:
                        if block is not False:
                            waits.append(time.perf_counter() - t0)
                    with clock:
                        counts["accepted"] += 1
                    task.add_done_callback(checker(i))
                    del task
                    if time.monotonic() - start > 900:
                        failures.append("overload ran out of time")
                        break
                submit_seconds = time.monotonic() - start
                with clock:
                    submitting_over[0] = True
                    if _settled() == counts["accepted"]:
                        all_done.set()
                all_done.wait(300)
            stop.set()
            watcher.join()
            elapsed = time.monotonic() - start
            lost = counts["accepted"] - counts["ok"] - counts["wrong"]
            wrong = counts["wrong"]
            if lost or wrong:
                failures.append(f"accepted tasks lost: {lost}, wrong results: {wrong}")
            if depth_max[0] > max_queue:
                failures.append(f"queue depth {depth_max[0]} exceeded max_queue={max_queue}")
            if mode == "block" and rejected:
                failures.append(f"block=True rejected {rejected} submits")
            if mode == "raise" and not rejected:
                failures.append("no QueueFullError although the queue must have filled")
            growth = rss.peak - base
            if growth > 256 * 1024:  # sanity bound: a bounded queue cannot need this
                failures.append(f"parent RSS grew by {growth} KiB")
            figures = {
                "mode": mode,
                "submits": submits,
                "max_queue": max_queue,
                "accepted": counts["accepted"],
                "queue_full_errors": rejected,
                "lost_or_wrong": lost + wrong,
                "max_queue_depth_seen": depth_max[0],
                "parent_rss_base_mib": round(base / 1024, 1),
                "parent_rss_peak_growth_mib": round(growth / 1024, 1),
                "worker_rss_peak_mib": round(rss.workers_max / 1024, 1),
                "submit_wait_ms": summary(waits, 1000) if waits else None,
                "submit_seconds": round(submit_seconds, 2),
                "seconds": round(elapsed, 2),
            }
        finally:
            bridge.close(wait=False)
    _leak_check(tracker.seen, before, failures, figures)
    return _result(f"overload[{mode}]", figures, failures)


# =========================================================================================
# Soak
# =========================================================================================


def _fd_count() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def soak(
    tasks: int = 20_000, checkpoints: int = 4, window: int = 32, probe: int = 200
) -> dict[str, Any]:
    """``tasks`` small tasks, ``window`` in flight; RSS and latency at every checkpoint.

    The latency figures are from a closed-loop probe (``probe`` sequential
    calls on an otherwise idle pool) at each checkpoint, and the bridge's own
    submit-to-result percentiles over its last 2,048 tasks.
    """
    failures: list[str] = []
    before = set(list_segments())
    rows = []
    with ChildTracker() as tracker:
        bridge = new_bridge(workers=2, max_queue=window * 2)
        try:
            bridge.run("rel", "echo", 0, timeout=60)
            pids0 = worker_pids(bridge)
            slots = threading.Semaphore(window)
            checksum = [0]
            errors = [0]
            lock = threading.Lock()

            def on_done(fut: Any) -> None:
                try:
                    value = fut.result()
                    with lock:
                        checksum[0] += value
                except BaseException:
                    with lock:
                        errors[0] += 1
                finally:
                    slots.release()

            def probe_latency() -> dict[str, float]:
                lat = []
                for j in range(probe):
                    t0 = time.perf_counter()
                    bridge.run("rel", "work", {"id": j, "ms": 0}, timeout=60)
                    lat.append(time.perf_counter() - t0)
                return summary(lat, 1e6)

            per = tasks // checkpoints
            expected = 0
            start = time.monotonic()
            n = 0
            for cp in range(checkpoints + 1):
                if cp:
                    t0 = time.monotonic()
                    for _ in range(per):
                        if not slots.acquire(timeout=60):
                            failures.append("soak: no task finished for 60 s")
                            break
                        task = bridge.submit("rel", "work", {"id": n, "ms": 0}, block=True)
                        task.add_done_callback(on_done)
                        expected += n
                        n += 1
                    for _ in range(window):  # drain
                        slots.acquire(timeout=60)
                    for _ in range(window):
                        slots.release()
                    seg_seconds = time.monotonic() - t0
                else:
                    seg_seconds = 0.0
                stats = bridge.stats()
                rows.append(
                    {
                        "tasks_done": n,
                        "tasks_per_s": round(per / seg_seconds, 1) if seg_seconds else None,
                        "parent_rss_mib": round(rss_kib() / 1024, 1),
                        "worker_rss_mib": [
                            round(rss_kib(p) / 1024, 1) for p in worker_pids(bridge)
                        ],
                        "probe_us": probe_latency(),
                        "bridge_latency_ms": {
                            k: round(v * 1000, 3) if v is not None else None
                            for k, v in (
                                ("p50", stats.latency.p50),
                                ("p99", stats.latency.p99),
                            )
                        },
                        "fds": _fd_count(),
                        "threads": threading.active_count(),
                    }
                )
                if time.monotonic() - start > 3000:
                    failures.append("soak ran out of time")
                    break
            elapsed = time.monotonic() - start
            stats = bridge.stats()
            if errors[0] or checksum[0] != expected:
                failures.append(
                    f"soak: {errors[0]} failed tasks, checksum {checksum[0]} != {expected}"
                )
            if stats.restarts or worker_pids(bridge) != pids0:
                failures.append(f"soak: workers restarted ({stats.restarts})")
        finally:
            bridge.close(wait=False)
    first, last = rows[1] if len(rows) > 1 else rows[0], rows[-1]
    figures = {
        "tasks": n,
        "window": window,
        "seconds": round(elapsed, 1),
        "tasks_per_s": round(n / elapsed, 1),
        "parent_rss_mib_first_last": [first["parent_rss_mib"], last["parent_rss_mib"]],
        "parent_rss_growth_mib": round(last["parent_rss_mib"] - first["parent_rss_mib"], 1),
        "worker_rss_mib_first_last": [first["worker_rss_mib"], last["worker_rss_mib"]],
        "worker_rss_growth_mib": round(
            max(last["worker_rss_mib"]) - max(first["worker_rss_mib"]), 1
        ),
        "probe_p50_us_first_last": [first["probe_us"]["p50"], last["probe_us"]["p50"]],
        "probe_p99_us_first_last": [first["probe_us"]["p99"], last["probe_us"]["p99"]],
        "fds_first_last": [rows[0]["fds"], last["fds"]],
        "checkpoints": rows,
    }
    # sanity bounds only: flat means "not growing with the task count"
    if figures["parent_rss_growth_mib"] > 64:
        failures.append(f"parent RSS grew by {figures['parent_rss_growth_mib']} MiB")
    if figures["worker_rss_growth_mib"] > 64:
        failures.append(f"worker RSS grew by {figures['worker_rss_growth_mib']} MiB")
    if last["fds"] > rows[0]["fds"] + 8:
        failures.append(f"file descriptors grew from {rows[0]['fds']} to {last['fds']}")
    _leak_check(tracker.seen, before, failures, figures)
    return _result("soak", figures, failures)


# =========================================================================================
# Shutdown races
# =========================================================================================


def close_race_trial(
    rng: random.Random, wait: bool, cancel_pending: bool, spins: int
) -> dict[str, Any]:
    """One close() from another thread while tasks run, wait, time out and get cancelled.

    The two workers start on two long tasks: ``spins`` of them (0-2) are
    non-cooperative loops that time out after 0.3 s and get their worker
    killed, the others cooperative ones that finish or stop on their flag.
    """
    bridge = new_bridge(workers=2, max_queue=100_000)
    tasks: list[Any] = []
    tlock = threading.Lock()
    stop = threading.Event()
    result: dict[str, Any] = {"wait": wait, "cancel_pending": cancel_pending, "spins": spins}
    try:
        bridge.run("rel", "echo", 0, timeout=60)
        for j in range(2):
            if j < spins:  # a non-cooperative loop that will time out and be killed
                tasks.append(bridge.submit("rel", "spin", timeout=0.3))
            elif j == 0:  # cooperative, finishes by itself
                tasks.append(bridge.submit("rel", "coop", {"poll": 0.002, "limit": 0.4}))
            else:  # cooperative, times out and stops on its flag
                tasks.append(bridge.submit("rel", "coop", {"poll": 0.002, "limit": 5}, timeout=0.3))
        for i in range(60):
            tasks.append(
                bridge.submit(
                    "rel",
                    "work",
                    {"id": i, "ms": rng.choice([0, 1, 5])},
                    timeout=rng.choice([None, None, 0.1, 0.5]),
                    priority=rng.randrange(3),
                )
            )

        def canceller() -> None:
            for _ in range(5_000):
                if stop.wait(rng.uniform(0.001, 0.01)):
                    return
                with tlock:
                    victim = rng.choice(tasks)
                victim.cancel()

        def submitter() -> None:
            for i in range(2_000):
                if stop.is_set():
                    return
                try:
                    t = bridge.submit(
                        "rel", "work", {"id": i, "ms": 1}, timeout=rng.choice([None, 0.2])
                    )
                except wb.PoolClosedError:
                    return
                with tlock:
                    tasks.append(t)
                time.sleep(0.001)

        helpers = [threading.Thread(target=f, daemon=True) for f in (canceller, submitter)]
        for h in helpers:
            h.start()
        time.sleep(rng.uniform(0.0, 0.4))
        close_times: list[float] = []

        def closer() -> None:
            t0 = time.monotonic()
            bridge.close(wait=wait, cancel_pending=cancel_pending)
            close_times.append(time.monotonic() - t0)

        th = threading.Thread(target=closer, daemon=True)
        th.start()
        th.join(60)
        result["deadlock"] = th.is_alive()
        stop.set()
        for h in helpers:
            h.join(10)
        result["close_s"] = close_times[0] if close_times else None
        with tlock:
            snapshot = list(tasks)
        result["tasks"] = len(snapshot)
        result["unresolved_at_close"] = sum(not t.done() for t in snapshot)
        concurrent.futures.wait(snapshot, timeout=5)
        result["unresolved_5s_later"] = sum(not t.done() for t in snapshot)
        kinds: collections.Counter[str] = collections.Counter()
        for t in snapshot:
            if not t.done():
                kinds["unresolved"] += 1
            elif t.cancelled():
                kinds["cancelled"] += 1
            else:
                e = t.exception()
                kinds["ok" if e is None else type(e).__name__] += 1
        result["outcomes"] = dict(kinds)
    finally:
        stop.set()
        if not result.get("deadlock"):
            bridge.close(wait=False)
    return result


def shutdown_races(trials: int = 8, seed: int = 17) -> dict[str, Any]:
    """Random close() races from another thread; every future must be resolved at close.

    Each trial takes the next of the four ``(wait, cancel_pending)``
    combinations and 0, 1 or 2 non-cooperative tasks (with two, both workers
    can die during a draining close).
    """
    rng = random.Random(seed)
    failures: list[str] = []
    rows = []
    before = set(list_segments())
    combos = [(True, True), (False, True), (False, False), (True, False)]
    with ChildTracker() as tracker:
        for i in range(trials):
            wait, cancel_pending = combos[i % len(combos)]
            r = close_race_trial(rng, wait, cancel_pending, spins=rng.randrange(3))
            rows.append(r)
            if r["deadlock"]:
                failures.append(f"close() deadlocked: {r}")
                break
            if r["unresolved_at_close"]:
                failures.append(f"futures unresolved when close() returned: {r}")
    close_s = [r["close_s"] for r in rows if r["close_s"] is not None]
    outcomes: collections.Counter[str] = collections.Counter()
    for r in rows:
        outcomes.update(r.get("outcomes", {}))
    figures: dict[str, Any] = {
        "trials": len(rows),
        "deadlocks": sum(bool(r["deadlock"]) for r in rows),
        "tasks": sum(r.get("tasks", 0) for r in rows),
        "unresolved_at_close": sum(r.get("unresolved_at_close", 0) for r in rows),
        "close_s": summary(close_s),
        "outcomes": dict(outcomes),
    }
    _leak_check(tracker.seen, before, failures, figures)
    return _result("shutdown_races", figures, failures)


_SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, os, random, signal, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    import workerbridge as wb
    mode, seed, limit = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    def watchdog():
        # the main thread may be stuck for good: report it and end the process from here
        print(json.dumps({"deadlock": True}), flush=True)
        os._exit(3)

    dog = threading.Timer(limit, watchdog)
    dog.daemon = True
    dog.start()
    rng = random.Random(seed)
    b = wb.WorkerBridge(workers=2, handlers=["rel_handlers"], fallback="never", max_queue=10**6)
    b.run("rel", "echo", 0, timeout=60)
    tasks, closed = [], []

    def on_signal(signum, frame):
        t0 = time.monotonic()
        b.close(wait=rng.random() < 0.5)
        closed.append(time.monotonic() - t0)

    signal.signal(signal.SIGALRM, on_signal)

    class Key:
        # an affinity key whose second hash (taken under the dispatcher lock) raises the signal
        calls = 0
        def __hash__(self):
            Key.calls += 1
            if Key.calls == 2:
                signal.raise_signal(signal.SIGALRM)
            return 1
        def __eq__(self, other):
            return self is other

    if mode == "in-lock":
        tasks.append(b.submit("rel", "work", {"id": 0, "ms": 1}, affinity=Key()))
    elif mode == "in-result":
        tasks.append(b.submit("rel", "coop", {"poll": 0.002, "limit": 1.0}))
        tasks += [b.submit("rel", "work", {"id": i, "ms": 1}) for i in range(50)]
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            tasks[0].result(timeout=30)
        except Exception:
            pass
    else:  # "random": the main thread submits, times out and cancels until the signal
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.05, 0.5))
        for i in range(200_000):
            try:
                t = b.submit("rel", "work", {"id": i, "ms": rng.choice([0, 1])},
                             timeout=rng.choice([None, 0.05]))
            except wb.PoolClosedError:
                break
            tasks.append(t)
            if i % 7 == 0:
                t.cancel()
    end = time.monotonic() + 10
    while not closed and time.monotonic() < end:
        time.sleep(0.01)
    # a close() that interrupted a bridge call finishes on another thread: give it a moment
    while any(not t.done() for t in tasks) and time.monotonic() < end:
        time.sleep(0.01)
    unresolved = sum(not t.done() for t in tasks)
    dog.cancel()
    print(json.dumps({"closed": bool(closed), "close_s": closed[0] if closed else None,
                      "tasks": len(tasks), "unresolved": unresolved, "deadlock": False}),
          flush=True)
    """
)


def signal_close_once(mode: str, seed: int = 0, limit: float = 5.0) -> dict[str, Any]:
    """close() from a SIGALRM handler in a child process.

    A watchdog thread in the child reports a deadlock when the child is not
    done ``limit`` seconds after it started its work, and ends it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SIGNAL_SCRIPT, str(HERE), mode, str(seed), str(limit)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            rc = proc.wait(timeout=limit + 60)
        except subprocess.TimeoutExpired:
            proc.kill()  # its workers follow through their lifeline
            rc = proc.wait()
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace").strip().splitlines()
        tail = err.read().decode(errors="replace")[-1500:]
    info: dict[str, Any] = json.loads(text[-1]) if text else {"deadlock": True}
    info.setdefault("deadlock", True)
    return {"mode": mode, "rc": rc, **info, "stderr_tail": tail if rc else ""}


def signal_close(trials: int = 30, seed: int = 23, limit: float = 5.0) -> dict[str, Any]:
    """close() from a signal handler that lands at a random point of a submit loop."""
    failures: list[str] = []
    rows = [signal_close_once("random", seed + i, limit) for i in range(trials)]
    done = [r for r in rows if not r["deadlock"]]
    unresolved = sum(r.get("unresolved", 0) for r in done)
    if unresolved:
        failures.append(f"{unresolved} futures unresolved after a signal-handler close")
    bad_rc = [r for r in done if r["rc"] != 0]  # a deadlocked child exits with 3
    if bad_rc:
        failures.append(f"children failed: {bad_rc[:2]}")
    figures = {
        "trials": trials,
        "deadlocks": sum(r["deadlock"] for r in rows),
        "deadlock_limit_s": limit,
        "tasks": sum(r.get("tasks", 0) for r in done),
        "unresolved": unresolved,
        "close_s": summary([r["close_s"] for r in done if r.get("close_s") is not None]),
    }
    return _result("signal_close", figures, failures)


#: Scenario name -> (function, list of keyword variants).
SCENARIOS: dict[str, tuple[Callable[..., dict[str, Any]], list[dict[str, Any]]]] = {
    "chaos": (chaos, [{}]),
    "chaos_budget": (chaos_budget, [{"fallback": "auto"}, {"fallback": "never"}]),
    "parent_kill": (parent_kill, [{}]),
    "hangs": (hangs, [{}]),
    "coop_cancel": (coop_cancel, [{}]),
    "fuzz_frames": (fuzz_frames, [{}]),
    "fuzz_channel": (fuzz_channel, [{}]),
    "fuzz_handlers": (fuzz_handlers, [{}]),
    "tamper": (tamper, [{}]),
    "overload": (overload, [{"mode": "raise"}, {"mode": "block"}, {"mode": "block-timeout"}]),
    "soak": (soak, [{}]),
    "shutdown_races": (shutdown_races, [{}]),
    "signal_close": (signal_close, [{}]),
}


# =========================================================================================
# Headline figures (the table of scripts/reliability.py and docs/reliability.rst)
# =========================================================================================


def _s(
    d: dict[str, Any] | None, unit: str = "", keys: tuple[str, ...] = ("p50", "p99", "max")
) -> str:
    if not d or not d.get("n"):
        return "-"
    return " / ".join(f"{d[k]:g}" for k in keys) + (f" {unit}" if unit else "")


def headline(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The few figures of a scenario worth a line of the table: ``(label, value)``."""
    name, f = result["scenario"], result["figures"]
    rows: list[tuple[str, str]] = []
    if name == "chaos":
        rows = [
            ("tasks / SIGKILLs / restarts", f"{f['tasks']} / {f['kills']} / {f['restarts']}"),
            (
                "no retries: result / WorkerCrashedError",
                f"{f['plain_ok']} / {f['plain_worker_crashed']}",
            ),
            ("retries=1000: results", f"{f['retried_ok']} of {f['retried_total']}"),
            ("ended exactly once", f"{f['ended_exactly_once']} of {f['tasks']}"),
            ("back to full strength after last kill", f"{f['recovery_after_last_kill_s']} s"),
            ("throughput under chaos", f"{f['tasks_per_s']} tasks/s"),
        ]
    elif name.startswith("chaos_budget"):
        rows = [
            ("SIGKILLs until broken", str(f["kills"])),
            ("outcomes", ", ".join(f"{k} {v}" for k, v in f["outcomes"].items())),
            ("mode afterwards", f["mode_after"]),
        ]
    elif name == "parent_kill":
        for key, v in f.items():
            if isinstance(v, dict) and "outlived_s" in v:
                rows.append(
                    (
                        f"{key}: workers outlived parent (max)",
                        f"{v['outlived_s'].get('max', '-')} s, orphans {v['orphans']}, "
                        f"segments to next sweep {v['segments_left_until_next_bridge']}",
                    )
                )
    elif name == "hangs":
        for kind in ("spin", "spin_c"):
            rows.append(
                (
                    f"{kind}, timeout=0.5: fails after (p50/p99/max)",
                    f"{_s(f[kind]['fail_after_s'], 's')}, within 1 s: {f[kind]['failed_within_1s']}",
                )
            )
            rows.append((f"{kind}: worker replaced after", _s(f[kind]["replaced_after_s"], "s")))
    elif name == "coop_cancel":
        rows = [
            ("cancel -> flag seen in handler", _s(f["cancel_to_flag_seen_ms"], "ms")),
            ("cancel -> worker free again", _s(f["cancel_to_worker_free_ms"], "ms")),
            ("within 50 ms", f["within_50ms"]),
            ("timeout deadline -> flag seen", _s(f["deadline_to_flag_seen_ms"], "ms")),
        ]
    elif name == "fuzz_frames":
        untyped = sum(
            v for k, v in f["outcomes"].items() if not k.endswith(("ProtocolError", "accepted"))
        )
        rows = [
            ("inputs (mutated frames + payloads + streams + hypothesis)", str(f["total_inputs"])),
            ("errors other than ProtocolError", str(untyped)),
            ("slowest input", f"{f['slowest_input_ms']} ms"),
        ]
    elif name == "fuzz_channel":
        rows = [
            ("garbage frames into a live worker", str(f["garbage_frames_sent"])),
            ("ProtocolError reports", str(f["protocol_errors_reported"])),
            ("worker restarts", str(f["worker_restarts"])),
        ]
    elif name == "fuzz_handlers":
        t = f["totals"]
        rows = [
            ("payloads x handlers", f"{f['inputs']} x {f['handlers']}"),
            (
                "result / typed error / RemoteError",
                f"{t.get('ok', 0)} / "
                f"{sum(v for k, v in t.items() if k not in ('ok', 'RemoteError') and not k.startswith(('HANG', 'CRASH', 'UNTYPED', 'not sent')))}"
                f" / {t.get('RemoteError', 0)}",
            ),
            (
                "hangs / worker deaths",
                f"{sum(v for k, v in t.items() if k.startswith('HANG'))} / {f['worker_restarts']}",
            ),
        ]
    elif name == "tamper":
        rows = [
            (
                "damaged files (engine): IntegrityError",
                f"{f['engine_integrity_errors']} of {f['files']}",
            ),
            (
                "through " + str(f["public_path"]),
                ", ".join(f"{k} {v}" for k, v in f["public_outcomes"].items()) or "-",
            ),
        ]
    elif name.startswith("overload"):
        rows = [
            (
                "submits: accepted / QueueFullError / lost",
                f"{f['submits']}: {f['accepted']} / {f['queue_full_errors']} / {f['lost_or_wrong']}",
            ),
            ("max queue depth seen", f"{f['max_queue_depth_seen']} (max_queue={f['max_queue']})"),
            ("parent RSS growth (peak)", f"{f['parent_rss_peak_growth_mib']} MiB"),
        ]
        if f.get("submit_wait_ms"):
            rows.append(("submit wait", _s(f["submit_wait_ms"], "ms")))
    elif name == "soak":
        rows = [
            ("tasks", f"{f['tasks']} in {f['seconds']} s ({f['tasks_per_s']}/s)"),
            (
                "parent RSS first -> last checkpoint",
                f"{f['parent_rss_mib_first_last'][0]} -> {f['parent_rss_mib_first_last'][1]} MiB",
            ),
            ("worker RSS growth (max worker)", f"{f['worker_rss_growth_mib']} MiB"),
            (
                "round trip p50 first -> last",
                f"{f['probe_p50_us_first_last'][0]} -> {f['probe_p50_us_first_last'][1]} us",
            ),
            (
                "round trip p99 first -> last",
                f"{f['probe_p99_us_first_last'][0]} -> {f['probe_p99_us_first_last'][1]} us",
            ),
        ]
    elif name == "shutdown_races":
        rows = [
            ("trials / tasks", f"{f['trials']} / {f['tasks']}"),
            ("deadlocks / unresolved at close", f"{f['deadlocks']} / {f['unresolved_at_close']}"),
            ("close() took", _s(f["close_s"], "s")),
        ]
    elif name == "signal_close":
        rows = [
            ("trials: deadlocked (known bug)", f"{f['trials']}: {f['deadlocks']}"),
            ("unresolved futures (other trials)", str(f["unresolved"])),
        ]
    return rows
