"""WorkerBridge behaviour, run against both backends (worker processes and in-process)."""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import threading
import time

import pytest

import workerbridge as wb


def test_round_trip_and_ids(bridge: wb.WorkerBridge, backend: str) -> None:
    assert bridge.mode == ("pool" if backend == "pool" else "inprocess")
    tasks = [bridge.submit("t", "add", {"a": i, "b": 1}) for i in range(50)]
    assert [t.result(timeout=30) for t in tasks] == [i + 1 for i in range(50)]
    assert len({t.id for t in tasks}) == 50
    assert all(isinstance(t, concurrent.futures.Future) for t in tasks)
    done, _ = concurrent.futures.wait(tasks, timeout=30)
    assert len(done) == 50


def test_identical_results_across_modes(make_bridge: object) -> None:
    bridge = make_bridge()  # type: ignore[operator]
    payload = {"a": [1, (2, 3)], "b": [b"x" * 10, None, 1.5, "s"]}
    assert bridge.run("_wb", "echo", payload) == {
        "a": [1, [2, 3]],
        "b": [b"x" * 10, None, 1.5, "s"],
    }
    big = bytes(range(256)) * 4096  # 1 MiB: out of band
    assert bridge.run("_wb", "echo", big) == big
    assert bridge.run("t", "bigresult", 3 << 20) == bytes([7]) * (3 << 20)
    info = bridge.run("t", "bufsum", {"data": big})
    assert info == {"type": "memoryview", "len": len(big), "sum": sum(big[:1024])}


def test_remote_error_is_sanitized(bridge: wb.WorkerBridge) -> None:
    secret = b"\x01\x02secret-key-material\xff" * 4
    task = bridge.submit("t", "raise", secret)
    with pytest.raises(wb.RemoteError) as info:
        task.result(timeout=30)
    err = info.value
    assert err.remote_type == "ValueError"
    assert err.task_id == task.id
    assert "secret-key-material" not in str(err)
    assert bytes(range(32)).hex() not in str(err)
    assert err.remote_traceback is None
    back = pickle.loads(pickle.dumps(err))
    assert (back.remote_type, back.task_id, str(back)) == (err.remote_type, err.task_id, str(err))


def test_library_errors_keep_their_type(bridge: wb.WorkerBridge) -> None:
    with pytest.raises(wb.IntegrityError, match="authentication failed"):
        bridge.run("t", "raise_integrity")


def test_debug_attaches_traceback(make_bridge: object) -> None:
    bridge = make_bridge(debug=True)  # type: ignore[operator]
    with pytest.raises(wb.RemoteError) as info:
        bridge.run("t", "raise", b"")
    assert info.value.remote_traceback
    assert "raise_" in info.value.remote_traceback


