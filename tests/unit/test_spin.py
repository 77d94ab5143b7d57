"""The spin budget: its setting, and a worker kept awake for a caller's run() loop."""

from __future__ import annotations

import logging
import time

import pytest

import workerbridge as wb
from workerbridge._spin import DEFAULT_SPIN_US, ENV_VAR, spin_seconds


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, DEFAULT_SPIN_US / 1e6), ("", DEFAULT_SPIN_US / 1e6), ("0", 0.0), (" 250 ", 250e-6)],
)
def test_spin_seconds(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float) -> None:
    if raw is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, raw)
    assert spin_seconds() == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "100001"])
def test_a_bad_spin_setting_is_named_and_the_default_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    monkeypatch.setenv(ENV_VAR, raw)
    with caplog.at_level(logging.WARNING, logger="workerbridge"):
        assert spin_seconds() == DEFAULT_SPIN_US / 1e6
    assert ENV_VAR in caplog.text and repr(raw) in caplog.text


def _run_loop(monkeypatch: pytest.MonkeyPatch, spin_us: str) -> tuple[int, int]:
    """200 run() calls in a row on two ready workers: (the busier's count, the other's)."""
    monkeypatch.setenv(ENV_VAR, spin_us)
    with wb.WorkerBridge(workers=2, fallback="never") as bridge:
        deadline = time.monotonic() + 60
        while any(w.state != "idle" for w in bridge.stats().workers):
            assert time.monotonic() < deadline, bridge.stats()
            time.sleep(0.01)
        for _ in range(200):
            assert bridge.run("_wb", "echo", b"x") == b"x"
        busiest, other = sorted((w.completed for w in bridge.stats().workers), reverse=True)
    return busiest, other


def test_a_run_loop_keeps_meeting_the_awake_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # a budget far above any pause between two calls here: the worker that answered
    # is still awake for the next call, and least-busy must give the call to it
    busiest, other = _run_loop(monkeypatch, "50000")
    assert busiest >= 180, (busiest, other)


def test_without_spinning_least_busy_spreads_a_run_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    busiest, other = _run_loop(monkeypatch, "0")
    assert other >= 50, (busiest, other)  # the least busy time alternates the two
