"""Shared-memory primitives: CancellationToken, SharedProgress, SharedCounter.

Data flow::

    CancellationToken()     Segment.create("tok")  -> slots [refs | cancelled]
    SharedProgress(total)   Segment.create("prog") -> slots [refs | current | total]
    SharedCounter(initial)  Segment.create("ctr")  -> slots [refs | value]
        (int64 slots of one AtomicArray over the segment; refs starts at 1)

    pickle.dumps(obj)  -> (_rebuild, (kind, segment name))
    pickle.loads(...)  -> Segment.attach(name) -> refs += 1 (only while refs > 0)

    obj.close(), or garbage collection (weakref.finalize)
        -> refs -= 1; the owner that brings refs to 0 unlinks the name
        -> release the array, close the mapping
    the creator's interpreter exit -> _shm's atexit unlinks the name regardless

    CancellationToken.cancel()
        -> cancelled = 1 -> futex wake -> wait() calls return, in every process
        -> callbacks registered in this process (_add_callback) run, once

A process that dies without closing leaves refs too high; the creator's exit (or
:func:`workerbridge._shm.sweep_orphans` if the creator died too) still removes the name.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Self

from ._atomic import AtomicArray, atomic_array
from ._errors import ValidationError
from ._shm import Segment, parse_name

__all__ = ["CancellationToken", "SharedCounter", "SharedProgress"]

# One cache line; the mapping is a page anyway.
_SEGMENT_SIZE = 64
# Slot layout: slot 0 counts the owners (open objects, in every process).
_REFS = 0
_TOKEN_FLAG = 1
_PROGRESS_CURRENT = 1
_PROGRESS_TOTAL = 2
_COUNTER_VALUE = 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _wrap(value: int) -> int:
    return ((value - _INT64_MIN) & 0xFFFF_FFFF_FFFF_FFFF) + _INT64_MIN


def _int64(value: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not bool")
    v = operator.index(value)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise OverflowError(f"{what} does not fit in a signed 64-bit integer: {v}")
    return v


class _Handle:
    """What closing needs, kept apart from the public object so a finalizer can hold it."""

    __slots__ = ("array", "on_close", "pid", "segment")

    def __init__(self, segment: Segment, array: AtomicArray) -> None:
        self.segment = segment
        self.array = array
        self.pid = os.getpid()
        self.on_close: Callable[[], None] | None = None

    def close(self) -> None:
        try:
            # A forked child inherits the object but never took a reference.
            if os.getpid() == self.pid and self.array.fetch_add(_REFS, -1) == 1:
                self.segment.unlink()
        finally:
            if self.on_close is not None:
                self.on_close()
            self.array.release()
            # A wait() in another thread may still pin the memory; then it is freed
            # when that call returns and the objects are collected.
            with contextlib.suppress(BufferError):
                self.segment.close()


class _SharedBase:
    _KIND: ClassVar[str]
    _SLOTS: ClassVar[int]

    __slots__ = ("__weakref__", "_array", "_finalizer", "_name")

    _array: AtomicArray
    _finalizer: weakref.finalize[[], _SharedBase]
    _name: str

    def _create(self, *values: int) -> None:
        segment = Segment.create(self._KIND, _SEGMENT_SIZE)
        try:
            array = atomic_array(segment, 0, self._SLOTS)
            array.store(_REFS, 1)
            for slot, value in enumerate(values, 1):
                array.store(slot, value)
        except BaseException:
            segment.unlink()
            segment.close()
            raise
        self._setup(segment, array)

    @classmethod
    def _attach(cls, name: str) -> Self:
        parsed = parse_name(name)
        if parsed is None or parsed[1] != cls._KIND:
            raise ValueError(f"{name!r} is not the name of a {cls.__name__} segment")
        segment = Segment.attach(name)
        try:
            if segment.size < cls._SLOTS * 8:
                raise ValueError(f"segment {name!r} is too small for a {cls.__name__}")
            array = atomic_array(segment, 0, cls._SLOTS)
        except BaseException:
            segment.close()
            raise
        refs = array.load(_REFS)
        while True:
            if refs <= 0:  # every owner closed it; the name is about to go
                array.release()
                segment.close()
                raise FileNotFoundError(f"{cls.__name__} {name!r} was already released")
            if array.compare_exchange(_REFS, refs, refs + 1):
                break
            refs = array.load(_REFS)
        obj = cls.__new__(cls)
        obj._setup(segment, array)
        return obj

    def _setup(self, segment: Segment, array: AtomicArray) -> None:
        handle = _Handle(segment, array)
        self._array = array
        self._name = segment.name
        self._local_setup(handle)
        self._finalizer = weakref.finalize(self, handle.close)

    def _local_setup(self, handle: _Handle) -> None:
        """Subclass hook: per-process state, set up after creating or attaching."""

    def _live(self) -> AtomicArray:
        if not self._finalizer.alive:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._array

    def _closed_error(self, exc: ValueError) -> ValueError:
        # Hot paths skip _live() and call the array directly; once released it raises
        # ValueError, which becomes "<Class> is closed".
        return ValueError(f"{type(self).__name__} is closed") if self.closed else exc

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the object was collected)."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Drop this owner's reference; idempotent.

        The shared memory is freed when the last owner, in any process, closes
        it.  Later operations on this object raise :exc:`ValueError`.
        """
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[[str, str], _SharedBase], tuple[str, str]]:
        if self.closed:
            raise ValueError(f"cannot pickle a closed {type(self).__name__}")
        return _rebuild, (self._KIND, self._name)


