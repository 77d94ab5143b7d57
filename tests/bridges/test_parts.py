"""The parent side of the parallel file paths: the background flush, sync and on a loop."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from workerbridge import WorkerBridge
from workerbridge.bridges import _aead, _parts
from workerbridge.bridges._base import Operation, Tuning


def _flush_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "workerbridge-flush"]


def test_background_flush_flushes_while_the_body_runs_and_stops_after(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"")
    with _parts.BackgroundFlush(str(path), interval=0.001) as flush:
        assert _flush_threads()
        fd = os.open(path, os.O_WRONLY)
        try:
            for i in range(64):
                os.pwrite(fd, b"x" * 65536, i * 65536)
        finally:
            os.close(fd)
        flush._stop.wait(0.05)  # a few turns of the loop
    assert not _flush_threads()
    assert path.stat().st_size == 64 * 65536


def test_a_flush_error_fails_the_operation() -> None:
    # fdatasync on /dev/null is refused (EINVAL): a real error from the real call
    flush = _parts.BackgroundFlush(os.devnull, interval=0.001).__enter__()
    flush._thread.join(10)  # the thread ends at its first error
    assert not flush._thread.is_alive()
    with pytest.raises(OSError) as info:
        flush.__exit__(None, None, None)
    assert info.value.errno is not None
    assert not _flush_threads()


def test_the_bodys_own_error_wins_over_a_flush_error() -> None:
    flush = _parts.BackgroundFlush(os.devnull, interval=0.001).__enter__()
    flush._thread.join(10)
    body = KeyError("body")
    flush.__exit__(KeyError, body, None)  # returns: the body's error propagates on its own
    assert not _flush_threads()


def test_background_flush_needs_the_file() -> None:
    with pytest.raises(FileNotFoundError):
        _parts.BackgroundFlush("/nonexistent/dir/x.tmp")
    assert not _flush_threads()


def test_a_plan_on_an_event_loop_gets_no_background_flush(tmp_path: Path) -> None:
    path = tmp_path / "out.tmp"
    path.write_bytes(b"")
    with WorkerBridge(workers=1, fallback="always") as bridge:
        sync_op = Operation(bridge, "crypto", Tuning(), None, None, None, 0)
        with _parts.background_flush(sync_op, str(path)) as flush:
            assert isinstance(flush, _parts.BackgroundFlush)
            assert _flush_threads()
        loop = asyncio.new_event_loop()
        try:
            loop_op = Operation(bridge, "crypto", Tuning(), None, None, None, 0, loop)
            with _parts.background_flush(loop_op, str(path)) as nothing:
                assert nothing is None
                assert not _flush_threads()
        finally:
            loop.close()
    assert not _flush_threads()


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
