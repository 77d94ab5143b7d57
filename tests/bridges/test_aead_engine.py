"""Tests of the crypto engine (workerbridge.bridges._aead): vectors, stream format, tampering."""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from workerbridge._errors import (
    IntegrityError,
    NonceReuseError,
    TaskCancelledError,
    ValidationError,
)
from workerbridge.bridges import _aead

KiB = 1 << 10
CHUNK = 64 * KiB  # the smallest chunk size keeps the tamper matrix fast
HEADER = _aead.STREAM_HEADER_SIZE
SEALED = CHUNK + _aead.TAG_SIZE


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


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- known answers
# AES-GCM: test cases 2, 3, 4, 14 and 16 of McGrew & Viega, "The Galois/Counter Mode of
# Operation (GCM)", the vectors NIST's GCM validation uses (96-bit IVs).
_GCM_P = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
_GCM_AAD = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
AES_GCM_VECTORS: dict[str, tuple[str, str, str, str, str, str]] = {
    "gcm-tc2-aes128": (
        "00000000000000000000000000000000",
        "000000000000000000000000",
        "00000000000000000000000000000000",
        "",
        "0388dace60b6a392f328c2b971b2fe78",
        "ab6e47d42cec13bdf53a67b21257bddf",
    ),
    "gcm-tc3-aes128": (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        _GCM_P,
        "",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        "4d5c2af327cd64a62cf35abd2ba6fab4",
    ),
    "gcm-tc4-aes128-aad": (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        _GCM_P[:-8],
        _GCM_AAD,
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        "5bc94fbc3221a5db94fae95ae7121a47",
    ),
    "gcm-tc14-aes256": (
        "00" * 32,
        "00" * 12,
        "00" * 16,
        "",
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
    ),
    "gcm-tc16-aes256-aad": (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        _GCM_P[:-8],
        _GCM_AAD,
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
}


@pytest.mark.parametrize("vector", AES_GCM_VECTORS.values(), ids=AES_GCM_VECTORS.keys())
def test_aes_gcm_known_answers(vector: tuple[str, str, str, str, str, str]) -> None:
    key, iv, plaintext, aad, ciphertext, tag = vector
    k, n, p, a = (bytes.fromhex(x) for x in (key, iv, plaintext, aad))
    blob = _aead.encrypt(p, k, nonce=n, aad=a, algorithm="aes-gcm")
    assert blob.hex() == iv + ciphertext + tag
    assert _aead.decrypt(blob, k, aad=a, algorithm="aes-gcm") == p


def test_chacha20_poly1305_rfc8439_vector() -> None:
    # RFC 8439, section 2.8.2
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
        b"for the future, sunscreen would be it."
    )
    ciphertext = (
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
    )
    tag = "1ae10b594f09e26a7e902ecbd0600691"
    blob = _aead.encrypt(plaintext, key, nonce=nonce, aad=aad, algorithm="chacha20-poly1305")
    assert blob.hex() == nonce.hex() + ciphertext + tag
    assert _aead.decrypt(blob, key, aad=aad, algorithm="chacha20-poly1305") == plaintext


# --------------------------------------------------------------------------- one-shot AEAD
@pytest.mark.parametrize(
    ("algorithm", "key_size"),
    [("aes-gcm", 16), ("aes-gcm", 24), ("aes-gcm", 32), ("chacha20-poly1305", 32)],
)
def test_roundtrip_and_random_nonces(algorithm: str, key_size: int) -> None:
    key = bytes(range(key_size))
    first = _aead.encrypt(b"secret message", key, algorithm=algorithm)
    second = _aead.encrypt(bytearray(b"secret message"), memoryview(key), algorithm=algorithm)
    assert len(first) == 12 + 14 + 16
    assert first[:12] != second[:12]
    for blob in (first, second):
        assert _aead.decrypt(blob, key, algorithm=algorithm) == b"secret message"


