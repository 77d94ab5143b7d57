"""An asyncio service that offloads heavy work without ever blocking its event loop.

A heartbeat coroutine measures how late the loop wakes it while the service
handles a burst of requests concurrently: each request compresses and hashes
its body with the typed bridges and runs a CPU-heavy custom handler, under a
per-request timeout.  Then a client disconnects mid-request (cancelling the
awaiting coroutine cancels the task in its worker), and ``asyncio.wait_for``
gives up on a slow call (the same: the work is stopped, not abandoned).

Run it with ``python examples/async_service.py``.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from typing import Any

import workerbridge as wb


@wb.handler("svc", "primes")
def count_primes(ctx: wb.Context, payload: dict[str, int]) -> int:
    """Count the primes below ``limit`` by trial division: slow on purpose, and cooperative."""
    limit, block = payload["limit"], 2_000
    count = int(limit > 2)
    for start in range(3, limit, block):
        ctx.check_cancelled()  # a timeout or a cancelled caller stops the task here
        for n in range(start | 1, min(start + block, limit), 2):
            if all(n % d for d in range(3, math.isqrt(n) + 1, 2)):
                count += 1
        ctx.report(min(start + block, limit), limit)
    return count


async def heartbeat(lags: list[float], stop: asyncio.Event) -> None:
    """Wake every 10 ms and record how late each wake-up was."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - before - 0.01)


async def handle(abridge: wb.AsyncWorkerBridge, request: int, limit: int) -> str:
    """One request: compress and hash its body, then the heavy part, within 1.5 s."""
    body = os.urandom(64 * 1024) + bytes(192 * 1024)  # 256 KiB: big enough to go to a worker
    packed, digest = await asyncio.gather(
        abridge.compression.compress(body, codec="zstd"),
        abridge.crypto.hash(body, "sha256"),
    )
    try:
        primes = await abridge.run("svc", "primes", {"limit": limit}, timeout=1.5)
    except wb.TaskTimeoutError:
        return f"request {request}: 504, primes below {limit:,} took longer than 1.5 s"
    return (
        f"request {request}: 200, body {len(body) >> 10} KiB -> {len(packed) >> 10} KiB zstd, "
        f"sha256 {digest[:12]}..., {primes:,} primes below {limit:,}"
    )


async def main() -> None:
    # Leave a core to this process: its event loop and the bridge's threads.
    workers = max(1, (os.cpu_count() or 2) - 1)
    async with wb.AsyncWorkerBridge(workers=workers, handlers=["__main__"]) as abridge:
        print(f"service up: {workers} worker(s), mode={abridge.mode}")
        # Warm up: wait for the workers, and import the codec and crypto libraries
        # (a one-time cost paid in this thread on a bridge's first use).
        await abridge.run("svc", "primes", {"limit": 10})
        await abridge.compression.compress(b"warm up")
        await abridge.crypto.hash(b"warm up")
        lags: list[float] = []
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(lags, stop))

        # 1. A burst of requests, served concurrently; one is too slow for its timeout.
        start = time.monotonic()
        limits = [20_000, 40_000, 60_000, 80_000, 100_000, 50_000_000]
        for line in await asyncio.gather(*(handle(abridge, i, n) for i, n in enumerate(limits))):
            print(f"  {line}")
        print(f"  {len(limits)} requests in {time.monotonic() - start:.2f} s")

        # 2. The client goes away: cancelling the coroutine cancels the task in its worker.
        loop_thread = threading.get_ident()
        seen: list[tuple[wb.Progress, bool]] = []

        def on_progress(p: wb.Progress) -> None:  # called on the event loop's thread
            seen.append((p, threading.get_ident() == loop_thread))

        request = asyncio.create_task(
            abridge.run("svc", "primes", {"limit": 50_000_000}, on_progress=on_progress)
        )
        await asyncio.sleep(0.5)
        request.cancel()
        try:
            await request
        except asyncio.CancelledError:
            last, on_loop = seen[-1]
            print(
                f"  client disconnected at {last.fraction:.2%} of the work "
                f"({len(seen)} progress reports, all on the loop thread: {on_loop})"
            )

        # 3. asyncio.wait_for gives up after 0.3 s, and the work stops with it.
        try:
            await asyncio.wait_for(abridge.run("svc", "primes", {"limit": 50_000_000}), 0.3)
        except TimeoutError:
            print("  wait_for gave up after 0.3 s; the task was cancelled in its worker")

        await asyncio.sleep(0.3)  # let a stopped worker finish its grace period
        stats: Any = abridge.stats()
        print(
            f"  stats: {stats.completed} completed, {stats.timed_out} timed out, "
            f"{stats.cancelled} cancelled, {stats.in_flight} still running, "
            f"{stats.restarts} worker restarts"
        )
        stop.set()
        await beat
        lags.sort()
        print(
            f"  event loop stayed responsive: {len(lags)} heartbeats every 10 ms, "
            f"median {lags[len(lags) // 2] * 1e3:.1f} ms late, worst {lags[-1] * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
