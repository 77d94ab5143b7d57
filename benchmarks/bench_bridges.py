"""The bridge cases: each operation against a direct library call, and the parent's memory.

Usage::

    python benchmarks/bench_bridges.py [--quick|--full] [--json PATH] [--plot PATH] [--workers N]

The same as ``python -m workerbridge bench --cases bridges,memory``: zstd
compress and decompress, AES-GCM encrypt, decrypt and file encryption, and
sha256 at 1 KiB, 1 MiB and 256 MiB (``--full``), then the parent's peak RSS
growth while a 2 GiB file (``--full``) is encrypted and compressed.
"""

from __future__ import annotations

import sys

from workerbridge._bench import main

if __name__ == "__main__":
    sys.exit(main(["--cases", "bridges,memory", *sys.argv[1:]]))
