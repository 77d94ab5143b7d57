"""Choose the atomics implementation and build arrays over shared memory segments.

Data flow::

    import time:  WORKERBRIDGE_PURE_ATOMICS=1 ? ----yes----> _atomics_py (locks + polling)
                        | no
                        v
                  import _atomics (C: lock-free + futex) --ImportError--> _atomics_py
                        |
                        v
                  AtomicArray, IMPLEMENTATION ("c" or "python")

    atomic_array(segment, offset, count)
        -> AtomicArray(segment.buf, offset, count, lock_fd=segment.fd)

Every process sharing a segment must use the same implementation; workers inherit
the environment variable, so the choice is the same throughout a pool.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _atomics_py

if TYPE_CHECKING:
    from ._atomics_py import AtomicArray
    from ._shm import Segment

__all__ = [
    "IMPLEMENTATION",
    "AtomicArray",
    "atomic_array",
    "set_pdeathsig",
    "want_pure",
    "watch_parent",
]

#: Set to ``1`` to force the pure-Python implementations of both C extensions, the
#: atomics and the hot path (``_fast``), for tests, or to rule them out when debugging.
ENV_VAR = "WORKERBRIDGE_PURE_ATOMICS"


def want_pure() -> bool:
    """Whether :data:`ENV_VAR` asks for the pure-Python implementations of the C extensions."""
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


IMPLEMENTATION: str = "python"
watch_parent = _atomics_py.watch_parent
set_pdeathsig = _atomics_py.set_pdeathsig

if not TYPE_CHECKING:
    AtomicArray = _atomics_py.AtomicArray
    if not want_pure():
        try:
            from . import _atomics as _c
        except ImportError:  # the optional extension did not build
            pass
        else:
            AtomicArray = _c.AtomicArray
            IMPLEMENTATION = "c"
            watch_parent = _c.watch_parent
            set_pdeathsig = _c.set_pdeathsig


def atomic_array(segment: Segment, offset: int = 0, count: int | None = None) -> AtomicArray:
    """Return an :class:`AtomicArray` over *segment*'s memory.

    Parameters
    ----------
    segment
        An open shared memory segment.
    offset
        Byte offset of slot 0 in the segment; a multiple of 8.
    count
        Number of int64 slots; by default as many as fit.

    Returns
    -------
    AtomicArray
        The C implementation pins the segment's buffer, so ``segment.close()``
        raises :exc:`BufferError` until the array is released.
    """
    return AtomicArray(segment.buf, offset, count, lock_fd=segment.fd)
