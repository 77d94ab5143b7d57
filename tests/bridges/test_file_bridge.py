"""``bridge.file`` through both backends: hashing equal to the reference tools, verified
atomic copies and writes, ranged reads, typed errors naming the path, cancellation.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import workerbridge as wb
from workerbridge.bridges._base import Tuning

KIB = 1024
MIB = 1024 * KIB
WORKER = Tuning(inline_max=-1)


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("path", ["inline", "worker"])
def test_hash_matches_sha256sum(bridge: wb.WorkerBridge, tmp_path: Path, path: str) -> None:
    files = bridge.file
    if path == "worker":
        files._tuning = WORKER
    for size in (0, 1000, 3 * MIB + 1):
        target = tmp_path / f"f{size}"
        data = blob(size, size)
        target.write_bytes(data)
        progress: list[wb.Progress] = []
        digest = files.hash(target, on_progress=progress.append)
        assert digest == hashlib.sha256(data).hexdigest()
        assert progress[-1] == wb.Progress(size, size)
        assert files.hash(str(target), "blake2b") == hashlib.blake2b(data).hexdigest()
    tool = shutil.which("sha256sum")
    if tool is not None:
        out = subprocess.run([tool, str(target)], capture_output=True, text=True, check=True)
        assert out.stdout.split()[0] == files.hash(target)


def test_read_ranges(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    data = blob(200 * KIB, 1)
    target = tmp_path / "data"
    target.write_bytes(data)
    files = bridge.file
    assert files.read(target) == data
    assert files.read(target, 10, 100) == data[10:110]  # small: read in this thread
    assert files.read(target, 1000, 150 * KIB) == data[1000 : 1000 + 150 * KIB]  # in a worker
    assert files.read(target, len(data) - 5, 100) == data[-5:]
    assert files.read(target, len(data) + 10) == b""
    with pytest.raises(wb.ValidationError, match="offset"):
        files.read(target, -1)
    with pytest.raises(wb.ValidationError, match="length"):
        files.read(target, 0, -2)


def test_write_and_copy_are_atomic_and_verified(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    files = bridge.file
    target = tmp_path / "out"
    data = blob(2 * MIB, 2)
    files.write(target, data)
    assert target.read_bytes() == data
    files.write(target, memoryview(b"short"))
    assert target.read_bytes() == b"short"
    os.chmod(target, 0o600)
    past = time.time() - 3600
    os.utime(target, (past, past))
    copy = tmp_path / "copy"
    files.copy(target, copy)
    assert copy.read_bytes() == b"short"
    assert os.stat(copy).st_mode & 0o777 == 0o600
    assert abs(os.stat(copy).st_mtime - past) < 1
    assert sorted(os.listdir(tmp_path)) == ["copy", "out"]


def test_errors_name_the_path(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    files = bridge.file
    missing = tmp_path / "missing"
    for call in (
        lambda: files.hash(missing),
        lambda: files.read(missing),
        lambda: files.copy(missing, tmp_path / "x"),
    ):
        with pytest.raises(wb.ValidationError, match="missing"):
            call()
    with pytest.raises(wb.ValidationError, match="directory"):
        files.hash(tmp_path)
    with pytest.raises(wb.ValidationError, match="does not exist"):
        files.write(tmp_path / "nodir" / "out", b"x")
    with pytest.raises(wb.ValidationError, match="bytes-like"):
        files.write(tmp_path / "out", "text")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="path"):
        files.hash(b"/etc/passwd")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="unknown hash"):
        files.hash(missing, "md5")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_copy_stopped_mid_file_leaves_no_output(
    bridge: wb.WorkerBridge, tmp_path: Path, how: str
) -> None:
    src = tmp_path / "src"
    src.write_bytes(blob(64 * MIB, 3))
    token = wb.CancellationToken()
    expected = wb.TaskCancelledError if how == "cancel" else wb.TaskTimeoutError
    try:
        with pytest.raises(expected):
            bridge.file.copy(
                src,
                tmp_path / "dst",
                on_progress=(lambda p: token.cancel()) if how == "cancel" else None,
                cancel=token,
                timeout=0.05 if how == "timeout" else None,
            )
    finally:
        token.close()
    deadline = time.monotonic() + 2
    while len(os.listdir(tmp_path)) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # the worker removes its temporary file as it stops
    assert os.listdir(tmp_path) == ["src"]


def test_closed_bridge_refuses_even_inline_work(make_bridge: object, tmp_path: Path) -> None:
    bridge: wb.WorkerBridge = make_bridge()  # type: ignore[operator]
    target = tmp_path / "f"
    target.write_bytes(b"abc")
    files = bridge.file
    bridge.close()
    with pytest.raises(wb.PoolClosedError):
        files.hash(target)
    with pytest.raises(wb.PoolClosedError):
        bridge.crypto.hash(b"abc")
