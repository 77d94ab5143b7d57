"""AsyncWorkerBridge: the same behaviour, without blocking the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

import workerbridge as wb

HANDLERS = ["wbtest_handlers"]


@pytest.fixture(params=["pool", "fallback"])
def options(request: pytest.FixtureRequest) -> dict[str, object]:
    opts: dict[str, object] = {"workers": 2, "handlers": HANDLERS}
    opts["fallback"] = "always" if request.param == "fallback" else "never"
    return opts


def test_run_submit_and_gather(options: dict[str, object]) -> None:
    async def main() -> None:
        async with wb.AsyncWorkerBridge(**options) as ab:  # type: ignore[arg-type]
            assert await ab.run("t", "add", {"a": 1, "b": 2}) == 3
            task = await ab.submit("t", "add", {"a": 5, "b": 5})
            assert isinstance(task, wb.Task)
            assert await task == 10
            results = await asyncio.gather(
                *(ab.run("t", "add", {"a": i, "b": 0}) for i in range(20))
            )
            assert results == list(range(20))

    asyncio.run(main())


def test_loop_is_not_blocked(options: dict[str, object]) -> None:
    async def main() -> None:
        async with wb.AsyncWorkerBridge(**options) as ab:  # type: ignore[arg-type]
            await ab.run("t", "add", {"a": 0, "b": 0})
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            t = asyncio.create_task(ticker())
            await ab.run("t", "sleep", 0.3)
            t.cancel()
            assert ticks >= 10

    asyncio.run(main())


def test_cancelling_the_coroutine_cancels_the_task(options: dict[str, object]) -> None:
    async def main() -> None:
        async with wb.AsyncWorkerBridge(**options) as ab:  # type: ignore[arg-type]
            task = await ab.submit("t", "coop", {"steps": 10_000, "delay": 0.001})
            waiter = asyncio.ensure_future(task)
            await asyncio.sleep(0.2)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert task.cancelled()
            assert await ab.run("t", "add", {"a": 1, "b": 1}) == 2

    asyncio.run(main())


def test_timeout_and_progress_on_loop(options: dict[str, object]) -> None:
    async def main() -> None:
        async with wb.AsyncWorkerBridge(**options) as ab:  # type: ignore[arg-type]
            with pytest.raises(wb.TaskTimeoutError):
                await ab.run("t", "coop", {"steps": 1000, "delay": 0.01}, timeout=0.3)
            loop_thread = []
            seen: list[wb.Progress] = []

            def on_progress(p: wb.Progress) -> None:
                loop_thread.append(asyncio.get_running_loop() is not None)
                seen.append(p)

            await ab.run("t", "coop", {"steps": 20, "delay": 0.01}, on_progress=on_progress)
            await asyncio.sleep(0.05)
            assert seen and seen[-1] == wb.Progress(20, 20)
            assert all(loop_thread)

    asyncio.run(main())


def test_block_waits_for_room(options: dict[str, object]) -> None:
    async def main() -> None:
        async with wb.AsyncWorkerBridge(**{**options, "workers": 1, "max_queue": 1}) as ab:  # type: ignore[arg-type]
            first = await ab.submit("t", "sleep", 0.2)
            while not first.running():
                await asyncio.sleep(0.005)
            second = await ab.submit("t", "add", {"a": 1, "b": 0})
            with pytest.raises(wb.QueueFullError):
                await ab.submit("t", "add", {"a": 2, "b": 0})
            start = time.monotonic()
            third = await ab.submit("t", "add", {"a": 3, "b": 0}, block=True)
            assert time.monotonic() - start > 0.05
            assert [await first, await second, await third] == [0.2, 1, 3]

    asyncio.run(main())