def test_tampering_and_wrong_inputs_raise_integrity_error() -> None:
    key = _aead.generate_key()
    blob = _aead.encrypt(b"attack at dawn", key, aad=b"header")
    for index in (0, 11, 12, len(blob) - 17, len(blob) - 1):
        bad = bytearray(blob)
        bad[index] ^= 0x01
        with pytest.raises(IntegrityError):
            _aead.decrypt(bytes(bad), key, aad=b"header")
    with pytest.raises(IntegrityError):
        _aead.decrypt(blob, _aead.generate_key(), aad=b"header")
    with pytest.raises(IntegrityError):
        _aead.decrypt(blob, key, aad=b"other")
    with pytest.raises(IntegrityError):
        _aead.decrypt(blob, key, aad=b"header", algorithm="chacha20-poly1305")
    for short in (b"", blob[:27], blob[:-1]):
        with pytest.raises(IntegrityError):
            _aead.decrypt(short, key, aad=b"header")


def test_validation_never_echoes_key_material() -> None:
    key = b"\xde\xad\xbe\xef" * 4 + b"SECRETKEY"  # 25 bytes: invalid for every algorithm
    for algorithm in _aead.ALGORITHMS:
        with pytest.raises(ValidationError) as info:
            _aead.encrypt(b"plaintext-marker", key, algorithm=algorithm)
        message = str(info.value)
        assert "25 bytes" in message
        for leak in ("SECRETKEY", "deadbeef", "\\xde", "plaintext-marker"):
            assert leak not in message
    with pytest.raises(ValidationError, match="unknown algorithm"):
        _aead.encrypt(b"x", bytes(32), algorithm="aes-cbc")
    with pytest.raises(ValidationError, match="nonce must be 12 bytes"):
        _aead.encrypt(b"x", bytes(32), nonce=bytes(8))
    with pytest.raises(ValidationError, match="not str"):
        _aead.encrypt("text", bytes(32))
    with pytest.raises(ValidationError, match="key"):
        _aead.decrypt(bytes(40), "a str key")


# --------------------------------------------------------------------------- nonce registry
def test_nonce_fingerprint_is_one_way_and_distinguishing() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    nonce = bytes(12)
    fp = _aead.nonce_fingerprint(key, nonce)
    assert len(fp) == 32
    assert fp == _aead.nonce_fingerprint(bytearray(key), memoryview(nonce))
    variants = {
        fp,
        _aead.nonce_fingerprint(other, nonce),
        _aead.nonce_fingerprint(key, b"\x01" + bytes(11)),
        _aead.nonce_fingerprint(key, nonce, "chacha20-poly1305"),
        _aead.nonce_fingerprint(key, nonce, secret=b"process secret"),
    }
    assert len(variants) == 5
    assert key not in fp
    assert key[:8] not in fp


def test_nonce_fingerprint_is_the_documented_digest() -> None:
    """One-call hashing gives the digest of the length-prefixed fields, updated one by one."""
    for algorithm, key in (("aes-gcm", bytes(range(16))), ("chacha20-poly1305", bytes(32))):
        nonce, secret = bytes(range(12)), b"s" * 20
        digest = hashlib.blake2b(digest_size=32, key=secret, person=b"wb-nonce-fp-v1")
        for field in (algorithm.encode("ascii"), key, nonce):
            digest.update(len(field).to_bytes(2, "big"))
            digest.update(field)
        assert _aead.nonce_fingerprint(key, nonce, algorithm, secret=secret) == digest.digest()


def test_nonce_registry_refuses_reuse_across_threads() -> None:
    registry = _aead.NonceRegistry()
    key, nonce = _aead.generate_key(), bytes(12)
    fp = registry.fingerprint(key, nonce)
    assert fp != _aead.nonce_fingerprint(key, nonce)  # keyed with the registry's own secret
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            registry.check_and_add(fp)
            outcomes.append("ok")
        except NonceReuseError:
            outcomes.append("reuse")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] + ["reuse"] * 7
    assert fp in registry
    assert len(registry) == 1
    registry.check_and_add(registry.fingerprint(key, b"\x01" * 12))
    assert "entries=2" in repr(registry)
    assert key.hex() not in repr(registry)


# --------------------------------------------------------------------------- stream format
def _write(path: Path, size: int, seed: int = 1) -> bytes:
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(size) if size else b""
    path.write_bytes(data)
    return data


