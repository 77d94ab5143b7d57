"""AtomicArray, C and pure-Python, over real shared memory and real processes."""

from __future__ import annotations

import contextlib
import importlib
import math
import mmap
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from proc_helpers import CHILDREN, spawn

from workerbridge import _atomic, _atomics_py
from workerbridge._shm import Segment, _pid_alive, list_segments

_atomics_c: ModuleType | None
try:
    _atomics_c = importlib.import_module("workerbridge._atomics")
except ImportError:  # the optional extension did not build
    _atomics_c = None

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    assert err == "", err
    return out


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "c":
        if _atomics_c is None:
            pytest.skip("the C extension workerbridge._atomics did not build")
        return _atomics_c
    return _atomics_py


@pytest.fixture
def segment() -> Iterator[Segment]:
    seg = Segment.create("test", 4096)
    yield seg
    seg.unlink()
    with contextlib.suppress(BufferError):
        seg.close()


@pytest.fixture
def make(impl: ModuleType, segment: Segment) -> Iterator[Callable[..., Any]]:
    """Build arrays of the implementation under test over `segment`; released at teardown."""
    arrays: list[Any] = []

    def factory(offset: int = 0, count: int | None = None) -> Any:
        array = impl.AtomicArray(segment.buf, offset, count, lock_fd=segment.fd)
        arrays.append(array)
        return array

    yield factory
    for array in arrays:
        array.release()
    segment.close()


# Code run in child processes: attach the segment by name, build the same implementation.
CHILD_PRELUDE = """
import sys, time
from workerbridge._shm import Segment
impl_name, seg_name = sys.argv[1], sys.argv[2]
mod = "workerbridge._atomics" if impl_name == "c" else "workerbridge._atomics_py"
AtomicArray = __import__(mod, fromlist=["AtomicArray"]).AtomicArray
seg = Segment.attach(seg_name)
arr = AtomicArray(seg.buf, 0, None, lock_fd=seg.fd)
"""

CHILD_EPILOGUE = """
arr.release()
seg.close()
"""


def child(impl: ModuleType, segment: Segment, body: str, *args: str) -> subprocess.Popen[str]:
    code = CHILD_PRELUDE + textwrap.dedent(body) + CHILD_EPILOGUE
    return spawn(code, impl.IMPLEMENTATION, segment.name, *args)


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


# -- construction -------------------------------------------------------------------------


def test_implementation_names(impl: ModuleType) -> None:
    assert impl.IMPLEMENTATION in {"c", "python"}
    assert (impl is _atomics_py) == (impl.IMPLEMENTATION == "python")


def test_length_offset_count(make: Callable[..., Any]) -> None:
    assert len(make()) == 4096 // 8
    assert len(make(16)) == 4096 // 8 - 2
    assert len(make(8, 3)) == 3
    assert len(make(4096)) == 0
    assert len(make(4088, 1)) == 1


def test_slots_alias_the_buffer(make: Callable[..., Any], segment: Segment) -> None:
    whole = make()
    tail = make(64, 4)
    tail.store(0, 7)
    assert whole.load(8) == 7
    assert int.from_bytes(segment.buf[64:72], sys.byteorder, signed=True) == 7
    whole.store(11, -5)
    assert tail.load(3) == -5


@pytest.mark.parametrize("offset", [1, 4, 12, -8])
def test_unaligned_or_negative_offset(make: Callable[..., Any], offset: int) -> None:
    with pytest.raises(ValueError, match="offset"):
        make(offset)


@pytest.mark.parametrize(("offset", "count"), [(0, 513), (8, 512), (4104, None), (0, -1)])
def test_does_not_fit(make: Callable[..., Any], offset: int, count: int | None) -> None:
    with pytest.raises(ValueError):
        make(offset, count)


def test_unaligned_address(impl: ModuleType, segment: Segment) -> None:
    with pytest.raises(ValueError, match="aligned"):
        impl.AtomicArray(segment.buf[4:], 0, 2)
    segment.close()


