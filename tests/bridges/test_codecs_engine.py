"""Tests of the compression engine (workerbridge.bridges._codecs) against the real tools."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest
import snappy
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from workerbridge._errors import IntegrityError, TaskCancelledError, ValidationError
from workerbridge._types import WorkContext
from workerbridge.bridges import _codecs

ZSTD = shutil.which("zstd") or "zstd"
GZIP = shutil.which("gzip") or "gzip"
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd CLI not installed")
needs_gzip = pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip CLI not installed")

MiB = 1 << 20


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


def sample(size: int, seed: int = 0) -> bytes:
    """Partly compressible data: random runs mixed with text."""
    rnd = __import__("random").Random(seed)
    text = b"the quick brown fox jumps over the lazy dog %d\n"
    out = bytearray()
    while len(out) < size:
        if rnd.random() < 0.3:
            out += rnd.randbytes(rnd.randint(1, 4096))
        else:
            out += text % rnd.randint(0, 10**6)
    return bytes(out[:size])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "input.bin"
    path.write_bytes(sample(3 * MiB + 12345))
    return path


# --------------------------------------------------------------------------- bytes
def test_recording_ctx_is_a_work_context() -> None:
    assert isinstance(RecordingCtx(), WorkContext)


@pytest.mark.parametrize("codec", _codecs.CODECS)
@pytest.mark.parametrize("size", [0, 1, 1000, 2 * MiB + 7])
def test_bytes_roundtrip(codec: str, size: int) -> None:
    data = sample(size, seed=size)
    packed = _codecs.compress(data, codec)
    assert _codecs.decompress(packed, codec) == data
    assert _codecs.decompress(bytearray(packed), codec) == data
    assert _codecs.compress(memoryview(bytearray(data)), codec) == packed


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), codec=st.sampled_from(_codecs.CODECS))
def test_bytes_roundtrip_property(data: bytes, codec: str) -> None:
    assert _codecs.decompress(_codecs.compress(data, codec), codec) == data


def test_bytes_formats_match_reference_libraries() -> None:
    data = sample(300_000)
    assert gzip.decompress(_codecs.compress(data, "gzip")) == data
    assert zlib.decompress(_codecs.compress(data, "zlib")) == data
    assert snappy.decompress(_codecs.compress(data, "snappy")) == data
    frame = _codecs.compress(data, "zstd")
    assert zstandard.frame_content_size(frame) == len(data)
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    # and the other direction
    assert _codecs.decompress(gzip.compress(data), "gzip") == data
    assert _codecs.decompress(zlib.compress(data, 9), "zlib") == data
    assert _codecs.decompress(snappy.compress(data), "snappy") == data
    assert _codecs.decompress(zstandard.ZstdCompressor(level=19).compress(data), "zstd") == data


def test_zstd_frames_without_content_size() -> None:
    data = sample(700_000)
    sink = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(sink, closefd=False) as writer:
        writer.write(data)
    frame = sink.getvalue()
    assert zstandard.frame_content_size(frame) == -1
    assert _codecs.decompress(frame + frame, "zstd") == data + data
    with pytest.raises(ValidationError, match="max_output_size=1000"):
        _codecs.decompress(frame, "zstd", max_output_size=1000)


@needs_zstd
def test_zstd_cli_interop_bytes() -> None:
    data = sample(500_000)
    out = subprocess.run(
        [ZSTD, "-d", "-c", "-q"],
        input=_codecs.compress(data, "zstd", 5),
        capture_output=True,
        check=True,
    ).stdout
    assert out == data
    packed = subprocess.run(
        [ZSTD, "-c", "-q", "-9"], input=data, capture_output=True, check=True
    ).stdout
    assert _codecs.decompress(packed, "zstd") == data


@needs_gzip
def test_gzip_cli_interop_bytes() -> None:
    data = sample(500_000)
    out = subprocess.run(
        [GZIP, "-d", "-c"], input=_codecs.compress(data, "gzip", 9), capture_output=True, check=True
    ).stdout
    assert out == data
    packed = subprocess.run([GZIP, "-c", "-1"], input=data, capture_output=True, check=True).stdout
    assert _codecs.decompress(packed, "gzip") == data


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_multi_frame_chunks_decode_as_one_stream(codec: str) -> None:
    pieces = [sample(n, seed=n) for n in (100_000, 0, 77_777, 1)]
    joined = b"".join(_codecs.compress_chunk(p, codec) for p in pieces)
    expected = b"".join(pieces)
    assert _codecs.decompress(joined, codec) == expected
    tool = {"zstd": ZSTD, "gzip": GZIP}[codec]
    if shutil.which(tool):
        out = subprocess.run([tool, "-d", "-c"], input=joined, capture_output=True, check=True)
        assert out.stdout == expected
    if codec == "gzip":
        assert gzip.decompress(joined) == expected


def test_splittable_and_compress_chunk_rules() -> None:
    assert _codecs.splittable("zstd")
    assert _codecs.splittable("gzip")
    assert not _codecs.splittable("zlib")
    assert not _codecs.splittable("snappy")
    for codec in ("zlib", "snappy"):
        with pytest.raises(ValidationError, match="not splittable"):
            _codecs.compress_chunk(b"x", codec)


def test_unknown_codec_names_the_allowed_ones() -> None:
    for call in (
        lambda: _codecs.compress(b"x", "lz4"),
        lambda: _codecs.decompress(b"x", "brotli"),
        lambda: _codecs.splittable("bz2"),
    ):
        with pytest.raises(ValidationError, match="zstd, snappy, gzip, zlib"):
            call()


@pytest.mark.parametrize(
    ("codec", "level"),
    [
        ("zstd", 0),
        ("zstd", 23),
        ("zstd", -(1 << 17) - 1),
        ("zstd", True),
        ("zstd", 3.0),
        ("gzip", 10),
        ("gzip", -1),
        ("zlib", 10),
        ("snappy", 1),
    ],
)
def test_bad_levels(codec: str, level: object) -> None:
    with pytest.raises(ValidationError):
        _codecs.compress(b"data", codec, level)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("codec", "level"),
    [("zstd", 1), ("zstd", 22), ("zstd", -5), ("gzip", 0), ("zlib", 9), ("snappy", None)],
)
def test_good_levels(codec: str, level: int | None) -> None:
    data = sample(50_000)
    assert _codecs.decompress(_codecs.compress(data, codec, level), codec) == data


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(ValidationError, match="not str"):
        _codecs.compress("text", "zstd")
    with pytest.raises(ValidationError, match="bytes-like"):
        _codecs.decompress(12, "gzip")
    with pytest.raises(ValidationError, match="max_output_size"):
        _codecs.decompress(b"", "zstd", max_output_size=-1)


def _corruptions(codec: str) -> list[bytes]:
    good = _codecs.compress(sample(200_000), codec)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    cases = [b"", good[:-1], good[: len(good) // 2], good[:3], good + b"garbage!"]
    if codec != "snappy":  # a raw snappy block carries no checksum
        cases.append(bytes(flipped))
    return cases


@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_corrupt_bytes_raise_integrity_error(codec: str) -> None:
    for bad in _corruptions(codec):
        with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
            _codecs.decompress(bad, codec)


def test_snappy_preamble_larger_than_possible_is_refused_without_allocating() -> None:
    # varint preamble claiming 4 GiB, then two bytes
    bogus = bytes([0x80, 0x80, 0x80, 0x80, 0x10]) + b"\x00\x00"
    with pytest.raises(IntegrityError, match="corrupt snappy data"):
        _codecs.decompress(bogus, "snappy")


def test_zstd_skippable_frames_are_ignored(tmp_path: Path) -> None:
    data = sample(100_000)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"meta!"
    stream = skippable + _codecs.compress(data, "zstd") + skippable
    assert _codecs.decompress(stream, "zstd") == data
    (tmp_path / "s.zst").write_bytes(stream)
    _codecs.decompress_file(tmp_path / "s.zst", tmp_path / "out", "zstd")
    assert (tmp_path / "out").read_bytes() == data
    with pytest.raises(IntegrityError, match="corrupt zstd data"):
        _codecs.decompress(skippable[:-1], "zstd")


def test_snappy_framing_details(tmp_path: Path) -> None:
    data = sample(200_000)
    framed = snappy.StreamCompressor().compress(data)
    ident, body = framed[:10], framed[10:]
    padding = b"\xfe\x03\x00\x00abc"
    random_block = os.urandom(1000)  # incompressible: python-snappy stores it uncompressed
    raw_chunk = snappy.StreamCompressor().compress(random_block)[10:]
    assert raw_chunk[0] == 0x01
    good = ident + padding + body + ident + raw_chunk
    src, dst = tmp_path / "in.sz", tmp_path / "out"
    src.write_bytes(good)
    _codecs.decompress_file(src, dst, "snappy")
    assert dst.read_bytes() == data + random_block
    for bad in (
        body,  # no stream identifier
        padding + ident + body,  # a chunk before the identifier
        ident + b"\x02\x01\x00\x00x",  # reserved unskippable chunk type
        ident + b"\xff\x06\x00\x00sNaPpX",  # bad identifier
        ident + raw_chunk[:4] + b"\x00" + raw_chunk[5:],  # CRC mismatch
    ):
        src.write_bytes(bad)
        with pytest.raises(IntegrityError, match="corrupt snappy data"):
            _codecs.decompress_file(src, dst, "snappy")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_bomb_guard_bounds_memory(codec: str) -> None:
    size = 48 * MiB if codec != "snappy" else 8 * MiB
    bomb = _codecs.compress(bytes(size), codec, 1 if codec != "snappy" else None)
    limit = MiB
    assert _codecs.decompress(bomb, codec, max_output_size=size) == bytes(size)
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError, match=f"max_output_size={limit}"):
            _codecs.decompress(bomb, codec, max_output_size=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit + 2 * MiB


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_file_roundtrip_with_progress(tmp_path: Path, source: Path, codec: str) -> None:
    packed, unpacked = tmp_path / "packed", tmp_path / "unpacked"
    ctx = RecordingCtx()
    written = _codecs.compress_file(source, packed, codec, ctx=ctx)
    assert written == packed.stat().st_size
    size = source.stat().st_size
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (size, size)
    assert all(total == size for _, total in ctx.reports)
    ctx = RecordingCtx()
    assert _codecs.decompress_file(packed, unpacked, codec, ctx=ctx) == size
    assert unpacked.read_bytes() == source.read_bytes()
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (written, written)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_empty_file_roundtrip(tmp_path: Path, codec: str) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ctx = RecordingCtx()
    _codecs.compress_file(empty, tmp_path / "c", codec, ctx=ctx)
    assert ctx.reports[-1] == (0, 0)
    _codecs.decompress_file(tmp_path / "c", tmp_path / "d", codec)
    assert (tmp_path / "d").read_bytes() == b""


def test_file_formats_match_reference_libraries(tmp_path: Path, source: Path) -> None:
    data = source.read_bytes()
    for codec in _codecs.CODECS:
        _codecs.compress_file(source, tmp_path / codec, codec)
    assert zlib.decompress((tmp_path / "zlib").read_bytes()) == data
    assert gzip.decompress((tmp_path / "gzip").read_bytes()) == data
    with (tmp_path / "zstd").open("rb") as fh:
        assert zstandard.frame_content_size(fh.read(18)) == len(data)
    out = io.BytesIO()
    with (tmp_path / "snappy").open("rb") as fh:
        snappy.stream_decompress(fh, out)
    assert out.getvalue() == data
    # python-snappy's framing output, including its empty stream (no bytes at all)
    for payload in (data, b""):
        framed = io.BytesIO()
        snappy.stream_compress(io.BytesIO(payload), framed)
        (tmp_path / "theirs.sz").write_bytes(framed.getvalue())
        _codecs.decompress_file(tmp_path / "theirs.sz", tmp_path / "ours", "snappy")
        assert (tmp_path / "ours").read_bytes() == payload
    (tmp_path / "theirs.zz").write_bytes(zlib.compress(data))
    _codecs.decompress_file(tmp_path / "theirs.zz", tmp_path / "ours", "zlib")
    assert (tmp_path / "ours").read_bytes() == data


@needs_zstd
@needs_gzip
def test_file_cli_interop_both_ways(tmp_path: Path, source: Path) -> None:
    data = source.read_bytes()
    for codec, tool in (("zstd", ZSTD), ("gzip", GZIP)):
        ours = tmp_path / f"ours.{codec}"
        _codecs.compress_file(source, ours, codec)
        out = subprocess.run([tool, "-d", "-c", str(ours)], capture_output=True, check=True)
        assert out.stdout == data
        theirs = tmp_path / f"theirs.{codec}"
        with theirs.open("wb") as fh:
            subprocess.run([tool, "-c", str(source)], stdout=fh, check=True)
        _codecs.decompress_file(theirs, tmp_path / "back", codec)
        assert (tmp_path / "back").read_bytes() == data


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_parallel_ranges_assemble_into_a_standard_file(
    tmp_path: Path, source: Path, codec: str
) -> None:
    size = source.stat().st_size
    step = MiB + 5000
    parts = [
        _codecs.compress_file_range(source, offset, step, codec) for offset in range(0, size, step)
    ]
    assert len(parts) == 3
    dst = tmp_path / f"assembled.{codec}"
    assert _codecs.assemble_file(dst, iter(parts)) == sum(map(len, parts))
    _codecs.decompress_file(dst, tmp_path / "back", codec)
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    tool = {"zstd": ZSTD, "gzip": GZIP}[codec]
    if shutil.which(tool):
        out = subprocess.run([tool, "-d", "-c", str(dst)], capture_output=True, check=True)
        assert out.stdout == source.read_bytes()
    # a range past the end is empty, not an error
    tail = _codecs.compress_file_range(source, size + 10, 100, codec)
    assert _codecs.decompress(tail, codec) == b""


def test_compress_file_range_rejects_bad_arguments(source: Path) -> None:
    with pytest.raises(ValidationError, match="not splittable"):
        _codecs.compress_file_range(source, 0, 10, "zlib")
    with pytest.raises(ValidationError, match="offset"):
        _codecs.compress_file_range(source, -1, 10, "zstd")
    with pytest.raises(ValidationError, match="length"):
        _codecs.compress_file_range(source, 0, -10, "gzip")


@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_corrupt_file_leaves_existing_dst_untouched(
    tmp_path: Path, source: Path, codec: str
) -> None:
    packed = tmp_path / "packed"
    _codecs.compress_file(source, packed, codec)
    good = packed.read_bytes()
    dst = tmp_path / "dst"
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    cases = [good[:-1], good[: len(good) // 3], good + b"\x00trailing", bytes(flipped)]
    for bad in cases:
        dst.write_bytes(b"previous content")
        packed.write_bytes(bad)
        with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
            _codecs.decompress_file(packed, dst, codec)
        assert dst.read_bytes() == b"previous content"
        assert leftovers(tmp_path) == []
        dst.unlink()
        with pytest.raises(IntegrityError):
            _codecs.decompress_file(packed, dst, codec)
        assert not dst.exists()


@pytest.mark.parametrize("codec", _codecs.CODECS)
def test_file_bomb_guard(tmp_path: Path, codec: str) -> None:
    zeros = tmp_path / "zeros"
    with zeros.open("wb") as fh:
        for _ in range(8):
            fh.write(bytes(MiB))
    _codecs.compress_file(zeros, tmp_path / "bomb", codec)
    with pytest.raises(ValidationError, match=f"max_output_size={2 * MiB}"):
        _codecs.decompress_file(tmp_path / "bomb", tmp_path / "out", codec, max_output_size=2 * MiB)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []
    assert (
        _codecs.decompress_file(tmp_path / "bomb", tmp_path / "out", codec, max_output_size=8 * MiB)
        == 8 * MiB
    )


@pytest.mark.parametrize("codec", _codecs.CODECS)
@pytest.mark.parametrize("direction", ["compress", "decompress"])
def test_cancellation_mid_file(tmp_path: Path, source: Path, codec: str, direction: str) -> None:
    dst = tmp_path / "dst"
    if direction == "compress":
        src = source
    else:
        src = tmp_path / "packed"
        _codecs.compress_file(source, src, codec)
    dst.write_bytes(b"old")
    ctx = RecordingCtx(cancel_after=1)
    func = _codecs.compress_file if direction == "compress" else _codecs.decompress_file
    with pytest.raises(TaskCancelledError):
        func(src, dst, codec, ctx=ctx)
    assert len(ctx.reports) == 1
    assert dst.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_path_problems_are_validation_errors(tmp_path: Path, source: Path) -> None:
    with pytest.raises(ValidationError, match="missing"):
        _codecs.compress_file(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValidationError, match="source"):
        _codecs.compress_file(tmp_path, tmp_path / "out")
    with pytest.raises(ValidationError, match="does not exist"):
        _codecs.compress_file(source, tmp_path / "no" / "such" / "dir")
    with pytest.raises(ValidationError, match="is a directory"):
        _codecs.decompress_file(source, tmp_path, "zstd")
    assert leftovers(tmp_path) == []


def test_source_changing_during_compression_is_detected(tmp_path: Path, source: Path) -> None:
    class GrowingCtx(RecordingCtx):
        def report(self, current: int, total: int | None = None) -> None:
            super().report(current, total)
            if len(self.reports) == 1:
                with source.open("ab") as fh:
                    fh.write(b"appended while compressing")

    with pytest.raises(IntegrityError, match="changed"):
        _codecs.compress_file(source, tmp_path / "out", "gzip", ctx=GrowingCtx())
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_streaming_memory_stays_bounded(tmp_path: Path) -> None:
    """Compressing and decompressing a 64 MiB file keeps the peak RSS far below 64 MiB."""
    big = tmp_path / "big.bin"
    block = sample(MiB, seed=7)
    with big.open("wb") as fh:
        for i in range(64):
            fh.write(block[i:] + block[:i])
    script = textwrap.dedent(
        f"""
        import resource, sys
        from workerbridge.bridges import _codecs
        src, tmp = {str(big)!r}, {str(tmp_path)!r}
        _codecs.compress(b"warm-up" * 1000, "zstd")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for codec, level in (("zstd", 3), ("snappy", None), ("gzip", 1)):
            _codecs.compress_file(src, tmp + "/big." + codec, codec, level)
            _codecs.decompress_file(tmp + "/big." + codec, tmp + "/back." + codec, codec)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base, peak)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    base_kib, peak_kib = map(int, result.stdout.split())
    assert (peak_kib - base_kib) * 1024 < 16 * MiB, result.stdout
    for codec in ("zstd", "snappy", "gzip"):
        assert os.path.getsize(tmp_path / f"back.{codec}") == 64 * MiB
