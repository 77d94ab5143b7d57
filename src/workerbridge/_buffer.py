"""Shared buffers the caller fills in place and hands to a task without a copy.

Data flow::

    buf = bridge.allocate(n)          parent creates segment wb_<pid>_buf_*
    buf.view[:] = data                caller writes in place (no copy made by us)
    bridge.submit(ch, op, buf)        pack_payload puts a reference in the frame;
                                      the caller's view is released (transfer)
    worker attaches by name           handler gets a read-only memoryview of it
    task done                         parent closes and unlinks the segment --
                                      unless the handler returned that view whole:
                                      the result is then the same SharedBuffer,
                                      writable again (sent back by name, no copy)

This is transfer semantics, as with JavaScript transferables: once handed
over, the buffer belongs to the task and the caller's :attr:`SharedBuffer.view`
raises :exc:`ValueError` if used.
"""

from __future__ import annotations

import contextlib
import threading

from ._errors import ValidationError
from ._shm import Segment

__all__ = ["HandedBuffer", "SharedBuffer"]


class SharedBuffer:
    """A block of shared memory to fill in place and pass to a task without copying.

    Create one with :meth:`WorkerBridge.allocate <workerbridge.WorkerBridge.allocate>`,
    write into :attr:`view`, then pass the buffer itself (anywhere in a payload)
    to :meth:`~workerbridge.WorkerBridge.submit` or a bridge method.  The handler
    receives a read-only :class:`memoryview` of the same memory.

    Ownership moves to the task when it is submitted: the caller's
    :attr:`view` is released, and the memory is freed when the task ends --
    unless the handler returns, whole, the view it was handed: then the
    task's result holds this same object, writable again and free to be
    handed to another task (no copy either way).  A buffer never submitted,
    or given back, is freed by :meth:`close` (or when collected).
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValidationError(f"size must be a positive int, got {size!r}")
        self._segment: Segment | None = Segment.create("buf", size)
        self._nbytes = size
        self._view: memoryview | None = self._segment.buf[:size]
        self._lock = threading.Lock()
        self._transferred = False

    @property
    def view(self) -> memoryview:
        """A writable :class:`memoryview` of the buffer (until it is submitted or closed)."""
        if self._view is None:
            raise ValueError(
                "this SharedBuffer was handed to a task (or closed); its view is released"
            )
        return self._view

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self._nbytes

    def __len__(self) -> int:
        return self._nbytes

    @property
    def _wb_segment_name(self) -> str:
        if self._segment is None:
            raise ValueError("this SharedBuffer is closed")
        return self._segment.name

    def _transfer(self) -> memoryview:
        """Hand the memory to a task: release the caller's view, return one for the task."""
        with self._lock:
            if self._transferred or self._segment is None or self._view is None:
                raise ValidationError("a SharedBuffer can be handed to one task only")
            self._transferred = True
            self._view.release()
            self._view = None
            return self._segment.buf[: self._nbytes].toreadonly()

    def _reclaim(self) -> SharedBuffer:
        """Take the memory back from the task that gave it back: the view is writable again."""
        with self._lock:
            if self._segment is None:
                raise ValidationError("this SharedBuffer was closed while its task ran")
            self._view = self._segment.buf[: self._nbytes]
            self._transferred = False
        return self

    def close(self) -> None:
        """Free the memory (idempotent)."""
        with self._lock:
            if self._view is not None:
                self._view.release()
                self._view = None
            seg, self._segment = self._segment, None
        if seg is not None:
            with contextlib.suppress(BufferError):
                seg.close()
            seg.unlink()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "handed over" if self._transferred else ("closed" if self._segment is None else "")
        return f"<SharedBuffer {self._nbytes} bytes{' ' + state if state else ''}>"


SharedBuffer.__module__ = "workerbridge"


class HandedBuffer:
    """A :class:`SharedBuffer` after it was handed to a task (private record)."""

    __slots__ = ("_wb_segment_name", "nbytes", "owner", "reclaimed", "view")

    def __init__(self, owner: SharedBuffer) -> None:
        self._wb_segment_name = owner._wb_segment_name
        self.nbytes = owner.nbytes
        self.view: memoryview | None = owner._transfer()
        self.owner = owner
        self.reclaimed = False

    def reclaim(self) -> SharedBuffer:
        """The task's result is this buffer, given back whole: return it to its owner."""
        self.reclaimed = True
        return self.owner._reclaim()

    def release(self) -> None:
        """The task ended: free the memory, unless its result gave the buffer back."""
        if self.view is not None:
            self.view.release()
            self.view = None
        if not self.reclaimed:
            self.owner.close()
