"""Progress bars for ``on_progress=``: adapters for tqdm and rich.

Pass an adapter wherever workerbridge takes ``on_progress=``::

    import workerbridge as wb
    import workerbridge.progress

    bridge.crypto.encrypt_file(src, dst, key, on_progress=wb.progress.tqdm(desc="encrypt"))

Data flow::

    handler: ctx.report(current, total)           in a worker process
      -> shared memory -> supervisor thread       sampled about every 50 ms
      -> on_progress(Progress)                    your adapter, on that background thread
      -> ProgressAdapter: lock, sum of its parts  -> tqdm / rich bar
      -> final report (current == total)          the bar is drawn full and closed

Both libraries are optional extras (``pip install 'workerbridge[progress]'``);
they are imported only when an adapter is created, and a missing one raises
``ModuleNotFoundError`` (an :exc:`ImportError`) naming the extra.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Self

from ._errors import ValidationError
from ._task import Progress

__all__ = ["ProgressAdapter", "RichAdapter", "TqdmAdapter", "rich", "tqdm"]


def _require(module: str, package: str, adapter: str) -> ModuleType:
    """Import ``module`` or raise ``ModuleNotFoundError`` naming the ``progress`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"workerbridge.progress.{adapter}() needs the {package!r} package, which is "
            f"not installed; install the optional extra: pip install 'workerbridge[progress]'",
            name=package,
        ) from exc


def _check_total(total: object) -> int | None:
    if total is None:
        return None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValidationError(f"total must be an int >= 0 or None, got {total!r}")
    return total


class ProgressAdapter:
    """A thread-safe ``on_progress=`` callable that drives a progress bar.

    Create one with :func:`tqdm` or :func:`rich`; this base class holds what
    both share.  The bar appears when the adapter is created.

    *One call* (the usual case): pass the adapter itself as ``on_progress=``.
    The bar shows each :class:`~workerbridge.Progress` as it arrives and is
    drawn full and closed on the final report, the one with
    ``current == total`` that every successful call delivers.

    *Several calls, one bar*: pass ``on_progress=adapter.part()`` to each
    call (from any number of threads).  The bar shows the sum of the parts'
    ``current`` out of the adapter's ``total=`` (or, without one, the sum of
    the totals reported so far).  With ``total=`` the bar closes once the sum
    reaches it; without, close it yourself (:meth:`close`, or use the
    adapter as a context manager).

    A call that fails, times out or is cancelled delivers no final report,
    so its bar stays open at its last value until :meth:`close`; the
    ``with`` form closes it in every case.  Reports arriving after the bar
    closed are ignored.

    Every method may be called from any thread: ``on_progress`` runs on the
    bridge's supervisor thread (:class:`~workerbridge.WorkerBridge`) or on
    the event loop's thread (:class:`~workerbridge.AsyncWorkerBridge`).
    """

    def __init__(self, total: int | None = None) -> None:
        self._lock = threading.RLock()
        self._total = _check_total(total)
        self._parts: list[list[int]] = []  # [current, total] per call
        self._own: int | None = None  # the part fed by __call__
        self._split = False  # part() was used
        self._closed = False

    # -- feeding ------------------------------------------------------------------------

    def __call__(self, report: Progress) -> None:
        """Show ``report`` (the adapter used directly as ``on_progress=``)."""
        with self._lock:
            if self._own is None:
                self._own = self._add_part()
            self._update(self._own, report)

    def part(self) -> Callable[[Progress], None]:
        """Return an ``on_progress=`` callable for one of several calls sharing this bar.

        Returns
        -------
        collections.abc.Callable
            A callable taking a :class:`~workerbridge.Progress`; the bar shows
            the sum of every part's ``current``.
        """
        with self._lock:
            self._split = True
            index = self._add_part()

        def on_progress(report: Progress) -> None:
            with self._lock:
                self._update(index, report)

        return on_progress

    def _add_part(self) -> int:
        self._parts.append([0, 0])
        return len(self._parts) - 1

    def _update(self, index: int, report: Progress) -> None:
        # Called with the lock held.
        if self._closed:
            return
        part = self._parts[index]
        part[0], part[1] = int(report.current), int(report.total)
        current = sum(p[0] for p in self._parts)
        if self._total is not None:
            total = self._total
            final = current >= total
        else:
            total = sum(p[1] for p in self._parts)
            final = not self._split and current == total
        if final:
            self._closed = True
        self._show(current, total, final)

    # -- closing ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """``True`` once the bar was closed: by the final report, :meth:`close` or ``with``."""
        return self._closed

    def close(self) -> None:
        """Close the bar where it stands (idempotent); later reports are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- the backend --------------------------------------------------------------------

    def _show(self, current: int, total: int, final: bool) -> None:
        """Draw ``current`` of ``total`` (``0``: unknown); on ``final``, fill and close."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close the bar at its current value."""
        raise NotImplementedError


class TqdmAdapter(ProgressAdapter):
    """A :class:`ProgressAdapter` drawing a ``tqdm.tqdm`` bar; create it with :func:`tqdm`."""

    def __init__(self, total: int | None, options: dict[str, Any]) -> None:
        module = _require("tqdm", "tqdm", "tqdm")
        super().__init__(total)
        self._bar: Any = module.tqdm(total=self._total, **options)

    @property
    def bar(self) -> Any:
        """The underlying ``tqdm.tqdm`` object (to change its description, say)."""
        return self._bar

    def _show(self, current: int, total: int, final: bool) -> None:
        bar = self._bar
        shown_total = total if total > 0 else None
        moved = False
        if bar.total != shown_total:
            bar.total = shown_total
            moved = True
        delta = current - bar.n
        if delta > 0:
            bar.update(delta)
        elif delta < 0 or moved:
            bar.n = current
            bar.refresh()
        if final:
            bar.close()

    def _release(self) -> None:
        self._bar.close()


class RichAdapter(ProgressAdapter):
    """A :class:`ProgressAdapter` drawing a task of a ``rich.progress.Progress``.

    Create it with :func:`rich`.
    """

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str,
        console: Any,
        progress: Any,
        transient: bool,
    ) -> None:
        _require("rich.progress", "rich", "rich")
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        super().__init__(total)
        self._owned = progress is None
        if progress is None:
            columns: list[ProgressColumn] = [
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
            ]
            if unit == "B":
                columns += [
                    DownloadColumn(binary_units=True),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                ]
            else:
                columns += [MofNCompleteColumn(), TimeElapsedColumn()]
            progress = RichProgress(*columns, console=console, transient=transient)
            progress.start()
        elif not isinstance(progress, RichProgress):
            raise ValidationError("progress must be a rich.progress.Progress or None")
        self._progress: RichProgress = progress
        self._task = progress.add_task(description, total=self._total)

    @property
    def progress(self) -> Any:
        """The ``rich.progress.Progress`` display holding this adapter's task."""
        return self._progress

    @property
    def task_id(self) -> Any:
        """The ``rich.progress.TaskID`` of this adapter's bar in :attr:`progress`."""
        return self._task

    def _show(self, current: int, total: int, final: bool) -> None:
        if total > 0:
            self._progress.update(self._task, completed=current, total=total)
        else:
            self._progress.update(self._task, completed=current)
        if final:
            if total == 0:  # an empty call: show it done rather than unknown
                self._progress.update(self._task, total=1, completed=1)
            self._release()

    def _release(self) -> None:
        self._progress.stop_task(self._task)
        if self._owned:
            self._progress.refresh()
            self._progress.stop()


def tqdm(
    desc: str | None = None,
    *,
    total: int | None = None,
    unit: str = "B",
    leave: bool = True,
    file: Any = None,
    **options: Any,
) -> TqdmAdapter:
    """Return an ``on_progress=`` callable that draws a tqdm bar.

    ::

        bridge.crypto.encrypt_file(src, dst, key, on_progress=wb.progress.tqdm(desc="encrypt"))

    The bar is created at once and closed on the call's final report;
    :class:`ProgressAdapter` describes sharing one bar between several calls
    and what happens when a call fails.

    Parameters
    ----------
    desc
        Text before the bar.
    total
        The total to show instead of the one reported; the bar closes when
        ``current`` reaches it.  Needed to share a bar between several calls
        (:meth:`ProgressAdapter.part`) that should close it by themselves.
    unit
        ``"B"`` (the default: the typed bridges report bytes) shows sizes
        and rates in KiB, MiB, ...; anything else (``"it"``, ``"rows"``) is
        shown as plain counts, for handlers that report other units.
    leave
        Keep the finished bar on screen.
    file
        Where to write (default ``sys.stderr``).
    **options
        Passed on to ``tqdm.tqdm`` (``position``, ``ncols``, ``colour``,
        ``disable``, ``mininterval``, ...).

    Returns
    -------
    TqdmAdapter
        The callable to pass as ``on_progress=``.

    Raises
    ------
    ImportError
        tqdm is not installed: a ``ModuleNotFoundError`` whose message names
        the extra to install, ``pip install 'workerbridge[progress]'``.
    workerbridge.ValidationError
        ``total`` is not an int >= 0 or ``None``.
    """
    options.update(desc=desc, unit=unit, leave=leave, file=file)
    if unit == "B":
        options.setdefault("unit_scale", True)
        options.setdefault("unit_divisor", 1024)
    return TqdmAdapter(total, options)


def rich(
    description: str = "",
    *,
    total: int | None = None,
    unit: str = "B",
    console: Any = None,
    progress: Any = None,
    transient: bool = False,
) -> RichAdapter:
    """Return an ``on_progress=`` callable that draws a rich progress bar.

    ::

        bridge.file.copy(src, dst, on_progress=wb.progress.rich("copy"))

    By default the adapter starts its own ``rich.progress.Progress`` display
    at once and stops it on the call's final report.  To show several bars in
    one display, create a ``rich.progress.Progress`` yourself and pass it as
    ``progress=``: each adapter adds its task to it, marks it finished on the
    final report, and leaves starting and stopping the display to you.
    :class:`ProgressAdapter` describes sharing one bar between several calls
    and what happens when a call fails.

    Parameters
    ----------
    description
        Text before the bar.
    total
        The total to show instead of the one reported; the bar closes when
        ``current`` reaches it.  Needed to share a bar between several calls
        (:meth:`ProgressAdapter.part`) that should close it by themselves.
    unit
        ``"B"`` (the default: the typed bridges report bytes) shows sizes,
        transfer speed and time remaining; anything else shows
        ``current/total`` counts and the elapsed time.
    console
        The ``rich.console.Console`` to draw on (default: rich's global one);
        ignored with ``progress=``.
    progress
        An existing ``rich.progress.Progress`` to add the bar to, or ``None``.
    transient
        Remove the display when it stops (only for the adapter's own display).

    Returns
    -------
    RichAdapter
        The callable to pass as ``on_progress=``.

    Raises
    ------
    ImportError
        rich is not installed: a ``ModuleNotFoundError`` whose message names
        the extra to install, ``pip install 'workerbridge[progress]'``.
    workerbridge.ValidationError
        ``total`` is not an int >= 0 or ``None``, or ``progress`` is not a
        ``rich.progress.Progress``.
    """
    return RichAdapter(description, total, unit, console, progress, transient)
