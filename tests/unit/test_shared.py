"""CancellationToken, SharedProgress and SharedCounter across threads and processes."""

from __future__ import annotations

import copy
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest
from proc_helpers import CHILDREN

from workerbridge import _atomic
from workerbridge._errors import ValidationError
from workerbridge._shared import (
    CancellationToken,
    SharedCounter,
    SharedProgress,
    _rebuild,
    _SharedBase,
)
from workerbridge._shm import list_segments, parse_name, unlink_by_name

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The pure-Python atomics take a lock and two fcntl calls per operation.
FAST = _atomic.IMPLEMENTATION == "c"


def spawn(code: str, *objects: object) -> subprocess.Popen[str]:
    """Run `code` in a new interpreter with `objs`, the unpickled `objects`."""
    prelude = "import pickle, sys, time\nobjs = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), pickle.dumps(objects).hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    CHILDREN.append(proc.pid)
    return proc


def finish(proc: subprocess.Popen[str], stdin: str | None = None) -> str:
    out, err = proc.communicate(stdin, timeout=60)
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{err}"
    assert err == "", err
    return out


def refs(obj: _SharedBase) -> int:
    return obj._array.load(0)


def exists(obj: _SharedBase) -> bool:
    return obj._name in list_segments()


# -- basics ---------------------------------------------------------------------------


def test_public_module_name() -> None:
    for cls in (CancellationToken, SharedProgress, SharedCounter):
        assert cls.__module__ == "workerbridge"


def test_segment_kinds() -> None:
    with CancellationToken() as t, SharedProgress(1) as p, SharedCounter() as c:
        assert parse_name(t._name) == (os.getpid(), "tok")
        assert parse_name(p._name) == (os.getpid(), "prog")
        assert parse_name(c._name) == (os.getpid(), "ctr")


def test_counter() -> None:
    with SharedCounter() as counter:
        assert counter.value == 0
        assert counter.add() == 1
        assert counter.add(10) == 11
        assert counter.add(-20) == -9
        assert counter.value == -9
        assert counter.compare_and_swap(0, 5) is False
        assert counter.value == -9
        assert counter.compare_and_swap(-9, 5) is True
        assert counter.value == 5
    with SharedCounter(initial=-7) as counter:
        assert counter.value == -7


def test_counter_wraps_like_int64() -> None:
    with SharedCounter(INT64_MAX) as counter:
        assert counter.add(1) == INT64_MIN
        assert counter.value == INT64_MIN
        assert counter.add(-1) == INT64_MAX


def test_counter_argument_checks() -> None:
    with pytest.raises(OverflowError):
        SharedCounter(2**63)
    with pytest.raises(TypeError):
        SharedCounter(1.5)  # type: ignore[arg-type]
    with SharedCounter() as counter:
        with pytest.raises(TypeError):
            counter.add(1.0)  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            counter.add(2**64)
        with pytest.raises(OverflowError):
            counter.compare_and_swap(0, -(2**63) - 1)
        assert counter.value == 0


def test_progress() -> None:
    with SharedProgress(4) as progress:
        assert (progress.current, progress.total, progress.fraction) == (0, 4, 0.0)
        assert progress.advance() == 1
        assert progress.fraction == 0.25
        assert progress.advance(3) == 4
        assert progress.fraction == 1.0
        assert progress.advance(0) == 4
        assert progress.advance(2) == 6  # overshoot is kept, the fraction is clamped
        assert progress.fraction == 1.0


def test_progress_with_nothing_to_do_is_complete() -> None:
    with SharedProgress(0) as progress:
        assert progress.fraction == 1.0


def test_progress_argument_checks() -> None:
    with pytest.raises(ValidationError):
        SharedProgress(-1)
    with pytest.raises(ValueError):
        SharedProgress(-1)
    with pytest.raises(TypeError):
        SharedProgress(1.5)  # type: ignore[arg-type]
    with SharedProgress(3) as progress:
        with pytest.raises(ValidationError):
            progress.advance(-1)
        assert progress.current == 0


def test_token() -> None:
    with CancellationToken() as token:
        assert token.cancelled is False
        assert token.wait(0) is False
        assert token.wait(timeout=0.02) is False
        token.cancel()
        assert bool(token.cancelled) is True
        assert token.wait() is True
        assert token.wait(0) is True
        token.cancel()  # idempotent
        assert token.cancelled is True


def test_repr() -> None:
    token, progress, counter = CancellationToken(), SharedProgress(9), SharedCounter(3)
    progress.advance(2)
    assert repr(token) == "<CancellationToken cancelled=False>"
    assert repr(progress) == "<SharedProgress current=2 total=9>"
    assert repr(counter) == "<SharedCounter value=3>"
    for obj in (token, progress, counter):
        obj.close()
        assert repr(obj).endswith(" closed>")


