"""Waiting for a pipe by spinning briefly before sleeping.

Data flow::

    WORKERBRIDGE_SPIN_US (environment, parent) --spin_seconds()--> PoolBackend.spin
        --hello frame--> every worker uses the parent's value

    worker, after each answer:   spin_readable([request pipe], spin)  then read()
    caller in run(), after send: spin_readable([direct pipe, wake pipe], spin)  then poll()

    spin_readable: C (workerbridge._fast, GIL released) or this module's
                   poll(0) loop when the extension is absent

Why: a round trip that sleeps on both sides pays two wake-ups of a sleeping
process, about 8 µs each here -- more than the rest of a small task.  A worker
that has just answered is likely to get its next task within microseconds
(``run()`` in a loop, ``map``); a caller of ``run()`` waits for a task that
often takes microseconds.  Both poll for up to the spin budget first, yielding
the CPU every 16 polls, so a runnable process on the same CPU is not held up
for long (a yield on every poll measurably slowed the round trip).
The cost is at most the budget of CPU time per answer and per ``run()``.

The dispatcher prefers an idle worker that is still spinning (it answered less
than the budget ago) for the next task, so one caller's run() loop keeps
meeting a worker that is awake.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Sequence
from typing import Final

from ._atomic import want_pure

__all__ = ["DEFAULT_SPIN_US", "ENV_VAR", "IMPLEMENTATION", "spin_readable", "spin_seconds"]

logger = logging.getLogger("workerbridge")

#: Environment variable: microseconds to spin (0 turns spinning off, at most 100000).
ENV_VAR: Final = "WORKERBRIDGE_SPIN_US"
#: Default spin budget in microseconds.
DEFAULT_SPIN_US: Final = 100
_MAX_SPIN_US: Final = 100_000
#: polls between two ``sched_yield()`` calls (as in _fast.c)
_YIELD_EVERY: Final = 16


def spin_seconds() -> float:
    """The spin budget in seconds, from :data:`ENV_VAR` (default :data:`DEFAULT_SPIN_US`)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_SPIN_US / 1e6
    try:
        us = int(raw)
    except ValueError:
        us = -1
    if not 0 <= us <= _MAX_SPIN_US:
        logger.warning(
            "%s=%r is not a whole number of microseconds from 0 to %d: using %d",
            ENV_VAR,
            raw,
            _MAX_SPIN_US,
            DEFAULT_SPIN_US,
        )
        return DEFAULT_SPIN_US / 1e6
    return us / 1e6


def _spin_readable_py(fds: Sequence[int], seconds: float, /) -> bool:
    """Pure-Python :func:`spin_readable` (holds the GIL between polls)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    end = time.monotonic() + seconds
    spins = 0
    while True:
        try:
            if poller.poll(0):
                return True
        except OSError:
            return True  # the caller's own blocking call reports it
        if time.monotonic() >= end:
            return False
        spins += 1
        if spins % _YIELD_EVERY == 0:
            os.sched_yield()


IMPLEMENTATION: str = "python"
spin_readable = _spin_readable_py
if not want_pure():
    try:
        from . import _fast
    except ImportError:  # the optional extension did not build
        pass
    else:
        spin_readable = _fast.spin_readable
        IMPLEMENTATION = "c"
