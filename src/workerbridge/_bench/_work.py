"""The functions the peers' pools run: module level, so every pool can pickle them by name.

Data flow::

    parent: pool.submit(noop) / pool.map(square, items) --pickled by reference-->
    worker: imports workerbridge._bench._work, calls the function, returns the result

workerbridge's own contestants use its built-in ``_wb/noop`` and ``_wb/echo``
handlers, or these same functions through :class:`workerbridge.Executor`.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["echo", "noop", "square"]

T = TypeVar("T")


def noop() -> None:
    """Do nothing: the empty task of the round-trip case."""
    return None


def echo(payload: T) -> T:
    """Return ``payload``: the echo case sends it to a worker and back."""
    return payload


def square(x: int) -> int:
    """Return ``x * x``: a tiny task for the ``map`` case."""
    return x * x
