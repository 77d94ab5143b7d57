"""workerbridge quick start: a few calls with live progress, then the bridge's stats.

Run it with ``make demo`` (or ``python examples/quickstart.py`` in the virtualenv).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable

import workerbridge as wb


@wb.handler("demo", "crunch")
def crunch(ctx: wb.Context, payload: dict[str, int]) -> int:
    """A CPU-bound handler that reports progress and honours cancellation."""
    steps, total = payload["steps"], 0
    for i in range(steps):
        ctx.check_cancelled()
        total += sum(j * j for j in range(20_000))
        ctx.report(i + 1, steps)
    return total


def bar(label: str) -> Callable[[wb.Progress], None]:
    def show(p: wb.Progress) -> None:
        filled = int(p.fraction * 30)
        sys.stdout.write(f"\r  {label:<28} [{'#' * filled}{'.' * (30 - filled)}] {p.fraction:6.1%}")
        sys.stdout.flush()
        if p.current >= p.total > 0:
            sys.stdout.write("\n")

    return show


def main() -> None:
    with wb.WorkerBridge(workers=2, handlers=["__main__"]) as bridge:
        print(f"workerbridge {wb.__version__}: {bridge.workers} workers, mode={bridge.mode}")

        # 1. your own handler, with live progress from inside the worker
        task = bridge.submit(
            "demo", "crunch", {"steps": 40}, on_progress=bar("crunch (custom handler)")
        )
        print(f"  task {task.id} -> {task.result()}")

        # 2. a timeout that really stops the work
        start = time.monotonic()
        try:
            bridge.run("demo", "crunch", {"steps": 10_000}, timeout=0.5)
        except wb.TaskTimeoutError as exc:
            print(f"  stopped after {time.monotonic() - start:.2f} s: {exc}")

        # 3. the bridges: compression, crypto and files, off the main thread
        data = os.urandom(1 << 20) * 8  # 8 MiB
        packed = bridge.compression.compress(data, codec="zstd")
        assert bridge.compression.decompress(packed, codec="zstd") == data
        print(f"  zstd: {len(data) >> 20} MiB -> {len(packed) >> 20} MiB and back")

        key = bridge.crypto.generate_key()
        with tempfile.TemporaryDirectory() as tmp:
            src, enc, dec = (os.path.join(tmp, n) for n in ("plain.bin", "plain.wbse", "back.bin"))
            bridge.file.write(src, data)
            bridge.crypto.encrypt_file(src, enc, key, on_progress=bar("encrypt_file 8 MiB"))
            bridge.crypto.decrypt_file(enc, dec, key)
            same = bridge.file.hash(src) == bridge.file.hash(dec)
            print(f"  encrypted and decrypted a file; sha256 equal: {same}")

        # 4. health
        stats = bridge.stats()
        print(
            f"  stats: {stats.completed} completed, {stats.timed_out} timed out, "
            f"{stats.restarts} worker restarts, p50 latency "
            f"{(stats.latency.p50 or 0) * 1e3:.2f} ms"
        )
        for w in stats.workers:
            print(f"    worker {w.index}: pid {w.pid}, {w.state}, {w.completed} tasks")


if __name__ == "__main__":
    main()
