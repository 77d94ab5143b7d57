"""Helpers for the shared-memory unit tests: child processes they start, and the leak check."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

from workerbridge._shm import list_segments, parse_name, unlink_by_name

#: PIDs of the child processes the running test started (their segments count as its own).
CHILDREN: list[int] = []


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """Run ``code`` in a new interpreter with ``args`` in ``sys.argv[1:]``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    CHILDREN.append(proc.pid)
    return proc


def leaked_since(before: set[str]) -> list[str]:
    """Unlink and return the segments made by this process or its children since ``before``."""
    gc.collect()
    pids = {os.getpid(), *CHILDREN}
    leaked = []
    for name in set(list_segments()) - before:
        parsed = parse_name(name)
        if parsed is not None and parsed[0] in pids:
            leaked.append(name)
            unlink_by_name(name)
    return leaked
