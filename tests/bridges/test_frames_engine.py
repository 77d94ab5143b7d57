"""Frame boundaries (workerbridge.bridges._frames) and the engine's parallel-decompression pieces.

The walk must find exactly the frames a sequential decoder sees, refuse what a
sequential decoder refuses, and never let a parallel decode differ from a
sequential one: where it cannot be sure it answers "unknown", and the input is
then decoded sequentially.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
import zstandard

from workerbridge._errors import IntegrityError, ValidationError
from workerbridge.bridges import _codecs, _frames, _multiframe
from workerbridge.bridges._frames import Frame

KIB = 1024
MIB = 1024 * KIB
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd CLI not installed")
needs_gzip = pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip CLI not installed")


def text(size: int, seed: int) -> bytes:
    table = bytes(b"etaoinshrdlucmfw"[i % 16] for i in range(256))
    return random.Random(seed).randbytes(size).translate(table)


def reader(data: bytes) -> _frames.ReadAt:
    view = memoryview(data)
    return lambda offset, n: view[offset : offset + n]


def zstd_frames(data: bytes) -> list[Frame]:
    return _frames.zstd_frames(reader(data), len(data))


def gzip_members(data: bytes) -> list[Frame] | None:
    return _frames.gzip_members(reader(data), len(data))


def skippable(payload: bytes) -> bytes:
    return b"\x5a\x2a\x4d\x18" + len(payload).to_bytes(4, "little") + payload


def no_content_size(data: bytes) -> bytes:
    sink = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(sink, closefd=False) as writer:
        writer.write(data)
    return sink.getvalue()


# --------------------------------------------------------------------------- zstd walk


def test_zstd_walk_finds_every_frame_and_its_size() -> None:
    pieces = [text(300 * KIB, 1), b"", text(5, 2), text(200 * KIB, 3)]
    frames = [_codecs.compress_chunk(piece, "zstd") for piece in pieces]
    frames.insert(2, skippable(b"metadata"))
    blob = b"".join(frames)
    found = zstd_frames(blob)
    offset = 0
    expected = []
    for frame, size in zip(frames, [300 * KIB, 0, 0, 5, 200 * KIB], strict=True):
        expected.append(Frame(offset, len(frame), size))
        offset += len(frame)
    assert found == expected


def test_zstd_walk_reads_only_headers() -> None:
    data = text(2 * MIB, 4)
    blob = _codecs.compress(data, "zstd", 1)
    reads: list[int] = []

    def read_at(offset: int, n: int) -> bytes:
        reads.append(n)
        return blob[offset : offset + n]

    assert _frames.zstd_frames(read_at, len(blob)) == [Frame(0, len(blob), len(data))]
    assert sum(reads) < 200  # magic, header fields and one 3-byte header per block


def test_zstd_walk_marks_sizes_it_cannot_rely_on() -> None:
    data = text(50 * KIB, 5)
    assert zstd_frames(no_content_size(data)) == [Frame(0, len(no_content_size(data)), -1)]
    # A frame asking for a 256 MiB window (more than the decoders accept) with a
    # declared size: the one-shot decoder would not need the window, so the walk
    # must not vouch for it.
    raw = b"\x28\xb5\x2f\xfd" + bytes([0x80, 0x90]) + (5).to_bytes(4, "little") + b"\x29\x00\x00"
    raw += b"hello"  # one last raw block of 5 bytes (3-byte header: 5 << 3 | 1)
    assert zstd_frames(raw) == [Frame(0, len(raw), -1)]
    # A declared size more than its blocks can hold is not believed either.
    raw = b"\x28\xb5\x2f\xfd" + b"\x80\x58" + (1 << 30).to_bytes(4, "little") + b"\x29\x00\x00hello"
    assert zstd_frames(raw)[0].size == -1


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:3], "truncated"),
        (lambda b: b + b"\x00", "trailing data"),
        (lambda b: b + b"\x28\xb5\x2f", "trailing data"),
        (lambda b: b"", "truncated"),
        (lambda b: b"not zstd at all", "unknown frame magic"),
        (lambda b: b[:4] + bytes([b[4] | 0x08]) + b[5:], "reserved bit"),
    ],
)
def test_zstd_walk_refuses_what_a_decoder_refuses(mangle: object, message: str) -> None:
    blob = _codecs.compress(text(10 * KIB, 6), "zstd") * 2
    bad = mangle(blob)  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=f"corrupt zstd data: .*{message}"):
        zstd_frames(bad)
    with pytest.raises(IntegrityError, match="corrupt zstd data"):
        _codecs.decompress(bad, "zstd")


# --------------------------------------------------------------------------- gzip members


@needs_gzip
def test_gzip_members_with_the_size_field_are_ordinary_gzip() -> None:
    pieces = [text(100 * KIB, 7), b"", text(1, 8), text(64 * KIB, 9)]
    members = [
        _frames.gzip_member(piece, level) for piece, level in zip(pieces, (6, 1, 9, 0), strict=True)
    ]
    blob = b"".join(members)
    assert gzip.decompress(blob) == b"".join(pieces)
    assert zlib.decompressobj(31).decompress(members[0]) == pieces[0]
    out = subprocess.run(["gzip", "-d", "-c"], input=blob, capture_output=True, check=True)
    assert out.stdout == b"".join(pieces)
    assert gzip_members(blob) == [
        Frame(sum(map(len, members[:i])), len(m), len(p))
        for i, (m, p) in enumerate(zip(members, pieces, strict=True))
    ]
    # XFL as zlib writes it: 2 for level 9, 4 for levels 0 and 1.
    assert [m[8] for m in members] == [0, 4, 2, 4]


def test_gzip_members_are_trusted_only_when_everything_agrees() -> None:
    data = text(80 * KIB, 10)
    ours = _frames.gzip_member(data, 6)
    assert gzip_members(ours) == [Frame(0, len(ours), len(data))]
    theirs = gzip.compress(data, mtime=0)
    assert gzip_members(theirs) is None  # no size field: only a full decode finds the end
    assert gzip_members(ours + theirs) is None
    assert gzip_members(ours + b"\x00") is None  # does not end on a member
    assert gzip_members(ours[:-1]) is None
    assert gzip_members(b"") is None

    def patched(at: int, value: int) -> bytes:
        member = bytearray(ours)
        member[at : at + 8] = value.to_bytes(8, "little")
        return bytes(member)

    assert gzip_members(patched(24, len(data) + 1)) is None  # size disagrees with ISIZE
    assert gzip_members(patched(24, len(data) + (1 << 32))) is None  # ISIZE agrees, too big
    assert gzip_members(patched(16, len(ours) - 1)) is None  # length misses the trailer
    assert gzip_members(patched(16, 1 << 40)) is None  # past the end
    # A recorded length covering two members: the second's ISIZE is at the end.
    pair = ours + _frames.gzip_member(data, 6)
    lying = patched(16, len(pair)) + pair[len(ours) :]
    assert gzip_members(lying) == [Frame(0, len(pair), len(data))]
    # ... and decoding then refuses it rather than returning different data.
    with pytest.raises(IntegrityError, match="corrupt gzip data"):
        _codecs.decompress(lying, "gzip")


def test_gzip_without_trustworthy_fields_still_decodes_sequentially() -> None:
    data = text(300 * KIB, 11)
    ours = _frames.gzip_member(data, 6)
    member = bytearray(ours)
    member[24:32] = (len(data) + 1).to_bytes(8, "little")  # a wrong size field: ignored
    theirs = gzip.compress(data, mtime=0)
    blob = bytes(member) + theirs + ours
    assert _codecs.decompress(blob, "gzip") == data * 3
    assert _multiframe.split_frames(reader(blob), len(blob), "gzip", None, 1) is None


def test_many_members_across_input_slices() -> None:
    """Members straddling the decoder's input slices decode exactly (the sequential path)."""
    rnd = random.Random(12)
    pieces = [text(rnd.randint(0, 200 * KIB), i) for i in range(30)]
    blob = b"".join(gzip.compress(piece, compresslevel=1, mtime=0) for piece in pieces)
    assert len(blob) > 4 * _codecs._IN_CHUNK
    assert _codecs.decompress(blob, "gzip") == b"".join(pieces)
    with pytest.raises(IntegrityError, match="corrupt gzip data"):
        _codecs.decompress(blob[:-1], "gzip")