def test_header_layout() -> None:
    header = _aead.make_header("chacha20-poly1305", CHUNK)
    assert len(header) == HEADER == 46
    assert header[:4] == b"WBSE"
    assert header[4:7] == bytes((1, 2, 16))
    parsed = _aead.parse_header(header)
    assert parsed == _aead.StreamHeader(
        "chacha20-poly1305", CHUNK, header[7:39], header[39:], header
    )
    assert _aead.make_header()[5:7] == bytes((1, 20))
    assert _aead.make_header()[7:] != _aead.make_header()[7:]
    for bad in (1000, 1 << 15, 1 << 25, 3 * CHUNK, True):
        with pytest.raises(ValidationError, match="chunk_size"):
            _aead.make_header("aes-gcm", bad)


def _reference_decrypt(blob: bytes, key: bytes) -> bytes:
    """Decrypt following the module docstring's spec only, with raw cryptography primitives."""
    header = blob[:46]
    assert header[:5] == b"WBSE\x01"
    chunk = 1 << header[6]
    salt, prefix = header[7:39], header[39:46]
    subkey = HKDF(algorithm=hashes.SHA256(), length=len(key), salt=salt, info=header).derive(key)
    assert header[5] in (1, 2)
    cipher = AESGCM(subkey) if header[5] == 1 else ChaCha20Poly1305(subkey)
    body = blob[46:]
    n = max(1, math.ceil(len(body) / (chunk + 16)))
    out = []
    for i in range(n):
        piece = body[i * (chunk + 16) : (i + 1) * (chunk + 16)]
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if i == n - 1 else b"\x00")
        out.append(cipher.decrypt(nonce, piece, b""))
    return b"".join(out)


