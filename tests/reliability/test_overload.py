"""Overload: far more submits than max_queue; bounded memory, nothing accepted is lost."""

from __future__ import annotations

import pytest
import rel_scenarios as S
from rel_helpers import record

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
@pytest.mark.parametrize("mode", ["raise", "block", "block-timeout"])
def test_overload_is_bounded_and_loses_nothing(heavy: bool, mode: str) -> None:
    result = record(S.overload(mode=mode, **S.size("overload", heavy)))
    figures = result["figures"]
    assert not result["failures"]
    assert figures["lost_or_wrong"] == 0
    assert figures["max_queue_depth_seen"] <= figures["max_queue"]
