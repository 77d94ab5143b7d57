"""Custom handlers for ``custom_handler.py``: grayscale image jobs in pure Python.

A bridge created with ``handlers=["imagejobs"]`` imports this module in the
calling process and in every worker; each ``@wb.handler`` below registers one
``(channel, op)`` pair that tasks can name.  Workers import it by name, so it
lives in its own module (here, beside the script: the script's directory is
``sys.path[0]``, and workers inherit ``sys.path``).

An image is ``width * height`` bytes, one byte per pixel, row by row.  Images
are opened once into the worker's private ``ctx.state`` and worked on there;
with ``affinity=name`` every task about that image reaches the same worker,
so only small answers travel back.
"""

from __future__ import annotations

import os
from typing import Any

import workerbridge as wb

Image = tuple[int, int, bytearray]  # width, height, pixels


def _image(ctx: wb.Context, name: str) -> Image:
    try:
        image: Image = ctx.state[("image", name)]
    except KeyError:
        raise KeyError(f"no image named {name!r} on worker {ctx.worker}; open it first") from None
    return image


@wb.handler("image", "open")
def open_image(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, int]:
    """Keep a copy of the pixels in this worker's state under ``payload["name"]``."""
    width, height, pixels = payload["width"], payload["height"], payload["pixels"]
    if width <= 0 or height <= 0 or len(pixels) != width * height:
        raise ValueError(f"expected {width}x{height} = {width * height} bytes, got {len(pixels)}")
    # Pixels of 64 KiB or more arrive as a read-only memoryview of shared
    # memory, valid only while this handler runs: copy what is kept.
    ctx.state[("image", payload["name"])] = (width, height, bytearray(pixels))
    return {"worker": ctx.worker, "pid": os.getpid(), "bytes": len(pixels)}


@wb.handler("image", "blur")
def blur(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, float]:
    """Blur an open image along its rows, in place, ``passes`` times; progress in rows."""
    width, height, pixels = _image(ctx, payload["name"])
    radius, passes = int(payload.get("radius", 2)), int(payload.get("passes", 1))
    size = 2 * radius + 1
    done, total = 0, passes * height
    for _ in range(passes):
        out = bytearray(len(pixels))
        for y in range(height):
            ctx.check_cancelled()  # a timeout or cancel stops the task here, within a row
            row = pixels[y * width : (y + 1) * width]
            acc = sum(row[0] for _ in range(radius + 1)) + sum(row[1 : radius + 1])
            for x in range(width):  # a running sum: one add and one subtract per pixel
                out[y * width + x] = acc // size
                acc += row[min(x + radius + 1, width - 1)] - row[max(x - radius, 0)]
            done += 1
            ctx.report(done, total)
        pixels[:] = out
    return {"mean": sum(pixels) / len(pixels)}


@wb.handler("image", "histogram")
def histogram(ctx: wb.Context, payload: dict[str, Any]) -> list[int]:
    """Count the pixels of an open image in ``bins`` equal brightness bins."""
    _, _, pixels = _image(ctx, payload["name"])
    bins = int(payload.get("bins", 8))
    counts = [0] * bins
    for value in pixels:
        counts[value * bins // 256] += 1
    return counts


@wb.handler("image", "thumbnail")
def thumbnail(ctx: wb.Context, payload: dict[str, Any]) -> bytes:
    """Return a binary PGM (P5) file of an open image scaled down by ``factor``."""
    width, height, pixels = _image(ctx, payload["name"])
    f = int(payload["factor"])
    tw, th = width // f, height // f
    out = bytearray(tw * th)
    for ty in range(th):
        for tx in range(tw):
            block = (
                pixels[(ty * f + dy) * width + tx * f + dx] for dy in range(f) for dx in range(f)
            )
            out[ty * tw + tx] = sum(block) // (f * f)
    return b"P5\n%d %d\n255\n" % (tw, th) + bytes(out)


@wb.handler("image", "where")
def where(ctx: wb.Context, payload: object) -> dict[str, Any]:
    """Which worker this is, and which images its state holds."""
    names = sorted(key[1] for key in ctx.state if isinstance(key, tuple) and key[0] == "image")
    return {"worker": ctx.worker, "pid": os.getpid(), "images": names}


if __name__ == "__main__":
    print("imagejobs: the handlers module of custom_handler.py; run that script instead.")
