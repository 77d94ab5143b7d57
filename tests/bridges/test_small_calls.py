"""The small-call fast paths through both backends: the same results and typed errors as
the plan, the pinned key of the cipher cache, the zstd one-shot decoder, and small files
encrypted in the caller's thread.

No timing here: these tests pin down behaviour, the benchmark measures speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import threading
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import workerbridge as wb
from workerbridge.bridges import _aead, _codecs
from workerbridge.bridges._base import Tuning

KIB = 1024


def key_bytes(seed: int, size: int = 32) -> bytes:
    return bytes((seed * 31 + i) % 256 for i in range(size))


# --------------------------------------------------------------------------- the pinned key


def test_a_bytes_key_is_pinned_by_identity_and_released_by_the_next_key(
    bridge: wb.WorkerBridge,
) -> None:
    crypto = bridge.crypto
    _aead._CIPHERS.clear()
    key = key_bytes(1)
    sealed = crypto.encrypt(b"one", key)
    pinned = _aead._CIPHERS.pinned
    assert pinned is not None
    assert pinned[0] is key  # the caller's own object, not a copy
    assert crypto.decrypt(sealed, key) == b"one"
    assert _aead._CIPHERS.pinned is pinned  # found again by identity
    # An equal key in another object decrypts too (through the digest), and is pinned instead.
    other = key[:16] + key[16:]
    assert other is not key
    assert crypto.decrypt(sealed, other) == b"one"
    assert _aead._CIPHERS.pinned is not None
    assert _aead._CIPHERS.pinned[0] is other
    # Another key replaces it: one key at most is held.
    crypto.encrypt(b"two", key_bytes(2))
    assert _aead._CIPHERS.pinned is not None
    assert _aead._CIPHERS.pinned[0] is not key
    assert _aead._CIPHERS.pinned[0] is not other
    _aead._CIPHERS.clear()
    assert _aead._CIPHERS.pinned is None
    assert key.hex() not in repr(_aead._CIPHERS)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_mutable_keys_are_never_pinned(bridge: wb.WorkerBridge, kind: str) -> None:
    crypto = bridge.crypto
    buffer = bytearray(key_bytes(3))
    key = buffer if kind == "bytearray" else memoryview(buffer)
    crypto.encrypt(b"pin something first", key_bytes(4))
    sealed = crypto.encrypt(b"data", key)
    assert _aead._CIPHERS.pinned is None  # neither the buffer nor a copy of it
    assert crypto.decrypt(sealed, key) == b"data"
    assert _aead._CIPHERS.pinned is None
    # Stored digests and pinned slot hold no key bytes.
    assert bytes(buffer[:8]) not in b"".join(_aead._CIPHERS._entries)


def test_a_bytearray_key_changed_between_calls_gets_its_new_contents(
    bridge: wb.WorkerBridge,
) -> None:
    crypto = bridge.crypto
    key = bytearray(key_bytes(5))
    original = bytes(key)
    first = crypto.encrypt(b"data", key)
    key[0] ^= 0xFF
    changed = bytes(key)
    second = crypto.encrypt(b"data", key)
    assert AESGCM(original).decrypt(first[:12], first[12:], None) == b"data"
    assert AESGCM(changed).decrypt(second[:12], second[12:], None) == b"data"
    assert crypto.decrypt(second, key) == b"data"
    with pytest.raises(wb.IntegrityError):
        crypto.decrypt(first, key)  # the new contents, not a cached old cipher
    assert crypto.decrypt(first, original) == b"data"
    with pytest.raises(wb.IntegrityError):
        crypto.decrypt(second, original)


def test_the_pinned_key_serves_only_its_own_algorithm(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    key = key_bytes(6)
    aes = crypto.encrypt(b"data", key)  # pins (key, "aes-gcm")
    chacha = crypto.encrypt(b"data", key, algorithm="chacha20-poly1305")
    nonce = chacha[:12]
    assert ChaCha20Poly1305(key).decrypt(nonce, chacha[12:], None) == b"data"
    assert crypto.decrypt(aes, key) == b"data"
    with pytest.raises(wb.IntegrityError):
        crypto.decrypt(aes, key, algorithm="chacha20-poly1305")
    assert crypto.decrypt(chacha, key, algorithm="chacha20-poly1305") == b"data"
    # A 16-byte AES key, pinned, is still refused for ChaCha20 (32-byte keys only).
    short = key_bytes(7, 16)
    crypto.encrypt(b"data", short)
    with pytest.raises(wb.ValidationError, match="chacha20-poly1305 key must be 32 bytes"):
        crypto.encrypt(b"data", short, algorithm="chacha20-poly1305")
    with pytest.raises(wb.ValidationError, match="unknown algorithm"):
        crypto.decrypt(aes, key, algorithm="aes")


def test_bad_arguments_are_typed_errors_on_the_fast_path(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    key = key_bytes(8)
    sealed = crypto.encrypt(b"secret plaintext", key)  # pins key
    before = bridge.stats().submitted
    for bad_key in ("k" * 32, 12345, None, key[:20], bytearray(31)):
        with pytest.raises(wb.ValidationError, match="key"):
            crypto.encrypt(b"x", bad_key)  # type: ignore[arg-type]
        with pytest.raises(wb.ValidationError, match="key"):
            crypto.decrypt(sealed, bad_key)  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="data must be bytes-like"):
        crypto.encrypt("text", key)  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="aad must be bytes-like"):
        crypto.encrypt(b"x", key, aad="text")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="aad must be bytes-like"):
        crypto.decrypt(sealed, key, aad=3)  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="nonce must be 12 bytes"):
        crypto.encrypt(b"x", key, nonce=b"short")
    with pytest.raises(wb.ValidationError, match="algorithm"):
        crypto.encrypt(b"x", key, algorithm=None)  # type: ignore[arg-type]
    for bad in ({"timeout": 0.0}, {"priority": True}, {"priority": 1.5}, {"on_progress": 3}):
        with pytest.raises(wb.ValidationError):
            crypto.encrypt(b"x", key, **bad)  # type: ignore[arg-type]
        with pytest.raises(wb.ValidationError):
            crypto.hash(b"x", **bad)  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="unknown hash"):
        crypto.hash(b"x", ["sha256"])  # type: ignore[arg-type]
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(wb.IntegrityError, match="authentication failed") as info:
        crypto.decrypt(bytes(tampered), key)
    assert key.hex() not in str(info.value)
    assert "secret plaintext" not in str(info.value)
    with pytest.raises(wb.IntegrityError, match="too short"):
        crypto.decrypt(sealed[:27], key)
    # Empty aad is no aad: any AES-GCM implementation agrees.
    assert crypto.decrypt(sealed, key, aad=bytearray()) == b"secret plaintext"
    explicit = os.urandom(12)
    theirs = AESGCM(key).encrypt(explicit, b"abc", b"")
    assert crypto.encrypt(b"abc", key, nonce=explicit, aad=b"") == explicit + theirs
    assert bridge.stats().submitted == before  # all of it ran inline


def test_nonce_reuse_is_caught_on_the_fast_path(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    key, nonce = key_bytes(9), os.urandom(12)
    first = crypto.encrypt(b"one", key, nonce=nonce)
    assert _aead._CIPHERS.pinned is not None
    assert _aead._CIPHERS.pinned[0] is key  # the pinned key takes no shortcut past the registry
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"two", key, nonce=nonce)
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"two", bytearray(key), nonce=bytearray(nonce))
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"two", bytes(key), nonce=memoryview(nonce), timeout=30)
    assert crypto.decrypt(first, key) == b"one"
    crypto.encrypt(b"one", key, nonce=os.urandom(12))  # a fresh nonce is fine


def test_many_threads_with_their_own_keys_get_their_own_ciphers(bridge: wb.WorkerBridge) -> None:
    """The pinned slot is one tuple: a thread never pairs its key with another key's cipher."""
    crypto = bridge.crypto
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        key = key_bytes(seed)
        try:
            for i in range(300):
                data = b"%d:%d" % (seed, i)
                sealed = crypto.encrypt(data, key)
                assert AESGCM(key).decrypt(sealed[:12], sealed[12:], None) == data
                assert crypto.decrypt(sealed, key) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(20, 26)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_pool_closed_on_small_calls(bridge: wb.WorkerBridge) -> None:
    key = key_bytes(10)
    sealed = bridge.crypto.encrypt(b"x", key)
    blob = bridge.compression.compress(b"x" * 100)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        calls = (
            lambda: bridge.crypto.encrypt(b"x", key),
            lambda: bridge.crypto.decrypt(sealed, key),
            lambda: bridge.crypto.hash(b"x"),
            lambda: bridge.compression.compress(b"x"),
            lambda: bridge.compression.decompress(blob),
        )
        refused = 0
        for call in calls:
            try:
                call()
            except wb.PoolClosedError:
                refused += 1
            except BaseException:
                pass
        os._exit(0 if refused == len(calls) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bridge.crypto.decrypt(sealed, key) == b"x"  # the parent is unaffected


def test_every_small_call_on_a_closed_bridge_is_refused(bridge: wb.WorkerBridge) -> None:
    key = key_bytes(11)
    sealed = bridge.crypto.encrypt(b"x", key)
    blob = bridge.compression.compress(b"x" * 100)
    bridge.close()
    for call in (
        lambda: bridge.crypto.encrypt(b"x", key),
        lambda: bridge.crypto.decrypt(sealed, key),
        lambda: bridge.crypto.hash(b"x"),
        lambda: bridge.compression.compress(b"x"),
        lambda: bridge.compression.decompress(blob),
    ):
        with pytest.raises(wb.PoolClosedError):
            call()


def test_the_fast_path_follows_the_tuning(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    before = bridge.stats().submitted
    crypto._tuning = Tuning(inline_max=-1)
    assert crypto.hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert bridge.stats().submitted == before + 1
    crypto._tuning = Tuning(inline_max=4)
    assert crypto.hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert crypto.hash(b"abcde") == hashlib.sha256(b"abcde").hexdigest()
    assert bridge.stats().submitted == before + 2


# --------------------------------------------------------------------------- zstd one-shot


def test_zstd_decompress_small_inputs_of_every_shape(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    data = os.urandom(300) * 4
    before = bridge.stats().submitted
    one = zstandard.ZstdCompressor().compress(data)
    assert comp.decompress(one) == data
    assert comp.decompress(bytearray(one)) == data
    assert comp.decompress(memoryview(one)) == data
    # Frames without a content size, two frames, and an empty frame: the full path.
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert comp.decompress(unsized) == data
    assert comp.decompress(one + one) == data + data
    assert comp.decompress(zstandard.ZstdCompressor().compress(b"")) == b""
    # A skippable frame (which a one-shot decoder would read as empty) and what follows it.
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"hello"
    assert comp.decompress(skippable + one) == data
    with pytest.raises(wb.IntegrityError, match="corrupt zstd data"):
        comp.decompress(one + b"trailing garbage")
    with pytest.raises(wb.IntegrityError, match="corrupt zstd data"):
        comp.decompress(one[:-3])
    with pytest.raises(wb.ValidationError, match="max_output_size=100"):
        comp.decompress(one, max_output_size=100)
    assert comp.decompress(one, max_output_size=len(data)) == data
    with pytest.raises(wb.ValidationError, match="unknown codec"):
        comp.decompress(one, "lz4")
    with pytest.raises(wb.ValidationError, match="data must be bytes-like"):
        comp.decompress("text")  # type: ignore[arg-type]
    assert bridge.stats().submitted == before  # all inline
    assert comp.decompress(one, timeout=30) == data  # a long timeout stays inline too
    assert bridge.stats().submitted == before


def test_one_shot_decompressors_are_not_shared_between_threads(bridge: wb.WorkerBridge) -> None:
    comp = bridge.compression
    inputs = [os.urandom(64) * (i + 8) for i in range(8)]
    blobs = [zstandard.ZstdCompressor().compress(d) for d in inputs]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(300):
                assert comp.decompress(blobs[i]) == inputs[i]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    idle = _codecs._DECOMPRESSORS
    assert idle  # given back after use ...
    assert len({id(d) for d in idle}) == len(idle)  # ... each exactly once


def test_decompress_small_matches_decompress() -> None:
    data = b"abc" * 1000
    one = zstandard.ZstdCompressor().compress(data)
    most = 64 * KIB
    assert _codecs.decompress_small(one, "zstd", None, most) == data
    big = zstandard.ZstdCompressor().compress(b"\0" * (most + 1))
    assert _codecs.decompress_small(big, "zstd", None, most) is None  # for a worker
    with pytest.raises(wb.ValidationError, match="max_output_size=10"):
        _codecs.decompress_small(big, "zstd", 10, most)
    assert _codecs.decompress_small(bytearray(one), "zstd", None, most) == data
    assert _codecs.decompress_small(zlib_blob(data), "zlib", None, most) == data
    assert _codecs.decompress_small(one, "nope", None, most) is None  # the plan refuses it
    with pytest.raises(wb.IntegrityError):
        _codecs.decompress_small(one[:-1], "zstd", None, most)


def zlib_blob(data: bytes) -> bytes:
    import zlib

    return zlib.compress(data)


# --------------------------------------------------------------------------- small files


@pytest.mark.parametrize("algorithm", ["aes-gcm", "chacha20-poly1305"])
def test_small_files_run_here_and_match_the_engine(
    bridge: wb.WorkerBridge, tmp_path: Path, algorithm: str
) -> None:
    crypto = bridge.crypto
    key = key_bytes(12)
    data = os.urandom(1000)
    src, enc, dec = tmp_path / "plain", tmp_path / "sealed", tmp_path / "opened"
    src.write_bytes(data)
    before = bridge.stats().submitted
    crypto.encrypt_file(src, enc, key, algorithm=algorithm)
    crypto.decrypt_file(enc, dec, bytearray(key), algorithm=algorithm)
    assert bridge.stats().submitted == before  # no worker involved
    assert dec.read_bytes() == data
    _aead.decrypt_file(enc, tmp_path / "engine", key, algorithm=algorithm)
    assert (tmp_path / "engine").read_bytes() == data
    assert enc.stat().st_size == _aead.encrypted_size(len(data))
    assert set(os.listdir(tmp_path)) == {"plain", "sealed", "opened", "engine"}  # no temp file
    # Replacing an existing dst keeps its permission bits, as in a worker.
    os.chmod(dec, 0o600)
    crypto.decrypt_file(enc, dec, key, algorithm=algorithm)
    assert dec.stat().st_mode & 0o777 == 0o600


def test_small_files_with_options_or_large_ones_go_to_a_worker(
    make_bridge: object, tmp_path: Path
) -> None:
    bridge: wb.WorkerBridge = make_bridge()  # type: ignore[operator]
    crypto = bridge.crypto
    key = key_bytes(13)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"s" * 100)
    large.write_bytes(b"l" * (16 * KIB + 1))
    before = bridge.stats().submitted
    crypto.encrypt_file(large, tmp_path / "large.wbse", key)
    crypto.encrypt_file(small, tmp_path / "a.wbse", key, timeout=30)
    reports: list[wb.Progress] = []
    crypto.encrypt_file(small, tmp_path / "b.wbse", key, on_progress=reports.append)
    assert reports[-1] == wb.Progress(100, 100)
    token = wb.CancellationToken()
    try:
        crypto.decrypt_file(tmp_path / "a.wbse", tmp_path / "c", key, cancel=token)
    finally:
        token.close()
    assert bridge.stats().submitted == before + 4
    assert (tmp_path / "c").read_bytes() == b"s" * 100
    # A bridge with a default timeout never does file work in the caller's thread.
    timed: wb.WorkerBridge = make_bridge(default_timeout=30)  # type: ignore[operator]
    before = timed.stats().submitted
    timed.crypto.encrypt_file(small, tmp_path / "d.wbse", key)
    assert timed.stats().submitted == before + 1
    timed.crypto.decrypt_file(tmp_path / "d.wbse", tmp_path / "d", key)
    assert (tmp_path / "d").read_bytes() == b"s" * 100


def test_small_file_errors_are_the_workers_errors(bridge: wb.WorkerBridge, tmp_path: Path) -> None:
    crypto = bridge.crypto
    key = key_bytes(14)
    src = tmp_path / "plain"
    src.write_bytes(b"p" * 500)
    before = bridge.stats().submitted
    with pytest.raises(wb.ValidationError, match="key must be"):
        crypto.encrypt_file(src, tmp_path / "x", b"short")
    with pytest.raises(wb.ValidationError, match="unknown algorithm"):
        crypto.encrypt_file(src, tmp_path / "x", key, algorithm="des")
    with pytest.raises(wb.ValidationError, match="does not exist"):
        crypto.encrypt_file(src, tmp_path / "missing" / "x", key)
    with pytest.raises(wb.ValidationError, match="is a directory"):
        crypto.encrypt_file(src, tmp_path, key)
    assert bridge.stats().submitted == before
    sealed = tmp_path / "sealed"
    crypto.encrypt_file(src, sealed, key)
    damaged = bytearray(sealed.read_bytes())
    damaged[-3] ^= 1
    sealed.write_bytes(damaged)
    with pytest.raises(wb.IntegrityError, match="chunk 0 failed authentication") as info:
        crypto.decrypt_file(sealed, tmp_path / "opened", key)
    assert key.hex() not in str(info.value)
    with pytest.raises(wb.IntegrityError):
        crypto.decrypt_file(sealed, tmp_path / "opened", key_bytes(15))
    assert set(os.listdir(tmp_path)) == {"plain", "sealed"}  # no dst, no temp file
    # A missing source is refused as before (by the worker that the plan sends it to).
    with pytest.raises(wb.ValidationError, match="source"):
        crypto.encrypt_file(tmp_path / "nothing", tmp_path / "x", key)
    bridge.close()
    with pytest.raises(wb.PoolClosedError):
        crypto.encrypt_file(src, tmp_path / "x", key)


def test_the_async_bridge_never_does_file_work_on_the_loop(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    src.write_bytes(b"a" * 100)
    key = key_bytes(16)

    async def main() -> int:
        async with wb.AsyncWorkerBridge(workers=1) as abridge:
            before = abridge.stats().submitted
            await abridge.crypto.encrypt_file(src, tmp_path / "sealed", key)
            await abridge.crypto.decrypt_file(tmp_path / "sealed", tmp_path / "opened", key)
            return abridge.stats().submitted - before

    assert asyncio.run(main()) == 2
    assert (tmp_path / "opened").read_bytes() == b"a" * 100