def test_rejects_readonly_and_noncontiguous(impl: ModuleType) -> None:
    with pytest.raises(BufferError):
        impl.AtomicArray(bytes(64))
    anonymous = mmap.mmap(-1, 4096)
    with memoryview(anonymous) as view, pytest.raises(BufferError):
        impl.AtomicArray(view[::2])
    with pytest.raises(TypeError):
        impl.AtomicArray(12345)
    anonymous.close()


def test_works_over_anonymous_memory(impl: ModuleType) -> None:
    anonymous = mmap.mmap(-1, 4096)
    array = impl.AtomicArray(anonymous, 0, 4)
    assert array.fetch_add(3, 2) == 0
    assert array.load(3) == 2
    array.release()
    anonymous.close()


def test_factory_uses_chosen_implementation(segment: Segment) -> None:
    array = _atomic.atomic_array(segment, 8, 2)
    assert isinstance(array, _atomic.AtomicArray)
    assert len(array) == 2
    assert (
        type(array).__module__
        == {
            "c": "workerbridge._atomics",
            "python": "workerbridge._atomics_py",
        }[_atomic.IMPLEMENTATION]
    )
    array.release()
    segment.close()


@pytest.mark.parametrize("pure", ["1", "0"])
def test_environment_variable_selects(pure: str) -> None:
    env = {**os.environ, "WORKERBRIDGE_PURE_ATOMICS": pure}
    out = subprocess.run(
        [sys.executable, "-c", "import workerbridge._atomic as a; print(a.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = "python" if pure == "1" or _atomics_c is None else "c"
    assert out == expected


# -- operations -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -1, 2**32, -(2**32) + 3, INT64_MAX, INT64_MIN])
def test_store_load(make: Callable[..., Any], value: int) -> None:
    array = make()
    array.store(5, value)
    assert array.load(5) == value
    assert array.load(4) == 0
    assert array.load(6) == 0


def test_fetch_add(make: Callable[..., Any]) -> None:
    array = make()
    assert array.fetch_add(0, 5) == 0
    assert array.fetch_add(0, -7) == 5
    assert array.load(0) == -2


def test_fetch_add_wraps(make: Callable[..., Any]) -> None:
    array = make()
    array.store(1, INT64_MAX)
    assert array.fetch_add(1, 1) == INT64_MAX
    assert array.load(1) == INT64_MIN
    assert array.fetch_add(1, -1) == INT64_MIN
    assert array.load(1) == INT64_MAX
    array.store(2, -1)
    assert array.fetch_add(2, INT64_MIN) == -1
    assert array.load(2) == INT64_MAX


def test_compare_exchange(make: Callable[..., Any]) -> None:
    array = make()
    assert array.compare_exchange(3, 0, 10) is True
    assert array.load(3) == 10
    assert array.compare_exchange(3, 0, 20) is False
    assert array.load(3) == 10
    assert array.compare_exchange(3, 10, INT64_MIN) is True
    assert array.load(3) == INT64_MIN


def test_exchange(make: Callable[..., Any]) -> None:
    array = make()
    assert array.exchange(7, 4) == 0
    assert array.exchange(7, -9) == 4
    assert array.load(7) == -9


def test_accepts_index_objects(make: Callable[..., Any]) -> None:
    class Two:
        def __index__(self) -> int:
            return 2

    array = make()
    array.store(Two(), Two())
    assert array.load(2) == 2
    assert array.fetch_add(Two(), Two()) == 2


OPS: list[tuple[str, tuple[int, ...]]] = [
    ("load", ()),
    ("store", (1,)),
    ("fetch_add", (1,)),
    ("compare_exchange", (0, 1)),
    ("exchange", (1,)),
    ("wait", (1,)),
    ("wake", ()),
]


@pytest.mark.parametrize(("op", "rest"), OPS)
@pytest.mark.parametrize("index", [-1, 4, 2**40, 2**70])
def test_index_out_of_range(
    make: Callable[..., Any], op: str, rest: tuple[int, ...], index: int
) -> None:
    array = make(0, 4)
    with pytest.raises(IndexError):
        getattr(array, op)(index, *rest)


@pytest.mark.parametrize(("op", "rest"), OPS)
def test_index_must_be_an_integer(make: Callable[..., Any], op: str, rest: tuple[int, ...]) -> None:
    array = make()
    with pytest.raises(TypeError):
        getattr(array, op)(1.0, *rest)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**80])