@pytest.mark.parametrize("algorithm", _aead.ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_stream_roundtrip_sizes_and_spec(tmp_path: Path, algorithm: str, size: int) -> None:
    plain = _write(tmp_path / "plain", size, seed=size)
    key = _aead.generate_key(algorithm)
    written = _aead.encrypt_file(
        tmp_path / "plain", tmp_path / "enc", key, algorithm=algorithm, chunk_size=CHUNK
    )
    blob = (tmp_path / "enc").read_bytes()
    assert written == len(blob) == _aead.encrypted_size(size, CHUNK)
    n = _aead.plaintext_chunk_count(size, CHUNK)
    assert n == max(1, math.ceil(size / CHUNK))
    assert _aead.ciphertext_chunk_count(len(blob) - HEADER, CHUNK) == n
    assert _reference_decrypt(blob, key) == plain
    assert _aead.decrypt_file(tmp_path / "enc", tmp_path / "dec", key, algorithm=algorithm) == size
    assert (tmp_path / "dec").read_bytes() == plain
    assert leftovers(tmp_path) == []


def test_aes128_keys_give_aes128_subkeys(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain", 1000)
    key = bytes(range(16))
    _aead.encrypt_file(tmp_path / "plain", tmp_path / "enc", key, chunk_size=CHUNK)
    assert _reference_decrypt((tmp_path / "enc").read_bytes(), key) == plain


def test_default_chunk_size_and_progress(tmp_path: Path) -> None:
    size = 2 * (1 << 20) + 300
    plain = _write(tmp_path / "plain", size)
    key = _aead.generate_key()
    ctx = RecordingCtx()
    _aead.encrypt_file(tmp_path / "plain", tmp_path / "enc", key, ctx=ctx)
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (size, size)
    assert (tmp_path / "enc").read_bytes()[6] == 20
    enc_size = (tmp_path / "enc").stat().st_size
    ctx = RecordingCtx()
    _aead.decrypt_file(tmp_path / "enc", tmp_path / "dec", key, ctx=ctx)
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (enc_size, enc_size)
    assert (tmp_path / "dec").read_bytes() == plain


# Tamper matrix: each case maps the good file (and another file under the same key) to bad bytes.
def _chunks(blob: bytes) -> list[bytes]:
    body = blob[HEADER:]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _flip(blob: bytes, index: int) -> bytes:
    bad = bytearray(blob)
    bad[index] ^= 0x01
    return bytes(bad)


def _join(blob: bytes, chunks: list[bytes]) -> bytes:
    return blob[:HEADER] + b"".join(chunks)


def _swap(c: list[bytes], i: int, j: int) -> list[bytes]:
    c = list(c)
    c[i], c[j] = c[j], c[i]
    return c


TAMPERS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "flip-magic": lambda b, o: _flip(b, 0),
    "flip-version": lambda b, o: _flip(b, 4),
    "flip-algorithm": lambda b, o: _flip(b, 5),
    "flip-chunk-size": lambda b, o: _flip(b, 6),
    "flip-salt": lambda b, o: _flip(b, 20),
    "flip-nonce-prefix": lambda b, o: _flip(b, 45),
    "flip-body-chunk0": lambda b, o: _flip(b, HEADER + 100),
    "flip-body-chunk2": lambda b, o: _flip(b, HEADER + 2 * SEALED + 5),
    "flip-tag-chunk1": lambda b, o: _flip(b, HEADER + 2 * SEALED - 1),
    "flip-last-tag": lambda b, o: _flip(b, len(b) - 1),
    "truncate-0": lambda b, o: b"",
    "truncate-in-header": lambda b, o: b[:20],
    "truncate-after-header": lambda b, o: b[:HEADER],
    "truncate-at-chunk-boundary": lambda b, o: b[: HEADER + 2 * SEALED],
    "truncate-at-first-boundary": lambda b, o: b[: HEADER + SEALED],
    "truncate-inside-tag": lambda b, o: b[: HEADER + 2 * SEALED + 10],
    "truncate-last-byte": lambda b, o: b[:-1],
    "extend-byte": lambda b, o: b + b"\x00",
    "extend-tag-sized": lambda b, o: b + bytes(16),
    "extend-copy-of-chunk0": lambda b, o: b + _chunks(b)[0],
    "reorder-0-1": lambda b, o: _join(b, _swap(_chunks(b), 0, 1)),
    "reorder-1-2": lambda b, o: _join(b, _swap(_chunks(b), 1, 2)),
    "duplicate-chunk1": lambda b, o: _join(b, [*_chunks(b)[:2], *_chunks(b)[1:]]),
    "drop-chunk1": lambda b, o: _join(b, [_chunks(b)[0], *_chunks(b)[2:]]),
    "drop-last-chunk": lambda b, o: _join(b, _chunks(b)[:-1]),
    "splice-chunk-from-other-file": lambda b, o: _join(
        b, [_chunks(b)[0], _chunks(o)[1], *_chunks(b)[2:]]
    ),
    "header-from-other-file": lambda b, o: o[:HEADER] + b[HEADER:],
    "other-file-last-chunk": lambda b, o: _join(b, [*_chunks(b)[:-1], _chunks(o)[-1]]),
}


@pytest.fixture(scope="module")
def stream_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, bytes]:
    """Two files (3.5 chunks) encrypted under one key, and that key."""
    root = tmp_path_factory.mktemp("pair")
    key = _aead.generate_key()
    blobs = []
    for seed in (1, 2):
        _write(root / f"p{seed}", 3 * CHUNK + CHUNK // 2, seed=seed)
        _aead.encrypt_file(root / f"p{seed}", root / f"e{seed}", key, chunk_size=CHUNK)
        blobs.append((root / f"e{seed}").read_bytes())
    assert len(_chunks(blobs[0])) == 4
    return blobs[0], blobs[1], key


@pytest.mark.parametrize("case", list(TAMPERS))
@pytest.mark.parametrize("existing_dst", [False, True])
def test_tamper_matrix(
    tmp_path: Path, stream_pair: tuple[bytes, bytes, bytes], case: str, existing_dst: bool
) -> None:
    good, other, key = stream_pair
    bad = TAMPERS[case](good, other)
    assert bad != good
    src, dst = tmp_path / "enc", tmp_path / "dst"
    src.write_bytes(bad)
    if existing_dst:
        dst.write_bytes(b"keep me")
    with pytest.raises(IntegrityError):
        _aead.decrypt_file(src, dst, key)
    if existing_dst:
        assert dst.read_bytes() == b"keep me"
    else:
        assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["enc", "dst"] if existing_dst else ["enc"]
    )


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tamper_matrix_parallel_path(
    tmp_path: Path, stream_pair: tuple[bytes, bytes, bytes], case: str
) -> None:
    good, other, key = stream_pair
    src = tmp_path / "enc"
    src.write_bytes(TAMPERS[case](good, other))

    def parallel_decrypt() -> None:
        header = _aead.read_stream_header(src, "aes-gcm")
        n = _aead.ciphertext_chunk_count(src.stat().st_size - HEADER, header.chunk_size)
        parts = (
            _aead.decrypt_file_range(src, key, i, 1, is_last_range=i == n - 1) for i in range(n)
        )
        _aead.assemble_file(tmp_path / "dst", parts)

    with pytest.raises(IntegrityError):
        parallel_decrypt()
    assert not (tmp_path / "dst").exists()