def test_unencodable_result_is_an_error(bridge: wb.WorkerBridge) -> None:
    with pytest.raises(wb.ValidationError, match="object"):
        bridge.run("t", "unencodable")
    assert bridge.run("t", "add", {"a": 1, "b": 1}) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("nope", "nope"), {}, "no handler"),
        (("t", "add", object()), {}, "cannot send"),
        (("t", "add"), {"timeout": -1}, "timeout"),
        (("t", "add"), {"timeout": "1"}, "timeout"),
        (("t", "add"), {"priority": 1.5}, "priority"),
        (("t", "add"), {"cancel": object()}, "CancellationToken"),
        (("t", "add"), {"on_progress": 3}, "callable"),
        (("t", "add"), {"retries": -1}, "retries"),
        (("t", "add"), {"affinity": []}, "hashable"),
    ],
)
def test_bad_input_is_rejected_before_sending(
    bridge: wb.WorkerBridge, args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(wb.ValidationError, match=match):
        bridge.submit(*args, **kwargs)  # type: ignore[arg-type]
    assert bridge.stats().submitted == 0


@pytest.mark.parametrize(
    "options",
    [
        {"workers": 0},
        {"workers": 1.5},
        {"strategy": "fastest"},
        {"max_queue": -1},
        {"fallback": "sometimes"},
        {"default_timeout": 0},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(wb.ValidationError):
        wb.WorkerBridge(**options)  # type: ignore[arg-type]


def wait_running(task: wb.Task[object], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not task.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert task.running()


def test_priority_order(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    blocker = bridge.submit("t", "sleep", 0.3)
    wait_running(blocker)
    tasks = [bridge.submit("t", "record", p, priority=p) for p in (1, 5, 3, 5, 0)]
    for t in tasks:
        t.result(timeout=30)
    blocker.result(timeout=30)
    assert tasks[-1].result() == [5, 5, 3, 1, 0]


def test_backpressure(make_bridge: object) -> None:
    bridge = make_bridge(workers=1, max_queue=2)  # type: ignore[operator]
    blocker = bridge.submit("t", "sleep", 0.5)
    wait_running(blocker)
    queued = [bridge.submit("t", "add", {"a": i, "b": 0}) for i in range(2)]
    with pytest.raises(wb.QueueFullError):
        bridge.submit("t", "add", {"a": 9, "b": 0})
    with pytest.raises(wb.QueueFullError):
        bridge.submit("t", "add", {"a": 9, "b": 0}, block=0.05)
    late = bridge.submit("t", "add", {"a": 9, "b": 0}, block=True)  # waits for room
    assert [t.result(timeout=30) for t in [*queued, late]] == [0, 1, 9]
    assert blocker.result(timeout=30) == 0.5


def test_progress_callbacks(bridge: wb.WorkerBridge) -> None:
    seen: list[wb.Progress] = []
    steps = 40
    task = bridge.submit("t", "coop", {"steps": steps, "delay": 0.01}, on_progress=seen.append)
    assert task.result(timeout=30) == steps
    assert seen, "no progress delivered"
    assert seen[-1] == wb.Progress(steps, steps)
    assert seen[-1].fraction == 1.0
    currents = [p.current for p in seen]
    assert currents == sorted(currents)
    # bounded rate: ~0.4 s of work at one delivery per 50 ms, plus the final one
    assert len(seen) <= 0.4 / 0.05 * 3 + 2


def test_affinity_keeps_worker_state(make_bridge: object) -> None:
    bridge = make_bridge(workers=2)  # type: ignore[operator]
    results = [
        bridge.submit("t", "state_add", {"key": k, "value": i}, affinity=k)
        for i in range(10)
        for k in ("alpha", "beta")
    ]
    by_key: dict[str, list[dict[str, object]]] = {"alpha": [], "beta": []}
    for t in results:
        r = t.result(timeout=30)
        key = "alpha" if r["items"] and len(by_key["alpha"]) < 10 and t in results[::2] else "beta"
        by_key[key].append(r)
    for rs in by_key.values():
        assert len({r["worker"] for r in rs}) == 1
        assert rs[-1]["items"] == list(range(10))
    assert by_key["alpha"][0]["worker"] != by_key["beta"][0]["worker"]


def test_close_fails_pending_and_finishes_running(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    running = bridge.submit("t", "sleep", 0.3)
    wait_running(running)
    pending = [bridge.submit("t", "add", {"a": 1, "b": 1}) for _ in range(3)]
    bridge.close()
    assert running.result() == 0.3
    for t in pending:
        with pytest.raises(wb.PoolClosedError):
            t.result()
    with pytest.raises(wb.PoolClosedError):
        bridge.submit("t", "add", {"a": 1, "b": 1})
    bridge.close()  # idempotent


def test_close_without_wait_fails_running(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    running = bridge.submit("t", "coop", {"steps": 1000, "delay": 0.01})
    wait_running(running)
    bridge.close(wait=False)
    with pytest.raises(wb.PoolClosedError):
        running.result(timeout=30)


def test_close_drains_when_asked(make_bridge: object) -> None:
    bridge = make_bridge(workers=1)  # type: ignore[operator]
    tasks = [bridge.submit("t", "add", {"a": i, "b": 0}) for i in range(5)]
    bridge.close(wait=True, cancel_pending=False)
    assert [t.result() for t in tasks] == list(range(5))


def test_close_from_another_thread_resolves_everything(make_bridge: object) -> None:
    bridge = make_bridge(workers=2, max_queue=100)  # type: ignore[operator]
    tasks = [bridge.submit("t", "coop", {"steps": 5, "delay": 0.01}) for _ in range(20)]
    closer = threading.Thread(target=bridge.close)
    closer.start()
    closer.join(30)
    assert not closer.is_alive()
    for t in tasks:
        assert t.done()


def test_shared_buffer_handoff(bridge: wb.WorkerBridge) -> None:
    buf = bridge.allocate(1 << 20)
    buf.view[:] = bytes(range(256)) * 4096
    info = bridge.run("t", "bufsum", {"data": buf})
    assert info["len"] == 1 << 20
    assert info["sum"] == sum(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="handed"):
        buf.view  # noqa: B018
    with pytest.raises(wb.ValidationError):
        bridge.submit("t", "bufsum", {"data": buf})


def _segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith(f"wb_{os.getpid()}_buf_")}


def test_handed_buffer_given_back_whole_is_the_same_buffer(bridge: wb.WorkerBridge) -> None:
    before = _segments()
    data = os.urandom(1 << 20)
    buf = bridge.allocate(len(data))
    buf.view[:] = data
    out = bridge.run("_wb", "echo", buf)
    assert out is buf  # no copy either way: the memory came back to its owner
    assert bytes(buf.view) == data
    buf.view[:4] = b"WXYZ"  # writable again, and it can be handed to another task
    nested = bridge.run("_wb", "echo", {"again": buf, "n": 1})
    assert nested == {"again": buf, "n": 1}
    assert bytes(buf.view[:4]) == b"WXYZ"
    assert len(_segments() - before) == 1
    buf.close()
    assert not _segments() - before  # (a straggler of an earlier test may go meanwhile)


def test_handed_buffer_small_comes_back_too(bridge: wb.WorkerBridge) -> None:
    buf = bridge.allocate(3)  # below the out-of-band threshold: still by name, not bytes
    buf.view[:] = b"abc"
    assert bridge.run("_wb", "echo", buf) is buf
    buf.close()


def test_handed_buffer_part_comes_back_as_bytes_and_is_freed(bridge: wb.WorkerBridge) -> None:
    before = _segments()
    buf = bridge.allocate(1 << 17)
    buf.view[:] = bytes(range(256)) * 512
    out = bridge.run("t", "bufpart", {"data": buf, "n": 1 << 16})
    assert type(out) is bytes
    assert out == (bytes(range(256)) * 512)[: 1 << 16]
    with pytest.raises(ValueError, match="handed"):
        buf.view  # noqa: B018  (still handed over: the task did not give it back)
    # Freed when the task ended: by the task's done callback, which runs on the lane's
    # thread right after the result is set (and so maybe after run() has returned).
    deadline = time.monotonic() + 10
    while _segments() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _segments() - before


def test_stats_shape(bridge: wb.WorkerBridge) -> None:
    bridge.run("t", "add", {"a": 1, "b": 2})
    s = bridge.stats()
    assert s.completed == 1
    assert s.submitted == 1
    assert s.queued == 0
    assert len(s.workers) == 2
    assert s.latency.p50 is not None
    assert s.latency.p50 > 0
    assert s.as_dict()["mode"] == bridge.mode


def test_inprocess_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERBRIDGE_INPROCESS", "1")
    with wb.WorkerBridge(workers=1, handlers=["wbtest_handlers"]) as bridge:
        assert bridge.mode == "inprocess"
        assert bridge.run("t", "add", {"a": 1, "b": 1}) == 2
    with pytest.raises(wb.BrokenPoolError):
        wb.WorkerBridge(workers=1, fallback="never")


def test_get_bridge_singleton() -> None:
    a = wb.get_bridge()
    assert a is wb.get_bridge()
    assert a.run("_wb", "echo", "x") == "x"
    a.close()
    b = wb.get_bridge()
    assert b is not a
    b.close()
