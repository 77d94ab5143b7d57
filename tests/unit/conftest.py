"""Every shared-memory unit test must leave no segment of its own behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proc_helpers import CHILDREN, leaked_since

from workerbridge._shm import list_segments


@pytest.fixture(autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    before = set(list_segments())
    CHILDREN.clear()
    yield
    leaked = leaked_since(before)
    assert not leaked, f"shared memory left behind: {leaked}"
