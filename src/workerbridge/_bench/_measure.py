"""Timing, alternation, statistics and the busy-machine check of the benchmark suite.

Data flow::

    case builds runners {label: fn}  (fn runs one repetition, returns seconds,
                                      or a list of per-call seconds)
    alternate(runners, rounds) --> each round every runner once, in a seeded shuffled order
        a runner that raises is marked "error: ..." and skipped from then on;
        one that has used its time budget stops after its minimum rounds
    --> Series per label (samples + status) --> summarize() --> Summary
        (median and p10-p90 of the per-repetition values)

    CpuMonitor: /proc/stat (all CPUs) and our process tree's CPU time, at the
    start and end of a case --> share of the machine used by other processes

The statistics are plain Python (no numpy): the samples are at most a few
thousand values.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

__all__ = [
    "BUSY_THRESHOLD",
    "CpuMonitor",
    "Runner",
    "Series",
    "Summary",
    "alternate",
    "calibrate_calls",
    "other_share_now",
    "quantile",
    "summarize",
    "timed_calls",
]

#: Share of the whole machine that other processes may use during a case before
#: the report warns.  Lower catches more noise but warns on an idle desktop's
#: background work; 10 % is about one busy browser tab on two cores.
BUSY_THRESHOLD = 0.10

#: Seed of the order in which :func:`alternate` runs the contestants of each round.
SHUFFLE_SEED = 20261123

Runner = Callable[[], "float | list[float]"]


def quantile(values: Sequence[float], q: float) -> float:
    """Return the ``q`` quantile of ``values`` (linear interpolation between order statistics).

    Parameters
    ----------
    values
        At least one number.
    q
        Between 0 and 1.
    """
    xs = sorted(values)
    if not xs:
        raise ValueError("quantile of no values")
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread (10th to 90th percentile) of a set of values."""

    median: float
    p10: float
    p90: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Return the :class:`Summary` of ``values`` (at least one)."""
    return Summary(
        median=statistics.median(values),
        p10=quantile(values, 0.1),
        p90=quantile(values, 0.9),
        n=len(values),
    )


@dataclass(slots=True)
class Series:
    """What one contestant measured in one case.

    ``samples`` holds one value per repetition (seconds); ``calls`` holds
    per-call latencies where a repetition times many calls one by one.
    ``status`` is ``"ok"``, ``"not installed"`` or ``"error: ..."``.
    """

    label: str
    samples: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)
    per_rep: list[list[float]] = field(default_factory=list)
    status: str = "ok"

    @property
    def ok(self) -> bool:
        """True when the contestant ran and has at least one sample."""
        return self.status == "ok" and bool(self.samples or self.calls)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"error: {type(exc).__name__}{': ' + first[:120] if first else ''}"


def alternate(
    runners: dict[str, Runner | None],
    rounds: int,
    *,
    min_rounds: int = 1,
    budget_s: float | None = None,
    unavailable: dict[str, str] | None = None,
) -> dict[str, Series]:
    """Run every runner once per round, in a shuffled order, for ``rounds`` rounds.

    Alternating (A, B, C, then C, A, B, ...) rather than running A's
    repetitions then B's makes drift in the machine's state (frequency,
    cache, outside load) hit every contestant alike; shuffling each round
    (with a fixed seed, so a run can be repeated) keeps any contestant from
    always following the same one -- a pool whose processes a peer's run just
    left cold, or one that runs right after its own warm-up.

    Parameters
    ----------
    runners
        Label to a function running one repetition and returning its duration
        in seconds, or a list of per-call durations.  ``None`` marks a
        contestant that cannot run; its reason is in ``unavailable``.
    rounds
        Most repetitions per runner.
    min_rounds
        Repetitions every runner gets even past its budget.
    budget_s
        Seconds of measured time per runner after which it stops (once it has
        ``min_rounds``); ``None`` for no budget.  Keeps slow peers (a chunk
        size of 1 through a pipe) from dominating the run time.
    unavailable
        Label to the reason a ``None`` runner cannot run (``"not installed"``).

    Returns
    -------
    dict
        Label to :class:`Series`.  A runner that raises stops, and its series
        says ``"error: ..."``: the suite reports it instead of crashing.
    """
    out = {label: Series(label) for label in runners}
    for label, fn in runners.items():
        if fn is None:
            out[label].status = (unavailable or {}).get(label, "not installed")
    spent = dict.fromkeys(runners, 0.0)
    order = list(runners.items())
    shuffler = random.Random(SHUFFLE_SEED)
    for r in range(rounds):
        shuffler.shuffle(order)
        for label, fn in order:
            series = out[label]
            if fn is None or series.status != "ok":
                continue
            if budget_s is not None and r >= min_rounds and spent[label] >= budget_s:
                continue
            try:
                value = fn()
            except Exception as exc:
                series.status = _describe(exc)
                continue
            if isinstance(value, list):
                series.calls.extend(value)
                series.per_rep.append(value)
                spent[label] += sum(value)
            else:
                series.samples.append(value)
                spent[label] += value
    return out


def timed_calls(fn: Callable[[], object], calls: int) -> float:
    """Return the mean seconds per call of ``calls`` back-to-back calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calibrate_calls(fn: Callable[[], object], batch_s: float, most: int = 20_000) -> int:
    """Return how many calls of ``fn`` take about ``batch_s`` seconds (at least 1).

    Short operations are timed in batches so the timer's resolution and the
    loop's own cost vanish in the total.  One call is timed first, so a slow
    operation costs a single call here.
    """
    once = timed_calls(fn, 1)
    if once >= batch_s / 4:
        return max(1, round(batch_s / once))
    once = timed_calls(fn, max(3, min(most, int(batch_s / 10 / max(once, 1e-9)))))
    return max(1, min(most, int(batch_s / max(once, 1e-9))))


