"""Timeouts and cancellation stop the work: flags first, then a kill."""

from __future__ import annotations

import time

import pytest

import workerbridge as wb


@pytest.mark.parametrize("op", ["spin", "spin_c"])
def test_non_cooperative_loop_is_stopped(pool: wb.WorkerBridge, op: str) -> None:
    pid = pool.run("t", "pid")
    # pin the loop to a known worker through affinity, then check it was replaced
    start = time.monotonic()
    task = pool.submit("t", op, timeout=0.5)
    with pytest.raises(wb.TaskTimeoutError) as info:
        task.result(timeout=30)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutError)
    assert info.value.task_id == task.id
    assert elapsed < 5  # fails at its deadline (0.5 s); generous bound for noisy machines
    deadline = time.monotonic() + 30
    while pool.stats().restarts < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.stats().restarts == 1
    # other work is unaffected
    assert pool.run("t", "add", {"a": 2, "b": 2}, timeout=30) == 4
    assert pid is not None


def test_cooperative_cancel_does_not_kill(pool: wb.WorkerBridge) -> None:
    task = pool.submit("t", "coop", {"steps": 10_000, "delay": 0.001})
    deadline = time.monotonic() + 30
    while not task.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert task.cancel()
    with pytest.raises(wb.TaskCancelledError) as info:
        task.result()
    assert info.value.task_id == task.id
    assert task.cancelled()
    time.sleep(0.5)
    assert pool.stats().restarts == 0  # it stopped on the flag, no kill


def test_cancellation_token_from_caller(pool: wb.WorkerBridge) -> None:
    with wb.CancellationToken() as token:
        task = pool.submit("t", "coop", {"steps": 10_000, "delay": 0.001}, cancel=token)
        time.sleep(0.1)
        token.cancel()
        with pytest.raises(wb.TaskCancelledError):
            task.result(timeout=30)


def test_forced_cancel_kills_and_replaces(pool: wb.WorkerBridge) -> None:
    task = pool.submit("t", "spin")
    deadline = time.monotonic() + 30
    while not task.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert task.cancel()
    with pytest.raises(wb.TaskCancelledError):
        task.result()
    while pool.stats().restarts < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.stats().restarts == 1
    assert pool.run("t", "add", {"a": 1, "b": 1}, timeout=30) == 2


def test_queued_task_expires_without_running(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    blocker = bridge.submit("t", "sleep", 0.6)
    deadline = time.monotonic() + 30
    while not blocker.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    queued = bridge.submit("t", "record", "should-not-run", timeout=0.2)
    with pytest.raises(wb.TaskTimeoutError, match="in the queue"):
        queued.result(timeout=30)
    assert blocker.result(timeout=30) == 0.6
    assert bridge.run("t", "record", "after") == ["after"]  # the expired one never ran


def test_cancel_queued_task(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    blocker = bridge.submit("t", "sleep", 0.3)
    deadline = time.monotonic() + 30
    while not blocker.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    queued = bridge.submit("t", "record", "x")
    assert queued.cancel()
    assert queued.cancelled()
    with pytest.raises(wb.TaskCancelledError):
        queued.result()
    blocker.result(timeout=30)
    assert bridge.run("t", "record", "y") == ["y"]
    assert not queued.cancel()


def test_closing_a_token_early_does_not_stop_the_supervisor(pool: wb.WorkerBridge) -> None:
    token = wb.CancellationToken()
    task = pool.submit("t", "coop", {"steps": 30, "delay": 0.01}, cancel=token)
    token.close()  # closed by its owner while the task is pending
    assert task.result(timeout=30) == 30
    with pytest.raises(wb.TaskTimeoutError):  # timeouts still work afterwards
        pool.run("t", "coop", {"steps": 1000, "delay": 0.01}, timeout=0.3)


def test_undecodable_answer_fails_the_task(
    pool: wb.WorkerBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool.run("t", "add", {"a": 1, "b": 1})
    from workerbridge._pool import WorkerProcess

    def bad_copy(self: object, table: object, index: int) -> bytes:
        raise wb.ProtocolError("result buffer reference out of bounds")

    monkeypatch.setattr(WorkerProcess, "_copy_out", bad_copy)
    with pytest.raises(wb.ProtocolError, match="bad answer"):
        pool.run("t", "bigresult", 1 << 20, timeout=30)
    monkeypatch.undo()
    assert pool.run("t", "add", {"a": 2, "b": 2}) == 4
