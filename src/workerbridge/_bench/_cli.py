"""``python -m workerbridge bench``: options, the machine description, the run, the outputs.

Data flow::

    main(argv) --> parse options --> Config (mode, workers)
      describe the machine and versions; check the machine is idle enough
      for each selected case: run it (each case starts, warms and closes its own
      pools) --> print its table as soon as it ends
      targets summary --> --json PATH (document, with the printed report)
                      --> --text PATH (the printed report) --> --plot PATH (PNG)
"""

from __future__ import annotations

import argparse
import datetime
import faulthandler
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import _bridges, _core, _memory
from ._config import CASES, Config, Mode, config_for
from ._measure import BUSY_THRESHOLD, other_share_now
from ._peers import package_version
from ._report import CaseResult, format_case, plot, summary_lines

__all__ = ["main", "run"]

TINY_ENV = "WORKERBRIDGE_BENCH_TINY"

#: Seconds after which a case still running dumps every thread's stack to stderr
#: (every such period, until it ends): a full case takes under two minutes.
CASE_WATCHDOG_S = 600

_RUNNERS: dict[str, Callable[[Config], CaseResult]] = {
    "round_trip": _core.round_trip,
    "map": _core.map_case,
    "echo": _core.echo,
    "bridges": _bridges.bridges,
    "cold_start": _core.cold_start,
    "memory": _memory.memory,
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 1)
    except (OSError, ValueError):
        pass
    return None


def _commit() -> str | None:
    """The git commit of the source tree workerbridge was imported from, if it is one."""
    import workerbridge

    here = os.path.dirname(os.path.abspath(workerbridge.__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+modified" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    """The machine the figures come from."""
    physical = None
    try:
        physical = importlib.import_module("psutil").cpu_count(logical=False)
    except ImportError:
        pass
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "physical_cores": physical,
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, str | None]:
    """Versions of workerbridge, the peers and the libraries the bridges wrap."""
    import workerbridge
    from workerbridge import _atomic, _spin

    out: dict[str, str | None] = {
        "workerbridge": workerbridge.__version__,
        "workerbridge_atomics": _atomic.IMPLEMENTATION,
        "workerbridge_hot_path": _spin.IMPLEMENTATION,
        "workerbridge_spin_us": f"{_spin.spin_seconds() * 1e6:.0f}",
        "workerbridge_commit": _commit(),
    }
    for dist in ("loky", "pebble", "mpire", "zstandard", "cryptography", "msgpack", "psutil"):
        out[dist] = package_version(dist)
    out["matplotlib"] = package_version("matplotlib")
    return out


def run(
    mode: Mode = "quick",
    *,
    workers: int = 2,
    cases: Sequence[str] = CASES,
    echo: Callable[[str], object] | None = print,
) -> dict[str, Any]:
    """Run the selected cases; return the JSON-ready document.

    Parameters
    ----------
    mode
        ``"quick"`` (about a minute), ``"full"`` (the published figures), or
        ``"tiny"`` (seconds; only checks that every case runs).
    workers
        Worker processes of every pool.
    cases
        Names from :data:`CASES`, run in that order.
    echo
        Called with each printed block (``None``: silent).
    """
    cfg = config_for(mode, workers)
    printed: list[str] = []

    def say(text: str) -> None:
        printed.append(text)
        if echo is not None:
            echo(text)

    started = time.perf_counter()
    mach = machine()
    vers = versions()
    say(
        f"workerbridge {vers['workerbridge']} benchmarks, {mode} run: {workers} workers per pool; "
        f"{mach['cpu_model']}, {mach['cpus']} CPUs, Python {mach['python']}, "
        f"{mach['platform']}"
    )
    peers_line = ", ".join(f"{d} {vers[d] or 'not installed'}" for d in ("loky", "pebble", "mpire"))
    say(f"peers: ProcessPoolExecutor and multiprocessing.Pool (stdlib), {peers_line}")
    idle = other_share_now(0.1 if mode == "tiny" else 0.5)
    if idle is not None and idle > BUSY_THRESHOLD:
        say(f"WARNING: other processes are using {idle:.0%} of the machine before the run")
    say("")
    results: list[CaseResult] = []
    for number, key in enumerate(CASES, 1):
        if key not in cases:
            continue
        # A case that hangs (a deadlocked peer) prints every thread's stack.
        faulthandler.dump_traceback_later(CASE_WATCHDOG_S, repeat=True)
        try:
            result = _RUNNERS[key](cfg)
        finally:
            faulthandler.cancel_dump_traceback_later()
        results.append(result)
        say(format_case(result, number))
        say("")
    for line in summary_lines(results):
        say(line)
    return {
        "schema": "workerbridge-bench/1",
        "seconds": round(time.perf_counter() - started, 1),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": mach,
        "versions": vers,
        "config": cfg.as_dict(),
        "other_cpu_share_before": idle,
        "busy_threshold": BUSY_THRESHOLD,
        "cases": {r.key: r.as_dict() for r in results},
        "targets": [
            {
                "case": r.key,
                "row": row.label,
                "target": row.target,
                "ratio": row.ratio,
                "value": row.value,
                "unit": row.unit,
                "verdict": row.verdict,
            }
            for r in results
            for row in r.rows
            if row.target is not None
        ],
        "busy_cases": [r.key for r in results if r.busy],
        "report": "\n".join(printed) + "\n",
    }


def _cases(values: Sequence[str] | None) -> list[str]:
    if not values:
        return list(CASES)
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                continue
            if name not in CASES:
                raise argparse.ArgumentTypeError(
                    f"unknown case {name!r}; choose from {', '.join(CASES)}"
                )
            out.append(name)
    return out


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m workerbridge bench``."""
    p = argparse.ArgumentParser(
        prog="python -m workerbridge bench",
        description=(
            "workerbridge against ProcessPoolExecutor, multiprocessing.Pool, loky, pebble "
            "and mpire, side by side in one run (alternating repetitions), and each bridge "
            "operation against a direct call of its library."
        ),
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="reduced sizes and repetitions, about a minute (default)",
    )
    size.add_argument(
        "--full", action="store_true", help="the published configuration, about six minutes"
    )
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="PATH", help="write the figures, machine and versions here")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the figures (needs matplotlib)")
    p.add_argument("--text", metavar="PATH", help="write the printed report here too")
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help=f"cases to run, space- or comma-separated (default: all): {', '.join(CASES)}",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes of every pool (default: 2)"
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m workerbridge bench``; returns the exit status."""
    p = parser()
    args = p.parse_args(list(argv))
    try:
        cases = _cases(args.cases)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "error: --plot needs matplotlib: pip install 'workerbridge[bench]'",
                file=sys.stderr,
            )
            return 2
    mode: Mode = "full" if args.full else "quick"
    if args.tiny or os.environ.get(TINY_ENV) == "1":
        mode = "tiny"
    doc = run(mode, workers=args.workers, cases=cases)
    doc["command"] = "python -m workerbridge bench " + " ".join(argv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    if args.text:
        with open(args.text, "w") as f:
            f.write(doc["report"])
        print(f"wrote {args.text}")
    if args.plot:
        plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0