# --------------------------------------------------------------------------- parallel pieces


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_split_frames_groups_whole_frames(codec: str) -> None:
    pieces = [text(n * KIB, n) for n in (100, 30, 30, 30, 200, 1)]
    blob = b"".join(_codecs.compress_chunk(piece, codec) for piece in pieces)
    split = _multiframe.split_frames(reader(blob), len(blob), codec, None, 64 * KIB)
    assert split is not None
    runs, total = split
    assert total == sum(map(len, pieces))
    assert [len(run) for run in runs] == [1, 3, 1, 1]
    out = []
    for run in runs:
        start, end = run[0].offset, run[-1].offset + run[-1].length
        size = sum(frame.size for frame in run)
        out.append(_multiframe.decompress_part(blob[start:end], codec, size))
    assert b"".join(out) == b"".join(pieces) == _codecs.decompress(blob, codec)
    # The limit counts every frame, before anything is decoded.
    with pytest.raises(ValidationError, match=f"max_output_size={total - 1}"):
        _multiframe.split_frames(reader(blob), len(blob), codec, total - 1, 64 * KIB)
    assert _multiframe.split_frames(reader(blob), len(blob), codec, total, 64 * KIB) is not None
    # One run is no split.
    assert _multiframe.split_frames(reader(blob), len(blob), codec, None, total) is None


