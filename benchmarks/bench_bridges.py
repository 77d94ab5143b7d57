"""Bridge calls against one direct in-process call of the same engine.

For ``compress`` (zstd), ``encrypt`` (aes-gcm) and ``file hash`` (sha256) at
1 KiB and 1 MiB (and 256 MiB with ``--full``), time the bridge method on a
2-worker :class:`workerbridge.WorkerBridge` and the engine function it runs,
called directly in this thread.  Repetitions alternate (bridge, direct,
bridge, ...) so drift in machine load hits both alike; the medians and their
ratio (bridge / direct: below 1.0 the bridge is faster) are printed.

Usage::

    python benchmarks/bench_bridges.py                # 1 KiB and 1 MiB
    python benchmarks/bench_bridges.py --full         # also 256 MiB
    python benchmarks/bench_bridges.py --only 256MiB --ops compress,encrypt
    python benchmarks/bench_bridges.py --mode inprocess   # the fallback backend

The data compresses like text (random bytes over a 16-letter alphabet: about
half its size, no long repeats), so zstd does real work at every size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import workerbridge as wb
from workerbridge.bridges import _aead, _codecs, _files

SIZES = {"1KiB": 1 << 10, "1MiB": 1 << 20, "256MiB": 256 << 20}
# (calls per timed batch, batches) for each size: enough work per batch to
# dwarf the timer's resolution, enough batches for a stable median.
PLAN = {"1KiB": (500, 15), "1MiB": (10, 15), "256MiB": (1, 3)}


def make_data(size: int) -> bytes:
    table = bytes((b"etaoinshrdlucmfw"[i % 16]) for i in range(256))
    return os.urandom(size).translate(table)


def timed(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def compare(
    name: str, size_name: str, bridge_call: Callable[[], object], direct: Callable[[], object]
) -> None:
    calls, batches = PLAN[size_name]
    for _ in range(2):  # warm up both paths: imports, worker arenas, allocator, page cache
        bridge_call(), direct()
    b_times, d_times = [], []
    for _ in range(batches):
        b_times.append(timed(bridge_call, calls))
        d_times.append(timed(direct, calls))
    b, d = statistics.median(b_times), statistics.median(d_times)
    line = f"{name:<10} {size_name:>7}  bridge {fmt(b):>10}  direct {fmt(d):>10}"
    print(f"{line}  ratio {b / d:5.2f}", flush=True)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def run_size(bridge: wb.WorkerBridge, size_name: str, ops: list[str], tmp: str) -> None:
    data = make_data(SIZES[size_name])
    key = os.urandom(32)
    if "compress" in ops:
        compare(
            "compress",
            size_name,
            lambda: bridge.compression.compress(data),
            lambda: _codecs.compress(data, "zstd"),
        )
    if "encrypt" in ops:
        compare(
            "encrypt",
            size_name,
            lambda: bridge.crypto.encrypt(data, key),
            lambda: _aead.encrypt(data, key),
        )
    if "hash" in ops:
        path = os.path.join(tmp, f"data-{size_name}")
        with open(path, "wb") as f:
            f.write(data)
        compare(
            "file hash",
            size_name,
            lambda: bridge.file.hash(path),
            lambda: _files.hash_file(path),
        )
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="include 256 MiB")
    parser.add_argument("--only", help="comma-separated sizes (1KiB,1MiB,256MiB)")
    parser.add_argument("--ops", default="compress,encrypt,hash", help="comma-separated ops")
    parser.add_argument("--mode", choices=("pool", "inprocess"), default="pool")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = args.only.split(",") if args.only else ["1KiB", "1MiB"] + (["256MiB"] * args.full)
    ops = args.ops.split(",")
    fallback = "always" if args.mode == "inprocess" else "never"
    print(
        f"workerbridge bridges vs direct engine calls: {args.workers} workers, mode {args.mode}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    with (
        wb.WorkerBridge(workers=args.workers, fallback=fallback) as bridge,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for size_name in sizes:
            run_size(bridge, size_name, ops, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
