"""The benchmark suite runs end to end and writes a complete JSON document.

Only the structure is checked (every case, every contestant, positive figures,
a verdict for every target); never a timing.  The runs use the hidden
``--tiny`` mode: every case with tiny sizes, in seconds.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from workerbridge._bench import _measure, _report
from workerbridge._bench._cli import main
from workerbridge._bench._config import CASES

PEERS = ("ProcessPoolExecutor", "multiprocessing.Pool", "loky", "pebble", "mpire")


def _bench(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}\nimport sys\nfrom workerbridge._bench import main\nsys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "--tiny", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_tiny_run_writes_every_case(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    png = tmp_path / "bench.png"
    txt = tmp_path / "bench.txt"
    args = ["--json", str(out), "--text", str(txt)]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(png)]
    except ImportError:
        pass
    proc = _bench(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "targets:" in proc.stdout
    assert txt.read_text() in proc.stdout

    doc = json.loads(out.read_text())
    assert doc["schema"] == "workerbridge-bench/1"
    assert doc["config"]["mode"] == "tiny"
    assert doc["config"]["workers"] == 2
    for key in ("cpu_model", "cpus", "python", "platform"):
        assert doc["machine"][key]
    assert doc["versions"]["workerbridge"]
    assert doc["report"] == txt.read_text()
    assert doc["seconds"] > 0
    assert set(doc["cases"]) == set(CASES)

    for key, case in doc["cases"].items():
        assert case["rows"], key
        assert case["seconds"] > 0
        for row in case["rows"]:
            assert row["status"] in ("ok", "not installed"), (key, row)
            if row["status"] == "ok":
                assert row["n"] >= 1, (key, row)
                if key == "memory":
                    assert row["value"] >= 0, row
                else:
                    assert row["value"] > 0, (key, row)
                    assert 0 < row["lo"] <= row["hi"], (key, row)
            if row["target"] is not None and row["status"] == "ok":
                assert row["verdict"] in ("PASS", "MISS"), (key, row)

    contestants = {r["contestant"] for r in doc["cases"]["round_trip"]["rows"]}
    assert set(PEERS) <= contestants
    assert "workerbridge run()" in contestants
    echo = {r["contestant"] for r in doc["cases"]["echo"]["rows"]}
    assert "workerbridge allocate()" in echo
    ops = {r["variant"] for r in doc["cases"]["bridges"]["rows"]}
    for op in ("zstd compress", "zstd decompress", "aes-gcm encrypt", "aes-gcm decrypt"):
        assert f"{op} 1 KiB" in ops
    assert "aes-gcm encrypt_file 1 KiB" in ops
    assert "sha256 hash 1 KiB" in ops
    assert {t["case"] for t in doc["targets"]} >= {"round_trip", "map", "echo", "bridges"}
    for run in doc["cases"]["memory"]["extra"]["runs"].values():
        assert run[0]["peak_kib"] > 0
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_peer_gets_a_row_not_a_crash(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    # A module set to None in sys.modules cannot be imported: as if not installed.
    proc = _bench(
        "--cases",
        "round_trip",
        "--json",
        str(out),
        prelude="import sys; sys.modules['mpire'] = None",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["cases"]["round_trip"]["rows"]
    mpire = [r for r in rows if r["contestant"] == "mpire"]
    assert mpire
    assert all(r["status"] == "not installed" for r in mpire)
    assert "not installed" in proc.stdout
    assert set(json.loads(out.read_text())["cases"]) == {"round_trip"}


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--tiny", "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_unknown_case_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--cases", "warp_speed"])
    assert info.value.code == 2
    assert "unknown case" in capsys.readouterr().err


def test_alternate_interleaves_and_reports_errors() -> None:
    order: list[str] = []

    def make(name: str) -> _measure.Runner:
        def run() -> float:
            order.append(name)
            return 0.001

        return run

    def broken() -> float:
        raise OSError("pool is gone")

    out = _measure.alternate(
        {"a": make("a"), "b": make("b"), "c": broken, "d": None},
        3,
        unavailable={"d": "not installed"},
    )
    rounds = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert len(rounds) == 3
    assert all(sorted(r) == ["a", "b"] for r in rounds)  # each round: everyone once
    assert out["a"].samples == [0.001] * 3
    assert out["c"].status == "error: OSError: pool is gone"
    assert out["d"].status == "not installed"
    assert not out["c"].ok


def test_alternate_shuffles_each_round_reproducibly() -> None:
    def trace() -> list[str]:
        order: list[str] = []

        def make(name: str) -> _measure.Runner:
            def run() -> float:
                order.append(name)
                return 0.0

            return run

        runners: dict[str, _measure.Runner | None] = {name: make(name) for name in "abcdef"}
        _measure.alternate(runners, 8)
        return order

    first = trace()
    assert first == trace()  # seeded: a run can be repeated
    rounds = [tuple(first[i : i + 6]) for i in range(0, 48, 6)]
    assert all(sorted(r) == list("abcdef") for r in rounds)
    assert len(set(rounds)) > 1  # not one fixed order
    followers = {r[r.index("a") - 1] for r in rounds if r.index("a") > 0}
    assert len(followers) > 1  # "a" does not always run after the same contestant


def test_budget_stops_slow_runner_after_min_rounds() -> None:
    out = _measure.alternate(
        {"slow": lambda: 10.0, "fast": lambda: 0.0}, 5, min_rounds=2, budget_s=1
    )
    assert len(out["slow"].samples) == 2
    assert len(out["fast"].samples) == 5


def test_quantile_interpolates() -> None:
    assert _measure.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert _measure.quantile([0.0, 10.0], 0.1) == pytest.approx(1.0)
    assert _measure.quantile([7.0], 0.99) == 7.0


def test_table_shows_status_and_verdict() -> None:
    case = _report.CaseResult("x", "a case", "conditions")
    ours = _report.Row("ours", "ours", "v", "ms", value=1.0, lo=0.9, hi=1.1, n=5)
    theirs = _report.Row("theirs", "theirs", "v", "ms", value=3.0, lo=2.5, hi=3.5, n=5)
    _report.judge(theirs, _report.speedup(ours, theirs), 2.0, ">= 2x")
    gone = _report.Row("gone", "gone", "v", "ms", status="not installed")
    case.rows = [ours, theirs, gone]
    text = _report.format_case(case, 1)
    assert "3.00x" in text
    assert "PASS" in text
    assert "not installed" in text
    assert theirs.verdict == "PASS"


def test_cpu_monitor_measures_shares() -> None:
    with _measure.CpuMonitor() as mon:
        sum(range(200_000))
    assert mon.seconds > 0
    if mon.other_share is not None:
        assert 0.0 <= mon.other_share <= 1.0
