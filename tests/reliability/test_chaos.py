"""Chaos: workers SIGKILLed at random under load; the parent itself SIGKILLed.

tests/pool/test_lifecycle.py already checks that a SIGKILLed parent with idle
or cooperatively sleeping workers (C atomics) leaves nothing behind; here the
workers are busy in pure-Python loops, inside a GIL-holding C call, starting
up, or being killed themselves when the parent dies, with both atomics
implementations.
"""

from __future__ import annotations

import pytest
import rel_scenarios as S
from rel_helpers import record

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_chaos_every_task_ends_exactly_once(heavy: bool) -> None:
    result = record(S.chaos(**S.size("chaos", heavy)))
    figures = result["figures"]
    assert not result["failures"]
    assert figures["kills"] > 0
    assert figures["ended_exactly_once"] == figures["tasks"]
    assert figures["retried_ok"] == figures["retried_total"]
    assert figures["leaked_segments"] == figures["zombies_after_close"] == 0


@pytest.mark.parametrize("heavy", SIZE)
@pytest.mark.parametrize("fallback", ["auto", "never"])
def test_chaos_with_the_default_restart_budget(heavy: bool, fallback: str) -> None:
    result = record(S.chaos_budget(fallback=fallback, **S.size("chaos_budget", heavy)))
    assert not result["failures"]
    assert result["figures"]["mode_after"] == ("inprocess" if fallback == "auto" else "pool")


@pytest.mark.parametrize("heavy", SIZE)
def test_parent_sigkill_leaves_no_orphan_worker(heavy: bool) -> None:
    result = record(S.parent_kill(**S.size("parent_kill", heavy)))
    assert not result["failures"]


def test_parent_sigkill_gil_holding_worker_pure_atomics() -> None:
    """A worker stuck in a GIL-holding C call cannot run the pure-Python parent watch.

    It must still die within a few seconds of its parent (the kernel's parent-death
    signal), and the segments nobody could unlink must go with the next bridge's sweep.
    """
    row = S.parent_kill_once("spin_c", "python", window=3.0)
    record({"scenario": "parent_kill[python/spin_c]", "figures": row, "failures": []})
    assert row["orphans_after_window"] == 0
    assert row["segments_left_after_next_bridge"] == 0
