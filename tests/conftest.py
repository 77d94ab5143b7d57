"""Shared fixtures: both backends, and leak checks after every test module."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

import workerbridge as wb
from workerbridge._shm import list_segments, parse_name

HANDLERS = ["wbtest_handlers"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children() -> set[int]:
    out: set[int] = set()
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except OSError:
            pass
    zombies = set()
    for pid in out:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    zombies.add(pid)
        except OSError:
            zombies.add(pid)
    return out - zombies


def ours_or_orphaned() -> list[str]:
    """wb_ segments created by this process or by a process that no longer exists."""
    leaked = []
    for name in list_segments():
        parsed = parse_name(name)
        if parsed is None:
            continue
        pid = parsed[0]
        if pid == os.getpid() or not _alive(pid):
            leaked.append(name)
    return leaked


@pytest.fixture(autouse=True, scope="module")
def no_leaks_after_module() -> Iterator[None]:
    before_children = _children()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        threads = [t.name for t in threading.enumerate() if t.name.startswith("workerbridge-")]
        children = _children() - before_children
        leaked = ours_or_orphaned()
        if not threads and not children and not leaked:
            return
        time.sleep(0.05)
    pytest.fail(
        f"leaks after module: threads={threads} children={sorted(children)} segments={leaked}"
    )


@pytest.fixture(params=["pool", "fallback"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_bridge(backend: str) -> Iterator[object]:
    """Factory for bridges in the parametrized backend; closes them at the end."""
    made: list[wb.WorkerBridge] = []

    def make(**options: object) -> wb.WorkerBridge:
        options.setdefault("handlers", HANDLERS)
        options.setdefault("workers", 2)
        if backend == "fallback":
            options["fallback"] = "always"
        bridge = wb.WorkerBridge(**options)  # type: ignore[arg-type]
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.close(wait=False)


@pytest.fixture
def bridge(make_bridge: object) -> wb.WorkerBridge:
    return make_bridge()  # type: ignore[operator,no-any-return]


@pytest.fixture
def pool() -> Iterator[wb.WorkerBridge]:
    """A 2-worker process pool with the test handlers."""
    bridge = wb.WorkerBridge(workers=2, handlers=HANDLERS, fallback="never")
    yield bridge
    bridge.close(wait=False)
