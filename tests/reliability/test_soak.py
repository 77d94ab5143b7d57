"""Soak: many small tasks; memory of parent and workers flat, latency stable."""

from __future__ import annotations

import faulthandler

import pytest
import rel_scenarios as S
from rel_helpers import record

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_soak(heavy: bool) -> None:
    if heavy:  # minutes by design: no "Timeout (0:02:00)!" thread dump half-way
        faulthandler.cancel_dump_traceback_later()
    result = record(S.soak(**S.size("soak", heavy)))
    assert not result["failures"]
