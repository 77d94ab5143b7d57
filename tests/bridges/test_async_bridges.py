"""The asyncio bridges (``abridge.compression`` ...) through both backends: the same plans
as the sync bridges, driven on the event loop; progress on the loop's thread; cancelling
the awaiting task stops the work and leaves no output; one nonce registry per bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zstandard

import workerbridge as wb
from workerbridge.bridges import AsyncCompressionBridge, _aead, _codecs
from workerbridge.bridges._base import Tuning

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import netservers as ns  # noqa: E402

KIB = 1024
MIB = 1024 * KIB
WORKER = Tuning(inline_max=-1)
T = TypeVar("T")


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def run_async(backend: str) -> Callable[..., Any]:
    """Run ``coro_fn(abridge)`` on a fresh loop with a 2-worker AsyncWorkerBridge."""

    def run(coro_fn: Callable[[wb.AsyncWorkerBridge], Coroutine[Any, Any, T]]) -> T:
        async def main() -> T:
            fallback = "always" if backend == "fallback" else "auto"
            async with wb.AsyncWorkerBridge(workers=2, fallback=fallback) as abridge:
                return await coro_fn(abridge)

        return asyncio.run(main())

    return run


def wait_for_listing(directory: Path, expected: set[str], wait: float = 2.0) -> None:
    deadline = time.monotonic() + wait
    while set(os.listdir(directory)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(os.listdir(directory)) == expected


def test_compression(run_async: Callable[..., Any]) -> None:
    data = blob(600 * KIB, 1)

    async def scenario(abridge: wb.AsyncWorkerBridge) -> None:
        comp = abridge.compression
        assert isinstance(comp, AsyncCompressionBridge)
        assert comp is abridge.compression
        small = await comp.compress(b"hello" * 10)
        assert small == _codecs.compress(b"hello" * 10)
        comp._tuning = Tuning(inline_max=-1, split_per_worker=64 * KIB, part_size=128 * KIB)
        loop_thread = threading.get_ident()
        progress: list[tuple[wb.Progress, int]] = []
        packed = await comp.compress(
            data, on_progress=lambda p: progress.append((p, threading.get_ident()))
        )
        reader = zstandard.ZstdDecompressor().stream_reader(packed, read_across_frames=True)
        assert reader.read(len(data) + 1) == data
        assert progress[-1][0] == wb.Progress(len(data), len(data))
        assert all(ident == loop_thread for _, ident in progress)
        currents = [p.current for p, _ in progress]
        assert currents == sorted(currents)
        # Several calls at once share the workers.
        results = await asyncio.gather(*(comp.compress(data[i::4], "gzip") for i in range(4)))
        assert [await comp.decompress(r, "gzip") for r in results] == [data[i::4] for i in range(4)]

    run_async(scenario)


def test_crypto_shares_the_nonce_registry(run_async: Callable[..., Any], tmp_path: Path) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    src = tmp_path / "plain"
    data = blob(3 * MIB + 1, 2)
    src.write_bytes(data)

    async def scenario(abridge: wb.AsyncWorkerBridge) -> None:
        crypto = abridge.crypto
        crypto._tuning = WORKER
        sealed = await crypto.encrypt(b"msg", key, nonce=nonce)
        assert await crypto.decrypt(sealed, key) == b"msg"
        with pytest.raises(wb.NonceReuseError):
            abridge.sync.crypto.encrypt(b"msg", key, nonce=nonce)
        with pytest.raises(wb.NonceReuseError):
            await crypto.encrypt(b"other", key, nonce=nonce)
        assert await crypto.hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
        assert len(await crypto.generate_key()) == 32
        crypto._tuning = Tuning(split_per_worker=1 * MIB, part_size=1 * MIB)
        await crypto.encrypt_file(src, tmp_path / "sealed", key)
        _aead.decrypt_file(tmp_path / "sealed", tmp_path / "engine", key)
        await crypto.decrypt_file(tmp_path / "sealed", tmp_path / "opened", key)

    run_async(scenario)
    assert (tmp_path / "engine").read_bytes() == data
    assert (tmp_path / "opened").read_bytes() == data


def test_files(run_async: Callable[..., Any], tmp_path: Path) -> None:
    data = blob(200 * KIB, 3)

    async def scenario(abridge: wb.AsyncWorkerBridge) -> None:
        files = abridge.file
        await files.write(tmp_path / "a", data)
        await files.copy(tmp_path / "a", tmp_path / "b")
        assert await files.read(tmp_path / "b", 5, 10) == data[5:15]
        assert await files.hash(tmp_path / "b") == hashlib.sha256(data).hexdigest()
        with pytest.raises(wb.ValidationError, match="missing"):
            await files.hash(tmp_path / "missing")

    run_async(scenario)
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


@pytest.mark.parametrize("split", [True, False])
def test_cancelling_the_awaiting_task_leaves_no_output(
    run_async: Callable[..., Any], tmp_path: Path, split: bool
) -> None:
    src = tmp_path / "src"
    src.write_bytes(blob(8 * MIB, 4))

    async def scenario(abridge: wb.AsyncWorkerBridge) -> wb.BridgeStats:
        comp = abridge.compression
        if split:
            comp._tuning = Tuning(split_per_worker=1 * MIB, part_size=1 * MIB)
        started = asyncio.Event()
        job = asyncio.create_task(
            comp.compress_file(
                src, tmp_path / "out", "gzip", 9, on_progress=lambda p: started.set()
            )
        )
        await asyncio.wait_for(started.wait(), 10)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        with pytest.raises(wb.TaskTimeoutError):
            await comp.compress_file(src, tmp_path / "out", "gzip", 9, timeout=0.05)
        await asyncio.sleep(0.5)  # the grace period of the stopped tasks
        return abridge.stats()

    stats = run_async(scenario)
    assert stats.in_flight == 0
    assert stats.queued == 0
    wait_for_listing(tmp_path, {"src"})


def test_download(run_async: Callable[..., Any], tmp_path: Path) -> None:
    data = blob(MIB, 5)
    with ns.run_nginx(tmp_path / "server") as nginx:
        (nginx.docroot / "f.bin").write_bytes(data)
        url = nginx.url("f.bin")

        async def scenario(abridge: wb.AsyncWorkerBridge) -> list[Any]:
            one = await abridge.network.download(url, tmp_path / "one.bin")
            many = await abridge.network.download_many(
                [(url, tmp_path / "a.bin"), (url, tmp_path / "b.bin")]
            )
            with pytest.raises(wb.HTTPError):
                await abridge.network.download(nginx.url("nope"), tmp_path / "x", retries=0)
            return [one, *many]

        results = run_async(scenario)
    assert [r.sha256 for r in results] == [hashlib.sha256(data).hexdigest()] * 3
