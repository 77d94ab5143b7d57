"""``bridge.crypto`` through both backends: AEAD round trips and a known-answer vector,
nonce reuse refused across workers and threads, parallel file sealing compatible with
the engine's sequential format, tampering and cancellation leaving nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import workerbridge as wb
from workerbridge.bridges import _aead
from workerbridge.bridges._base import Tuning

KIB = 1024
MIB = 1024 * KIB
WORKER = Tuning(inline_max=-1)
# Files of 2 MiB and more are split into runs of 1 MiB chunks.
SPLIT = Tuning(split_per_worker=1 * MIB, part_size=1 * MIB)

# The GCM specification's test case 3 (McGrew and Viega): AES-128, 96-bit IV.
GCM_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308")
GCM_IV = bytes.fromhex("cafebabefacedbaddecaf888")
GCM_PLAIN = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
GCM_CIPHER = bytes.fromhex(
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
)
GCM_TAG = bytes.fromhex("4d5c2af327cd64a62cf35abd2ba6fab4")


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def wait_for_listing(directory: Path, expected: set[str], wait: float = 2.0) -> None:
    deadline = time.monotonic() + wait
    while set(os.listdir(directory)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(os.listdir(directory)) == expected


@pytest.mark.parametrize("path", ["inline", "worker"])
def test_aead_round_trips_and_interop(bridge: wb.WorkerBridge, path: str) -> None:
    crypto = bridge.crypto
    if path == "worker":
        crypto._tuning = WORKER
    # Known answer through encrypt() with an explicit nonce.
    assert crypto.encrypt(GCM_PLAIN, GCM_KEY, nonce=GCM_IV) == GCM_IV + GCM_CIPHER + GCM_TAG
    data = blob(3000, 1)
    for algorithm, key, lib in (
        ("aes-gcm", os.urandom(24), AESGCM),
        ("chacha20-poly1305", os.urandom(32), ChaCha20Poly1305),
    ):
        sealed = crypto.encrypt(data, key, aad=b"hdr", algorithm=algorithm)
        assert len(sealed) == 12 + len(data) + 16
        assert lib(key).decrypt(sealed[:12], sealed[12:], b"hdr") == data
        assert crypto.decrypt(sealed, key, aad=b"hdr", algorithm=algorithm) == data
        nonce = os.urandom(12)
        theirs = nonce + lib(key).encrypt(nonce, data, None)
        assert crypto.decrypt(bytearray(theirs), memoryview(key), algorithm=algorithm) == data
        with pytest.raises(wb.IntegrityError):
            crypto.decrypt(sealed, key, aad=b"other", algorithm=algorithm)
        tampered = bytearray(sealed)
        tampered[20] ^= 1
        with pytest.raises(wb.IntegrityError) as info:
            crypto.decrypt(bytes(tampered), key, aad=b"hdr", algorithm=algorithm)
        assert key.hex() not in str(info.value)


def test_large_data_goes_to_a_worker(bridge: wb.WorkerBridge) -> None:
    key = bridge.crypto.generate_key()
    data = blob(300 * KIB, 2)
    sealed = bridge.crypto.encrypt(data, key)
    assert bridge.crypto.decrypt(sealed, key) == data
    assert bridge.crypto.hash(data, "sha3_256") == hashlib.sha3_256(data).hexdigest()


def test_nonce_reuse_is_refused_across_workers_and_threads(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    crypto._tuning = WORKER
    key, nonce = os.urandom(32), os.urandom(12)
    first = crypto.encrypt(b"one", key, nonce=nonce)
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"two", key, nonce=nonce)
    crypto._tuning = Tuning()  # inline calls share the registry
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"two", bytearray(key), nonce=memoryview(nonce))
    # Another key, or another algorithm, may use the same nonce.
    crypto.encrypt(b"one", os.urandom(32), nonce=nonce)
    crypto.encrypt(b"one", key, nonce=nonce, algorithm="chacha20-poly1305")
    assert crypto.decrypt(first, key) == b"one"

    # Many threads race with one fresh nonce: exactly one wins.
    crypto._tuning = WORKER
    nonce = os.urandom(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            crypto.encrypt(b"race", key, nonce=nonce)
            result = "ok"
        except wb.NonceReuseError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7


def test_a_nonce_is_released_when_nothing_was_sent(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    crypto._tuning = WORKER
    key, nonce = os.urandom(32), os.urandom(12)
    with pytest.raises(wb.ValidationError, match="aad must be bytes-like"):
        crypto.encrypt(b"x", key, nonce=nonce, aad=object())  # type: ignore[arg-type]
    crypto.encrypt(b"x", key, nonce=nonce)  # not counted as used


def test_validation_happens_before_sending(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    crypto._tuning = WORKER
    before = bridge.stats().submitted
    with pytest.raises(wb.ValidationError, match="key must be"):
        crypto.encrypt(b"x", b"short")
    with pytest.raises(wb.ValidationError, match="nonce must be 12"):
        crypto.encrypt(b"x", os.urandom(32), nonce=b"123")
    with pytest.raises(wb.ValidationError, match="unknown algorithm"):
        crypto.decrypt(b"x" * 40, os.urandom(32), algorithm="rot13")
    with pytest.raises(wb.ValidationError, match="unknown hash"):
        crypto.hash(b"x", "md5")
    with pytest.raises(wb.ValidationError, match="unknown kdf"):
        crypto.derive_key("pw", b"saltsalt", kdf="bcrypt")
    with pytest.raises(wb.ValidationError, match="key must be"):
        crypto.encrypt_file("a", "b", b"short")
    assert bridge.stats().submitted == before


def test_hash_derive_and_generate(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    for algorithm in ("sha256", "sha512", "blake2b", "sha3_256"):
        assert crypto.hash(b"abc", algorithm) == hashlib.new(algorithm, b"abc").hexdigest()
    derived = crypto.derive_key("pässword", b"0123456789abcdef", kdf="pbkdf2-hmac-sha256")
    assert derived == _aead.derive_key("pässword", b"0123456789abcdef", kdf="pbkdf2-hmac-sha256")
    assert len(crypto.derive_key(b"ikm", b"", kdf="hkdf-sha256", length=64)) == 64
    keys = {crypto.generate_key(), crypto.generate_key("chacha20-poly1305")}
    assert len(keys) == 2
    assert all(len(k) == 32 for k in keys)


def test_small_plain_calls_skip_the_plan_with_the_same_results(bridge: wb.WorkerBridge) -> None:
    """Calls without a callback or token run their engine directly; nothing else changes."""
    crypto = bridge.crypto
    key = os.urandom(32)
    before = bridge.stats().submitted
    sealed = crypto.encrypt(b"plain", key, aad=b"a")
    assert crypto.decrypt(sealed, key, aad=b"a") == b"plain"
    assert crypto.decrypt(sealed, key, aad=b"a", timeout=5) == b"plain"
    assert crypto.hash(b"abc", "sha3_256") == hashlib.sha3_256(b"abc").hexdigest()
    assert bridge.stats().submitted == before  # all inline
    with pytest.raises(wb.IntegrityError, match="authentication failed"):
        crypto.decrypt(sealed, key)
    with pytest.raises(wb.IntegrityError, match="too short"):
        crypto.decrypt(b"short", key)
    with pytest.raises(wb.ValidationError, match="blob must be bytes-like"):
        crypto.decrypt("text", key)  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="key must be"):
        crypto.encrypt(b"x", b"short")
    with pytest.raises(wb.ValidationError, match="unknown hash"):
        crypto.hash(b"x", "md5")
    with pytest.raises(wb.ValidationError, match="priority"):
        crypto.hash(b"x", priority="high")  # type: ignore[arg-type]
    with pytest.raises(wb.ValidationError, match="timeout"):
        crypto.hash(b"x", timeout=-1)
    # An explicit nonce is still recorded, and released when the call failed.
    nonce = os.urandom(12)
    with pytest.raises(wb.ValidationError, match="aad must be bytes-like"):
        crypto.encrypt(b"x", key, nonce=nonce, aad=object())  # type: ignore[arg-type]
    first = crypto.encrypt(b"x", key, nonce=nonce)
    with pytest.raises(wb.NonceReuseError):
        crypto.encrypt(b"y", key, nonce=nonce)
    assert crypto.decrypt(first, key) == b"x"
    # A short timeout sends even tiny work to a worker, where it can be stopped.
    crypto._tuning = Tuning(inline_min_timeout=60.0)  # "short": below a minute
    assert crypto.hash(b"abc", timeout=30) == hashlib.sha256(b"abc").hexdigest()
    assert bridge.stats().submitted == before + 1
    bridge.close()
    with pytest.raises(wb.PoolClosedError):
        crypto.encrypt(b"x", key)
    with pytest.raises(wb.PoolClosedError):
        crypto.hash(b"x")


def test_small_calls_with_progress_or_a_token_still_report(bridge: wb.WorkerBridge) -> None:
    crypto = bridge.crypto
    reports: list[wb.Progress] = []
    key = os.urandom(32)
    sealed = crypto.encrypt(b"x" * 100, key, on_progress=reports.append)
    assert reports[-1] == wb.Progress(100, 100)
    token = wb.CancellationToken()
    try:
        assert crypto.decrypt(sealed, key, cancel=token) == b"x" * 100
        token.cancel()
        with pytest.raises(wb.TaskCancelledError):
            crypto.hash(b"x", cancel=token)
    finally:
        token.close()


def test_bridges_with_a_short_default_timeout_never_run_inline(
    make_bridge: object,
) -> None:
    bridge: wb.WorkerBridge = make_bridge(default_timeout=30)  # type: ignore[operator]
    short = Tuning(inline_min_timeout=60.0)  # "short": below a minute
    bridge.crypto._tuning = bridge.compression._tuning = short
    before = bridge.stats().submitted
    assert bridge.crypto.hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert bridge.compression.decompress(bridge.compression.compress(b"abc")) == b"abc"
    assert bridge.stats().submitted == before + 3


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("size", [0, 5 * MIB + 17])
def test_file_round_trip_parallel_and_sequential(
    bridge: wb.WorkerBridge, tmp_path: Path, size: int
) -> None:
    crypto = bridge.crypto
    crypto._tuning = SPLIT
    key = os.urandom(32)
    data = blob(size, 3)
    src, enc, dec = tmp_path / "plain", tmp_path / "sealed", tmp_path / "opened"
    src.write_bytes(data)
    progress: list[wb.Progress] = []
    crypto.encrypt_file(src, enc, key, on_progress=progress.append)
    assert enc.stat().st_size == _aead.encrypted_size(size)
    assert progress[-1] == wb.Progress(size, size)
    assert [p.current for p in progress] == sorted(p.current for p in progress)
    # The engine's sequential decryption reads the parallel output ...
    _aead.decrypt_file(enc, tmp_path / "engine", key)
    assert (tmp_path / "engine").read_bytes() == data
    # ... and the parallel decryption reads the engine's sequential output.
    _aead.encrypt_file(src, tmp_path / "engine.sealed", key, algorithm="chacha20-poly1305")
    crypto.decrypt_file(tmp_path / "engine.sealed", dec, key, algorithm="chacha20-poly1305")
    assert dec.read_bytes() == data
    crypto.decrypt_file(enc, dec, key)
    assert dec.read_bytes() == data
    assert set(os.listdir(tmp_path)) == {"plain", "sealed", "opened", "engine", "engine.sealed"}


@pytest.mark.parametrize("attack", ["flip", "truncate", "swap", "wrong-key", "header"])
def test_tampered_files_leave_no_output(
    bridge: wb.WorkerBridge, tmp_path: Path, attack: str
) -> None:
    crypto = bridge.crypto
    crypto._tuning = SPLIT
    key = os.urandom(32)
    src, enc = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(blob(4 * MIB + 100, 4))
    crypto.encrypt_file(src, enc, key)
    sealed = bytearray(enc.read_bytes())
    chunk = 1 * MIB + 16
    if attack == "flip":
        sealed[46 + 3 * chunk + 5] ^= 0x40  # inside the last full chunk
    elif attack == "truncate":
        del sealed[46 + 4 * chunk :]  # drop the final chunk: the last one is not flagged
    elif attack == "swap":
        a, b = 46 + chunk, 46 + 2 * chunk
        sealed[a : a + chunk], sealed[b : b + chunk] = sealed[b : b + chunk], sealed[a : a + chunk]
    elif attack == "header":
        sealed[10] ^= 1  # the salt: every subkey changes
    enc.write_bytes(sealed)
    dst = tmp_path / "opened"
    with pytest.raises(wb.IntegrityError):
        crypto.decrypt_file(enc, dst, os.urandom(32) if attack == "wrong-key" else key)
    wait_for_listing(tmp_path, {"plain", "sealed"})


@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
def test_cancel_mid_file_leaves_no_output(
    bridge: wb.WorkerBridge, tmp_path: Path, operation: str
) -> None:
    crypto = bridge.crypto
    key = os.urandom(32)
    src = tmp_path / "plain"
    src.write_bytes(blob(24 * MIB, 5))
    if operation == "decrypt":
        _aead.encrypt_file(src, tmp_path / "sealed", key)
        src = tmp_path / "sealed"
    crypto._tuning = Tuning(split_per_worker=1 * MIB, part_size=1 * MIB, window_per_worker=1)
    token = wb.CancellationToken()
    run = crypto.encrypt_file if operation == "encrypt" else crypto.decrypt_file
    try:
        with pytest.raises(wb.TaskCancelledError):
            run(src, tmp_path / "out", key, on_progress=lambda p: token.cancel(), cancel=token)
    finally:
        token.close()
    expected = {"plain"} | ({"sealed"} if operation == "decrypt" else set())
    wait_for_listing(tmp_path, expected)