def test_wrong_key_and_algorithm(tmp_path: Path, stream_pair: tuple[bytes, bytes, bytes]) -> None:
    good, _, key = stream_pair
    (tmp_path / "enc").write_bytes(good)
    with pytest.raises(IntegrityError, match="chunk 0"):
        _aead.decrypt_file(tmp_path / "enc", tmp_path / "dst", _aead.generate_key())
    with pytest.raises(IntegrityError, match="aes-gcm, not chacha20-poly1305"):
        _aead.decrypt_file(tmp_path / "enc", tmp_path / "dst", key, algorithm="chacha20-poly1305")
    with pytest.raises(ValidationError, match="key must be"):
        _aead.decrypt_file(tmp_path / "enc", tmp_path / "dst", key[:20])
    assert not (tmp_path / "dst").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("direction", ["encrypt", "decrypt"])
def test_cancellation_mid_file(tmp_path: Path, direction: str) -> None:
    _write(tmp_path / "plain", 5 * CHUNK)
    key = _aead.generate_key()
    _aead.encrypt_file(tmp_path / "plain", tmp_path / "enc", key, chunk_size=CHUNK)
    dst = tmp_path / "dst"
    ctx = RecordingCtx(cancel_after=2)
    if direction == "encrypt":
        with pytest.raises(TaskCancelledError):
            _aead.encrypt_file(tmp_path / "plain", dst, key, chunk_size=CHUNK, ctx=ctx)
    else:
        with pytest.raises(TaskCancelledError):
            _aead.decrypt_file(tmp_path / "enc", dst, key, ctx=ctx)
    assert len(ctx.reports) == 2
    assert not dst.exists()
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- parallel helpers
@pytest.mark.parametrize("size", [0, CHUNK, 7 * CHUNK + 3])
def test_parallel_encrypt_and_decrypt_by_ranges(tmp_path: Path, size: int) -> None:
    plain = _write(tmp_path / "plain", size)
    key = _aead.generate_key("chacha20-poly1305")
    header = _aead.make_header("chacha20-poly1305", CHUNK)
    n = _aead.plaintext_chunk_count(size, CHUNK)
    ranges = [(first, min(3, n - first)) for first in range(0, n, 3)]
    parts = [
        _aead.encrypt_file_range(
            tmp_path / "plain", key, header, first, count, is_last_range=first + count == n
        )
        for first, count in ranges
    ]
    _aead.assemble_file(tmp_path / "enc", [header, *parts])
    assert (tmp_path / "enc").stat().st_size == _aead.encrypted_size(size, CHUNK)
    _aead.decrypt_file(tmp_path / "enc", tmp_path / "dec", key, algorithm="chacha20-poly1305")
    assert (tmp_path / "dec").read_bytes() == plain

    # and the sequential file, decrypted by ranges
    _aead.encrypt_file(
        tmp_path / "plain", tmp_path / "enc2", key, algorithm="chacha20-poly1305", chunk_size=CHUNK
    )
    parsed = _aead.read_stream_header(tmp_path / "enc2", "chacha20-poly1305")
    total = _aead.ciphertext_chunk_count((tmp_path / "enc2").stat().st_size - HEADER, CHUNK)
    assert parsed.chunk_size == CHUNK
    assert total == n
    pieces = [
        _aead.decrypt_file_range(
            tmp_path / "enc2",
            key,
            first,
            count,
            is_last_range=first + count == n,
            algorithm="chacha20-poly1305",
        )
        for first, count in ranges
    ]
    assert b"".join(pieces) == plain


