"""Case (6): peak RSS growth of the parent while a large file is encrypted or compressed.

Data flow::

    parent (the suite)                       child (python -c ...: does only this)
    ------------------                       -------------------------------------
    write a text-like file of cfg.memory_bytes
    spawn child(op, path) ────────────────>  WorkerBridge(workers), warm with the same
                                             operation on a 32 MiB file, gc
                                             baseline = VmRSS; reset VmHWM
                                             (/proc/self/clear_refs "5"); a thread
                                             samples VmRSS every 10 ms
                                             bridge.crypto.encrypt_file(...) or
                                             bridge.compression.compress_file(...)
    parse its JSON line  <─────────────────  peak = max(VmHWM, sampled); growth = peak - baseline

Only the parent's memory counts here: the workers read and write the file in
ranges, and the parent should hold no more than a few parts of it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from ._config import Config
from ._measure import CpuMonitor, summarize
from ._report import CaseResult, Row, judge_at_most

__all__ = ["child", "memory"]

#: Limit the target sets on the parent's RSS growth, in MiB.
LIMIT_MIB = 64


_OPS = {"encrypt_file": "aes-gcm encrypt_file", "compress_file": "zstd compress_file"}


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _fill(path: str, size: int) -> None:
    from ._bridges import text_like

    blocks = [text_like(min(size, 16 << 20)) for _ in range(4)]
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            block = blocks[i % len(blocks)]
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))
            i += 1


def child(op: str, path: str, workers: int, warm_bytes: int) -> None:
    """Run one operation on ``path`` in this (fresh) process and print its memory figures.

    The same operation on a ``warm_bytes`` file first loads every module and
    sets up the parent's buffers, so that only the growth due to the large
    file is measured.
    """
    import workerbridge as wb

    out = path + ".out"
    key = os.urandom(32)
    with wb.WorkerBridge(workers=workers, fallback="never") as bridge:

        def run(src: str) -> None:
            if op == "encrypt_file":
                bridge.crypto.encrypt_file(src, out, key)
            else:
                bridge.compression.compress_file(src, out)
            os.unlink(out)

        warm = path + ".warm"
        _fill(warm, warm_bytes)
        run(warm)
        os.unlink(warm)
        gc.collect()
        base = _status_kib("VmRSS") or 0
        reset = _reset_hwm()
        peak_sampled = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.01):
                rss = _status_kib("VmRSS")
                if rss is not None and rss > peak_sampled[0]:
                    peak_sampled[0] = rss

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        run(path)
        elapsed = time.perf_counter() - t
        stop.set()
        sampler.join()
        hwm = _status_kib("VmHWM") if reset else None
        peak = max(peak_sampled[0], hwm or 0)
    print(
        "MEMORY "
        + json.dumps(
            {
                "baseline_kib": base,
                "peak_kib": peak,
                "hwm_kib": hwm,
                "hwm_reset": reset,
                "sampled_peak_kib": peak_sampled[0],
                "growth_kib": peak - base,
                "seconds": elapsed,
            }
        ),
        flush=True,
    )


def _run_child(op: str, path: str, workers: int, warm_bytes: int) -> dict[str, float]:
    from ._core import child_env

    code = (
        "from workerbridge._bench._memory import child; "
        f"child({op!r}, {path!r}, {workers}, {warm_bytes})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(),
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("MEMORY "):
            result: dict[str, float] = json.loads(line[len("MEMORY ") :])
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"exit {proc.returncode}: {tail[:120]}")


def _size_name(n: int) -> str:
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    return f"{n / (1 << 20):g} MiB"


def memory(cfg: Config) -> CaseResult:
    """Peak RSS growth of a parent that only encrypts or compresses one large file."""
    size = cfg.memory_bytes
    name = _size_name(size)
    case = CaseResult(
        "memory",
        f"parent's peak RSS growth while a {name} file is encrypted or compressed",
        f"{cfg.workers} workers; a fresh process per run ({cfg.memory_rounds} per "
        f"operation) doing only this, warmed on a {_size_name(cfg.memory_warm_bytes)} file "
        f"first; growth = max(VmHWM after a reset, VmRSS sampled every 10 ms) - VmRSS before",
    )
    runs: dict[str, list[dict[str, float]]] = {op: [] for op in _OPS}
    warm = cfg.memory_warm_bytes
    errors: dict[str, str] = {}
    with (
        CpuMonitor() as mon,
        tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp,
    ):
        path = os.path.join(tmp, "big")
        _fill(path, size)
        for _ in range(cfg.memory_rounds):
            for op in _OPS:
                if op in errors:
                    continue
                try:
                    runs[op].append(_run_child(op, path, cfg.workers, warm))
                except Exception as exc:
                    errors[op] = f"error: {type(exc).__name__}: {exc}"[:140]
    case.record_cpu(mon)
    for op, label in _OPS.items():
        results = runs[op]
        if op in errors or not results:
            row = Row(f"{label} {name}: parent RSS growth", "workerbridge", op, "MiB")
            row.status = errors.get(op, "no data")
        else:
            s = summarize([r["growth_kib"] / 1024 for r in results])
            row = Row(
                f"{label} {name}: parent RSS growth",
                "workerbridge",
                op,
                "MiB",
                value=s.median,
                lo=s.p10,
                hi=s.p90,
                n=s.n,
            )
            secs = summarize([r["seconds"] for r in results]).median
            case.notes.append(
                f"{label}: {secs:.2f} s ({size / secs / 1e9:.2f} GB/s); parent baseline "
                f"{results[0]['baseline_kib'] / 1024:.0f} MiB RSS"
                + ("" if results[0]["hwm_reset"] else "; VmHWM reset refused: sampled only")
            )
        judge_at_most(row, LIMIT_MIB, f"<= {LIMIT_MIB} MiB")
        case.rows.append(row)
    case.extra["runs"] = runs
    return case
