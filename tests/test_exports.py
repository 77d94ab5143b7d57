"""__all__ matches the public namespace, and every public name says it is workerbridge's."""

from __future__ import annotations

import pickle

import workerbridge as wb


def test_all_is_sorted_and_complete() -> None:
    assert wb.__all__ == sorted(wb.__all__)
    import types

    public = {
        n
        for n in dir(wb)
        if not n.startswith("_")
        and n != "annotations"
        and not isinstance(getattr(wb, n), types.ModuleType)  # submodules: bridges, progress
    }
    assert public == set(wb.__all__)
    assert isinstance(wb.progress, types.ModuleType)


def test_module_is_workerbridge() -> None:
    for name in wb.__all__:
        obj = getattr(wb, name)
        if isinstance(obj, type):
            assert obj.__module__ == "workerbridge", name


def test_every_error_pickles() -> None:
    for name in wb.__all__:
        obj = getattr(wb, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            if issubclass(obj, wb.TaskError):
                err = obj("boom", 5)
            else:
                err = obj("boom")
            back = pickle.loads(pickle.dumps(err))
            assert type(back) is obj and str(back) == str(err)


def test_hierarchy() -> None:
    assert issubclass(wb.ValidationError, ValueError)
    assert issubclass(wb.TaskTimeoutError, TimeoutError)
    import concurrent.futures

    assert issubclass(wb.TaskCancelledError, concurrent.futures.CancelledError)
    for cls in (wb.TaskTimeoutError, wb.TaskCancelledError, wb.RemoteError, wb.WorkerCrashedError):
        assert issubclass(cls, wb.TaskError)
    for cls in (wb.BrokenPoolError, wb.PoolClosedError, wb.QueueFullError):
        assert issubclass(cls, wb.PoolError)
