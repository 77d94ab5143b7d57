"""Command line: ``python -m workerbridge info`` and ``python -m workerbridge bench``."""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def info() -> int:
    """Print how workerbridge would run on this machine."""
    import workerbridge as wb
    from workerbridge import _atomic, _shm, _spin

    print(f"workerbridge {wb.__version__} on Python {sys.version.split()[0]}")
    print(f"atomics: {_atomic.IMPLEMENTATION} implementation")
    print(f"hot path (spin wait, frame codec): {_spin.IMPLEMENTATION} implementation")
    print(f"spin budget: {_spin.spin_seconds() * 1e6:.0f} us ({_spin.ENV_VAR})")
    print(f"cpus: {os.cpu_count()}")
    print(f"shared memory: {'available' if os.path.isdir(_shm.SHM_DIR) else 'unavailable'}")
    print(f"WORKERBRIDGE_INPROCESS={os.environ.get('WORKERBRIDGE_INPROCESS', '')!r}")
    with wb.WorkerBridge(workers=1) as bridge:
        bridge.run("_wb", "noop")
        print(f"mode: {bridge.mode} (start method: subprocess, no re-import of __main__)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``workerbridge`` command."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: python -m workerbridge info\n"
            "       python -m workerbridge bench [--quick|--full] [--json PATH] [--plot PATH]\n"
            "                                    [--cases CASE ...] [--workers N]\n"
            "('python -m workerbridge bench --help' describes the benchmark options)"
        )
        return 0
    if args[0] == "info":
        return info()
    if args[0] == "bench":
        from ._bench import main as bench_main

        return bench_main(args[1:])
    print(f"unknown command {args[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