def test_range_plans_that_do_not_fit_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "plain", 4 * CHUNK + 10)
    key = _aead.generate_key()
    header = _aead.make_header("aes-gcm", CHUNK)
    with pytest.raises(IntegrityError, match="continues"):
        _aead.encrypt_file_range(tmp_path / "plain", key, header, 0, 4, is_last_range=True)
    with pytest.raises(IntegrityError, match="ends before"):
        _aead.encrypt_file_range(tmp_path / "plain", key, header, 4, 2, is_last_range=True)
    _aead.encrypt_file(tmp_path / "plain", tmp_path / "enc", key, chunk_size=CHUNK)
    # claiming a middle chunk is the last one: it was sealed as non-final
    with pytest.raises(IntegrityError):
        _aead.decrypt_file_range(tmp_path / "enc", key, 0, 2, is_last_range=True)
    # and the real last chunk opened as non-final
    with pytest.raises(IntegrityError):
        _aead.decrypt_file_range(tmp_path / "enc", key, 4, 1, is_last_range=False)
    with pytest.raises(ValidationError, match="bad stream header"):
        _aead.encrypt_file_range(tmp_path / "plain", key, b"nope", 0, 1, is_last_range=True)
    with pytest.raises(ValidationError, match="n_chunks"):
        _aead.decrypt_file_range(tmp_path / "enc", key, 0, 0, is_last_range=True)


def test_seal_and_open_chunks() -> None:
    key = _aead.generate_key()
    header = _aead.make_header("aes-gcm", CHUNK)
    a, b, c = bytes(CHUNK), b"\x01" * CHUNK, b"tail"
    first = _aead.seal_chunks(key, header, 0, [a, b], last=False)
    second = _aead.seal_chunks(key, header, 2, iter([c]), last=True)
    assert len(first) == 2 * SEALED
    assert _aead.open_chunks(key, header, 0, first + second, last=True) == a + b + c
    assert _aead.open_chunks(key, header, 2, second, last=True) == c
    with pytest.raises(IntegrityError):
        _aead.open_chunks(key, header, 1, second, last=True)
    with pytest.raises(IntegrityError):
        _aead.open_chunks(key, header, 0, first, last=True)
    with pytest.raises(IntegrityError, match="whole number"):
        _aead.open_chunks(key, header, 0, first[:-1], last=False)
    with pytest.raises(ValidationError, match="exactly"):
        _aead.seal_chunks(key, header, 0, [b"short", c], last=True)
    with pytest.raises(ValidationError, match="final chunk"):
        _aead.seal_chunks(key, header, 1, [b""], last=True)
    empty = _aead.seal_chunks(key, header, 0, [b""], last=True)
    assert _aead.open_chunks(key, header, 0, empty, last=True) == b""


def test_impossible_ciphertext_sizes() -> None:
    for body in (0, 15, SEALED + 16, SEALED + 3):
        with pytest.raises(IntegrityError, match="impossible size"):
            _aead.ciphertext_chunk_count(body, CHUNK)
    assert _aead.ciphertext_chunk_count(16, CHUNK) == 1
    assert _aead.ciphertext_chunk_count(SEALED, CHUNK) == 1
    assert _aead.ciphertext_chunk_count(SEALED + 17, CHUNK) == 2


# --------------------------------------------------------------------------- cipher cache
def test_cipher_cache_holds_no_key_and_stays_bounded() -> None:
    cache = _aead._CipherCache()
    keys = [bytes([i]) * 32 for i in range(_aead.CIPHER_CACHE_SIZE + 5)]
    for key in keys:
        assert cache.get(key, "aes-gcm") is cache.get(key, "aes-gcm")
    assert len(cache) == _aead.CIPHER_CACHE_SIZE  # the oldest were dropped
    stored = b"".join(cache._entries)
    for key in keys:
        assert key[:8] not in stored
    # The same bytes under the other algorithm are another entry.
    assert cache.get(keys[-1], "chacha20-poly1305") is not cache.get(keys[-1], "aes-gcm")
    cache.clear()
    assert len(cache) == 0


