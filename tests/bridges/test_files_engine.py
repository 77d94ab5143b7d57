"""Tests of the file engine (workerbridge.bridges._files): atomicity, hashing, copies, ranges."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from workerbridge._errors import IntegrityError, TaskCancelledError, ValidationError
from workerbridge.bridges import _files

MiB = 1 << 20
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class RecordingCtx:
    """A WorkContext that records reports and turns cancelled after ``cancel_after`` of them."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.reports: list[tuple[int, int | None]] = []
        self.cancel_after = cancel_after

    @property
    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.reports) >= self.cancel_after

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise TaskCancelledError("cancelled")

    def report(self, current: int, total: int | None = None) -> None:
        self.reports.append((current, total))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(hashlib.shake_256(b"seed").digest(3 * MiB + 777))
    return path


# --------------------------------------------------------------------------- atomic_writer
def test_atomic_writer_commits_with_umask_mode(tmp_path: Path) -> None:
    dst = tmp_path / "new.txt"
    old = os.umask(0o027)
    try:
        with _files.atomic_writer(dst) as fh:
            fh.write(b"hello")
            temp = Path(fh.name)
            assert temp.parent == tmp_path
            assert temp.name.startswith(".new.txt.")
            assert temp.name.endswith(".tmp")
            assert not dst.exists()
    finally:
        os.umask(old)
    assert dst.read_bytes() == b"hello"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    assert names(tmp_path) == ["new.txt"]


def test_atomic_writer_keeps_existing_mode(tmp_path: Path) -> None:
    dst = tmp_path / "script.sh"
    dst.write_bytes(b"old")
    dst.chmod(0o751)
    with _files.atomic_writer(dst) as fh:
        fh.write(b"new")
    assert dst.read_bytes() == b"new"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o751


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, TaskCancelledError])
def test_atomic_writer_cleans_up_on_any_exception(
    tmp_path: Path, exc_type: type[BaseException]
) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"old content")

    def write_then_fail() -> None:
        with _files.atomic_writer(dst) as fh:
            fh.write(b"partial")
            raise exc_type("boom")

    with pytest.raises(exc_type):
        write_then_fail()
    assert dst.read_bytes() == b"old content"
    assert names(tmp_path) == ["dst"]


def test_atomic_writer_disk_errors_propagate_as_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output") as info:
        _files.write_file(tmp_path / "dst", b"data")
    assert not isinstance(info.value, ValidationError)
    assert names(tmp_path) == []


def test_atomic_writer_path_problems(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        _files.write_file(tmp_path / "missing" / "dst", b"x")
    with pytest.raises(ValidationError, match="is a directory"):
        _files.write_file(tmp_path, b"x")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValidationError, match=r"(?i)not a directory"):
        _files.write_file(tmp_path / "file" / "dst", b"x")
    with pytest.raises(ValidationError, match="path must be"):
        _files.write_file(123, b"x")  # type: ignore[arg-type]


