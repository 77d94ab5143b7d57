"""wb.Executor as a drop-in concurrent.futures.Executor."""

from __future__ import annotations

import concurrent.futures
import os
import threading

import pytest

import workerbridge as wb


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(x: int) -> int:
    raise KeyError(f"no {x}")


def die(code: int) -> None:
    os._exit(code)


@pytest.fixture(params=["pool", "fallback"])
def executor(request: pytest.FixtureRequest) -> wb.Executor:
    options = {"fallback": "always"} if request.param == "fallback" else {"fallback": "never"}
    ex = wb.Executor(max_workers=2, **options)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


def test_submit_and_kwargs(executor: wb.Executor) -> None:
    fut = executor.submit(add, 2, b=3)
    assert isinstance(fut, concurrent.futures.Future)
    assert isinstance(fut, wb.Task)
    assert fut.result(timeout=30) == 5


def test_map_batches_and_order(executor: wb.Executor) -> None:
    assert list(executor.map(square, range(2000))) == [x * x for x in range(2000)]
    assert list(executor.map(add, range(50), range(50), chunksize=7)) == [2 * x for x in range(50)]
    assert list(executor.map(square, iter(range(100)))) == [x * x for x in range(100)]
    assert executor.bridge.stats().submitted < 100  # batched, not one task per call


def test_wait_and_as_completed(executor: wb.Executor) -> None:
    futures = [executor.submit(square, i) for i in range(20)]
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 20 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == [
        i * i for i in range(20)
    ]


def test_exceptions_and_unpicklable(executor: wb.Executor) -> None:
    with pytest.raises(wb.RemoteError, match="KeyError"):
        executor.submit(fail, 3).result(timeout=30)
    with pytest.raises(wb.ValidationError, match="pickle"):
        executor.submit(lambda: 1)
    lock = threading.Lock()
    with pytest.raises(wb.ValidationError):
        executor.submit(square, lock)


def test_crash_fails_one_future_only() -> None:
    with wb.Executor(max_workers=2, fallback="never") as ex:
        bad = ex.submit(die, 9)
        good = [ex.submit(square, i) for i in range(10)]
        with pytest.raises(wb.WorkerCrashedError):
            bad.result(timeout=30)
        assert [g.result(timeout=30) for g in good] == [i * i for i in range(10)]


def test_shutdown_cancel_futures() -> None:
    ex = wb.Executor(max_workers=1, fallback="never")
    first = ex.submit(pow, 2, 2)
    first.result(timeout=30)
    running = ex.submit(__import__("time").sleep, 0.3)
    queued = [ex.submit(square, i) for i in range(5)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() is None
    for q in queued:
        assert q.done()
        with pytest.raises((wb.PoolClosedError, concurrent.futures.CancelledError)):
            q.result()
    with pytest.raises(wb.PoolClosedError):
        ex.submit(square, 1)


def test_map_timeout() -> None:
    import time

    with wb.Executor(max_workers=1, fallback="never") as ex:
        results = ex.map(time.sleep, [0.5, 0.5], timeout=0.2, chunksize=1)
        with pytest.raises(TimeoutError):
            list(results)
