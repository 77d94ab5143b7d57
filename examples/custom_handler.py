"""Custom handlers: your own functions in workers, with state, progress, timeouts and errors.

The handlers live in ``imagejobs.py`` beside this script; the bridge imports
that module in every worker (``handlers=["imagejobs"]``).  This script makes a
synthetic grayscale image, hands it to a worker without copying it through a
pipe (:meth:`~workerbridge.WorkerBridge.allocate`), and then only sends small
requests about it: with ``affinity=name`` they all reach the worker that holds
the image in its ``ctx.state``.

Run it with ``python examples/custom_handler.py``.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import workerbridge as wb

WIDTH, HEIGHT = 320, 240  # 76,800 bytes: payloads of 64 KiB and more go through shared memory


def make_image(seed: int) -> bytes:
    """A gradient with a few bright rings, one byte per pixel."""
    cx, cy = WIDTH * (0.3 + 0.1 * seed), HEIGHT * 0.5
    rows = []
    for y in range(HEIGHT):
        row = bytearray(WIDTH)
        for x in range(WIDTH):
            ring = 120 * (math.sin(math.hypot(x - cx, y - cy) / 6) > 0.7)
            row[x] = min(255, x * 128 // WIDTH + ring)
        rows.append(bytes(row))
    return b"".join(rows)


def main() -> None:
    with wb.WorkerBridge(workers=2, handlers=["imagejobs"]) as bridge:
        print(f"bridge: {bridge.workers} workers, mode={bridge.mode}")

        # 1. Open two images, each in its own worker's state.  The pixels are
        #    written straight into shared memory and handed over, not copied.
        for seed, name in enumerate(["beach", "forest"]):
            pixels = make_image(seed)
            buf = bridge.allocate(len(pixels))
            buf.view[:] = pixels
            payload = {"name": name, "width": WIDTH, "height": HEIGHT, "pixels": buf}
            opened = bridge.run("image", "open", payload, affinity=name)
            print(f"  opened {name!r}: {opened['bytes']:,} bytes on worker {opened['worker']}")

        # 2. Work on them where they are; only small answers come back.
        reports: list[wb.Progress] = []
        task = bridge.submit(
            "image",
            "blur",
            {"name": "beach", "radius": 3, "passes": 2},
            affinity="beach",
            on_progress=reports.append,
        )
        print(
            f"  task {task.id} blur 'beach': mean brightness {task.result()['mean']:.1f}, "
            f"{len(reports)} progress reports, last {reports[-1]}"
        )
        hist = bridge.run("image", "histogram", {"name": "forest", "bins": 8}, affinity="forest")
        print(f"  histogram of 'forest' (8 bins): {hist}")
        with tempfile.TemporaryDirectory() as tmp:
            pgm = bridge.run("image", "thumbnail", {"name": "beach", "factor": 8}, affinity="beach")
            path = os.path.join(tmp, "beach-thumb.pgm")
            bridge.file.write(path, pgm)
            size = pgm.split(b"\n")[1].decode().replace(" ", "x")
            print(f"  thumbnail: a {size} PGM of {len(pgm):,} bytes in {os.path.basename(path)}")
        for name in ("beach", "forest"):
            where = bridge.run("image", "where", None, affinity=name)
            print(f"  affinity {name!r} -> worker {where['worker']} holding {where['images']}")

        # 3. A handler's exception arrives as RemoteError: type name and message only.
        try:
            bad = {"name": "tiny", "width": 4, "height": 4, "pixels": b"\x00" * 3}
            bridge.run("image", "open", bad)
        except wb.RemoteError as exc:
            print(f"  {type(exc).__name__} from the handler: {exc}")

        # 4. A timeout stops the work: the handler sees its cancel flag within a
        #    row and returns, so its worker (and the images it holds) survive.
        pid = bridge.run("image", "where", None, affinity="beach")["pid"]
        start = time.monotonic()
        try:
            bridge.run(
                "image", "blur", {"name": "beach", "passes": 10_000}, affinity="beach", timeout=0.3
            )
        except wb.TaskTimeoutError as exc:
            print(f"  {exc} (after {time.monotonic() - start:.2f} s)")
        after = bridge.run("image", "where", None, affinity="beach")
        print(f"  same worker afterwards: {after['pid'] == pid}, still holding {after['images']}")

        # 5. Cancellation, here of a task still waiting behind another one.
        token = wb.CancellationToken()
        try:
            first = bridge.submit(
                "image", "blur", {"name": "forest", "passes": 3}, affinity="forest"
            )
            queued = bridge.submit(
                "image", "blur", {"name": "forest", "passes": 3}, affinity="forest", cancel=token
            )
            token.cancel()
            print(
                f"  cancelled while queued: {queued.cancelled()}; "
                f"the first finished: mean {first.result()['mean']:.1f}"
            )
        finally:
            token.close()

        stats = bridge.stats()
        print(
            f"  stats: {stats.completed} completed, {stats.failed} failed, "
            f"{stats.timed_out} timed out, {stats.cancelled} cancelled, "
            f"{stats.restarts} worker restarts"
        )


if __name__ == "__main__":
    main()
