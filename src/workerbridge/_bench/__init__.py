"""The benchmark suite behind ``python -m workerbridge bench`` (and ``make bench``).

Data flow::

    __main__ "bench" --> _cli.main(argv) --> _cli.run(mode, workers, cases)
        _core     (1) round trip, (2) map, (3) echo, (5) cold start
                  workerbridge beside every peer of _peers, alternating repetitions
        _bridges  (4) each bridge operation against one direct library call
        _memory   (6) the parent's RSS growth on a large file (in a child process)
        _measure  timing, alternation, statistics, the busy-machine check
        _report   rows, targets (PASS / MISS), the table, the JSON, the plot

The peers (loky, pebble, mpire) and matplotlib come with the ``bench`` extra:
``pip install 'workerbridge[bench]'``; a peer that is missing gets a "not
installed" row.
"""

from __future__ import annotations

from ._cli import main as main
from ._cli import run as run

__all__ = ["main", "run"]
