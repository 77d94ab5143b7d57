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


# -- map: order, laziness, errors, cancellation ------------------------------------------


def fail_at(x: int, bad: int = 45) -> int:
    if x == bad:
        raise KeyError(f"no {x}")
    return x * x


def fail_at_pair(x: int, y: int) -> int:
    return fail_at(x + y, 45)


def lock_at(x: int) -> object:
    return threading.Lock() if x == 30 else x


def nap(x: float) -> float:
    import time

    time.sleep(x)
    return x


def slow_first(x: int) -> int:
    """Calls 0..19 take 2 ms each, the rest none: a batch of them runs past a tiny budget."""
    import time

    if x < 20:
        time.sleep(0.002)
    return x * x


def drain(results: object, into: list[object]) -> None:
    """Append every result to ``into`` until the iterator ends or raises."""
    for value in results:  # type: ignore[attr-defined]
        into.append(value)


class Drawn:
    """An endless input that counts how many items map has taken from it."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Drawn:
        return self

    def __next__(self) -> int:
        self.taken += 1
        return self.taken - 1


def test_map_inputs_of_every_kind(executor: wb.Executor) -> None:
    expected = [x * x for x in range(300)]
    for source in (
        list(range(300)),
        tuple(range(300)),
        range(300),
        (x for x in range(300)),
        iter(range(300)),
    ):
        assert list(executor.map(square, source)) == expected
    assert sorted(executor.map(square, set(range(300)))) == expected
    assert list(executor.map(square, [])) == []
    for chunksize in (1, 7, 299, 300, 1000):
        assert list(executor.map(square, range(300), chunksize=chunksize)) == expected


def test_map_zip_semantics(executor: wb.Executor) -> None:
    assert list(executor.map(add, range(5), range(3))) == [0, 2, 4]
    assert list(executor.map(add, range(3), (x for x in range(10)))) == [0, 2, 4]
    counted = Drawn()
    assert list(executor.map(add, range(4), counted, chunksize=2)) == [0, 2, 4, 6]
    assert counted.taken <= 5  # zip stops at the shortest input, endless ones included
    assert list(executor.map(add, [], range(3))) == []


@pytest.mark.parametrize("chunksize", [None, 1, 10, 30, 100])
def test_map_error_raised_after_the_results_before_it(
    executor: wb.Executor, chunksize: int | None
) -> None:
    got: list[object] = []
    with pytest.raises(wb.RemoteError, match="KeyError") as info:
        drain(executor.map(fail_at, range(100), chunksize=chunksize), got)
    assert got == [x * x for x in range(45)]
    assert info.value.task_id is not None
    got = []
    with pytest.raises(wb.RemoteError, match="KeyError"):
        drain(executor.map(fail_at_pair, range(100), [0] * 100, chunksize=chunksize), got)
    assert got == [x * x for x in range(45)]


def test_map_error_carries_remote_traceback_in_debug_mode() -> None:
    with (
        wb.Executor(max_workers=1, fallback="never", debug=True) as ex,
        pytest.raises(wb.RemoteError) as info,
    ):
        list(ex.map(fail_at, range(50)))
    assert info.value.remote_traceback is not None
    assert "KeyError" in info.value.remote_traceback


def test_map_reads_an_endless_input_lazily(executor: wb.Executor) -> None:
    source = Drawn()
    results = executor.map(square, source)
    first = source.taken
    assert 0 < first < 1000  # the first batches only, not the whole input
    taken = [next(results) for _ in range(5000)]
    assert taken == [x * x for x in range(5000)]
    assert source.taken < 5000 + 8 * wb._executor.MAX_AUTO_CHUNK * 2  # bounded look-ahead
    results.close()
    with pytest.raises(StopIteration):
        next(results)


def test_map_endless_input_with_timeout_stops() -> None:
    import time

    with wb.Executor(max_workers=2, fallback="never") as ex:
        source = Drawn()
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            for _ in ex.map(square, source, timeout=0.5):
                pass
        assert time.monotonic() - start < 10
        assert ex.bridge.stats().queued == 0


def test_map_timeout_zero_and_late_batches() -> None:
    with wb.Executor(max_workers=1, fallback="never") as ex:
        results = ex.map(nap, [0.3] * 4, timeout=0.1, chunksize=1)
        with pytest.raises(wb.TaskTimeoutError):
            next(results)
        with pytest.raises(TimeoutError):
            list(ex.map(square, range(10), timeout=0))


def test_map_close_cancels_outstanding_batches(executor: wb.Executor) -> None:
    import time

    results = executor.map(nap, [0.01] + [0.5] * 20, chunksize=1)
    assert next(results) == 0.01
    results.close()
    with pytest.raises(StopIteration):
        next(results)
    deadline = time.monotonic() + 10
    while executor.bridge.stats().in_flight + executor.bridge.stats().queued:
        assert time.monotonic() < deadline, "batches of a closed map kept running"
        time.sleep(0.01)
    assert executor.bridge.stats().cancelled >= 1


def test_map_dropped_before_iterating_cancels(executor: wb.Executor) -> None:
    import gc
    import time

    results = executor.map(nap, [0.5] * 20, chunksize=1)
    del results
    gc.collect()
    deadline = time.monotonic() + 10
    while executor.bridge.stats().in_flight + executor.bridge.stats().queued:
        assert time.monotonic() < deadline, "batches of a dropped map kept running"
        time.sleep(0.01)


def test_map_shutdown_stops_iteration(executor: wb.Executor) -> None:
    results = executor.map(nap, [0.01] + [0.2] * 50, chunksize=1)
    assert next(results) == 0.01
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises((wb.PoolClosedError, concurrent.futures.CancelledError)):
        list(results)


def test_map_input_errors_raised_in_place(executor: wb.Executor) -> None:
    def source(n: int) -> object:
        yield from range(n)
        raise LookupError("input ran dry")

    # past the batches sent before map returns: raised after the results before it
    got: list[object] = []
    with pytest.raises(LookupError, match="input ran dry"):
        drain(executor.map(square, source(100), chunksize=1), got)
    assert got == [x * x for x in range(100)]
    with pytest.raises(LookupError, match="input ran dry"):
        executor.map(square, source(3), chunksize=1)  # within them: by map itself
    lock = threading.Lock()
    items: list[object] = [1] * 100 + [lock]
    got = []
    with pytest.raises(wb.ValidationError, match="pickle"):
        drain(executor.map(square, items, chunksize=1), got)
    assert got == [1] * 100
    with pytest.raises(wb.ValidationError, match="pickle"):
        executor.map(square, [lock])  # the first batches are sent before map returns
    got = []
    with pytest.raises(wb.ValidationError, match="lock"):
        drain(executor.map(lock_at, range(100)), got)  # a result that cannot be pickled
    assert got == list(range(30))
    with pytest.raises(wb.ValidationError, match="chunksize"):
        executor.map(square, [1], chunksize=True)


def test_map_budget_splits_slow_batches(
    executor: wb.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wb._executor, "BATCH_BUDGET", 0.005)
    monkeypatch.setattr(wb._executor, "PIECE_SECONDS", 0.004)
    before = executor.bridge.stats().submitted
    assert list(executor.map(slow_first, range(400))) == [x * x for x in range(400)]
    assert executor.bridge.stats().submitted - before > 2  # the cut batches were sent again
    expected = [x * x for x in range(300)]
    assert list(executor.map(slow_first, iter(range(300)))) == expected
    got: list[object] = []
    with pytest.raises(wb.RemoteError, match="KeyError"):
        drain(executor.map(fail_at, [0] * 30 + list(range(100))), got)
    assert got == [0] * 30 + [x * x for x in range(45)]


def test_map_pace_sizes_later_input(executor: wb.Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wb._executor, "BATCH_BUDGET", 10.0)  # no cuts: only the pace
    monkeypatch.setattr(wb._executor, "PIECE_SECONDS", 0.003)
    before = executor.bridge.stats().submitted
    source = iter(list(range(20)) * 3 + list(range(20, 1000)))
    expected = [x * x for x in list(range(20)) * 3 + list(range(20, 1000))]
    assert list(executor.map(slow_first, source)) == expected
    # batches growing 1, 2, 4, ... alone would be 11; slow calls keep the later ones small
    assert executor.bridge.stats().submitted - before > 11


def test_map_explicit_chunksize_never_splits(
    executor: wb.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wb._executor, "BATCH_BUDGET", 0.001)
    before = executor.bridge.stats().submitted
    assert list(executor.map(slow_first, range(40), chunksize=20)) == [x * x for x in range(40)]
    assert executor.bridge.stats().submitted - before == 2