# -- the busy-machine check -------------------------------------------------------------


def _machine_ticks() -> tuple[int, int] | None:
    """(all ticks, busy ticks) summed over every CPU since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest
    # time is already counted in user, so only the first eight fields add up.
    parts = parts[:8]
    total = sum(parts)
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return total, total - idle


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or ')': split after the last one.
    return raw[raw.rfind(")") + 2 :].split()


def _tree_ticks() -> int:
    """CPU ticks of this process, its reaped children, and every live descendant."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for p in pids:
        fields = _stat_fields(p)
        if fields is None or len(fields) < 15:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        pid = int(p)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(x) for x in fields[11:15])
    total = 0
    stack = [me]
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += ticks.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total


class CpuMonitor:
    """Measure how much of the machine other processes used during a ``with`` block.

    "Ours" is this process, every live descendant, and the children it has
    reaped (their time moves into this process's ``cutime``).  A descendant
    that exits without being reaped by one of ours is not counted as ours, so
    the check errs towards warning.

    Attributes
    ----------
    other_share
        Fraction (0-1) of all CPUs' time, over the block, spent busy outside
        our process tree; ``None`` where ``/proc`` cannot be read.
    own_share
        Fraction of all CPUs' time used by our process tree.
    seconds
        Wall-clock length of the block.
    """

    def __init__(self) -> None:
        self.other_share: float | None = None
        self.own_share: float | None = None
        self.seconds = 0.0
        self._start: tuple[tuple[int, int] | None, int, float] | None = None

    def __enter__(self) -> CpuMonitor:
        self._start = (_machine_ticks(), _tree_ticks(), time.perf_counter())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_machine, end_own, end_t = _machine_ticks(), _tree_ticks(), time.perf_counter()
        assert self._start is not None
        start_machine, start_own, start_t = self._start
        self.seconds = end_t - start_t
        if start_machine is None or end_machine is None:
            return
        total = end_machine[0] - start_machine[0]
        if total <= 0:
            return
        busy = end_machine[1] - start_machine[1]
        own = max(0, end_own - start_own)
        self.own_share = min(1.0, own / total)
        self.other_share = max(0.0, min(1.0, (busy - own) / total))

    @property
    def busy(self) -> bool:
        """True when other processes used more than :data:`BUSY_THRESHOLD` of the machine."""
        return self.other_share is not None and self.other_share > BUSY_THRESHOLD


def other_share_now(seconds: float = 0.5) -> float | None:
    """Share of the machine used by other processes over the next ``seconds`` (sleeping)."""
    with CpuMonitor() as mon:
        time.sleep(seconds)
    return mon.other_share
