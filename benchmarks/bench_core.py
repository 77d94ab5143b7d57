"""Round trip and 64 MiB echo: workerbridge against ProcessPoolExecutor, side by side.

Usage: ``python benchmarks/bench_core.py [--full] [--json PATH]`` (the same as
``python -m workerbridge bench``).
"""

from __future__ import annotations

import sys

from workerbridge._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
