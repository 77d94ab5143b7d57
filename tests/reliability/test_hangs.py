"""Hangs: non-cooperative loops with timeout=0.5, and cooperative cancellation."""

from __future__ import annotations

import pytest
import rel_scenarios as S
from rel_helpers import record

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_non_cooperative_loops_fail_at_the_deadline_and_are_replaced(heavy: bool) -> None:
    result = record(S.hangs(**S.size("hangs", heavy)))
    assert not result["failures"]
    for kind in ("spin", "spin_c"):
        # the target is "within 1 s"; asserted with a generous bound for busy machines
        assert result["figures"][kind]["fail_after_s"]["max"] < 5.0


@pytest.mark.parametrize("heavy", SIZE)
def test_cooperative_task_is_cancelled_quickly(heavy: bool) -> None:
    result = record(S.coop_cancel(**S.size("coop_cancel", heavy)))
    assert not result["failures"]
    assert result["figures"]["restarts"] == 0
