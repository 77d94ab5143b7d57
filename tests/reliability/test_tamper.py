"""Tampering: damaged encrypted files are all refused with IntegrityError, leaving nothing."""

from __future__ import annotations

import pytest
import rel_scenarios as S
from rel_helpers import record

SIZE = [
    pytest.param(False, id="small"),
    pytest.param(True, id="heavy", marks=[pytest.mark.heavy, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("heavy", SIZE)
def test_every_damaged_file_is_refused(heavy: bool) -> None:
    sizes = S.size("tamper", heavy)
    result = record(S.tamper(**sizes))
    figures = result["figures"]
    assert not result["failures"]
    assert figures["files"] >= sizes["files"]
    assert figures["engine_integrity_errors"] == figures["files"]
    assert all(sum(v.values()) > 0 for v in figures["per_damage"].values())