def test_value_out_of_int64_range(make: Callable[..., Any], value: int) -> None:
    array = make()
    with pytest.raises(OverflowError):
        array.store(0, value)
    with pytest.raises(OverflowError):
        array.fetch_add(0, value)
    with pytest.raises(OverflowError):
        array.exchange(0, value)
    with pytest.raises(OverflowError):
        array.compare_exchange(0, value, 0)
    with pytest.raises(OverflowError):
        array.compare_exchange(0, 0, value)
    assert array.load(0) == 0


def test_value_must_be_an_integer(make: Callable[..., Any]) -> None:
    array = make()
    with pytest.raises(TypeError):
        array.store(0, 1.5)
    with pytest.raises(TypeError):
        array.fetch_add(0, "1")
    with pytest.raises(TypeError):
        array.store(0)


# -- release ------------------------------------------------------------------------------


def test_release(make: Callable[..., Any]) -> None:
    array = make()
    array.store(0, 1)
    assert array.released is False
    array.release()
    assert bool(array.released) is True
    array.release()  # idempotent
    for op, rest in OPS:
        with pytest.raises(ValueError, match="released"):
            getattr(array, op)(0, *rest)
    with pytest.raises(ValueError):
        len(array)
    assert "released" in repr(array)


def test_array_pins_the_segment(impl: ModuleType, segment: Segment) -> None:
    array = impl.AtomicArray(segment.buf, 0, 4, lock_fd=segment.fd)
    with pytest.raises(BufferError):
        segment.close()
    assert not segment.closed
    array.store(0, 3)  # both still usable
    assert segment.buf[0] == 3
    array.release()
    segment.close()
    assert segment.closed


def test_release_wakes_a_waiting_thread(make: Callable[..., Any], segment: Segment) -> None:
    array = make()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            array.wait(0, 0, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)  # let it block
    array.release()
    thread.join(5)
    assert not thread.is_alive(), "wait() did not notice release()"
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)


# -- wait / wake --------------------------------------------------------------------------


def test_wait_returns_at_once_when_value_differs(make: Callable[..., Any]) -> None:
    array = make()
    array.store(0, 1)
    assert array.wait(0, 0) is True
    assert array.wait(0, 0, timeout=0) is True
    # Only the low half differs, or only the high half: still "differs".
    array.store(1, 2**32)
    assert array.wait(1, 0, timeout=0) is True


@pytest.mark.parametrize("timeout", [0, 0.0, -1, 0.05, 1e-9])
def test_wait_times_out(make: Callable[..., Any], timeout: float) -> None:
    array = make()
    start = time.monotonic()
    assert array.wait(0, 0, timeout=timeout) is False
    assert time.monotonic() - start < 5
    if timeout > 0.01:
        assert time.monotonic() - start >= timeout * 0.9


def test_wait_timeout_argument(make: Callable[..., Any]) -> None:
    array = make()
    with pytest.raises(ValueError):
        array.wait(0, 0, timeout=math.nan)
    with pytest.raises(TypeError):
        array.wait(0, 0, timeout="1")
    assert array.wait(0, 0, 0.01) is False  # positional timeout
    assert array.wait(0, 1, timeout=math.inf) is True


def test_wake_arguments(make: Callable[..., Any]) -> None:
    array = make()
    assert array.wake(0) == 0  # nobody waits
    assert array.wake(0, 0) == 0
    assert array.wake(0, n=2**40) == 0
    with pytest.raises(ValueError):
        array.wake(0, -1)


