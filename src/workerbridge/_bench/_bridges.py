"""Case (4): each bridge operation against one direct in-process call of the library.

Data flow::

    for each size (1 KiB, 1 MiB, 256 MiB in the full run):
        data = text-like bytes (compresses to about half: zstd does real work)
        for each operation:
            bridge call  (WorkerBridge with cfg.workers workers: tiny inputs run
                          inline in the caller, large ones are split across workers)
            direct call  (the library itself, in this thread, its context reused)
            calibrate calls per batch (short operations are timed in batches),
            warm both, then alternate batches: bridge, direct, bridge, ...
            --> two rows; on the direct row, ratio = direct time / bridge time

The direct calls are what a careful user would write without workerbridge:
``zstandard.ZstdCompressor(level=3, write_checksum=True)`` (the bridge's
settings) and an ``AESGCM`` object created once and reused, ``hashlib``.  Files
have no one-call library function, so the direct side of ``encrypt_file`` is
the bridge's own streaming engine (:func:`workerbridge.bridges._aead.encrypt_file`)
called in this thread: the same format, the same chunking, one core.  Both
write through :func:`os.fsync`, so on a slow disk ``encrypt_file`` waits for
the device; at the largest size it runs a second time on tmpfs, where the
disk drops out and the encryption's own speed-up shows.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable

from ._config import Config
from ._measure import CpuMonitor, alternate, calibrate_calls, summarize, timed_calls
from ._peers import wait_ready
from ._report import CaseResult, judge, speedup, time_row

__all__ = ["bridges", "text_like"]

#: Sizes from which an operation gets ``cfg.bridge_rounds_large`` batches (of one call).
LARGE = 16 << 20

#: Where the file operation runs a second time with no disk underneath, at the
#: largest size (skipped when it lacks room for the input and two outputs).
TMPFS = "/dev/shm"

_TABLE = bytes(b"etaoinshrdlucmfw"[i % 16] for i in range(256))


def text_like(size: int) -> bytes:
    """``size`` random bytes over a 16-letter alphabet: about 2:1 for zstd, no long repeats."""
    return os.urandom(size).translate(_TABLE)


def _tmpfs_dir(need: int) -> str | None:
    """A new directory on tmpfs (``/dev/shm``) with ``need`` bytes free, or ``None``."""
    try:
        st = os.statvfs(TMPFS)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < need + (256 << 20):
        return None
    try:
        return tempfile.mkdtemp(prefix="wb-bench-", dir=TMPFS)
    except OSError:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _unit(seconds: float) -> str:
    if seconds < 1e-3:
        return "us"
    return "ms" if seconds < 1.0 else "s"


def bridges(cfg: Config) -> CaseResult:
    """Bridge operations at every configured size against the direct library calls."""
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    import workerbridge as wb
    from workerbridge.bridges import _aead

    smallest = cfg.bridge_sizes[0][0]
    largest = cfg.bridge_sizes[-1][0]
    case = CaseResult(
        "bridges",
        "bridge operations against one direct in-process call of the library",
        f"{cfg.workers} workers; sizes {', '.join(n for n, _ in cfg.bridge_sizes)}; "
        f"alternating batches ({cfg.bridge_rounds} per operation, {cfg.bridge_rounds_large} "
        f"from 16 MiB), time per call; ratio: direct time / bridge time (above 1: the "
        f"bridge is faster)",
    )
    case.notes.append(
        "direct = zstandard (level 3, checksums, context reused), cryptography's AESGCM "
        "(object reused, random nonce), hashlib; encrypt_file's direct side is the same "
        "streaming engine called in this thread"
    )
    case.extra["sizes"] = [name for name, _ in cfg.bridge_sizes]
    key = os.urandom(32)
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    dctx = zstandard.ZstdDecompressor()
    aead = AESGCM(key)

    def direct_encrypt(data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, data, None)

    def direct_decrypt(blob: bytes) -> bytes:
        view = memoryview(blob)
        return aead.decrypt(view[:12], view[12:], None)

    with (
        CpuMonitor() as mon,
        tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp,
        wb.WorkerBridge(workers=cfg.workers, fallback="never") as bridge,
    ):
        wait_ready(bridge)
        for size_name, size in cfg.bridge_sizes:
            data = text_like(size)
            ours_z = bridge.compression.compress(data)
            theirs_z = cctx.compress(data)
            sealed = bridge.crypto.encrypt(data, key)
            src = os.path.join(tmp, "plain")
            with open(src, "wb") as f:
                f.write(data)
            dst_b, dst_d = os.path.join(tmp, "bridge.wbse"), os.path.join(tmp, "direct.wbse")
            partial = functools.partial
            ops: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
                (
                    "zstd compress",
                    partial(bridge.compression.compress, data),
                    partial(cctx.compress, data),
                ),
                (
                    "zstd decompress",
                    partial(bridge.compression.decompress, ours_z),
                    partial(dctx.decompress, theirs_z),
                ),
                (
                    "aes-gcm encrypt",
                    partial(bridge.crypto.encrypt, data, key),
                    partial(direct_encrypt, data),
                ),
                (
                    "aes-gcm decrypt",
                    partial(bridge.crypto.decrypt, sealed, key),
                    partial(direct_decrypt, sealed),
                ),
                (
                    "aes-gcm encrypt_file",
                    partial(bridge.crypto.encrypt_file, src, dst_b, key),
                    partial(_aead.encrypt_file, src, dst_d, key),
                ),
                ("sha256 hash", partial(bridge.crypto.hash, data), partial(_sha256, data)),
            ]
            ram = _tmpfs_dir(3 * size) if size_name == largest else None
            if ram is not None:
                # The same, with the disk taken out: tmpfs has no device to wait for.
                ram_src = os.path.join(ram, "plain")
                with open(ram_src, "wb") as f:
                    f.write(data)
                ops.append(
                    (
                        "aes-gcm encrypt_file on tmpfs",
                        partial(bridge.crypto.encrypt_file, ram_src, ram_src + ".b", key),
                        partial(_aead.encrypt_file, ram_src, ram_src + ".d", key),
                    )
                )
            rounds = cfg.bridge_rounds_large if size >= LARGE else cfg.bridge_rounds
            for op_name, ours, theirs in ops:
                variant = f"{op_name} {size_name}"
                try:
                    ours()
                    theirs()
                    n_ours = calibrate_calls(ours, cfg.bridge_batch_s)
                    n_theirs = calibrate_calls(theirs, cfg.bridge_batch_s)
                except Exception as exc:
                    status = f"error: {type(exc).__name__}: {exc}"[:140]
                    case.rows.append(
                        time_row(f"{variant}: bridge", "bridge", variant, None, "us", status=status)
                    )
                    continue
                series = alternate(
                    {
                        "bridge": functools.partial(timed_calls, ours, n_ours),
                        "direct": functools.partial(timed_calls, theirs, n_theirs),
                    },
                    rounds,
                )
                b, d = series["bridge"], series["direct"]
                sb = summarize(b.samples) if b.ok else None
                sd = summarize(d.samples) if d.ok else None
                unit = _unit(sb.median if sb else sd.median if sd else 1.0)
                row_b = time_row(f"{variant}: bridge", "bridge", variant, sb, unit, status=b.status)
                row_d = time_row(f"{variant}: direct", "direct", variant, sd, unit, status=d.status)
                ratio = speedup(row_b, row_d)
                row_d.ratio = ratio
                if size_name == smallest:
                    judge(row_d, ratio, 1 / 1.5, ">= 0.67x (<= 1.5x time)")
                elif size_name == largest and op_name in ("zstd compress", "aes-gcm encrypt_file"):
                    judge(row_d, ratio, 1.7, ">= 1.7x")
                case.rows += [row_b, row_d]
                case.extra.setdefault("calls_per_batch", {})[variant] = [n_ours, n_theirs]
            del data, ours_z, theirs_z, sealed, ops
            for path in (src, dst_b, dst_d):
                if os.path.exists(path):
                    os.unlink(path)
            if ram is not None:
                shutil.rmtree(ram, ignore_errors=True)
    case.record_cpu(mon)
    return case