def test_closed_objects_raise_value_error() -> None:
    token, progress, counter = CancellationToken(), SharedProgress(9), SharedCounter(3)
    for obj in (token, progress, counter):
        assert not obj.closed
        obj.close()
        assert bool(obj.closed) is True
        obj.close()  # idempotent
        assert not exists(obj)
        with pytest.raises(ValueError):
            pickle.dumps(obj)
    calls: list[Callable[[], object]] = [
        lambda: token.cancelled,
        token.cancel,
        token.wait,
        lambda: token._add_callback(lambda: None),
        lambda: progress.current,
        lambda: progress.total,
        lambda: progress.fraction,
        progress.advance,
        lambda: counter.value,
        counter.add,
        lambda: counter.compare_and_swap(3, 4),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="closed"):
            call()


def test_context_manager_closes() -> None:
    with SharedCounter() as counter:
        assert exists(counter)
    assert counter.closed
    assert not exists(counter)


# -- ownership ------------------------------------------------------------------------


def _progress() -> SharedProgress:
    return SharedProgress(5)


@pytest.mark.parametrize("make", [CancellationToken, _progress, SharedCounter])
def test_pickle_in_process_shares_state(make: Callable[[], _SharedBase]) -> None:
    original = make()
    clone = pickle.loads(pickle.dumps(original))
    assert type(clone) is type(original)
    assert clone is not original
    assert clone._name == original._name
    assert refs(original) == 2
    if isinstance(original, SharedCounter):
        assert isinstance(clone, SharedCounter)
        original.add(4)
        assert clone.value == 4
    elif isinstance(original, SharedProgress):
        assert isinstance(clone, SharedProgress)
        clone.advance(2)
        assert original.current == 2
        assert clone.total == 5
    else:
        assert isinstance(original, CancellationToken)
        assert isinstance(clone, CancellationToken)
        clone.cancel()
        assert original.cancelled
    original.close()  # the creator may close first
    assert exists(clone)
    assert refs(clone) == 1
    clone.close()
    assert not exists(clone)


def test_copy_takes_a_reference() -> None:
    counter = SharedCounter(1)
    other = copy.copy(counter)
    assert refs(counter) == 2
    other.add()
    assert counter.value == 2
    other.close()
    counter.close()


def test_garbage_collection_drops_the_reference() -> None:
    counter = SharedCounter()
    clone = pickle.loads(pickle.dumps(counter))
    assert refs(counter) == 2
    del clone
    gc.collect()
    assert refs(counter) == 1
    name = counter._name
    del counter
    gc.collect()
    assert name not in list_segments()


def test_unpickle_after_release_fails() -> None:
    counter = SharedCounter()
    data = pickle.dumps(counter)
    counter.close()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)


def test_unpickle_checks_kind() -> None:
    with CancellationToken() as token:
        with pytest.raises(ValueError):
            _rebuild("ctr", token._name)
        with pytest.raises(ValueError):
            _rebuild("nope", token._name)
        assert refs(token) == 1


# -- across processes -----------------------------------------------------------------


def test_pickle_to_another_process_and_back() -> None:
    token, progress, counter = CancellationToken(), SharedProgress(10), SharedCounter(100)
    proc = spawn(
        """
        token, progress, counter = objs
        assert not token.cancelled
        assert (progress.current, progress.total) == (0, 10)
        counter.add(23)
        progress.advance(4)
        token.cancel()
        print(pickle.dumps((token, progress, counter)).hex())
        """,
        token,
        progress,
        counter,
    )
    data = bytes.fromhex(finish(proc))
    # The child's references were dropped at its exit; ours keep the segments alive.
    assert [refs(o) for o in (token, progress, counter)] == [1, 1, 1]
    assert counter.value == 123
    assert progress.current == 4
    assert token.cancelled
    token2, progress2, counter2 = pickle.loads(data)
    assert (token2.cancelled, progress2.fraction, counter2.value) == (True, 0.4, 123)
    for obj in (token, progress, counter, token2, progress2, counter2):
        obj.close()
    assert not exists(counter)


