"""AsyncWorkerBridge: the asyncio front over the same dispatcher.

Data flow::

    await abridge.submit(...)   queue full and block=True? wait for room without
                                blocking the loop (Dispatcher.add_room_waiter ->
                                call_soon_threadsafe) --> WorkerBridge.submit --> Task
    await task                  Task.__await__: resolved from the dispatcher's
                                threads via call_soon_threadsafe; cancelling the
                                awaiting coroutine cancels the task in the pool
    await abridge.crypto.encrypt(...)   the same bridge classes, async flavour

There is no second scheduler: :class:`AsyncWorkerBridge` owns a
:class:`WorkerBridge` and only adapts waiting to the event loop.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import asyncio

from ._balancer import Strategy
from ._bridge import Fallback, WorkerBridge
from ._buffer import SharedBuffer
from ._errors import QueueFullError
from ._shared import CancellationToken
from ._stats import BridgeStats
from ._task import Progress, Task

if TYPE_CHECKING:
    from .bridges import (
        AsyncCompressionBridge,
        AsyncCryptoBridge,
        AsyncFileBridge,
        AsyncNetworkBridge,
    )

__all__ = ["AsyncWorkerBridge"]


class AsyncWorkerBridge:
    """The asyncio flavour of :class:`WorkerBridge`: the same options and methods, as coroutines.

    Handlers run in worker processes exactly as with :class:`WorkerBridge`;
    nothing here blocks the event loop (in-process fallback tasks run on
    threads).

    Examples
    --------
    >>> import asyncio, workerbridge as wb
    >>> async def main():
    ...     async with wb.AsyncWorkerBridge(workers=2) as abridge:
    ...         return await abridge.run("_wb", "echo", b"hi")
    >>> asyncio.run(main())
    b'hi'
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        strategy: Strategy = "least-busy",
        max_queue: int = 1000,
        fallback: Fallback = "auto",
        default_timeout: float | None = None,
        handlers: Iterable[str] | str = (),
        debug: bool = False,
    ) -> None:
        self._sync = WorkerBridge(
            workers,
            strategy=strategy,
            max_queue=max_queue,
            fallback=fallback,
            default_timeout=default_timeout,
            handlers=handlers,
            debug=debug,
        )

    @property
    def sync(self) -> WorkerBridge:
        """The underlying :class:`WorkerBridge` (for use from other threads)."""
        return self._sync

    @property
    def mode(self) -> Literal["pool", "inprocess"]:
        """``"pool"`` or ``"inprocess"``; see :attr:`WorkerBridge.mode`."""
        return self._sync.mode

    async def submit(
        self,
        channel: str,
        op: str,
        payload: object = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        cancel: CancellationToken | None = None,
        on_progress: Callable[[Progress], object] | None = None,
        affinity: object = None,
        retries: int = 0,
        block: bool | float = False,
    ) -> Task[Any]:
        """Submit a task; the coroutine returns the :class:`Task` (itself awaitable).

        Same options as :meth:`WorkerBridge.submit`.  With ``block`` the
        coroutine waits for queue room without blocking the event loop.
        ``on_progress`` is called on the event loop's thread.
        """
        import asyncio  # not at module level: worker processes never need it

        loop = asyncio.get_running_loop()
        if on_progress is not None:
            user_cb = on_progress

            def on_progress(p: Progress) -> None:
                loop.call_soon_threadsafe(user_cb, p)

        deadline = None if block is True or block is False else time.monotonic() + float(block)
        while True:
            try:
                return self._sync.submit(
                    channel,
                    op,
                    payload,
                    timeout=timeout,
                    priority=priority,
                    cancel=cancel,
                    on_progress=on_progress,
                    affinity=affinity,
                    retries=retries,
                    block=False,
                )
            except QueueFullError:
                if block is False:
                    raise
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise
                room = loop.create_future()

                def wake(room: asyncio.Future[None] = room) -> None:
                    loop.call_soon_threadsafe(
                        lambda: room.done() or room.set_result(None)  # type: ignore[func-returns-value]
                    )

                self._sync._dispatcher.add_room_waiter(wake)
                try:
                    await asyncio.wait_for(room, left)
                except TimeoutError:
                    raise QueueFullError(
                        f"no room in the queue after {float(block):.3g} s"
                    ) from None

    async def run(self, channel: str, op: str, payload: object = None, **options: Any) -> Any:
        """Submit a task and await its result.

        On timeout raises :exc:`~workerbridge.TaskTimeoutError`, on
        cancellation :exc:`~workerbridge.TaskCancelledError`; cancelling the
        awaiting coroutine cancels the task in the pool.
        """
        task = await self.submit(channel, op, payload, **options)
        return await task

    @functools.cached_property
    def compression(self) -> AsyncCompressionBridge:
        """The :class:`~workerbridge.bridges.AsyncCompressionBridge` of this bridge.

        :attr:`WorkerBridge.compression` with coroutines.  Created on first use.
        """
        from .bridges._compression import AsyncCompressionBridge

        return AsyncCompressionBridge(self._sync)

    @functools.cached_property
    def crypto(self) -> AsyncCryptoBridge:
        """The :class:`~workerbridge.bridges.AsyncCryptoBridge` of this bridge.

        :attr:`WorkerBridge.crypto` with coroutines.  Created on first use; it
        shares the nonce-reuse registry of :attr:`sync`'s crypto bridge.
        """
        from .bridges._crypto import AsyncCryptoBridge

        return AsyncCryptoBridge(self._sync)

    @functools.cached_property
    def file(self) -> AsyncFileBridge:
        """The :class:`~workerbridge.bridges.AsyncFileBridge` of this bridge.

        :attr:`WorkerBridge.file` with coroutines.  Created on first use.
        """
        from .bridges._file import AsyncFileBridge

        return AsyncFileBridge(self._sync)

    @functools.cached_property
    def network(self) -> AsyncNetworkBridge:
        """The :class:`~workerbridge.bridges.AsyncNetworkBridge` of this bridge.

        :attr:`WorkerBridge.network` with coroutines.  Created on first use.
        """
        from .bridges._network import AsyncNetworkBridge

        return AsyncNetworkBridge(self._sync)

    def allocate(self, size: int) -> SharedBuffer:
        """See :meth:`WorkerBridge.allocate`."""
        return self._sync.allocate(size)

    def stats(self) -> BridgeStats:
        """See :meth:`WorkerBridge.stats`."""
        return self._sync.stats()

    async def aclose(self, wait: bool = True, cancel_pending: bool = True) -> None:
        """Close the bridge without blocking the event loop; see :meth:`WorkerBridge.close`."""
        import asyncio

        await asyncio.to_thread(self._sync.close, wait, cancel_pending)

    def close(self, wait: bool = True, cancel_pending: bool = True) -> None:
        """Close the bridge (blocking); prefer :meth:`aclose` inside a coroutine."""
        self._sync.close(wait, cancel_pending)

    async def __aenter__(self) -> AsyncWorkerBridge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncWorkerBridge {self._sync!r}>"


AsyncWorkerBridge.__module__ = "workerbridge"
