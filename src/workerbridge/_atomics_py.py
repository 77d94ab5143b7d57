"""Pure-Python fallback for :mod:`workerbridge._atomics`: same interface, slower.

Used when the C extension did not build or ``WORKERBRIDGE_PURE_ATOMICS=1`` is set
(:mod:`workerbridge._atomic` chooses).  Data flow::

    buffer (memoryview of the shared mapping, file offset 0 = buffer offset 0)
        |  memoryview.cast("q") over bytes [offset, offset + 8 * count)
        v
    AtomicArray
        load ---------------------------> plain aligned 8-byte read
        store / fetch_add / exchange /
        compare_exchange ----------------> process-local lock (one per file)
                                           + fcntl write lock on the slot's 8 bytes
                                             of lock_fd (open-file-description lock
                                             where available, else lockf)
                                           -> read, compute, write, unlock
        wait ----------------------------> poll with backoff: spin, then sleep
                                           50 us doubling up to 1 ms
        wake ----------------------------> validates, returns 0 (waiters poll)

    watch_parent(fd, names) --> daemon thread: read(fd) until EOF or error,
                                unlink /dev/shm/<name>... (a name holding * ? [
                                is a glob pattern), SIGKILL this process

fcntl locks are shared by every thread of a process, hence the process-local
lock in front of them.  The lock is keyed by the file's (device, inode) so two
arrays over the same segment in one process exclude each other too.  Every
process using a segment must use the same implementation: these locks do not
exclude the C extension's lock-free operations.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import fnmatch
import math
import operator
import os
import select
import signal
import struct
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, SupportsFloat, SupportsIndex

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["IMPLEMENTATION", "AtomicArray", "set_pdeathsig", "watch_parent"]

IMPLEMENTATION = "python"

_SLOT = 8
_SHM_DIR = "/dev/shm/"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_INT_MAX = 2**31 - 1
# Timeouts above this (about 31 years) mean "wait forever", as in the C version.
_MAX_TIMEOUT = 1e9
# wait() polling: this many busy re-checks (each yields the GIL), then sleeps that start at
# _SLEEP_MIN and double up to _SLEEP_MAX.  A shorter maximum reacts faster but burns more CPU
# per idle waiter (1 ms costs about 1,000 wake-ups a second).
_SPINS = 20
_SLEEP_MIN = 50e-6
_SLEEP_MAX = 1e-3

# struct flock on 64-bit Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
_FLOCK = "@hhqqi4x"
_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
if not sys.platform.startswith("linux") or struct.calcsize(_FLOCK) != 32:
    _OFD_SETLKW = _OFD_SETLK = None

_file_locks: weakref.WeakValueDictionary[tuple[int, int], threading.Lock] = (
    weakref.WeakValueDictionary()
)
_file_locks_guard = threading.Lock()
# Arrays without a lock file (tests, in-process buffers) share this lock.
_ANON_LOCK = threading.Lock()


def _file_lock(fd: int) -> threading.Lock:
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _file_locks_guard:
        lock = _file_locks.get(key)
        if lock is None:
            lock = threading.Lock()
            _file_locks[key] = lock
        return lock


def _int64(value: int) -> int:
    v = operator.index(value)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise OverflowError("Python int too large to convert to a signed 64-bit integer")
    return v


def _wrap(value: int) -> int:
    return ((value - _INT64_MIN) & 0xFFFF_FFFF_FFFF_FFFF) + _INT64_MIN


def _timeout(timeout: object) -> float | None:
    """Normalise a timeout: ``None`` forever, negative values mean zero."""
    if timeout is None:
        return None
    if isinstance(timeout, SupportsFloat):
        t = float(timeout)
    elif isinstance(timeout, SupportsIndex):
        t = float(operator.index(timeout))
    else:
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    if math.isnan(t):
        raise ValueError("timeout must not be NaN")
    if t > _MAX_TIMEOUT:
        return None
    return max(t, 0.0)


class AtomicArray:
    """Atomic int64 slots over a writable buffer, made atomic with locks.

    Parameters
    ----------
    buffer
        A writable, C-contiguous buffer (a :class:`memoryview` of an mmap).
    offset
        Byte offset of slot 0; a multiple of 8.
    count
        Number of slots; by default as many as fit.
    lock_fd
        File descriptor of the file the buffer maps (from file offset 0), used for
        cross-process fcntl locks; ``-1`` for a buffer used by one process only.
        The descriptor is duplicated, so the caller may close its own.
    """

    __slots__ = ("__weakref__", "_count", "_fd", "_fd_finalizer", "_lock", "_offset", "_view")

    def __init__(
        self, buffer: Buffer, offset: int = 0, count: int | None = None, lock_fd: int = -1
    ) -> None:
        offset = operator.index(offset)
        lock_fd = operator.index(lock_fd)
        if offset < 0 or offset % _SLOT:
            raise ValueError(f"offset must be a non-negative multiple of 8, got {offset}")
        if count is not None:
            count = operator.index(count)
            if count < 0:
                raise ValueError(f"count must be non-negative, got {count}")
        with memoryview(buffer) as outer:
            if outer.readonly:
                raise BufferError("AtomicArray needs a writable buffer")
            if not outer.c_contiguous:
                raise BufferError("AtomicArray needs a contiguous buffer")
            raw = outer.cast("B")
            nbytes = raw.nbytes
            if offset > nbytes:
                raise ValueError(f"offset {offset} is beyond the end of a {nbytes}-byte buffer")
            if count is None:
                count = (nbytes - offset) // _SLOT
            elif count > (nbytes - offset) // _SLOT:
                raise ValueError(
                    f"{count} slots at offset {offset} do not fit in a {nbytes}-byte buffer"
                )
            if count > 0:
                address = ctypes.addressof(ctypes.c_char.from_buffer(raw, offset))
                if address % _SLOT:
                    raise ValueError("the buffer address plus offset is not 8-byte aligned")
            view = raw[offset : offset + count * _SLOT].cast("q")
            raw.release()
        self._view: memoryview | None = view
        self._offset = offset
        self._count = count
        if lock_fd >= 0:
            self._lock = _file_lock(lock_fd)
            self._fd = os.dup(lock_fd)
            self._fd_finalizer: weakref.finalize[[int], AtomicArray] | None = weakref.finalize(
                self, os.close, self._fd
            )
        else:
            self._lock = _ANON_LOCK
            self._fd = -1
            self._fd_finalizer = None

    # -- helpers ------------------------------------------------------------------------

    def _live(self, i: int) -> memoryview:
        view = self._view
        if view is None:
            raise ValueError("operation on a released AtomicArray")
        if not 0 <= i < self._count:
            raise IndexError(f"slot index {i} out of range for {self._count} slots")
        return view

    def _flock(self, i: int, lock: bool) -> None:
        if self._fd < 0:
            return
        start = self._offset + i * _SLOT
        kind = fcntl.F_WRLCK if lock else fcntl.F_UNLCK
        if _OFD_SETLKW is not None and _OFD_SETLK is not None:
            arg = struct.pack(_FLOCK, kind, os.SEEK_SET, start, _SLOT, 0)
            fcntl.fcntl(self._fd, _OFD_SETLKW if lock else _OFD_SETLK, arg)
        else:
            fcntl.lockf(self._fd, fcntl.LOCK_EX if lock else fcntl.LOCK_UN, _SLOT, start)

    # -- interface ----------------------------------------------------------------------

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._view is None

    def __len__(self) -> int:
        if self._view is None:
            raise ValueError("operation on a released AtomicArray")
        return self._count

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        if self._view is None:
            return f"<{name} released>"
        return f"<{name} count={self._count} offset={self._offset}>"

    def load(self, i: int, /) -> int:
        """Return slot *i*."""
        i = operator.index(i)
        return int(self._live(i)[i])

    def store(self, i: int, value: int, /) -> None:
        """Set slot *i* to *value*."""
        i = operator.index(i)
        value = _int64(value)
        with self._lock:
            view = self._live(i)
            self._flock(i, True)
            try:
                view[i] = value
            finally:
                self._flock(i, False)

    def fetch_add(self, i: int, delta: int, /) -> int:
        """Add *delta* to slot *i* (wrapping around) and return the old value."""
        i = operator.index(i)
        delta = _int64(delta)
        with self._lock:
            view = self._live(i)
            self._flock(i, True)
            try:
                old = int(view[i])
                view[i] = _wrap(old + delta)
            finally:
                self._flock(i, False)
        return old

    def compare_exchange(self, i: int, expected: int, desired: int, /) -> bool:
        """Set slot *i* to *desired* if it equals *expected*; return whether it did."""
        i = operator.index(i)
        expected = _int64(expected)
        desired = _int64(desired)
        with self._lock:
            view = self._live(i)
            self._flock(i, True)
            try:
                if view[i] != expected:
                    return False
                view[i] = desired
            finally:
                self._flock(i, False)
        return True

    def exchange(self, i: int, value: int, /) -> int:
        """Set slot *i* to *value* and return the old value."""
        i = operator.index(i)
        value = _int64(value)
        with self._lock:
            view = self._live(i)
            self._flock(i, True)
            try:
                old = int(view[i])
                view[i] = value
            finally:
                self._flock(i, False)
        return old

    def wait(self, i: int, expected: int, /, timeout: float | None = None) -> bool:
        """Block while slot *i* equals *expected*, polling.

        Returns ``False`` on timeout, ``True`` once the value differs.  Raises
        :exc:`ValueError` if the array is released meanwhile.
        """
        i = operator.index(i)
        expected = _int64(expected)
        limit = _timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        spins = 0
        delay = _SLEEP_MIN
        while True:
            if self._live(i)[i] != expected:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if spins < _SPINS:
                spins += 1
                time.sleep(0)
                continue
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, _SLEEP_MAX)

    def wake(self, i: int, /, n: int = _INT_MAX) -> int:
        """Return 0: waiters poll, so there is nobody to wake."""
        i = operator.index(i)
        if operator.index(n) < 0:
            raise ValueError("n must be non-negative")
        self._live(i)
        return 0

    def release(self) -> None:
        """Drop the buffer (idempotent); later operations raise :exc:`ValueError`."""
        with self._lock:
            view = self._view
            if view is None:
                return
            self._view = None
            view.release()
            if self._fd_finalizer is not None:
                self._fd_finalizer()
            self._fd = -1


def _unlink_shm(name: str) -> None:
    if not any(c in name for c in "*?["):
        with contextlib.suppress(OSError):
            os.unlink(_SHM_DIR + name)
        return
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(".") and fnmatch.fnmatchcase(entry, name):
            with contextlib.suppress(OSError):
                os.unlink(_SHM_DIR + entry)


def _watch(fd: int, names: list[str]) -> None:
    while True:
        try:
            if os.read(fd, 256):
                continue  # data on the lifeline is ignored
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        except InterruptedError:  # pragma: no cover - retried by os.read already
            continue
        except OSError:
            pass
        break  # EOF or a real error: the parent is gone
    for name in names:
        _unlink_shm(name)
    os.kill(os.getpid(), signal.SIGKILL)


def watch_parent(fd: int, names: Sequence[str]) -> None:
    """Kill this process once *fd* reaches end of file, unlinking *names* first.

    Best effort: a daemon thread blocks in ``os.read(fd)``; at EOF or error it
    unlinks each shared memory name (a name containing ``*``, ``?`` or ``[`` is
    a glob pattern matched in ``/dev/shm``) and sends itself SIGKILL.  Unlike the C
    version it needs the GIL, so a main thread stuck in C code holding the GIL
    delays it.
    """
    os.fstat(fd)
    if isinstance(names, str):
        raise TypeError("names must be a sequence of str")
    bare_names = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError("names must be a sequence of str")
        bare = name.removeprefix("/")
        if not bare or len(bare) > 200 or "/" in bare or "\0" in bare or bare in {".", ".."}:
            raise ValueError(f"invalid shared memory name {name!r}")
        bare_names.append(bare)
    thread = threading.Thread(
        target=_watch, args=(fd, bare_names), name="workerbridge-lifeline", daemon=True
    )
    thread.start()


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send *sig* to this process when its parent dies (Linux prctl)."""
    sig = operator.index(sig)
    if not 0 <= sig < signal.NSIG:
        raise ValueError(f"invalid signal number {sig}")
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(sig), 0, 0, 0) != 0:  # pragma: no cover
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
