"""Shared memory segments: naming, permissions, attach, close/unlink, and cleanup."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
from collections.abc import Iterator

import pytest
from proc_helpers import spawn

from workerbridge import _shm
from workerbridge._shm import (
    PREFIX,
    Segment,
    list_segments,
    parse_name,
    sweep_orphans,
    unlink_by_name,
)

NAME_RE = re.compile(r"wb_(\d+)_([a-z0-9]+)_([0-9a-f]{16})")


def run(code: str, *args: str, returncode: int = 0) -> str:
    proc = spawn(code, *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == returncode, f"child exited {proc.returncode}:\n{err}"
    return out


@pytest.fixture
def segment() -> Iterator[Segment]:
    seg = Segment.create("test", 100)
    yield seg
    seg.unlink()
    with contextlib.suppress(BufferError):
        seg.close()


def shm_path(name: str) -> str:
    return os.path.join(_shm.SHM_DIR, name)


# -- create ---------------------------------------------------------------------------


def test_create_name_and_size(segment: Segment) -> None:
    match = NAME_RE.fullmatch(segment.name)
    assert match is not None, segment.name
    assert segment.name.startswith(PREFIX)
    assert int(match[1]) == os.getpid()
    assert match[2] == "test"
    assert parse_name(segment.name) == (os.getpid(), "test")
    assert segment.size == 100
    assert len(segment.buf) == 100
    assert segment.fd >= 0
    assert segment.created
    assert not segment.closed
    assert segment.name in list_segments()
    assert segment.name in list_segments("wb_")
    assert os.fstat(segment.fd).st_size == 100


def test_names_are_unique() -> None:
    segments = [Segment.create("test", 8) for _ in range(20)]
    assert len({s.name for s in segments}) == 20
    for seg in segments:
        seg.close()
        seg.unlink()


def test_permission_is_0600_whatever_the_umask() -> None:
    old = os.umask(0o277)  # would leave 0400 without the fchmod
    try:
        seg = Segment.create("test", 64)
    finally:
        os.umask(old)
    try:
        mode = os.stat(shm_path(seg.name)).st_mode
        assert stat.S_IMODE(mode) == 0o600
        assert os.stat(shm_path(seg.name)).st_uid == os.getuid()
    finally:
        seg.close()
        seg.unlink()


@pytest.mark.parametrize("kind", ["", "Test", "a_b", "a-b", "a/b", "x" * 33])
def test_create_rejects_bad_kind(kind: str) -> None:
    with pytest.raises(ValueError):
        Segment.create(kind, 64)


@pytest.mark.parametrize("size", [0, -1])
def test_create_rejects_bad_size(size: int) -> None:
    with pytest.raises(ValueError):
        Segment.create("test", size)
    with pytest.raises(TypeError):
        Segment.create("test", 1.5)  # type: ignore[arg-type]


def test_memory_is_zeroed_and_writable(segment: Segment) -> None:
    assert bytes(segment.buf) == bytes(100)
    segment.buf[10:15] = b"hello"
    assert bytes(segment.buf[10:15]) == b"hello"


# -- attach ---------------------------------------------------------------------------


def test_attach_in_same_process(segment: Segment) -> None:
    segment.buf[:3] = b"abc"
    with Segment.attach(segment.name) as other:
        assert other.name == segment.name
        assert other.size == segment.size
        assert not other.created
        assert bytes(other.buf[:3]) == b"abc"
        other.buf[3:4] = b"d"
    assert bytes(segment.buf[:4]) == b"abcd"
    assert segment.name in list_segments()  # closing an attachment does not unlink


def test_attach_with_leading_slash(segment: Segment) -> None:
    other = Segment.attach("/" + segment.name)
    assert other.name == segment.name
    other.close()


def test_attach_in_other_process(segment: Segment) -> None:
    segment.buf[:5] = b"hello"
    out = run(
        """
        import sys
        from workerbridge._shm import Segment
        seg = Segment.attach(sys.argv[1])
        print(bytes(seg.buf[:5]).decode(), seg.size)
        seg.buf[5:11] = b" world"
        seg.close()
        """,
        segment.name,
    )
    assert out.split() == ["hello", "100"]
    assert bytes(segment.buf[:11]) == b"hello world"
    assert segment.name in list_segments()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "foo",
        "wb_",
        "wb_123_test",
        "wb_123_test_0123456789abcde",  # 15 hex digits
        "wb_123_test_0123456789ABCDEF",  # upper case
        "wb_123_Test_0123456789abcdef",
        "wb_0_test_0123456789abcdef",
        "wb_12x_test_0123456789abcdef",
        "../wb_1_test_0123456789abcdef",
        "wb_1_test_0123456789abcdef/x",
        "psm_1234",
    ],
)
def test_attach_validates_name(name: str) -> None:
    with pytest.raises(ValueError):
        Segment.attach(name)


def test_attach_missing() -> None:
    with pytest.raises(FileNotFoundError):
        Segment.attach(f"wb_{os.getpid()}_test_0123456789abcdef")


def test_attach_after_unlink_fails_but_mapping_lives(segment: Segment) -> None:
    segment.buf[0] = 7
    segment.unlink()
    assert segment.name not in list_segments()
    with pytest.raises(FileNotFoundError):
        Segment.attach(segment.name)
    assert segment.buf[0] == 7  # the existing mapping is unaffected
    segment.buf[0] = 8


# -- close / unlink -------------------------------------------------------------------


def test_close_is_idempotent(segment: Segment) -> None:
    fd = segment.fd
    segment.close()
    assert segment.closed
    assert segment.fd == -1
    segment.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(ValueError):
        segment.buf[0]
    assert segment.name in list_segments()  # close does not unlink
    assert "closed" in repr(segment)


def test_unlink_is_idempotent(segment: Segment) -> None:
    segment.unlink()
    segment.unlink()
    assert segment.name not in list_segments()
    assert not segment.closed


def test_context_manager_closes_only(segment: Segment) -> None:
    with Segment.attach(segment.name) as other:
        pass
    assert other.closed
    assert segment.name in list_segments()


def test_close_refuses_while_buffer_exported(segment: Segment) -> None:
    view = segment.buf[10:20]  # a view on the same mapping
    with pytest.raises(BufferError):
        segment.close()
    assert not segment.closed
    segment.buf[10] = 1  # still fully usable
    assert view[0] == 1
    view.release()
    segment.close()
    assert segment.closed


def test_close_refuses_while_buf_itself_exported(segment: Segment) -> None:
    inner = memoryview(segment.buf)
    with pytest.raises(BufferError):
        segment.close()
    assert not segment.closed
    inner.release()
    segment.close()


def test_unlink_by_name(segment: Segment) -> None:
    assert unlink_by_name(segment.name) is True
    assert unlink_by_name(segment.name) is False
    assert unlink_by_name("/" + segment.name) is False
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError):
            unlink_by_name(bad)


def test_list_segments_prefix(segment: Segment) -> None:
    names = list_segments()
    assert names == sorted(names)
    assert all(n.startswith(PREFIX) for n in names)
    assert segment.name in list_segments(f"wb_{os.getpid()}_test_")
    assert segment.name not in list_segments("wb_x")


def test_garbage_collected_segment_closes_its_fd() -> None:
    seg = Segment.create("test", 64)
    fd = seg.fd
    name = seg.name
    del seg
    with pytest.raises(OSError):
        os.fstat(fd)
    unlink_by_name(name)


# -- cleanup --------------------------------------------------------------------------


def test_sweep_orphans_after_sigkill() -> None:
    proc = spawn(
        """
        import time
        from workerbridge._shm import Segment
        seg = Segment.create("test", 64)
        print(seg.name, flush=True)
        time.sleep(120)
        """
    )
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    assert parse_name(name) == (proc.pid, "test")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert name in list_segments()  # the killed process could not clean up
    removed = sweep_orphans()
    assert name in removed
    assert name not in list_segments()


def test_sweep_orphans_spares_live_processes(segment: Segment) -> None:
    proc = spawn(
        """
        import sys
        from workerbridge._shm import Segment
        seg = Segment.create("test", 64)
        print(seg.name, flush=True)
        sys.stdin.read()
        """
    )
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    removed = sweep_orphans()
    assert name not in removed
    assert segment.name not in removed
    assert name in list_segments()
    assert segment.name in list_segments()
    proc.communicate("", timeout=30)
    assert proc.returncode == 0
    assert name not in list_segments()  # unlinked at its exit


@pytest.mark.parametrize(
    ("ending", "returncode"),
    [("pass", 0), ("sys.exit(3)", 3), ("raise RuntimeError('boom')", 1)],
)
def test_exit_unlinks_created_segments(ending: str, returncode: int) -> None:
    out = run(
        f"""
        import sys
        from workerbridge._shm import Segment
        a = Segment.create("test", 64)
        b = Segment.create("test", 4096)
        b.close()          # closed but not unlinked: still removed at exit
        c = Segment.create("test", 64)
        c.unlink()         # already gone: no error at exit
        print(a.name, b.name, flush=True)
        {ending}
        """,
        returncode=returncode,
    )
    names = out.split()
    assert len(names) == 2
    current = list_segments()
    assert not [n for n in names if n in current]


def test_exit_does_not_unlink_attached_segments(segment: Segment) -> None:
    run(
        """
        import sys
        from workerbridge._shm import Segment
        seg = Segment.attach(sys.argv[1])
        """,
        segment.name,
    )
    assert segment.name in list_segments()


def test_forked_child_exit_leaves_parents_segments() -> None:
    out = run(
        """
        import os, sys
        from workerbridge._shm import Segment, list_segments
        seg = Segment.create("test", 64)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)    # a normal exit, running atexit handlers, in the child
        os.waitpid(pid, 0)
        print(seg.name in list_segments())
        """
    )
    assert out.strip() == "True"


def test_no_resource_tracker_noise(segment: Segment) -> None:
    proc = spawn(
        """
        import sys
        from workerbridge._shm import Segment
        seg = Segment.attach(sys.argv[1])
        seg.close()
        mine = Segment.create("test", 64)
        """,
        segment.name,
    )
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert err == ""
    assert segment.name in list_segments()
