"""No temporary file outlives a failed file operation, even when its worker is killed.

A worker stuck in one long C call (zstd at level 19 on a 1 MiB chunk) does not
see its cancel flag; after the grace period it is killed, before its own
cleanup could run.  The caller removes the task's temporary file itself: its
name carries the request's tag (``.<name>.wb<pid>-<task id>.<random>.tmp``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import workerbridge as wb
from workerbridge._execute import tmp_tag
from workerbridge.bridges._files import atomic_writer, remove_tmp_files_of


def _text(size: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += words[(i * 7 + i // 3) % len(words)] + b" %d\n" % (i % 9973)
        i += 1
    return bytes(out[:size])


def test_killed_worker_leaves_no_temporary_file(tmp_path: Path) -> None:
    src = tmp_path / "big.txt"
    src.write_bytes(_text(8 << 20))
    with wb.WorkerBridge(workers=1, fallback="never") as bridge:
        bridge.run("_wb", "noop", timeout=60)
        with pytest.raises(wb.TaskTimeoutError):
            bridge.compression.compress_file(src, tmp_path / "big.zst", level=19, timeout=0.3)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
        deadline = time.monotonic() + 30
        while bridge.stats().restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_tmp_names_carry_the_tag_and_only_that_tag_is_removed(tmp_path: Path) -> None:
    from workerbridge._execute import TMP_TAG

    dst = tmp_path / "out.bin"
    token = TMP_TAG.set(tmp_tag(7, 1234))
    try:
        with atomic_writer(dst) as fh:
            name = os.path.basename(fh.name)
            assert name.startswith(".out.bin.wb1234-7.") and name.endswith(".tmp")
            other = tmp_path / ".out.bin.wb1234-70.x.tmp"  # another task's: kept
            other.write_bytes(b"")
            assert remove_tmp_files_of(str(dst), tmp_tag(7, 1234)) == 1
            assert not os.path.exists(fh.name) and other.exists()
            fh.write(b"x")
    except FileNotFoundError:
        pass  # the rename found its temporary file gone: nothing was written
    finally:
        TMP_TAG.reset(token)
    assert not dst.exists()