@pytest.mark.skipif(IS_ROOT, reason="root ignores permission bits")
def test_permission_denied_is_a_validation_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValidationError, match="ermission"):
            _files.write_file(locked / "dst", b"x")
    finally:
        locked.chmod(0o700)
    unreadable = tmp_path / "secret"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    with pytest.raises(ValidationError, match="ermission"):
        _files.hash_file(unreadable)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), ValidationError),
        (OSError(errno.ENAMETOOLONG, "File name too long"), ValidationError),
        (OSError(errno.EIO, "Input/output error"), OSError),
    ],
)
def test_open_errors_follow_the_path_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, expected: type[Exception]
) -> None:
    """Argument problems become ValidationError; environmental failures stay OSError."""
    path = tmp_path / "file"
    path.write_bytes(b"x")

    def failing_open(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(_files, "_open_fd", failing_open)
    with pytest.raises(expected) as info:
        _files.hash_file(path)
    if expected is ValidationError:
        assert str(path) in str(info.value)
        assert info.value.__cause__ is error
    else:
        assert info.value is error


# --------------------------------------------------------------------------- hash_file
@pytest.mark.parametrize(
    ("algorithm", "tool"), [("sha256", "sha256sum"), ("sha512", "sha512sum"), ("blake2b", "b2sum")]
)
def test_hash_file_matches_coreutils(big: Path, algorithm: str, tool: str) -> None:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not installed")
    expected = subprocess.run([exe, str(big)], capture_output=True, text=True, check=True)
    ctx = RecordingCtx()
    assert _files.hash_file(big, algorithm, ctx=ctx) == expected.stdout.split()[0]
    size = big.stat().st_size
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (size, size)


def test_hash_file_all_algorithms_and_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ctx = RecordingCtx()
    assert _files.hash_file(empty, ctx=ctx) == hashlib.sha256(b"").hexdigest()
    assert ctx.reports == [(0, 0)]
    for name in _files.HASH_ALGORITHMS:
        assert _files.hash_file(empty, name) == hashlib.new(name).hexdigest()
    with pytest.raises(ValidationError, match="md5"):
        _files.hash_file(empty, "md5")


def test_hash_file_path_problems(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="No such file"):
        _files.hash_file(tmp_path / "missing")
    with pytest.raises(ValidationError, match="directory"):
        _files.hash_file(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    # no writer holds the FIFO open: a plain open() for reading would wait for one forever
    with pytest.raises(ValidationError, match="not a regular file"):
        _files.hash_file(tmp_path / "fifo")


def test_hash_file_cancellation(big: Path) -> None:
    with pytest.raises(TaskCancelledError):
        _files.hash_file(big, ctx=RecordingCtx(cancel_after=1))


class AppendingCtx(RecordingCtx):
    """Appends to ``path`` at the first report: the source changes mid-operation."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def report(self, current: int, total: int | None = None) -> None:
        super().report(current, total)
        if len(self.reports) == 1:
            with self.path.open("ab") as fh:
                fh.write(b"more")


def test_source_changed_during_hash_or_copy(tmp_path: Path, big: Path) -> None:
    with pytest.raises(IntegrityError, match="changed while it was being read"):
        _files.hash_file(big, ctx=AppendingCtx(big))
    with pytest.raises(IntegrityError, match="changed"):
        _files.copy_file(big, tmp_path / "copy", ctx=AppendingCtx(big))
    assert not (tmp_path / "copy").exists()
    assert names(tmp_path) == ["big.bin"]


def test_source_replaced_during_hash(tmp_path: Path, big: Path) -> None:
    class ReplacingCtx(RecordingCtx):
        def report(self, current: int, total: int | None = None) -> None:
            super().report(current, total)
            if len(self.reports) == 1:
                other = tmp_path / "other"
                shutil.copyfile(big, other)
                os.replace(other, big)

    with pytest.raises(IntegrityError):
        _files.hash_file(big, ctx=ReplacingCtx())


# --------------------------------------------------------------------------- copy_file
def test_copy_file_keeps_content_mode_and_mtime(tmp_path: Path, big: Path) -> None:
    big.chmod(0o640)
    os.utime(big, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    dst = tmp_path / "copy.bin"
    dst.write_bytes(b"previous")
    ctx = RecordingCtx()
    assert _files.copy_file(big, dst, ctx=ctx) == big.stat().st_size
    assert dst.read_bytes() == big.read_bytes()
    assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    assert dst.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert ctx.reports[-1] == (big.stat().st_size, big.stat().st_size)
    assert names(tmp_path) == ["big.bin", "copy.bin"]


def test_copy_file_onto_itself(big: Path) -> None:
    data = big.read_bytes()
    _files.copy_file(big, big)
    assert big.read_bytes() == data


def test_copy_file_verification_failure_writes_nothing(
    tmp_path: Path, big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pread = os.pread

    def corrupting_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        return (b"\x00" + data[1:]) if offset == 0 and data else data

    monkeypatch.setattr(os, "pread", corrupting_pread)
    with pytest.raises(IntegrityError, match="read back differently"):
        _files.copy_file(big, tmp_path / "copy")
    assert names(tmp_path) == ["big.bin"]


def test_copy_file_cancellation_and_paths(tmp_path: Path, big: Path) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"old")
    with pytest.raises(TaskCancelledError):
        _files.copy_file(big, dst, ctx=RecordingCtx(cancel_after=2))
    assert dst.read_bytes() == b"old"
    assert names(tmp_path) == ["big.bin", "dst"]
    with pytest.raises(ValidationError, match="source"):
        _files.copy_file(tmp_path / "nope", dst)
    with pytest.raises(ValidationError, match="destination"):
        _files.copy_file(big, tmp_path)


# --------------------------------------------------------------------------- read_range / write
def test_read_range(tmp_path: Path) -> None:
    path = tmp_path / "data"
    data = bytes(range(256)) * 10_000
    path.write_bytes(data)
    assert _files.read_range(path) == data
    assert _files.read_range(path, 10, 20) == data[10:30]
    assert _files.read_range(path, len(data) - 5, 100) == data[-5:]
    assert _files.read_range(path, len(data) + 100) == b""
    assert _files.read_range(path, 0, 0) == b""
    ctx = RecordingCtx()
    assert _files.read_range(path, 3, 2 * MiB, ctx=ctx) == data[3 : 3 + 2 * MiB]
    assert ctx.reports[-1] == (2 * MiB, 2 * MiB)
    for offset, length in ((-1, None), (0, -1), (True, None), (0, 1.5), ("0", None)):
        with pytest.raises(ValidationError):
            _files.read_range(path, offset, length)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        _files.read_range(tmp_path / "missing")


def test_write_file(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    assert _files.write_file(dst, b"abc") == 3
    assert _files.write_file(dst, bytearray(b"defg")) == 4
    assert dst.read_bytes() == b"defg"
    big = memoryview(bytes(3 * MiB + 1))
    assert _files.write_file(dst, big) == len(big)
    assert dst.stat().st_size == len(big)
    with pytest.raises(ValidationError, match="not str"):
        _files.write_file(dst, "text")
    with pytest.raises(TaskCancelledError):
        _files.write_file(dst, b"new", ctx=RecordingCtx(cancel_after=0))
    assert dst.stat().st_size == len(big)
    assert names(tmp_path) == ["out"]


def test_assemble_file_failing_generator_leaves_nothing(tmp_path: Path) -> None:
    def parts() -> Iterator[bytes]:
        yield b"first"
        raise IntegrityError("a worker failed")

    with pytest.raises(IntegrityError, match="worker failed"):
        _files.assemble_file(tmp_path / "dst", parts())
    assert names(tmp_path) == []
    ctx = RecordingCtx()
    assert _files.assemble_file(tmp_path / "dst", [b"a", bytearray(b"bc")], ctx=ctx) == 3
    assert (tmp_path / "dst").read_bytes() == b"abc"
    assert ctx.reports == [(1, None), (3, None)]


def test_fifo_source_is_refused_through_the_bridge(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once, in a worker too (no wait for a writer)."""
    import workerbridge as wb

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with wb.WorkerBridge(workers=1, fallback="never") as bridge:
        with pytest.raises(ValidationError, match="not a regular file"):
            bridge.file.hash(fifo, timeout=20)
        with pytest.raises(ValidationError, match="not a regular file"):
            bridge.compression.compress_file(fifo, tmp_path / "out.zst", timeout=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]
