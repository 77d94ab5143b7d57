"""The crash matrix: a worker dying at each stage fails only its own task."""

from __future__ import annotations

import os
import signal

import pytest

import workerbridge as wb

HANDLERS = ["wbtest_handlers"]


class _ExitOnUnpickle:
    """Pickles fine in the parent; kills the worker that unpickles it."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (23,))


@pytest.mark.parametrize(
    ("op", "payload", "exitcode"),
    [
        ("exit", 3, 3),
        ("sigkill", None, -signal.SIGKILL),
        ("segfault", None, -signal.SIGSEGV),
    ],
)
def test_crash_during_run_fails_only_that_task(
    pool: wb.WorkerBridge, op: str, payload: object, exitcode: int
) -> None:
    task = pool.submit("t", op, payload)
    with pytest.raises(wb.WorkerCrashedError) as info:
        task.result(timeout=30)
    err = info.value
    assert err.task_id == task.id
    assert err.exitcode == exitcode
    assert str(task.id) in str(err)
    if exitcode < 0:
        assert signal.Signals(-exitcode).name in str(err)
    # the pool keeps serving, on a replaced worker
    assert pool.run("t", "add", {"a": 1, "b": 2}, timeout=30) == 3
    stats = pool.stats()
    assert stats.restarts == 1
    assert stats.failed == 1


def test_crash_at_unpickle() -> None:
    with wb.Executor(max_workers=1, fallback="never") as ex:
        fut = ex.submit(print, _ExitOnUnpickle())
        with pytest.raises(wb.WorkerCrashedError) as info:
            fut.result(timeout=30)
        assert info.value.exitcode == 23
        assert ex.submit(pow, 2, 10).result(timeout=30) == 1024


def test_crash_at_start_breaks_pool_without_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_CRASH_AT_START", "1")
    bridge = wb.WorkerBridge(workers=1, handlers=["wbtest_crash_at_start"], fallback="never")
    try:
        task = bridge.submit("crashy", "ping")
        with pytest.raises(wb.BrokenPoolError):
            task.result(timeout=60)
        with pytest.raises(wb.BrokenPoolError):
            bridge.submit("crashy", "ping")
        assert bridge.stats().broken
    finally:
        bridge.close()


def test_crash_at_start_falls_back_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_CRASH_AT_START", "1")
    with wb.WorkerBridge(workers=1, handlers=["wbtest_crash_at_start"], fallback="auto") as bridge:
        task = bridge.submit("crashy", "ping")
        assert task.result(timeout=60) == "pong"
        assert bridge.mode == "inprocess"


def test_retries_resubmit_after_crash(pool: wb.WorkerBridge, tmp_path: object) -> None:
    marker = os.path.join(str(tmp_path), "crashed-once")
    # the first attempt crashes, the retry succeeds (idempotent by construction)
    task = pool.submit("_wb", "call", _crash_once_blob(marker), retries=1)
    assert task.result(timeout=30) is not None
    assert pool.stats().restarts == 1


def _crash_once(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(5)
    return "ok"


def _crash_once_blob(marker: str) -> bytes:
    import pickle

    return pickle.dumps((_crash_once, (marker,), {}))


def test_worker_crash_error_pickles() -> None:
    import pickle

    err = wb.WorkerCrashedError("died", 7, exitcode=-9)
    back = pickle.loads(pickle.dumps(err))
    assert (back.task_id, back.exitcode, str(back)) == (7, -9, str(err))


def test_handlers_module_list_is_enforced(pool: wb.WorkerBridge) -> None:
    @wb.handler("t_local", "nope")
    def nope(ctx: wb.Context, payload: object) -> None:
        return None

    with pytest.raises(wb.ValidationError, match="handlers="):
        pool.submit("t_local", "nope")
    assert HANDLERS == ["wbtest_handlers"]


def test_fallback_switch_lets_a_healthy_busy_worker_finish(tmp_path: object) -> None:
    """When crashes exhaust the restart budget, a worker still busy is not killed.

    Its task completes with its result; the lane moves to the in-process backend
    afterwards, and the old pool's shared memory is released then.
    """
    import time

    with wb.WorkerBridge(workers=2, handlers=HANDLERS, fallback="auto") as bridge:
        go = os.path.join(str(tmp_path), "go")
        busy = bridge.submit("t", "wait_file", {"path": go, "limit": 60})
        deadline = time.monotonic() + 30
        while not busy.running() and time.monotonic() < deadline:
            time.sleep(0.005)
        kills = 0
        while bridge.mode == "pool" and kills < 40 and time.monotonic() < deadline:
            victim = next(
                (w for w in bridge.stats().workers if w.current_task is None and w.pid), None
            )
            if victim is None or victim.state != "idle":
                time.sleep(0.005)
                continue
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
            kills += 1
            while time.monotonic() < deadline and bridge.mode == "pool":
                now = {w.index: w.pid for w in bridge.stats().workers}
                if now[victim.index] != victim.pid:
                    break
                time.sleep(0.005)
        assert bridge.mode == "inprocess", kills
        assert not busy.done()  # the switch happened while it was running
        open(go, "w").close()
        assert busy.result(timeout=30) == "seen"
        assert bridge.run("t", "add", {"a": 2, "b": 3}, timeout=30) == 5