def test_wait_wake_between_threads(make: Callable[..., Any]) -> None:
    array = make()
    results: list[tuple[bool, int]] = []

    def waiter() -> None:
        array.store(1, 1)  # ready
        ok = array.wait(0, 0, timeout=30)
        results.append((ok, array.load(0)))

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: array.load(1) == 1)
    time.sleep(0.05)
    array.store(0, 42)
    woken = array.wake(0)
    thread.join(5)
    assert not thread.is_alive()
    assert results == [(True, 42)]
    assert woken in {0, 1}


def test_spurious_wake_keeps_waiting(make: Callable[..., Any]) -> None:
    array = make()
    results: list[bool] = []

    def waiter() -> None:
        results.append(array.wait(0, 0, timeout=0.5))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    array.wake(0)  # value unchanged: the waiter must go back to sleep
    thread.join(5)
    assert results == [False]


def test_wait_in_other_process_woken_by_us(
    impl: ModuleType, make: Callable[..., Any], segment: Segment
) -> None:
    array = make()
    proc = child(
        impl,
        segment,
        """
        arr.store(1, 1)  # ready
        ok = arr.wait(0, 0, timeout=30)
        print(ok, arr.load(0))
        """,
    )
    wait_for(lambda: array.load(1) == 1)
    time.sleep(0.05)
    array.store(0, 99)
    array.wake(0)
    assert finish(proc).split() == ["True", "99"]


def test_we_wait_woken_by_other_process(
    impl: ModuleType, make: Callable[..., Any], segment: Segment
) -> None:
    array = make()
    proc = child(
        impl,
        segment,
        """
        time.sleep(0.1)
        arr.store(0, -3)
        print(arr.wake(0))
        """,
    )
    start = time.monotonic()
    assert array.wait(0, 0, timeout=30) is True
    assert array.load(0) == -3
    assert time.monotonic() - start < 20
    finish(proc)


@pytest.mark.skipif(_atomics_c is None, reason="C extension not built")
def test_c_wake_reports_waiters_in_other_process(segment: Segment) -> None:
    assert _atomics_c is not None
    array = _atomics_c.AtomicArray(segment.buf, 0, 4)
    proc = child(
        _atomics_c,
        segment,
        """
        arr.store(1, 1)
        print(arr.wait(0, 0, timeout=30))
        """,
    )
    wait_for(lambda: array.load(1) == 1)
    # Keep waking until the child is inside FUTEX_WAIT and gets woken.
    deadline = time.monotonic() + 20
    woken = 0
    while time.monotonic() < deadline:
        woken = array.wake(0)
        if woken:
            break
        time.sleep(0.01)
    assert woken == 1
    array.store(0, 1)
    array.wake(0)
    assert finish(proc).strip() == "True"
    array.release()
    segment.close()


def test_wait_interrupted_by_signal_handler(make: Callable[..., Any]) -> None:
    array = make()

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        start = time.monotonic()
        with pytest.raises(Interrupted):
            array.wait(0, 0, timeout=30)
        assert time.monotonic() - start < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_wait_survives_harmless_signal(make: Callable[..., Any]) -> None:
    array = make()
    calls: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert array.wait(0, 0, timeout=0.3) is False  # EINTR: re-check, keep the deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == [signal.SIGALRM]


# -- contention ---------------------------------------------------------------------------


def iterations(impl: ModuleType, fast: int) -> int:
    return fast if impl.IMPLEMENTATION == "c" else fast // 10


def test_fetch_add_is_exact_under_contention(
    impl: ModuleType, make: Callable[..., Any], segment: Segment
) -> None:
    array = make()
    n = iterations(impl, 500_000)
    body = """
    n = int(sys.argv[3])
    arr.fetch_add(2, 1)           # ready
    arr.wait(1, 0, timeout=30)    # start together
    add = arr.fetch_add
    for _ in range(n):
        add(0, 1)
    """
    procs = [child(impl, segment, body, str(n)) for _ in range(2)]
    wait_for(lambda: array.load(2) == 2)
    array.store(1, 1)
    array.wake(1)
    for proc in procs:
        finish(proc)
    assert array.load(0) == 2 * n


