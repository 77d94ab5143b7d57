"""workerbridge.progress: tqdm and rich adapters for on_progress=, with real bars in a StringIO."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

import pytest
from rich.console import Console
from rich.progress import Progress as RichProgress

import workerbridge as wb
import workerbridge.progress as wbp

COOP = {"steps": 20, "delay": 0.01}

Make = Callable[..., wb.WorkerBridge]


def console(out: io.StringIO) -> Console:
    return Console(file=out, width=100, force_terminal=False, color_system=None)


# --------------------------------------------------------------------------- with a bridge


def test_tqdm_follows_a_task_and_closes_on_the_final_report(make_bridge: Make) -> None:
    bridge = make_bridge()
    out = io.StringIO()
    bar = wbp.tqdm(desc="coop", unit="it", file=out)
    assert not bar.closed
    assert bridge.run("t", "coop", COOP, on_progress=bar) == 20
    assert bar.closed
    assert bar.bar.n == bar.bar.total == 20
    text = out.getvalue()
    assert "coop: 100%" in text
    assert "20/20" in text
    assert text.endswith("\n")  # closed with leave=True: the bar stays, on its own line


def test_rich_follows_a_task_and_stops_its_display(make_bridge: Make) -> None:
    bridge = make_bridge()
    out = io.StringIO()
    bar = wbp.rich("coop", unit="it", console=console(out))
    assert bar.progress.live.is_started
    assert bridge.run("t", "coop", COOP, on_progress=bar) == 20
    assert bar.closed
    assert not bar.progress.live.is_started
    task = bar.progress.tasks[0]
    assert task.completed == task.total == 20
    assert task.finished
    text = out.getvalue()
    assert "coop" in text
    assert "100%" in text
    assert "20/20" in text


@pytest.mark.parametrize("kind", ["tqdm", "rich"])
def test_bytes_of_a_typed_bridge_call(make_bridge: Make, kind: str) -> None:
    bridge = make_bridge()
    out = io.StringIO()
    data = bytes(range(256)) * 4096  # 1 MiB: goes to a worker
    bar: wbp.ProgressAdapter
    if kind == "tqdm":
        bar = wbp.tqdm(desc="zstd", file=out)
    else:
        bar = wbp.rich("zstd", console=console(out))
    packed = bridge.compression.compress(data, on_progress=bar)
    assert bridge.compression.decompress(packed) == data
    assert bar.closed
    text = out.getvalue()
    assert "100%" in text
    assert ("1.00M" in text) if kind == "tqdm" else ("1.0 MiB" in text)


def test_one_bar_for_several_concurrent_calls(make_bridge: Make) -> None:
    bridge = make_bridge()
    out = io.StringIO()
    bar = wbp.tqdm(desc="all", unit="it", total=60, file=out)
    tasks = [bridge.submit("t", "coop", COOP, on_progress=bar.part()) for _ in range(3)]
    assert [task.result() for task in tasks] == [20, 20, 20]
    assert bar.closed  # the sum reached total=60
    assert bar.bar.n == 60
    assert "60/60" in out.getvalue()


def test_parts_without_a_total_leave_closing_to_the_caller(make_bridge: Make) -> None:
    bridge = make_bridge()
    out = io.StringIO()
    with wbp.rich("files", unit="it", console=console(out)) as bar:
        for _ in range(2):
            bridge.run("t", "coop", {"steps": 5, "delay": 0.01}, on_progress=bar.part())
            assert not bar.closed  # more parts may follow
        assert isinstance(bar, wbp.RichAdapter)
        assert bar.progress.tasks[0].completed == 10
    assert bar.closed
    assert "10/10" in out.getvalue()


def test_a_failed_call_leaves_the_bar_open_until_closed(make_bridge: Make) -> None:
    bridge = make_bridge()
    bridge.run("t", "coop", {"steps": 1, "delay": 0})  # workers up: the timeout is all running
    out = io.StringIO()
    with wbp.tqdm(desc="slow", unit="it", file=out) as bar:
        with pytest.raises(wb.TaskTimeoutError):
            bridge.run("t", "coop", {"steps": 1000, "delay": 0.01}, timeout=0.5, on_progress=bar)
        assert not bar.closed
        assert 0 < bar.bar.n < 1000
    assert bar.closed
    assert "/1000" in out.getvalue()


def test_async_bridge_calls_it_on_the_loop_thread(backend: str) -> None:
    out = io.StringIO()
    threads: set[int] = set()

    class Recording(wbp.TqdmAdapter):
        def _show(self, current: int, total: int, final: bool) -> None:
            threads.add(threading.get_ident())
            super()._show(current, total, final)

    async def main() -> int:
        fallback: Literal["always", "auto"] = "always" if backend == "fallback" else "auto"
        async with wb.AsyncWorkerBridge(
            workers=1, handlers=["wbtest_handlers"], fallback=fallback
        ) as abridge:
            bar = Recording(None, {"desc": "async", "file": out, "unit": "it"})
            result: int = await abridge.run("t", "coop", COOP, on_progress=bar)
            assert bar.closed
            return result

    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    assert asyncio.run(main()) == 20
    assert threads == {loop_thread}
    assert "20/20" in out.getvalue()


# --------------------------------------------------------------------------- without a bridge


def test_thread_safe_under_concurrent_reports() -> None:
    out = io.StringIO()
    bar = wbp.tqdm(desc="threads", unit="it", total=8 * 500, file=out, mininterval=0)
    parts = [bar.part() for _ in range(8)]
    start = threading.Barrier(8)

    def feed(part: Callable[[wb.Progress], None]) -> None:
        start.wait()
        for i in range(1, 501):
            part(wb.Progress(i, 500))

    threads = [threading.Thread(target=feed, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bar.closed
    assert bar.bar.n == 4000
    assert out.getvalue().count("\n") == 1  # closed exactly once
    assert "4000/4000" in out.getvalue()


def test_unknown_total_then_known_and_reports_after_close_are_ignored() -> None:
    out = io.StringIO()
    bar = wbp.tqdm(desc="dl", file=out)
    bar(wb.Progress(100, 0))  # total not known yet
    assert bar.bar.total is None
    assert bar.bar.n == 100
    bar(wb.Progress(200, 1000))
    assert bar.bar.total == 1000
    bar(wb.Progress(1000, 1000))
    assert bar.closed
    bar(wb.Progress(2000, 2000))  # ignored
    assert bar.bar.n == 1000
    bar.close()  # idempotent


def test_an_empty_call_closes_both_bars() -> None:
    out = io.StringIO()
    t = wbp.tqdm(desc="empty", file=out)
    t(wb.Progress(0, 0))  # the final report of an operation on zero bytes
    assert t.closed
    r = wbp.rich("empty", console=console(out))
    r(wb.Progress(0, 0))
    assert r.closed
    assert r.progress.tasks[0].finished


def test_rich_into_a_display_of_your_own() -> None:
    out = io.StringIO()
    with RichProgress(console=console(out)) as display:
        first = wbp.rich("first", unit="it", progress=display)
        second = wbp.rich("second", unit="it", progress=display)
        first(wb.Progress(3, 3))
        second(wb.Progress(1, 4))
        assert first.closed
        assert not second.closed
        assert display.live.is_started  # the adapters never stop a display they do not own
        second.close()
        assert [task.finished for task in display.tasks] == [True, False]
    assert "first" in out.getvalue()
    assert "second" in out.getvalue()


def test_bad_arguments() -> None:
    with pytest.raises(wb.ValidationError, match="total"):
        wbp.tqdm(total=-1)
    with pytest.raises(wb.ValidationError, match="total"):
        wbp.rich(total=True)
    with pytest.raises(wb.ValidationError, match=r"rich\.progress\.Progress"):
        wbp.rich(progress=object())


@pytest.mark.parametrize(
    ("adapter", "modules"),
    [("tqdm", ["tqdm"]), ("rich", ["rich", "rich.progress"])],
)
def test_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, modules: list[str]
) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    factory: Any = getattr(wbp, adapter)
    with pytest.raises(ModuleNotFoundError, match=r"workerbridge\[progress\]") as info:
        factory()
    assert info.value.name == modules[0]
    assert isinstance(info.value, ImportError)


def test_importable_as_a_submodule() -> None:
    import workerbridge

    assert workerbridge.progress is wbp
    assert sorted(wbp.__all__) == ["ProgressAdapter", "RichAdapter", "TqdmAdapter", "rich", "tqdm"]
