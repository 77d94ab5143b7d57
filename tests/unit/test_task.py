"""Task: a real concurrent.futures.Future, whose Condition is made on first use."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from workerbridge import TaskCancelledError
from workerbridge._task import Task


def test_a_task_has_every_attribute_of_a_future() -> None:
    task: Task[int] = Task(1, "ch", "op", None)
    assert task._cond is None  # not made until someone needs it
    for name in vars(concurrent.futures.Future()):
        assert hasattr(task, name), name  # _condition included: made now
    assert isinstance(task._cond, threading.Condition)


def test_the_condition_is_made_once_and_kept() -> None:
    task: Task[int] = Task(1, "ch", "op", None)
    seen: list[threading.Condition] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        seen.append(task._condition)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    assert task._condition is seen[0]


def test_future_machinery_works_on_a_fresh_task() -> None:
    tasks: list[Task[int]] = [Task(i, "ch", "op", None) for i in range(3)]
    done_calls: list[int] = []
    tasks[0].add_done_callback(lambda f: done_calls.append(f.result()))

    def finish() -> None:
        for i, t in enumerate(tasks):
            t.set_result(i * 10)

    timer = threading.Timer(0.05, finish)
    timer.start()
    done, pending = concurrent.futures.wait(tasks, timeout=10)
    assert len(done) == 3 and not pending
    assert sorted(f.result() for f in concurrent.futures.as_completed(tasks)) == [0, 10, 20]
    assert done_calls == [0]
    timer.join()
    cancelled: Task[int] = Task(9, "ch", "op", None)
    assert cancelled.cancel()
    with pytest.raises(TaskCancelledError):
        cancelled.result(0)