def _rebuild(kind: str, name: str) -> _SharedBase:
    """Unpickle: attach to the segment and take a reference."""
    cls = _CLASSES.get(kind)
    if cls is None:
        raise ValueError(f"unknown shared object kind {kind!r}")
    return cls._attach(name)


class _TokenLocal:
    """Per-process state of one token segment, shared by every object attached to it."""

    __slots__ = ("callbacks", "fired", "lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fired = False
        self.callbacks: dict[object, Callable[[], None]] = {}
        self.users = 0


_token_locals: dict[str, _TokenLocal] = {}
_token_locals_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _token_locals_lock
    _token_locals_lock = threading.Lock()
    _token_locals.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


class CancellationToken(_SharedBase):
    """A cancel flag shared between processes.

    Pass it with ``cancel=`` to cancel tasks, or hand it to a handler, which sees
    it in its own process.  Calling :meth:`cancel` anywhere is seen everywhere.

    Examples
    --------
    >>> token = CancellationToken()
    >>> token.cancelled
    False
    >>> token.cancel()
    >>> token.wait(timeout=0)
    True
    >>> token.close()
    """

    _KIND = "tok"
    _SLOTS = 2

    __slots__ = ("_local",)

    _local: _TokenLocal

    def __init__(self) -> None:
        self._create(0)

    def _local_setup(self, handle: _Handle) -> None:
        name = self._name
        with _token_locals_lock:
            local = _token_locals.get(name)
            if local is None:
                local = _token_locals[name] = _TokenLocal()
            local.users += 1
        self._local = local

        def forget() -> None:
            with _token_locals_lock:
                local.users -= 1
                if local.users == 0 and _token_locals.get(name) is local:
                    del _token_locals[name]

        handle.on_close = forget

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called, in any process.

        Raises
        ------
        ValueError
            The token is closed.
        """
        try:
            return self._array.load(_TOKEN_FLAG) != 0
        except ValueError as exc:
            raise self._closed_error(exc) from None

    def cancel(self) -> None:
        """Set the flag, waking every :meth:`wait` in every process; idempotent.

        Callbacks registered in this process run synchronously, once, in the
        first call.

        Raises
        ------
        ValueError
            The token is closed.
        """
        array = self._live()
        if array.exchange(_TOKEN_FLAG, 1) == 0:
            array.wake(_TOKEN_FLAG)
        local = self._local
        with local.lock:
            if local.fired:
                return
            local.fired = True
            callbacks = list(local.callbacks.values())
            local.callbacks.clear()
        errors = []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token is cancelled.

        Parameters
        ----------
        timeout
            Seconds to wait at most; ``None`` waits forever, ``0`` only checks.

        Returns
        -------
        bool
            ``True`` if the token is cancelled, ``False`` if the timeout expired first.

        Raises
        ------
        ValueError
            The token is closed, including by another thread during the wait.
        """
        return self._live().wait(_TOKEN_FLAG, 0, timeout)

    def _add_callback(self, fn: Callable[[], None]) -> object:
        """Run *fn* once when :meth:`cancel` is called in this process.

        Runs it now if the token is already cancelled (anywhere).  Returns a
        handle for :meth:`_remove_callback`.
        """
        handle = object()
        local = self._local
        with local.lock:
            if not local.fired and not self.cancelled:
                local.callbacks[handle] = fn
                return handle
        fn()
        return handle

    def _remove_callback(self, handle: object) -> None:
        """Forget a callback added by :meth:`_add_callback`; quiet if it already ran."""
        local = self._local
        with local.lock:
            local.callbacks.pop(handle, None)

    def __repr__(self) -> str:
        try:
            return f"<CancellationToken cancelled={self.cancelled}>"
        except ValueError:
            return "<CancellationToken closed>"


class SharedProgress(_SharedBase):
    """A progress counter shared between processes: ``current`` out of ``total``.

    Parameters
    ----------
    total
        The amount of work, a non-negative integer.

    Examples
    --------
    >>> progress = SharedProgress(4)
    >>> progress.advance()
    1
    >>> progress.fraction
    0.25
    >>> progress.close()
    """

    _KIND = "prog"
    _SLOTS = 3

    __slots__ = ()

    def __init__(self, total: int) -> None:
        total = _int64(total, "total")
        if total < 0:
            raise ValidationError(f"total must be non-negative, got {total}")
        self._create(0, total)

    def advance(self, n: int = 1) -> int:
        """Add *n* to :attr:`current`, atomically.

        Parameters
        ----------
        n
            A non-negative amount of work done.

        Returns
        -------
        int
            The new value of :attr:`current`.

        Raises
        ------
        ValueError
            The object is closed, or *n* is negative (:exc:`~workerbridge.ValidationError`).
        """
        if type(n) is not int:
            n = operator.index(n)
        if n < 0:
            raise ValidationError(f"progress only moves forward; n must be >= 0, got {n}")
        try:
            old = self._array.fetch_add(_PROGRESS_CURRENT, n)
        except ValueError as exc:
            raise self._closed_error(exc) from None
        new = old + n
        return new if new <= _INT64_MAX else _wrap(new)

    @property
    def current(self) -> int:
        """The work done so far (it may exceed :attr:`total`)."""
        try:
            return self._array.load(_PROGRESS_CURRENT)
        except ValueError as exc:
            raise self._closed_error(exc) from None

    @property
    def total(self) -> int:
        """The amount of work, as given when created."""
        return self._live().load(_PROGRESS_TOTAL)

    @property
    def fraction(self) -> float:
        """``current / total``, clamped to [0, 1]; ``1.0`` when ``total`` is 0 (nothing to do)."""
        array = self._live()
        total = array.load(_PROGRESS_TOTAL)
        if total <= 0:
            return 1.0
        return min(max(array.load(_PROGRESS_CURRENT) / total, 0.0), 1.0)

    def __repr__(self) -> str:
        try:
            return f"<SharedProgress current={self.current} total={self.total}>"
        except ValueError:
            return "<SharedProgress closed>"


class SharedCounter(_SharedBase):
    """A signed 64-bit integer shared between processes, with atomic updates.

    Arithmetic wraps around at the 64-bit limits, as in C.

    Parameters
    ----------
    initial
        The starting value.

    Examples
    --------
    >>> counter = SharedCounter(10)
    >>> counter.add(5)
    15
    >>> counter.compare_and_swap(15, 0)
    True
    >>> counter.value
    0
    >>> counter.close()
    """

    _KIND = "ctr"
    _SLOTS = 2

    __slots__ = ()

    def __init__(self, initial: int = 0) -> None:
        self._create(_int64(initial, "initial"))

    def add(self, n: int = 1) -> int:
        """Add *n* (which may be negative), atomically.

        Returns
        -------
        int
            The new value.

        Raises
        ------
        ValueError
            The counter is closed.
        OverflowError
            *n* does not fit in a signed 64-bit integer.
        """
        if type(n) is not int:
            n = operator.index(n)
        try:
            old = self._array.fetch_add(_COUNTER_VALUE, n)
        except ValueError as exc:
            raise self._closed_error(exc) from None
        new = old + n
        return new if _INT64_MIN <= new <= _INT64_MAX else _wrap(new)

    @property
    def value(self) -> int:
        """The current value."""
        try:
            return self._array.load(_COUNTER_VALUE)
        except ValueError as exc:
            raise self._closed_error(exc) from None

    def compare_and_swap(self, old: int, new: int) -> bool:
        """Set the value to *new* if it is *old*, atomically.

        Returns
        -------
        bool
            ``True`` if the value was *old* and is now *new*.

        Raises
        ------
        ValueError
            The counter is closed.
        OverflowError
            *old* or *new* does not fit in a signed 64-bit integer.
        """
        try:
            return self._array.compare_exchange(_COUNTER_VALUE, old, new)
        except ValueError as exc:
            raise self._closed_error(exc) from None

    def __repr__(self) -> str:
        try:
            return f"<SharedCounter value={self.value}>"
        except ValueError:
            return "<SharedCounter closed>"


_CLASSES: dict[str, type[_SharedBase]] = {
    cls._KIND: cls for cls in (CancellationToken, SharedProgress, SharedCounter)
}

for _cls in (CancellationToken, SharedProgress, SharedCounter):
    _cls.__module__ = "workerbridge"
del _cls