def test_compare_exchange_is_exact_under_contention(
    impl: ModuleType, make: Callable[..., Any], segment: Segment
) -> None:
    array = make()
    n = iterations(impl, 100_000)
    body = """
    n = int(sys.argv[3])
    arr.fetch_add(2, 1)
    arr.wait(1, 0, timeout=30)
    load, cas = arr.load, arr.compare_exchange
    for _ in range(n):
        while True:
            old = load(0)
            if cas(0, old, old + 1):
                break
    """
    procs = [child(impl, segment, body, str(n)) for _ in range(2)]
    # Contend from this process's threads too.
    wait_for(lambda: array.load(2) == 2)
    array.store(1, 1)
    array.wake(1)
    for _ in range(n):
        array.fetch_add(0, 1)
    for proc in procs:
        finish(proc)
    assert array.load(0) == 3 * n


def test_threads_contend_exactly(make: Callable[..., Any]) -> None:
    array = make()
    n = 20_000

    def work() -> None:
        for _ in range(n):
            array.fetch_add(0, 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert array.load(0) == 4 * n


# -- watch_parent / set_pdeathsig ---------------------------------------------------------


def test_watch_parent_unlinks_and_kills(impl: ModuleType) -> None:
    read_end, write_end = os.pipe()
    # The C watcher works even while the main thread is stuck in C code holding the GIL
    # (catastrophic regex backtracking); the Python one needs the GIL, so it sleeps.
    stuck = (
        "import re; re.match(r'(a+)+$', 'a' * 64 + 'b')"
        if impl.IMPLEMENTATION == "c"
        else "time.sleep(120)"
    )
    code = f"""
    import sys, time
    from workerbridge._shm import Segment
    from {impl.__name__} import watch_parent
    import os
    seg = Segment.create("test", 64)
    globbed = [Segment.create("globt", 64) for _ in range(2)]
    watch_parent(int(sys.argv[1]), [seg.name, "/" + seg.name, f"wb_{{os.getpid()}}_globt_*"])
    print(seg.name, *[g.name for g in globbed], flush=True)
    {stuck}
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(read_end)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(read_end,),
    )
    CHILDREN.append(proc.pid)
    os.close(read_end)
    bystander = Segment.create("globt", 64)  # same kind, other pid: must survive
    try:
        assert proc.stdout is not None
        name, *globbed = proc.stdout.readline().split()
        assert re.fullmatch(r"wb_\d+_test_[0-9a-f]{16}", name), name
        assert len(globbed) == 2
        assert {name, *globbed} <= set(list_segments())
        time.sleep(0.1)
        os.write(write_end, b"data is ignored")
        time.sleep(0.1)
        assert proc.poll() is None
    finally:
        os.close(write_end)  # "the parent died"
    assert proc.wait(timeout=20) == -signal.SIGKILL
    proc.communicate()
    assert not {name, *globbed} & set(list_segments())
    assert bystander.name in list_segments()
    bystander.close()
    bystander.unlink()


def test_watch_parent_validates(impl: ModuleType) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with pytest.raises(OSError):
        impl.watch_parent(read_end, [])
    os.close(write_end)
    read_end, write_end = os.pipe()
    try:
        for bad in (["a/b"], [""], ["."], ["x" * 300], ["wb_1_*/x"]):
            with pytest.raises(ValueError):
                impl.watch_parent(read_end, bad)
        with pytest.raises(TypeError):
            impl.watch_parent(read_end, [1])
    finally:
        os.close(read_end)
        os.close(write_end)


def test_set_pdeathsig(impl: ModuleType) -> None:
    grandchild = f"""
    import time
    from {impl.__name__} import set_pdeathsig
    set_pdeathsig(9)
    print("ready", flush=True)
    time.sleep(120)
    """
    middle = f"""
    import subprocess, sys, time
    proc = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(grandchild)!r}],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    print(proc.pid, flush=True)
    time.sleep(120)
    """
    proc = spawn(middle)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    assert _pid_alive(pid)
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(lambda: not _pid_alive(pid), timeout=20)
    with pytest.raises(ValueError):
        impl.set_pdeathsig(-1)
    impl.set_pdeathsig(0)  # clears it; harmless
