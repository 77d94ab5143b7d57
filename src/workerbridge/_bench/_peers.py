"""The peers: one adapter per process pool, each used the way its documentation shows.

Data flow::

    peers(workers) --> [WorkerbridgeExecutor, ProcessPoolExecutor, multiprocessing.Pool,
                        loky, pebble, mpire]
    adapter.missing()  "not installed" when its package cannot be imported
    adapter.start(n)   the pool with n workers (the same n for every contestant)
    adapter.call()     one empty task, waited for          (round-trip case)
    adapter.echo(b)    bytes sent to a worker and returned (echo case)
    adapter.map(xs, c) Executor.map-like call, chunk size c or the default (map case)
    adapter.close()

Each peer gets its natural configuration: its default start method, its
documented call for one task (``submit().result()``, ``apply``,
``schedule().result()``), and ``map`` with its default chunk size, plus a tuned
one chosen by the map case for every contestant alike.  mpire runs with
``keep_alive=True``, its documented setting for reusing workers across calls
(without it every call would start and stop the workers).

The optional peers are imported through :func:`importlib.import_module`, so
the package needs none of them installed (nor their type stubs).
"""

from __future__ import annotations

import concurrent.futures
import importlib
import importlib.metadata
import math
import multiprocessing
import multiprocessing.pool
import time
from typing import Any

from . import _work

__all__ = ["Peer", "package_version", "peers", "wait_ready"]

#: Seconds a new workerbridge pool may take to have every worker running.
READY_TIMEOUT = 60.0


def wait_ready(bridge: Any, timeout: float = READY_TIMEOUT) -> None:
    """Block until every worker of ``bridge`` has started (none is ``"starting"``).

    workerbridge starts its workers from background threads with
    :class:`subprocess.Popen`.  A peer forking its own workers at that moment
    (the ``fork`` start method) inherits the pipe ``Popen`` waits on for the
    child's ``exec``, and ``Popen`` then blocks until that peer's worker
    exits.  So the suite starts workerbridge first, waits here, and only then
    starts the peers.

    Raises
    ------
    TimeoutError
        Some worker is still starting after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while any(w.state == "starting" for w in bridge.stats().workers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"workerbridge workers not started within {timeout:g} s")
        time.sleep(0.005)


def package_version(dist: str) -> str | None:
    """Installed version of the distribution ``dist``, or ``None``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


class Peer:
    """A process pool under test (base class: the interface and its defaults).

    Attributes
    ----------
    name
        Label used in the report.
    dist
        Distribution providing it (for the version and the "not installed" check);
        ``None`` for the standard library.
    """

    name = "?"
    dist: str | None = None

    def missing(self) -> str | None:
        """Why this peer cannot run here (``"not installed"``), or ``None``."""
        return None

    def start(self, workers: int) -> None:
        """Create the pool with ``workers`` worker processes."""
        raise NotImplementedError

    def call(self) -> object:
        """Run one empty task and wait for it."""
        raise NotImplementedError

    def echo(self, payload: bytes) -> object:
        """Send ``payload`` to a worker and return what comes back."""
        raise NotImplementedError

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        """``square`` over ``items`` in order; ``chunksize=None`` is the peer's default."""
        raise NotImplementedError

    def default_chunksize(self, n: int, workers: int) -> int:
        """The chunk size that ``chunksize=None`` means for ``n`` items."""
        return 1

    def close(self) -> None:
        """Shut the pool down (idempotent)."""

    def version(self) -> str | None:
        """Version of the package providing the peer."""
        return package_version(self.dist) if self.dist else None


