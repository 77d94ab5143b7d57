#!/usr/bin/env python3
"""Run workerbridge's reliability scenarios and print their figures.

The scenarios live in ``tests/reliability/rel_scenarios.py`` and are the same
ones the test suite runs (``make test`` at small sizes, ``make reliability``
at full size); this script runs them without pytest and prints a table of the
figures the documentation quotes (docs/reliability.rst).

Usage::

    python scripts/reliability.py                  # full size (several minutes)
    python scripts/reliability.py --quick          # the sizes of `make test`
    python scripts/reliability.py --only chaos,soak --json figures.json
    python scripts/reliability.py --list

Each scenario runs in a fresh interpreter (``--in-process`` runs them all in
this one), so that its memory figures start from a clean process.  The exit
status is 1 when any scenario found a broken promise (listed under the
table), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import rel_scenarios as scenarios  # noqa: E402

import workerbridge as wb  # noqa: E402
from workerbridge import _atomic  # noqa: E402


def _environment() -> dict[str, Any]:
    return {
        "workerbridge": getattr(wb, "__version__", "?"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "atomics": _atomic.IMPLEMENTATION,
    }


def _sizes(name: str, heavy: bool) -> dict[str, Any]:
    sizes = scenarios.size(name, heavy)
    if name == "signal_close" and not sizes.get("trials"):
        sizes["trials"] = 3  # not run by `make test`; a few trials here
    return sizes


def _run_one(name: str, variant: dict[str, Any], heavy: bool) -> dict[str, Any]:
    fn, _ = scenarios.SCENARIOS[name]
    sizes = _sizes(name, heavy)
    start = time.monotonic()
    try:
        result = fn(**sizes, **variant)
    except Exception as exc:  # report and go on with the other scenarios
        result = {
            "scenario": name,
            "figures": {},
            "failures": [f"scenario raised {type(exc).__name__}: {exc}"],
        }
    result["seconds"] = round(time.monotonic() - start, 1)
    result["sizes"] = {**sizes, **variant}
    return result


def _run(names: list[str], heavy: bool, isolate: bool) -> list[dict[str, Any]]:
    """Run every variant, each in a fresh interpreter unless ``isolate`` is false.

    A fresh process per scenario keeps the memory figures (RSS) of one scenario
    free of what the previous ones left in the allocator.
    """
    results = []
    for name in names:
        for variant in scenarios.SCENARIOS[name][1]:
            label = name + (f" {variant}" if variant else "")
            print(f"... {label}", file=sys.stderr, flush=True)
            if not isolate:
                results.append(_run_one(name, variant, heavy))
                continue
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                spec = json.dumps({"name": name, "variant": variant, "heavy": heavy})
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", spec, "--child-out", out.name],
                    check=False,
                )
                text = Path(out.name).read_text()
            if proc.returncode != 0 or not text:
                results.append(
                    {
                        "scenario": name,
                        "figures": {},
                        "failures": [f"scenario process exited with {proc.returncode}"],
                        "seconds": 0.0,
                    }
                )
            else:
                results.append(json.loads(text))
    return results


def _table(results: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, str, str]] = []
    for result in results:
        name = result["scenario"]
        lines = scenarios.headline(result) if result["figures"] else []
        status = "ok" if not result["failures"] else "FAILED"
        rows.append((name, f"[{status}, {result['seconds']} s]", ""))
        rows.extend(("", label, value) for label, value in lines)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out = [f"{'scenario':<{w0}}  {'figure':<{w1}}  value", "-" * (w0 + w1 + 40)]
    out += [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes of `make test`")
    parser.add_argument("--only", help="comma-separated scenario names (see --list)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every scenario in this process (default: a fresh process each)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # worker deaths are the point of several scenarios: keep their warnings off the terminal
    log = logging.getLogger("workerbridge")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    if args.child:
        spec = json.loads(args.child)
        result = _run_one(spec["name"], spec["variant"], spec["heavy"])
        Path(args.child_out).write_text(json.dumps(result, default=str))
        return 0
    if args.list:
        for name, (fn, _) in scenarios.SCENARIOS.items():
            doc = (fn.__doc__ or "").strip().splitlines()[0]
            print(f"{name:<16} {doc}")
        return 0
    names = list(scenarios.SCENARIOS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in scenarios.SCENARIOS]
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(unknown)} (see --list)")
    start = time.monotonic()
    results = _run(names, heavy=not args.quick, isolate=not args.in_process)
    total = time.monotonic() - start
    env = _environment()
    print(
        f"workerbridge reliability figures ({'quick' if args.quick else 'full'} size, "
        f"{total:.0f} s; Python {env['python']}, {env['cpus']} CPUs, "
        f"{env['atomics']} atomics)\n"
    )
    print(_table(results))
    failed = [(r["scenario"], f) for r in results for f in r["failures"]]
    if failed:
        print("\nbroken promises:")
        for name, failure in failed:
            print(f"  {name}: {failure}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"environment": env, "seconds": round(total, 1), "results": results},
                f,
                indent=1,
                default=str,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
