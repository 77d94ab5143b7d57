"""The parent side of the parallel file paths: the background flush and its sub-plan."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from pathlib import Path

import pytest

from workerbridge import RemoteError, WorkerBridge
from workerbridge.bridges import _aead, _parts
from workerbridge.bridges._base import Operation, Plan, Tuning, drive_async


def _flush_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "workerbridge-flush"]


def test_background_flush_flushes_until_stopped_then_ends(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"")
    flush = _parts.BackgroundFlush(str(path), interval=0.001)
    flush.start()
    assert _flush_threads()
    fd = os.open(path, os.O_WRONLY)
    try:
        for i in range(64):
            os.pwrite(fd, b"x" * 65536, i * 65536)
    finally:
        os.close(fd)
    stopped = flush.stop()
    assert stopped.result(timeout=10) is None
    flush._thread.join(10)
    assert not _flush_threads()
    assert path.stat().st_size == 64 * 65536


def test_a_flush_error_is_set_on_the_stopped_future() -> None:
    # fdatasync on /dev/null is refused (EINVAL): a real error from the real call
    flush = _parts.BackgroundFlush(os.devnull, interval=0.001)
    flush.start()
    with pytest.raises(OSError) as info:
        flush.stopped.result(timeout=10)  # the thread ends at its first error, on its own
    assert info.value.errno is not None
    assert flush.stop() is flush.stopped


def test_background_flush_needs_the_file() -> None:
    with pytest.raises(FileNotFoundError):
        _parts.BackgroundFlush("/nonexistent/dir/x.tmp")
    assert not _flush_threads()


def _work(steps: int, fail: bool = False) -> Plan[str]:
    for _ in range(steps):
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        yield (done,)
    if fail:
        raise KeyError("work")
    return "result"


def _run(plan: Plan[str]) -> tuple[str, int]:
    """Drive a plan as the bridges' driver does; return its result and its number of steps."""
    steps = 0
    try:
        step = next(plan)
        while True:
            steps += 1
            concurrent.futures.wait(step, return_when=concurrent.futures.FIRST_COMPLETED)
            step = plan.send(None)
    except StopIteration as stop:
        return stop.value, steps


def _joined_flush_threads() -> list[threading.Thread]:
    for thread in _flush_threads():
        thread.join(10)
    return _flush_threads()


def test_flushed_waits_for_the_flush_to_stop_as_a_step(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"data")
    result, steps = _run(_parts.flushed(None, str(path), _work(3)))  # type: ignore[arg-type]
    assert result == "result"
    assert steps == 4  # the work's three, then the wait for the flush to stop
    assert not _joined_flush_threads()


def _slow_work(seconds: float) -> Plan[str]:
    later: concurrent.futures.Future[None] = concurrent.futures.Future()
    threading.Timer(seconds, later.set_result, (None,)).start()
    yield (later,)
    return "result"


def test_flushed_raises_the_flush_error_after_the_work() -> None:
    # the flush fails within its first millisecond; the work takes 200 ms
    with WorkerBridge(workers=1, fallback="always") as bridge:
        op = Operation(bridge, "crypto", Tuning(), None, None, None, 0)
        plan = _parts.flushed(op, os.devnull, _slow_work(0.2), interval=0.001)
        with pytest.raises(RemoteError, match="Invalid argument") as info:
            _run(plan)
    assert info.value.remote_type == "OSError"
    assert not _joined_flush_threads()


def test_flushed_lets_the_works_error_through_and_stops_the_flush(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"")
    with pytest.raises(KeyError):
        _run(_parts.flushed(None, str(path), _work(2, fail=True)))  # type: ignore[arg-type]
    assert not _joined_flush_threads()


def test_flushed_on_an_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"")

    async def main() -> str:
        with WorkerBridge(workers=1, fallback="always") as bridge:
            loop = asyncio.get_running_loop()
            op = Operation(bridge, "crypto", Tuning(), None, None, None, 0, loop)
            return await drive_async(op, _parts.flushed(op, str(path), _work(2)))

    assert asyncio.run(main()) == "result"
    assert not _joined_flush_threads()


def test_a_parallel_encryption_leaves_no_flush_thread(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "plain").write_bytes(data)
    key = os.urandom(32)
    with WorkerBridge(workers=2) as bridge:
        bridge.crypto._tuning = Tuning(split_per_worker=1 << 20, part_size=1 << 20)
        bridge.crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", key)
        assert not _flush_threads()
        bridge.crypto.decrypt_file(tmp_path / "sealed", tmp_path / "opened", key)
        assert not _flush_threads()
    assert (tmp_path / "opened").read_bytes() == data
    _aead.decrypt_file(tmp_path / "sealed", tmp_path / "engine", key)
    assert (tmp_path / "engine").read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["engine", "opened", "plain", "sealed"]