class WorkerbridgeExecutor(Peer):
    """:class:`workerbridge.Executor`, the drop-in ``concurrent.futures`` executor."""

    name = "workerbridge Executor"
    dist: str | None = "workerbridge"

    def __init__(self) -> None:
        self._ex: Any = None
        self._workers = 1

    def start(self, workers: int) -> None:
        import workerbridge as wb

        self._workers = workers
        self._ex = wb.Executor(max_workers=workers, fallback="never")
        wait_ready(self._ex.bridge)

    def call(self) -> object:
        return self._ex.submit(_work.noop).result()

    def echo(self, payload: bytes) -> object:
        return self._ex.submit(_work.echo, payload).result()

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        return list(self._ex.map(_work.square, items, chunksize=chunksize))

    def default_chunksize(self, n: int, workers: int) -> int:
        from workerbridge._executor import BATCHES_PER_WORKER, MAX_AUTO_CHUNK

        return max(1, min(-(-n // (workers * BATCHES_PER_WORKER)), MAX_AUTO_CHUNK))

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None


class StdlibPPE(Peer):
    """:class:`concurrent.futures.ProcessPoolExecutor` (map's default chunk size is 1)."""

    name = "ProcessPoolExecutor"

    def __init__(self) -> None:
        self._ex: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self, workers: int) -> None:
        self._ex = concurrent.futures.ProcessPoolExecutor(max_workers=workers)

    def call(self) -> object:
        assert self._ex is not None
        return self._ex.submit(_work.noop).result()

    def echo(self, payload: bytes) -> object:
        assert self._ex is not None
        return self._ex.submit(_work.echo, payload).result()

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        assert self._ex is not None
        return list(self._ex.map(_work.square, items, chunksize=chunksize or 1))

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None


class StdlibPool(Peer):
    """:class:`multiprocessing.pool.Pool` (``apply``, ``map``; default chunk: n / (4 x workers))."""

    name = "multiprocessing.Pool"

    def __init__(self) -> None:
        self._pool: multiprocessing.pool.Pool | None = None

    def start(self, workers: int) -> None:
        self._pool = multiprocessing.Pool(processes=workers)

    def call(self) -> object:
        assert self._pool is not None
        return self._pool.apply(_work.noop)

    def echo(self, payload: bytes) -> object:
        assert self._pool is not None
        return self._pool.apply(_work.echo, (payload,))

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        assert self._pool is not None
        return self._pool.map(_work.square, items, chunksize=chunksize)

    def default_chunksize(self, n: int, workers: int) -> int:
        return math.ceil(n / (workers * 4))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


class Loky(Peer):
    """loky's reusable executor (``get_reusable_executor``; map's default chunk size is 1)."""

    name = "loky"
    dist: str | None = "loky"

    def __init__(self) -> None:
        self._ex: Any = None

    def missing(self) -> str | None:
        return None if _optional("loky") is not None else "not installed"

    def start(self, workers: int) -> None:
        loky = importlib.import_module("loky")
        self._ex = loky.get_reusable_executor(max_workers=workers)

    def call(self) -> object:
        return self._ex.submit(_work.noop).result()

    def echo(self, payload: bytes) -> object:
        return self._ex.submit(_work.echo, payload).result()

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        return list(self._ex.map(_work.square, items, chunksize=chunksize or 1))

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None


class Pebble(Peer):
    """pebble's :class:`ProcessPool` (``schedule``; map's default chunk size is 1)."""

    name = "pebble"
    dist: str | None = "pebble"

    def __init__(self) -> None:
        self._pool: Any = None

    def missing(self) -> str | None:
        return None if _optional("pebble") is not None else "not installed"

    def start(self, workers: int) -> None:
        pebble = importlib.import_module("pebble")
        self._pool = pebble.ProcessPool(max_workers=workers)

    def call(self) -> object:
        return self._pool.schedule(_work.noop).result()

    def echo(self, payload: bytes) -> object:
        return self._pool.schedule(_work.echo, args=(payload,)).result()

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        future = self._pool.map(_work.square, items, chunksize=chunksize or 1)
        return list(future.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


class Mpire(Peer):
    """mpire's :class:`WorkerPool` with ``keep_alive=True`` (default chunk: n / (4 x workers))."""

    name = "mpire"
    dist: str | None = "mpire"

    def __init__(self) -> None:
        self._pool: Any = None

    def missing(self) -> str | None:
        return None if _optional("mpire") is not None else "not installed"

    def start(self, workers: int) -> None:
        mpire = importlib.import_module("mpire")
        self._pool = mpire.WorkerPool(n_jobs=workers, keep_alive=True)

    def call(self) -> object:
        return self._pool.apply(_work.noop)

    def echo(self, payload: bytes) -> object:
        return self._pool.apply(_work.echo, args=(payload,))

    def map(self, items: list[int], chunksize: int | None) -> list[int]:
        return list(self._pool.map(_work.square, items, chunk_size=chunksize))

    def default_chunksize(self, n: int, workers: int) -> int:
        return math.ceil(n / (workers * 4))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


def peers() -> list[Peer]:
    """Fresh adapters for every peer, in report order (none started)."""
    return [StdlibPPE(), StdlibPool(), Loky(), Pebble(), Mpire()]
