"""The pool cases: round trip, map, echo and cold start, against every peer, side by side.

Usage::

    python benchmarks/bench_core.py [--quick|--full] [--json PATH] [--plot PATH] [--workers N]

The same as ``python -m workerbridge bench --cases round_trip,map,echo,cold_start``;
the suite itself lives in ``workerbridge._bench`` so that it also runs from an
installed package.
"""

from __future__ import annotations

import sys

from workerbridge._bench import main

if __name__ == "__main__":
    sys.exit(main(["--cases", "round_trip,map,echo,cold_start", *sys.argv[1:]]))
