"""Relative paths mean the caller's working directory, also after a chdir.

Workers keep the directory they started in; the parent resolves every path
before a task is sent, so a file method behaves the same in a worker as in the
caller's thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import workerbridge as wb


def test_relative_paths_follow_the_callers_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    with wb.WorkerBridge(workers=1, fallback="never") as bridge:
        bridge.run("_wb", "noop", timeout=60)  # the worker starts in `first`
        monkeypatch.chdir(second)
        data = os.urandom(300_000)  # large enough to be sent to a worker
        bridge.file.write("out.bin", data, timeout=60)
        assert (second / "out.bin").read_bytes() == data
        assert not (first / "out.bin").exists()
        assert bridge.file.hash("out.bin", timeout=60) == hashlib.sha256(data).hexdigest()
        bridge.compression.compress_file("out.bin", "out.bin.zst", timeout=60)
        bridge.compression.decompress_file("out.bin.zst", "back.bin", timeout=60)
        assert (second / "back.bin").read_bytes() == data
        assert sorted(p.name for p in first.iterdir()) == []