def test_cached_ciphers_follow_the_callers_key_contents() -> None:
    """A bytearray key changed in place gets the cipher of its new contents."""
    key = bytearray(range(32))
    first = _aead.encrypt(b"data", key)
    key[0] ^= 0xFF
    second = _aead.encrypt(b"data", key)
    assert _aead.decrypt(second, bytes(key)) == b"data"
    with pytest.raises(IntegrityError):
        _aead.decrypt(second, bytes(range(32)))
    assert _aead.decrypt(first, bytes(range(32))) == b"data"
    # Large inputs never enter the cache.
    _aead._CIPHERS.clear()
    big = bytes(_aead.CIPHER_CACHE_MAX_INPUT + 1)
    assert _aead.decrypt(_aead.encrypt(big, bytes(key)), bytes(key)) == big
    assert len(_aead._CIPHERS) == 0
    _aead.encrypt(b"small", bytes(key))
    assert len(_aead._CIPHERS) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_an_empty_cipher_cache() -> None:
    _aead.encrypt(b"x", bytes(32))
    assert len(_aead._CIPHERS) > 0
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        os._exit(0 if len(_aead._CIPHERS) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------- hashes, KDFs, keys
def test_hash_bytes() -> None:
    assert (
        _aead.hash_bytes(b"abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    for name in _aead.HASH_ALGORITHMS:
        assert _aead.hash_bytes(bytearray(b"data"), name) == hashlib.new(name, b"data").hexdigest()
    for bad in ("md5", "sha1", "SHA256", "crc32"):
        with pytest.raises(ValidationError, match="sha256"):
            _aead.hash_bytes(b"x", bad)


def test_derive_key_matches_independent_implementations() -> None:
    salt = b"0123456789abcdef"
    assert _aead.derive_key("pässword", salt) == hashlib.scrypt(
        "pässword".encode(), salt=salt, n=2**15, r=8, p=1, maxmem=64 << 20, dklen=32
    )
    assert _aead.derive_key(
        b"password", salt, kdf="pbkdf2-hmac-sha256", length=48
    ) == hashlib.pbkdf2_hmac("sha256", b"password", salt, 600_000, 48)
    # RFC 5869, test case 3 (empty salt and info)
    assert _aead.derive_key(b"\x0b" * 22, b"", kdf="hkdf-sha256", length=42).hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_derive_key_argon2id() -> None:
    argon2 = pytest.importorskip("cryptography.hazmat.primitives.kdf.argon2")
    salt = b"saltsaltsaltsalt"
    try:
        expected = argon2.Argon2id(
            salt=salt, length=32, iterations=3, lanes=4, memory_cost=65536
        ).derive(b"password")
    except Exception as exc:  # an OpenSSL without Argon2
        pytest.skip(f"argon2id unavailable: {exc}")
    derived = _aead.derive_key(b"password", salt, kdf="argon2id")
    assert derived == expected
    assert derived != _aead.derive_key(b"password", salt[::-1], kdf="argon2id")


def test_derive_key_validation() -> None:
    with pytest.raises(ValidationError, match="scrypt, pbkdf2-hmac-sha256"):
        _aead.derive_key(b"pw", b"saltsalt", kdf="bcrypt")
    with pytest.raises(ValidationError, match="salt must be at least 8"):
        _aead.derive_key(b"pw", b"short", kdf="scrypt")
    with pytest.raises(ValidationError, match="length"):
        _aead.derive_key(b"pw", b"saltsalt", length=8)
    with pytest.raises(ValidationError, match="length"):
        _aead.derive_key(b"pw", b"saltsalt", length=4096)
    with pytest.raises(ValidationError, match="salt"):
        _aead.derive_key(b"pw", "a str salt")


def test_generate_key() -> None:
    for algorithm in _aead.ALGORITHMS:
        key = _aead.generate_key(algorithm)
        assert len(key) == 32
        assert key != _aead.generate_key(algorithm)
    with pytest.raises(ValidationError):
        _aead.generate_key("rot13")


# --------------------------------------------------------------------------- ranges written in place
@pytest.mark.parametrize("algorithm", _aead.ALGORITHMS)
@pytest.mark.parametrize("size", [0, CHUNK - 1, 5 * CHUNK + 7])
def test_ranges_written_in_place_equal_the_returned_ranges(
    tmp_path: Path, size: int, algorithm: str
) -> None:
    plain = _write(tmp_path / "plain", size)
    key = _aead.generate_key(algorithm)
    header = _aead.make_header(algorithm, CHUNK)
    n = _aead.plaintext_chunk_count(size, CHUNK)
    ranges = [(first, min(2, n - first)) for first in range(0, n, 2)]
    enc = tmp_path / "enc"
    enc.write_bytes(header)
    written = 0
    for first, count in reversed(ranges):  # out of order: each range has its own place
        written += _aead.encrypt_file_range_to(
            tmp_path / "plain",
            key,
            header,
            first,
            count,
            is_last_range=first + count == n,
            dst=str(enc),
            offset=HEADER + first * (CHUNK + _aead.TAG_SIZE),
        )
    returned = [
        _aead.encrypt_file_range(
            tmp_path / "plain", key, header, first, count, is_last_range=first + count == n
        )
        for first, count in ranges
    ]
    assert enc.read_bytes() == header + b"".join(returned)
    assert written == enc.stat().st_size - HEADER

    out = tmp_path / "dec"
    out.write_bytes(b"")
    for first, count in ranges:
        _aead.decrypt_file_range_to(
            enc,
            key,
            first,
            count,
            is_last_range=first + count == n,
            algorithm=algorithm,
            dst=str(out),
            offset=first * CHUNK,
        )
    assert out.read_bytes() == plain


def test_a_range_is_never_written_into_a_file_that_is_gone(tmp_path: Path) -> None:
    _write(tmp_path / "plain", 2 * CHUNK)
    key = _aead.generate_key()
    header = _aead.make_header("aes-gcm", CHUNK)
    with pytest.raises(FileNotFoundError):
        _aead.encrypt_file_range_to(
            tmp_path / "plain",
            key,
            header,
            0,
            2,
            is_last_range=True,
            dst=str(tmp_path / "removed.tmp"),
            offset=HEADER,
        )
    assert not (tmp_path / "removed.tmp").exists()


def test_a_tampered_chunk_in_a_range_stops_before_its_plaintext_is_written(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain", 3 * CHUNK)
    key = _aead.generate_key()
    _aead.encrypt_file(tmp_path / "plain", tmp_path / "enc", key, chunk_size=CHUNK)
    data = bytearray((tmp_path / "enc").read_bytes())
    data[HEADER + (CHUNK + _aead.TAG_SIZE) + 5] ^= 1  # inside chunk 1
    (tmp_path / "enc").write_bytes(bytes(data))
    out = tmp_path / "dec"
    out.write_bytes(b"")
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        _aead.decrypt_file_range_to(
            tmp_path / "enc", key, 0, 3, is_last_range=True, dst=str(out), offset=0
        )
    assert out.read_bytes() == plain[:CHUNK]  # chunk 0 only: nothing of chunk 1


class _WithoutInto:
    """An AEAD object as cryptography before 45 has it: no ``encrypt_into``/``decrypt_into``."""

    def __init__(self, cipher: AESGCM | ChaCha20Poly1305) -> None:
        self._cipher = cipher

    def encrypt(self, nonce: bytes, data: object, aad: object) -> bytes:
        return self._cipher.encrypt(nonce, data, aad)  # type: ignore[arg-type]

    def decrypt(self, nonce: bytes, data: object, aad: object) -> bytes:
        return self._cipher.decrypt(nonce, data, aad)  # type: ignore[arg-type]


@pytest.mark.parametrize("into", [True, False], ids=["into", "plain"])
def test_chunk_sealer_with_and_without_encrypt_into(into: bool) -> None:
    key = _aead.generate_key()
    header = _aead.parse_header(_aead.make_header("aes-gcm", CHUNK))
    cipher: object = AESGCM(key) if into else _WithoutInto(AESGCM(key))
    sealer = _aead._ChunkSealer(cipher, header, CHUNK + _aead.TAG_SIZE)  # type: ignore[arg-type]
    opener = _aead._ChunkSealer(cipher, header, CHUNK)  # type: ignore[arg-type]
    data = os.urandom(CHUNK)
    sealed = bytes(sealer.seal(3, memoryview(data), False))
    assert sealed == AESGCM(key).encrypt(_aead._chunk_nonce(header, 3, False), data, None)
    assert bytes(opener.open(3, memoryview(sealed), False)) == data
    short = bytes(sealer.seal(4, memoryview(data[:10]), True))
    assert len(short) == 10 + _aead.TAG_SIZE
    assert bytes(opener.open(4, memoryview(short), True)) == data[:10]
    with pytest.raises(IntegrityError, match="chunk 3 failed"):
        opener.open(3, memoryview(sealed), True)  # sealed as non-final
    with pytest.raises(IntegrityError, match="wrong size"):
        opener.open(5, memoryview(short), False)
    with pytest.raises(IntegrityError, match="truncated"):
        opener.open(6, memoryview(short[:5]), True)
