"""Shutdown races: close() while tasks run, wait, time out and are cancelled."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import rel_scenarios as S
from rel_helpers import record

import workerbridge as wb

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_close_races_from_another_thread(heavy: bool) -> None:
    result = record(S.shutdown_races(**S.size("shutdown_races", heavy)))
    assert not result["failures"]
    assert result["figures"]["unresolved_at_close"] == 0


def test_close_from_a_signal_handler_while_the_main_thread_waits() -> None:
    row = S.signal_close_once("in-result", limit=20)
    record({"scenario": "signal_close[in-result]", "figures": row, "failures": []})
    assert not row["deadlock"]
    assert row["rc"] == 0, row["stderr_tail"]
    assert row["closed"]
    assert row["unresolved"] == 0


def test_close_from_a_signal_handler_inside_the_dispatcher_lock() -> None:
    row = S.signal_close_once("in-lock", limit=3)
    record({"scenario": "signal_close[in-lock]", "figures": row, "failures": []})
    assert not row["deadlock"]
    assert row["unresolved"] == 0


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_close_from_a_signal_handler_at_random_points() -> None:
    sizes = S.size("signal_close", True)
    result = record(S.signal_close(**sizes))
    # deadlocks here are the bug of the xfail test above; they are counted, not asserted
    assert not result["failures"]


_CALLBACK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    sys.path.insert(0, sys.argv[1])
    import workerbridge as wb
    wait = sys.argv[2] == "wait"
    b = wb.WorkerBridge(workers=1, handlers=["rel_handlers"], fallback="never")
    b.run("rel", "echo", 0, timeout=60)
    first = b.submit("rel", "work", {"id": 0, "ms": 50})
    rest = [b.submit("rel", "work", {"id": i, "ms": 1}) for i in range(1, 6)]
    closed = threading.Event()

    def on_done(fut):
        b.close(wait=wait)
        closed.set()

    first.add_done_callback(on_done)
    ok = closed.wait(3)
    print(json.dumps({"closed": ok, "unresolved": sum(not f.done() for f in rest)}), flush=True)
    if not ok:
        os._exit(3)  # close() is stuck in a worker's reader thread: do not wait at exit
    """
)


def _callback_close(wait: str, limit: float = 20.0) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _CALLBACK_SCRIPT, str(S.HERE), wait],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    return {"rc": proc.returncode, **(json.loads(lines[-1]) if lines else {})}


def test_close_without_waiting_from_a_done_callback() -> None:
    row = _callback_close("nowait")
    assert row.get("closed") is True, row
    assert row["unresolved"] == 0


def test_close_from_a_done_callback_with_queued_tasks() -> None:
    row = _callback_close("wait")
    assert row.get("closed") is True, row
    assert row["unresolved"] == 0


def test_drain_close_after_last_worker_killed() -> None:
    bridge = S.new_bridge(workers=1)
    assert bridge.run("rel", "echo", 0, timeout=60) == 0
    spin = bridge.submit("rel", "spin", timeout=0.3)
    queued = [bridge.submit("rel", "work", {"id": i, "ms": 0}) for i in range(5)]
    start = time.monotonic()
    bridge.close(wait=True, cancel_pending=False)
    assert time.monotonic() - start < 30
    assert isinstance(spin.exception(timeout=1), wb.TaskTimeoutError)
    assert all(t.done() for t in queued)