def test_counter_is_exact_under_two_processes() -> None:
    n = 500_000 if FAST else 50_000
    counter, start = SharedCounter(), CancellationToken()
    code = """
    counter, start = objs
    n = int(sys.stdin.readline())
    print("ready", flush=True)
    start.wait(30)
    add = counter.add
    for _ in range(n):
        add(1)
    """
    procs = [spawn(code, counter, start) for _ in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
    start.cancel()
    for proc in procs:
        finish(proc)
    assert counter.value == 2 * n
    counter.close()
    start.close()


def test_cancel_seen_by_waiting_process() -> None:
    token = CancellationToken()
    proc = spawn(
        """
        token, = objs
        print("ready", flush=True)
        ok = token.wait(timeout=30)
        print(ok, token.cancelled)
        """,
        token,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    token.cancel()
    assert finish(proc).split() == ["True", "True"]
    token.close()


def test_cancel_from_another_process_wakes_us() -> None:
    token = CancellationToken()
    proc = spawn(
        """
        token, = objs
        time.sleep(0.1)
        token.cancel()
        """,
        token,
    )
    start = time.monotonic()
    assert token.wait(timeout=30) is True
    assert time.monotonic() - start < 20
    finish(proc)
    token.close()


def test_progress_from_another_process() -> None:
    progress = SharedProgress(1000)
    finish(spawn("for _ in range(250):\n    objs[0].advance(2)\n", progress))
    assert progress.current == 500
    assert progress.fraction == 0.5
    progress.close()


def test_child_exit_without_close_drops_its_reference() -> None:
    counter = SharedCounter()
    finish(spawn("assert objs[0].add() == 1\n", counter))  # never closed explicitly
    assert refs(counter) == 1
    counter.close()
    assert not exists(counter)


def test_killed_owner_leaves_name_until_creator_exit() -> None:
    counter = SharedCounter()
    proc = spawn('objs[0].add()\nprint("ok", flush=True)\ntime.sleep(120)\n', counter)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ok"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert refs(counter) == 2  # the killed child never dropped its reference
    name = counter._name
    counter.close()
    assert name in list_segments()  # so the name stays until this process exits...
    assert unlink_by_name(name)  # ...when _shm's atexit handler removes it


def test_creator_exit_unlinks_even_if_others_hold_it() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import pickle, sys
                from workerbridge._shared import SharedCounter
                counter = SharedCounter(41)
                print(pickle.dumps(counter).hex(), flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    CHILDREN.append(proc.pid)
    assert proc.stdout is not None
    counter = pickle.loads(bytes.fromhex(proc.stdout.readline()))
    assert refs(counter) == 2
    finish(proc, "go\n")
    assert not exists(counter)  # the creator unlinked at exit
    assert counter.add() == 42  # our mapping still works
    counter.close()  # and closing is quiet


def test_forked_child_does_not_drop_parents_reference() -> None:
    counter = SharedCounter()
    out = finish(
        spawn(
            """
            import os
            counter, = objs                # refs: parent 1 + this process 1
            pid = os.fork()
            if pid == 0:
                counter.add()
                sys.exit(0)                # a normal exit: finalizers and atexit run
            os.waitpid(pid, 0)
            print(counter._array.load(0), counter.value)
            """,
            counter,
        )
    )
    assert out.split() == ["2", "1"]
    assert refs(counter) == 1
    counter.close()


# -- waiting and callbacks ------------------------------------------------------------


def test_wait_woken_by_thread() -> None:
    token = CancellationToken()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(token.wait(timeout=30)))
    thread.start()
    time.sleep(0.05)
    token.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert results == [True]
    token.close()


def test_close_during_wait_raises_in_waiter() -> None:
    token = CancellationToken()
    name = token._name
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            token.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    token.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert name not in list_segments()


def test_callbacks_run_once_on_cancel() -> None:
    token = CancellationToken()
    calls: list[str] = []
    token._add_callback(lambda: calls.append("a"))
    handle = token._add_callback(lambda: calls.append("removed"))
    token._add_callback(lambda: calls.append("b"))
    token._remove_callback(handle)
    token._remove_callback(handle)  # quiet
    token._remove_callback(object())  # unknown: quiet
    assert calls == []
    token.cancel()
    assert sorted(calls) == ["a", "b"]
    token.cancel()
    assert sorted(calls) == ["a", "b"]
    # Already cancelled: runs at once.
    token._add_callback(lambda: calls.append("late"))
    assert calls[-1] == "late"
    token.close()


def test_callback_runs_at_once_if_cancelled_elsewhere() -> None:
    token = CancellationToken()
    finish(spawn("objs[0].cancel()\n", token))
    calls: list[int] = []
    token._add_callback(lambda: calls.append(1))
    assert calls == [1]
    token.close()


def test_remote_cancel_does_not_run_local_callbacks() -> None:
    token = CancellationToken()
    calls: list[int] = []
    token._add_callback(lambda: calls.append(1))
    finish(spawn("objs[0].cancel()\n", token))
    assert token.cancelled
    assert calls == []
    token.cancel()  # the first cancel() in this process
    assert calls == [1]
    token.close()


def test_callbacks_shared_by_objects_of_one_token() -> None:
    token = CancellationToken()
    clone = pickle.loads(pickle.dumps(token))
    calls: list[str] = []
    clone._add_callback(lambda: calls.append("clone"))
    token.cancel()
    assert calls == ["clone"]
    clone.cancel()
    assert calls == ["clone"]
    clone.close()
    token.close()


def test_callback_errors_propagate_after_all_ran() -> None:
    token = CancellationToken()
    calls: list[str] = []

    def bad() -> None:
        raise RuntimeError("callback failed")

    token._add_callback(bad)
    token._add_callback(lambda: calls.append("ok"))
    with pytest.raises(RuntimeError, match="callback failed"):
        token.cancel()
    assert calls == ["ok"]
    assert token.cancelled
    token.cancel()  # nothing runs again
    token.close()


def test_concurrent_cancel_runs_callbacks_once() -> None:
    token = CancellationToken()
    calls: list[int] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            calls.append(1)

    for _ in range(10):
        token._add_callback(record)
    barrier = threading.Barrier(8)

    def cancel() -> None:
        barrier.wait()
        token.cancel()

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 10
    token.close()


def test_threads_share_a_counter_exactly() -> None:
    counter = SharedCounter()
    n = 20_000 if FAST else 5_000

    def work() -> None:
        for _ in range(n):
            counter.add()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value == 4 * n
    counter.close()
