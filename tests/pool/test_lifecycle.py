"""Process lifecycle: fork safety, parent death, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import workerbridge as wb
from workerbridge import _atomic
from workerbridge._shm import list_segments


def test_fork_child_gets_a_fresh_bridge() -> None:
    parent = wb.get_bridge()
    assert parent.run("_wb", "echo", 1) == 1
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            try:
                parent.submit("_wb", "echo", 1)
            except wb.PoolClosedError:
                child = wb.get_bridge()
                if child is not parent and child.run("_wb", "echo", 2) == 2:
                    code = 0
                child.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.run("_wb", "echo", 3) == 3
    parent.close()


@pytest.mark.parametrize("forked_child", [False, True], ids=["alone", "forked-child-lives"])
def test_parent_sigkill_leaves_no_workers_or_segments(forked_child: bool) -> None:
    # With a forked child still alive (a fork-start multiprocessing pool, say), the
    # workers must still see their parent die: the child holds none of the pipe ends.
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time, workerbridge as wb
        b = wb.WorkerBridge(workers=2, fallback="never")
        b.run("_wb", "echo", b"x" * (1 << 20))
        pids = [w.pid for w in b.stats().workers]
        if {forked_child!r}:
            child = os.fork()
            if child == 0:  # lets go of the captured output, then outlives the parent
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                time.sleep(120)
                os._exit(0)
            pids.append(-child)
        print(" ".join(map(str, pids)), flush=True)
        task = b.submit("_wb", "sleep", 30)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    # Workers share the captured output: run() returns once they are gone too (a worker
    # kept alive by the child's pipe ends would hold it until the child exits, 120 s).
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    listed = [int(p) for p in proc.stdout.split()]
    worker_pids = [p for p in listed if p > 0]
    children = [-p for p in listed if p < 0]
    try:
        _expect_gone(worker_pids)
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _expect_gone(worker_pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    alive = worker_pids
    while time.monotonic() < deadline:
        alive = [p for p in worker_pids if _alive(p)]
        if not alive:
            break
        time.sleep(0.05)
    assert not alive, f"orphan workers still running: {alive}"
    leftovers = [n for n in list_segments() if any(f"wb_{p}_" in n for p in worker_pids)]
    if leftovers and _atomic.IMPLEMENTATION == "python":
        # With the pure-Python atomics the kernel kills the worker (PR_SET_PDEATHSIG)
        # possibly before its lifeline thread unlinked its segments: the next bridge to
        # start sweeps segments of dead processes.
        wb.WorkerBridge(workers=1, fallback="never").close()
        leftovers = [n for n in list_segments() if any(f"wb_{p}_" in n for p in worker_pids)]
    assert not leftovers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_close_leaves_nothing() -> None:
    import threading

    before = set(list_segments())
    bridge = wb.WorkerBridge(workers=2, fallback="never")
    big = os.urandom(1 << 20)
    assert bridge.run("_wb", "echo", big) == big
    pids = [w.pid for w in bridge.stats().workers]
    bridge.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("workerbridge-")]
    ours = {os.getpid(), *(p for p in pids if p)}  # other processes may run bridges too
    new = set(list_segments()) - before
    assert {n for n in new if any(n.startswith(f"wb_{p}_") for p in ours)} == set()
    assert not [p for p in pids if p and _alive(p)]


def test_fork_waits_while_a_worker_is_being_started() -> None:
    """os.fork() from another thread cannot duplicate a worker's pipes mid-start."""
    import threading
    import time

    from workerbridge import _pool

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with _pool._spawn_lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    waited = time.monotonic() - start
    os.waitpid(pid, 0)
    holder.join(10)
    assert waited >= 0.25  # the fork waited for the start to finish
