"""run() reads its own answer from the worker's direct pipe: every way a task can end.

A task started at once for a caller blocked in :meth:`WorkerBridge.run` has its
answer written to the worker's direct pipe and read by that caller, without a
hop through the lane's thread.  These tests make sure that path ends exactly
like the ordinary one when the task times out, is cancelled, crashes, retries,
or the bridge closes under it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

import workerbridge as wb
from workerbridge import _pool

HANDLERS = ["wbtest_handlers"]


@pytest.fixture
def direct_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the tasks whose answer was read on the caller's thread."""
    seen: list[int] = []
    original = _pool.WorkerProcess.read_direct

    def counting(self: _pool.WorkerProcess, req: object) -> object:
        seen.append(req.id)  # type: ignore[attr-defined]
        return original(self, req)  # type: ignore[arg-type]

    monkeypatch.setattr(_pool.WorkerProcess, "read_direct", counting)
    return seen


@pytest.fixture
def one() -> Iterator[wb.WorkerBridge]:
    bridge = wb.WorkerBridge(workers=1, handlers=HANDLERS, fallback="never")
    bridge.run("t", "add", {"a": 0, "b": 0}, timeout=60)  # started
    yield bridge
    bridge.close(wait=False)


def test_run_reads_its_answer_directly(one: wb.WorkerBridge, direct_reads: list[int]) -> None:
    for i in range(50):
        assert one.run("t", "add", {"a": i, "b": 1}) == i + 1
    assert len(direct_reads) == 50
    with pytest.raises(wb.TaskError, match="bad input"):
        one.run("t", "raise", 5)
    assert len(direct_reads) == 51
    stats = one.stats()
    assert stats.completed == 51 and stats.failed == 1 and stats.restarts == 0


def test_direct_answer_with_progress_or_token_resolves_the_task(
    one: wb.WorkerBridge, direct_reads: list[int]
) -> None:
    seen: list[wb.Progress] = []
    token = wb.CancellationToken()
    try:
        assert one.run("t", "add", {"a": 1, "b": 2}, on_progress=seen.append) == 3
        assert one.run("t", "add", {"a": 2, "b": 2}, cancel=token) == 4
    finally:
        token.close()
    assert len(direct_reads) == 2
    assert seen and seen[-1].fraction == 1.0  # the general path's final progress
    stats = one.stats()
    assert stats.completed == 3 and stats.failed == 0  # the fixture's task, and these


def test_queued_run_takes_the_ordinary_path(one: wb.WorkerBridge, direct_reads: list[int]) -> None:
    first = one.submit("t", "sleep", 0.2)
    assert one.run("t", "add", {"a": 1, "b": 1}, timeout=30) == 2  # queued behind it
    assert first.result(timeout=30) == 0.2
    assert direct_reads == []


def test_timeout_of_a_non_cooperative_direct_task(one: wb.WorkerBridge) -> None:
    start = time.monotonic()
    with pytest.raises(wb.TaskTimeoutError):
        one.run("t", "spin", timeout=0.3)
    assert time.monotonic() - start < 5  # at the deadline, not when the worker is killed
    assert one.run("t", "add", {"a": 2, "b": 2}, timeout=30) == 4
    deadline = time.monotonic() + 30
    while one.stats().restarts < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one.stats().restarts == 1


def test_timeout_of_a_cooperative_direct_task_keeps_the_worker(one: wb.WorkerBridge) -> None:
    """The stopped task's late answer goes to the lane's thread, which frees the worker."""
    pid = one.run("t", "pid")
    with pytest.raises(wb.TaskTimeoutError):
        one.run("t", "coop", {"steps": 10_000, "delay": 0.001}, timeout=0.2)
    for i in range(20):
        assert one.run("t", "add", {"a": i, "b": 0}, timeout=30) == i
    assert one.run("t", "pid") == pid
    assert one.stats().restarts == 0


def test_cancellation_token_stops_a_direct_task(one: wb.WorkerBridge) -> None:
    with wb.CancellationToken() as token:
        threading.Timer(0.2, token.cancel).start()
        with pytest.raises(wb.TaskCancelledError):
            one.run("t", "coop", {"steps": 10_000, "delay": 0.001}, cancel=token, timeout=30)
    assert one.run("t", "add", {"a": 1, "b": 2}, timeout=30) == 3
    assert one.stats().restarts == 0


@pytest.mark.parametrize("op", ["sigkill", "segfault"])
def test_worker_death_during_a_direct_task(one: wb.WorkerBridge, op: str) -> None:
    with pytest.raises(wb.WorkerCrashedError):
        one.run("t", op, timeout=30)
    assert one.run("t", "add", {"a": 1, "b": 1}, timeout=30) == 2


def _crash_once(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(5)
    return "ok"


def test_retry_after_a_crash_is_not_direct(
    one: wb.WorkerBridge, tmp_path: os.PathLike[str]
) -> None:
    import pickle

    marker = os.path.join(tmp_path, "crashed")
    blob = pickle.dumps((_crash_once, (marker,), {}))
    assert pickle.loads(one.run("_wb", "call", blob, retries=1, timeout=60)) == "ok"
    assert one.stats().restarts == 1


def test_close_under_a_direct_task(one: wb.WorkerBridge) -> None:
    threading.Timer(0.2, lambda: one.close(wait=False)).start()
    with pytest.raises(wb.PoolClosedError):
        one.run("t", "spin", timeout=30)


def test_close_waiting_for_a_direct_task(one: wb.WorkerBridge) -> None:
    result: list[object] = []
    runner = threading.Thread(target=lambda: result.append(one.run("t", "sleep", 0.3)))
    runner.start()
    deadline = time.monotonic() + 30
    while one.stats().in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    one.close(wait=True)
    runner.join(30)
    assert result == [0.3]


def test_many_threads_running_at_once() -> None:
    with wb.WorkerBridge(workers=2, handlers=HANDLERS, fallback="never") as bridge:
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for i in range(200):
                    assert bridge.run("t", "add", {"a": k, "b": i}, timeout=60) == k + i
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert bridge.stats().completed == 1200