def test_split_frames_declines_what_it_cannot_size() -> None:
    data = text(100 * KIB, 13)
    for blob in (
        no_content_size(data) + _codecs.compress(data, "zstd"),
        _codecs.compress(text(4 * MIB, 14), "zstd"),  # one frame
    ):
        assert _multiframe.split_frames(reader(blob), len(blob), "zstd", None, 1) is None
    for codec in ("zlib", "snappy"):
        blob = _codecs.compress(data, codec)
        assert _multiframe.split_frames(reader(blob), len(blob), codec, None, 1) is None


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_decompress_part_insists_on_the_declared_size(codec: str) -> None:
    data = text(50 * KIB, 15)
    part = _codecs.compress_chunk(data, codec)
    assert _multiframe.decompress_part(part, codec, len(data)) == data
    for wrong in (len(data) - 1, len(data) + 1, 0):
        with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
            _multiframe.decompress_part(part, codec, wrong)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_file_ranges_write_at_their_offsets(tmp_path: Path, codec: str) -> None:
    pieces = [text(n * KIB, n) for n in (70, 1, 90)]
    blob = b"".join(_codecs.compress_chunk(piece, codec) for piece in pieces)
    src = tmp_path / "src"
    src.write_bytes(blob)
    out = tmp_path / "out"
    out.write_bytes(b"")
    split = _multiframe.split_frames(reader(blob), len(blob), codec, None, 60 * KIB)
    assert split is not None
    runs, total = split
    assert len(runs) == 2
    placed = []
    at = 0
    for run in runs:
        placed.append((run, at))
        at += sum(frame.size for frame in run)
    for run, offset in reversed(placed):  # any order: each run knows where it goes
        start, end = run[0].offset, run[-1].offset + run[-1].length
        size = sum(frame.size for frame in run)
        written = _multiframe.decompress_file_range(
            src, start, end - start, codec, size, str(out), offset
        )
        assert written == size
    assert out.read_bytes() == b"".join(pieces)
    assert total == out.stat().st_size


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("big_frames", [False, True])
def test_file_range_errors(
    tmp_path: Path, codec: str, big_frames: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if big_frames:  # frames above FILE_FRAME_MAX are streamed instead of read whole
        monkeypatch.setattr(_multiframe, "FILE_FRAME_MAX", 1)
    data = text(100 * KIB, 16)
    frame = _codecs.compress_chunk(data, codec)
    src = tmp_path / "src"
    out = tmp_path / "out"
    out.write_bytes(b"")
    src.write_bytes(frame)
    with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
        _multiframe.decompress_file_range(src, 0, len(frame), codec, len(data) + 1, str(out), 0)
    with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
        _multiframe.decompress_file_range(src, 0, len(frame), codec, len(data) - 1, str(out), 0)
    damaged = bytearray(frame)
    damaged[len(frame) // 2] ^= 0x55
    src.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match=f"corrupt {codec} data"):
        _multiframe.decompress_file_range(src, 0, len(frame), codec, len(data), str(out), 0)
    # The output file is never created by a worker.
    os.unlink(out)
    src.write_bytes(frame)
    with pytest.raises(FileNotFoundError):
        _multiframe.decompress_file_range(src, 0, len(frame), codec, len(data), str(out), 0)


# --------------------------------------------------------------------------- one-shot paths


def test_zstd_one_shot_paths_refuse_what_the_stream_refuses() -> None:
    data = text(3000, 17)
    frame = _codecs.compress(data, "zstd")
    empty = _codecs.compress(b"", "zstd")
    assert _codecs.decompress(frame, "zstd") == data
    assert _codecs.decompress(empty, "zstd") == b""
    assert _codecs.decompress(empty + frame + empty, "zstd") == data
    for bad, message in (
        (frame + b"\x00", "trailing data"),
        (frame[:-1], "truncated"),
        (empty + b"\x00", "trailing data"),  # python-zstandard alone would return b""
        (empty[:-1], "truncated"),
    ):
        with pytest.raises(IntegrityError, match=message):
            _codecs.decompress(bad, "zstd")
    # An empty frame holding a block: its declared size is a lie.
    lying = b"\x28\xb5\x2f\xfd\x20\x00" + b"\x29\x00\x00hello"
    with pytest.raises(IntegrityError, match="corrupt zstd data"):
        _codecs.decompress(lying, "zstd")
    tampered = bytearray(frame)
    tampered[len(frame) // 2] ^= 1
    with pytest.raises(IntegrityError, match="corrupt zstd data"):
        _codecs.decompress(bytes(tampered), "zstd")
    with pytest.raises(ValidationError, match="max_output_size=2999"):
        _codecs.decompress(frame, "zstd", 2999)
    assert _codecs.decompress(frame, "zstd", 3000) == data


def test_zstd_contexts_are_reused_per_thread_and_stay_small() -> None:
    small = text(10 * KIB, 18)
    assert _codecs.compress(small, "zstd", 7) == _codecs.compress(small, "zstd", 7)
    cached = _codecs._CONTEXTS.compressors
    assert 7 in cached
    for level in range(1, 10):
        _codecs.compress(small, "zstd", level)
    assert len(cached) <= _codecs._CACHED_LEVELS
    large = text(_codecs.CONTEXT_CACHE_MAX_INPUT + 1, 19)
    before = dict(cached)
    assert _codecs.decompress(_codecs.compress(large, "zstd", 2), "zstd") == large
    assert cached == before  # a large input used fresh contexts


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_split_file_describes_runs_as_plain_lists(tmp_path: Path, codec: str) -> None:
    pieces = [text(n * KIB, n) for n in (70, 1, 90)]
    frames = [_codecs.compress_chunk(piece, codec) for piece in pieces]
    src = tmp_path / "src"
    src.write_bytes(b"".join(frames))
    runs = _multiframe.split_file(src, codec, None, 60 * KIB)
    assert runs == [
        [0, len(frames[0]), 70 * KIB],
        [len(frames[0]), len(frames[1]) + len(frames[2]), 91 * KIB],
    ]
    with pytest.raises(ValidationError, match="max_output_size"):
        _multiframe.split_file(src, codec, 100 * KIB, 60 * KIB)
    assert _multiframe.split_file(src, codec, None, 1 * MIB) is None  # one run
    src.write_bytes(gzip.compress(b"x" * 1000) if codec == "gzip" else b"junk")
    if codec == "gzip":
        assert _multiframe.split_file(src, codec, None, 1) is None
    else:
        with pytest.raises(IntegrityError, match="corrupt zstd data"):
            _multiframe.split_file(src, codec, None, 1)
    with pytest.raises(ValidationError, match="source"):
        _multiframe.split_file(tmp_path / "missing", codec, None, 1)
