"""``bridge.compression`` through both backends: round trips, the inline and worker paths,
parallel splitting read by the real ``zstd`` and ``gzip`` tools, progress, cancellation.

Interoperability of every codec is proven in ``test_codecs_engine.py``; here the
question is whether the bridge path (validation, splitting, assembly, errors)
keeps those guarantees.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import snappy
import zstandard

import workerbridge as wb
from workerbridge.bridges import _codecs, _frames
from workerbridge.bridges._base import Tuning, split_ranges

KIB = 1024
MIB = 1024 * KIB
CODECS = ("zstd", "snappy", "gzip", "zlib")

# Worker path for every size (nothing inline), and splitting from 64 KiB parts.
WORKER = Tuning(inline_max=-1)
SPLIT = Tuning(inline_max=-1, split_per_worker=64 * KIB, part_size=128 * KIB)


def text(size: int, seed: int) -> bytes:
    """Compressible bytes without long repeats (random letters)."""
    table = bytes(b"etaoinshrdlucmfw"[i % 16] for i in range(256))
    return random.Random(seed).randbytes(size).translate(table)


def reference_decompress(codec: str, blob: bytes) -> bytes:
    if codec == "zstd":  # every frame, as the zstd CLI reads them
        reader = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)
        return b"".join(iter(lambda: reader.read(MIB), b""))
    if codec == "gzip":
        return gzip.decompress(blob)
    if codec == "zlib":
        return zlib.decompress(blob)
    return bytes(snappy.decompress(blob))


def no_temp_files(directory: Path, expected: set[str], wait: float = 2.0) -> None:
    """The directory holds exactly ``expected`` (waiting briefly for a stopping worker)."""
    deadline = time.monotonic() + wait
    while True:
        names = set(os.listdir(directory))
        if names == expected or time.monotonic() > deadline:
            assert names == expected
            return
        time.sleep(0.02)


class Recorder:
    """An on_progress callback that records what it was given."""

    def __init__(self, then: Callable[[wb.Progress], object] | None = None) -> None:
        self.reports: list[wb.Progress] = []
        self.lock = threading.Lock()
        self.then = then

    def __call__(self, report: wb.Progress) -> None:
        with self.lock:
            self.reports.append(report)
        if self.then is not None:
            self.then(report)

    def check(self, total: int) -> None:
        currents = [r.current for r in self.reports]
        assert currents, "no progress was reported"
        assert currents == sorted(currents), "progress went backwards"
        assert self.reports[-1] == wb.Progress(total, total)
        assert all(r.total == total for r in self.reports)


# --------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("path", ["inline", "worker"])
def test_round_trip_matches_the_engine(bridge: wb.WorkerBridge, path: str) -> None:
    comp = bridge.compression
    if path == "worker":
        comp._tuning = WORKER
    data = text(5000, seed=1)
    for codec in CODECS:
        blob = comp.compress(data, codec)
        assert blob == _codecs.compress(data, codec)  # same bytes wherever it ran
        assert reference_decompress(codec, blob) == data
        assert comp.decompress(blob, codec) == data
        assert comp.decompress(bytearray(blob), codec, max_output_size=len(data)) == data


def test_levels_and_buffers(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    data = memoryview(text(100 * KIB, seed=2))  # above the inline limit
    assert comp.compress(data, "zstd", 19) == _codecs.compress(data, "zstd", 19)
    assert gzip.decompress(comp.compress(data, "gzip", 1)) == data
    assert comp.compress(b"", "zlib") == zlib.compress(b"", 6)


def test_bad_arguments_are_refused_before_sending(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    comp._tuning = WORKER
    before = bridge.stats().submitted
    with pytest.raises(wb.ValidationError, match="unknown codec"):
        comp.compress(b"abc", "lz4")
    with pytest.raises(wb.ValidationError, match="level"):
        comp.compress(b"abc", "gzip", 12)
    with pytest.raises(wb.ValidationError, match="bytes-like"):
        comp.compress("text", "zstd")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="max_output_size"):
        comp.decompress(b"abc", "zstd", max_output_size=-1)
    with pytest.raises(wb.ValidationError, match="timeout"):
        comp.compress(b"abc", timeout=0)
    with pytest.raises(wb.ValidationError, match="priority"):
        comp.compress(b"abc", priority="high")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="source path"):
        comp.compress_file(42, "out")  # type: ignore[arg-type]
    assert bridge.stats().submitted == before
    # Inline, the handler's engine refuses with the same error type.
    comp._tuning = Tuning()
    with pytest.raises(wb.ValidationError, match="unknown codec"):
        comp.compress(b"abc", "lz4")


def test_corrupt_input_and_bombs(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    for tuning in (Tuning(), WORKER):  # inline, then in a worker: the same errors
        comp._tuning = tuning
        blob = comp.compress(b"x" * 4000, "gzip")
        with pytest.raises(wb.IntegrityError, match="corrupt gzip data"):
            comp.decompress(blob[:-5], "gzip")
        with pytest.raises(wb.IntegrityError, match="corrupt zstd data"):
            comp.decompress(b"not zstd at all", "zstd")
        with pytest.raises(wb.ValidationError, match="max_output_size=1000"):
            comp.decompress(blob, "gzip", max_output_size=1000)


def test_small_input_with_large_output_goes_to_a_worker(bridge: wb.WorkerBridge) -> None:
    """A tiny input that expands past the inline cap is still decompressed whole."""
    data = b"\0" * (8 * MIB)
    blob = zstandard.ZstdCompressor().compress(data)
    assert len(blob) < 1024
    assert bridge.compression.decompress(blob) == data
    with pytest.raises(wb.ValidationError, match="max_output_size"):
        bridge.compression.decompress(blob, max_output_size=2 * MIB)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_parallel_split_is_one_stream_to_the_reference_tools(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    comp = bridge.compression
    comp._tuning = SPLIT
    data = text(1 * MIB + 123, seed=3)
    progress = Recorder()
    blob = comp.compress(data, codec, on_progress=progress)
    progress.check(len(data))
    ranges = split_ranges(len(data), bridge.workers, SPLIT)
    assert ranges is not None
    assert len(ranges) == 9
    # One frame or member per part, each the slice compressed alone.
    assert blob == b"".join(_codecs.compress_chunk(data[o : o + n], codec) for o, n in ranges)
    tool = shutil.which(codec)
    if tool is None:
        pytest.skip(f"the {codec} command is not installed")
    out = subprocess.run([tool, "-d", "-c"], input=blob, capture_output=True, check=True)
    assert out.stdout == data
    assert comp.decompress(blob, codec) == data


# --------------------------------------------------------------------------- files


def test_file_round_trip(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    comp = bridge.compression
    src = tmp_path / "src.txt"
    data = text(300 * KIB, seed=4)
    src.write_bytes(data)
    for codec in CODECS:
        packed = tmp_path / f"src.{codec}"
        comp.compress_file(src, packed, codec)
        back = tmp_path / f"back.{codec}"
        comp.decompress_file(str(packed), str(back), codec)
        assert back.read_bytes() == data
    assert len(os.listdir(tmp_path)) == 1 + 2 * len(CODECS)  # no temporary files


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_parallel_file_is_read_by_the_reference_tool(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    """A few-MiB file split into ranges: the tool reads the joined frames or members."""
    comp = bridge.compression
    comp._tuning = Tuning(split_per_worker=512 * KIB, part_size=1 * MIB)
    src = tmp_path / "src.bin"
    data = text(3 * MIB + 5, seed=5)
    src.write_bytes(data)
    dst = tmp_path / "out"
    dst.write_bytes(b"old contents")
    os.chmod(dst, 0o640)
    progress = Recorder()
    comp.compress_file(src, dst, codec, level=1, on_progress=progress)
    progress.check(len(data))
    assert set(os.listdir(tmp_path)) == {"src.bin", "out"}
    assert os.stat(dst).st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    blob = dst.read_bytes()
    assert blob.count(b"\x28\xb5\x2f\xfd" if codec == "zstd" else b"\x1f\x8b\x08") >= 4
    tool = shutil.which(codec)
    if tool is None:
        pytest.skip(f"the {codec} command is not installed")
    out = subprocess.run([tool, "-d", "-c", str(dst)], capture_output=True, check=True)
    assert out.stdout == data
    back = tmp_path / "back"
    comp.decompress_file(dst, back, codec)
    assert back.read_bytes() == data


def test_parallel_file_errors_leave_nothing(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    comp = bridge.compression
    comp._tuning = SPLIT
    src = tmp_path / "src"
    src.write_bytes(text(1 * MIB, seed=6))
    with pytest.raises(wb.ValidationError, match="does not exist"):
        comp.compress_file(src, tmp_path / "missing" / "out")
    with pytest.raises(wb.ValidationError, match="is a directory"):
        comp.compress_file(src, tmp_path)
    with pytest.raises(wb.ValidationError, match="source"):
        comp.compress_file(tmp_path / "nope", tmp_path / "out")
    assert os.listdir(tmp_path) == ["src"]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
@pytest.mark.parametrize("split", [True, False])
def test_cancel_or_timeout_mid_file_leaves_no_output(
    bridge: wb.WorkerBridge, tmp_path: Path, how: str, split: bool
) -> None:
    comp = bridge.compression
    if split:
        comp._tuning = Tuning(split_per_worker=1 * MIB, part_size=2 * MIB)
    src = tmp_path / "src"
    src.write_bytes(text(8 * MIB, seed=7))
    token = wb.CancellationToken()
    progress = Recorder(then=lambda p: token.cancel() if how == "cancel" else None)
    expected = wb.TaskCancelledError if how == "cancel" else wb.TaskTimeoutError
    started = time.monotonic()
    try:
        with pytest.raises(expected):
            comp.compress_file(
                src,
                tmp_path / "out.gz",
                "gzip",
                9,
                on_progress=progress,
                cancel=token if how == "cancel" else None,
                timeout=None if how == "cancel" else 0.05,
            )
    finally:
        token.close()
    assert time.monotonic() - started < 5
    no_temp_files(tmp_path, {"src"})


def test_snappy_files_use_the_framing_format(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = text(200 * KIB, seed=8)
    src.write_bytes(data)
    bridge.compression.compress_file(src, tmp_path / "out.sz", "snappy")
    out = io.BytesIO()
    snappy.stream_decompress(io.BytesIO((tmp_path / "out.sz").read_bytes()), out)
    assert out.getvalue() == data


# --------------------------------------------------------------------------- parallel decompression

# Inputs of 64 KiB and more are walked, outputs of 128 KiB and more split into runs of
# whole frames holding at least 128 KiB each.
PARALLEL = Tuning(inline_max=-1, split_per_worker=64 * KIB, part_size=128 * KIB)


def chunks_of(data: bytes, codec: str, size: int) -> bytes:
    """``data`` as independent frames or members of ``size`` bytes (as split compression makes)."""
    return b"".join(
        _codecs.compress_chunk(data[o : o + size], codec) for o in range(0, len(data), size)
    )


def submitted(bridge: wb.WorkerBridge) -> int:
    return bridge.stats().submitted


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_multi_frame_bytes_decompress_in_parallel(bridge: wb.WorkerBridge, codec: str) -> None:
    comp = bridge.compression
    comp._tuning = PARALLEL
    data = text(1 * MIB + 77, seed=20)
    blob = chunks_of(data, codec, 128 * KIB)
    before = submitted(bridge)
    progress = Recorder()
    assert comp.decompress(blob, codec, on_progress=progress) == data
    assert submitted(bridge) - before == 9  # one task per frame
    progress.check(len(blob))  # progress counts compressed bytes
    assert comp.decompress(memoryview(blob), codec, max_output_size=len(data)) == data
    assert _codecs.decompress(blob, codec) == data  # the serial engine agrees
    comp._tuning = WORKER
    before = submitted(bridge)
    assert comp.decompress(blob, codec) == data
    assert submitted(bridge) - before == 1


def test_other_producers_decode_serially(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    comp._tuning = PARALLEL
    data = text(700 * KIB, seed=21)
    one_frame = zstandard.ZstdCompressor(level=3).compress(data)
    members = gzip.compress(data[:300_000], mtime=0) + gzip.compress(data[300_000:], mtime=0)
    for blob, codec in ((one_frame, "zstd"), (members, "gzip")):
        before = submitted(bridge)
        assert comp.decompress(blob, codec) == data
        assert submitted(bridge) - before == 1


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
def test_zstd_cli_frames_decompress_in_parallel(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    """Frames the ``zstd`` tool wrote (one per file, concatenated) are split like ours."""
    comp = bridge.compression
    comp._tuning = PARALLEL
    pieces = [text(200 * KIB, seed=30 + i) for i in range(4)]
    frames = []
    for i, piece in enumerate(pieces):
        (tmp_path / f"p{i}").write_bytes(piece)
        run = subprocess.run(
            ["zstd", "-q", "-c", "-3", str(tmp_path / f"p{i}")], capture_output=True, check=True
        )
        frames.append(run.stdout)
    blob = b"".join(frames)
    before = submitted(bridge)
    assert comp.decompress(blob) == b"".join(pieces)
    assert submitted(bridge) - before == 4
    (tmp_path / "all.zst").write_bytes(blob)
    comp.decompress_file(tmp_path / "all.zst", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_parallel_output_is_read_by_the_reference_tools(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    comp = bridge.compression
    comp._tuning = SPLIT
    data = text(1 * MIB, seed=22)
    blob = comp.compress(data, codec)
    tool = shutil.which(codec)
    if tool is None:
        pytest.skip(f"the {codec} command is not installed")
    out = subprocess.run([tool, "-d", "-c"], input=blob, capture_output=True, check=True)
    assert out.stdout == data
    # and the tool's own output still decodes (serially when it is one frame or member)
    packed = subprocess.run([tool, "-c"], input=data, capture_output=True, check=True).stdout
    comp._tuning = PARALLEL
    assert comp.decompress(packed, codec) == data


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_max_output_size_counts_every_frame(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    comp = bridge.compression
    comp._tuning = PARALLEL
    data = text(1 * MIB, seed=23)
    blob = chunks_of(data, codec, 128 * KIB)
    src = tmp_path / "src"
    src.write_bytes(blob)
    before = submitted(bridge)
    with pytest.raises(wb.ValidationError, match=f"max_output_size={len(data) - 1}"):
        comp.decompress(blob, codec, max_output_size=len(data) - 1)
    assert submitted(bridge) == before  # refused from the frame headers, before any work
    with pytest.raises(wb.ValidationError, match=f"max_output_size={200 * KIB}"):
        comp.decompress_file(src, tmp_path / "out", codec, max_output_size=200 * KIB)
    assert submitted(bridge) == before + 1  # the walk of the file's frame headers only
    assert set(os.listdir(tmp_path)) == {"src"}
    assert comp.decompress(blob, codec, max_output_size=len(data)) == data
    comp.decompress_file(src, tmp_path / "out", codec, max_output_size=len(data))
    assert (tmp_path / "out").read_bytes() == data


def damage_middle_frame(blob: bytes, codec: str) -> bytes:
    """Flip bytes inside the compressed payload of the middle frame or member."""
    read = lambda offset, n: blob[offset : offset + n]  # noqa: E731
    if codec == "zstd":
        frames = _frames.zstd_frames(read, len(blob))
    else:
        found = _frames.gzip_members(read, len(blob))
        assert found is not None
        frames = found
    middle = frames[len(frames) // 2]
    at = middle.offset + middle.length // 2
    damaged = bytearray(blob)
    damaged[at : at + 8] = bytes(b ^ 0x5A for b in damaged[at : at + 8])
    return bytes(damaged)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_corrupt_middle_frame_is_a_typed_error_and_leaves_nothing(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    comp = bridge.compression
    comp._tuning = PARALLEL
    data = text(1 * MIB, seed=24)
    blob = damage_middle_frame(chunks_of(data, codec, 128 * KIB), codec)
    with pytest.raises(wb.IntegrityError, match=f"corrupt {codec} data"):
        comp.decompress(blob, codec)
    src = tmp_path / "src"
    src.write_bytes(blob)
    with pytest.raises(wb.IntegrityError, match=f"corrupt {codec} data"):
        comp.decompress_file(src, tmp_path / "out", codec)
    no_temp_files(tmp_path, {"src"})
    # An existing destination is left as it was.
    (tmp_path / "out").write_bytes(b"old")
    with pytest.raises(wb.IntegrityError):
        comp.decompress_file(src, tmp_path / "out", codec)
    assert (tmp_path / "out").read_bytes() == b"old"
    no_temp_files(tmp_path, {"src", "out"})
    # A truncated last frame is refused as well.
    src.write_bytes(chunks_of(data, codec, 128 * KIB)[:-3])
    with pytest.raises(wb.IntegrityError, match=f"corrupt {codec} data"):
        comp.decompress_file(src, tmp_path / "out", codec)
    no_temp_files(tmp_path, {"src", "out"})


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_multi_frame_files_decompress_in_parallel(
    bridge: wb.WorkerBridge, codec: str, tmp_path: Path
) -> None:
    comp = bridge.compression
    comp._tuning = PARALLEL
    data = text(2 * MIB + 5, seed=25)
    src = tmp_path / "src"
    src.write_bytes(chunks_of(data, codec, 128 * KIB))
    dst = tmp_path / "out"
    dst.write_bytes(b"old contents")
    os.chmod(dst, 0o640)
    before = submitted(bridge)
    progress = Recorder()
    comp.decompress_file(src, dst, codec, on_progress=progress)
    assert submitted(bridge) - before == 1 + 17 + 1  # walk, one task per frame, commit
    progress.check(src.stat().st_size)
    assert dst.read_bytes() == data
    assert os.stat(dst).st_mode & 0o777 == 0o640
    assert set(os.listdir(tmp_path)) == {"src", "out"}
    # Frames too large to read whole are streamed, with the same result.
    (tmp_path / "big").write_bytes(chunks_of(data, codec, 1 * MIB))
    comp._tuning = Tuning(inline_max=-1, split_per_worker=64 * KIB, part_size=64 * KIB)
    comp.decompress_file(tmp_path / "big", dst, codec)
    assert dst.read_bytes() == data


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_or_timeout_mid_parallel_decompress_leaves_no_output(
    bridge: wb.WorkerBridge, tmp_path: Path, how: str
) -> None:
    comp = bridge.compression
    comp._tuning = Tuning(split_per_worker=256 * KIB, part_size=256 * KIB)
    src = tmp_path / "src"
    src.write_bytes(chunks_of(text(6 * MIB, seed=26), "gzip", 256 * KIB))
    token = wb.CancellationToken()
    progress = Recorder(then=lambda p: token.cancel() if how == "cancel" else None)
    expected = wb.TaskCancelledError if how == "cancel" else wb.TaskTimeoutError
    try:
        with pytest.raises(expected):
            comp.decompress_file(
                src,
                tmp_path / "out",
                "gzip",
                on_progress=progress,
                cancel=token if how == "cancel" else None,
                timeout=None if how == "cancel" else 0.02,
            )
    finally:
        token.close()
    no_temp_files(tmp_path, {"src"})
