"""Rows, targets, the printed table, the JSON document and the plot.

Data flow::

    case --> CaseResult(rows=[Row, ...], CPU shares, notes)
    Row: one figure (median, p10-p90, unit) of one contestant, and where it
         compares with workerbridge: the ratio (how many times faster
         workerbridge is), the target and its verdict (PASS / MISS)
    format_case(case) --> text block          (printed as each case ends)
    document(...)     --> dict                (--json: machine, versions, config, rows)
    plot(doc, path)   --> PNG                 (--plot: needs matplotlib)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ._measure import BUSY_THRESHOLD, CpuMonitor, Summary

__all__ = [
    "MISS",
    "PASS",
    "CaseResult",
    "Row",
    "format_case",
    "format_value",
    "judge",
    "judge_at_most",
    "plot",
    "rate_row",
    "speedup",
    "summary_lines",
    "time_row",
]

PASS = "PASS"
MISS = "MISS"

_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


@dataclass(slots=True)
class Row:
    """One figure of one contestant in one case.

    ``value``/``lo``/``hi`` are in ``unit`` (the median and the 10th/90th
    percentiles over repetitions).  ``ratio`` is how many times faster (or
    leaner) workerbridge is than this row's contestant; on workerbridge's own
    rows it is measured against the contestant the ``target`` names.
    """

    label: str
    contestant: str
    variant: str
    unit: str
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    status: str = "ok"
    higher_is_better: bool = False
    ratio: float | None = None
    target: str | None = None
    verdict: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the row holds a measured value."""
        return self.status == "ok" and self.value is not None


@dataclass(slots=True)
class CaseResult:
    """The rows of one case and the conditions it ran under."""

    key: str
    title: str
    description: str
    rows: list[Row] = field(default_factory=list)
    other_cpu_share: float | None = None
    own_cpu_share: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        """True when other processes used more than the threshold of the machine."""
        return self.other_cpu_share is not None and self.other_cpu_share > BUSY_THRESHOLD

    def record_cpu(self, monitor: CpuMonitor) -> None:
        """Keep what ``monitor`` measured over the case: CPU shares and duration."""
        self.other_cpu_share = monitor.other_share
        self.own_cpu_share = monitor.own_share
        self.seconds = monitor.seconds

    def find(self, contestant: str, variant: str) -> Row | None:
        """The row of ``contestant``/``variant``, or ``None``."""
        for row in self.rows:
            if row.contestant == contestant and row.variant == variant:
                return row
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this case."""
        return {
            "title": self.title,
            "description": self.description,
            "seconds": round(self.seconds, 3),
            "other_cpu_share": self.other_cpu_share,
            "own_cpu_share": self.own_cpu_share,
            "busy": self.busy,
            "notes": list(self.notes),
            "rows": [asdict(r) for r in self.rows],
            "extra": self.extra,
        }


def time_row(
    label: str,
    contestant: str,
    variant: str,
    summary: Summary | None,
    unit: str,
    *,
    status: str = "ok",
) -> Row:
    """A row of a duration: ``summary`` in seconds, shown in ``unit`` (s, ms, us)."""
    if summary is None or status != "ok":
        return Row(label, contestant, variant, unit, status=status if status != "ok" else "no data")
    k = _UNITS[unit]
    return Row(
        label,
        contestant,
        variant,
        unit,
        value=summary.median * k,
        lo=summary.p10 * k,
        hi=summary.p90 * k,
        n=summary.n,
    )


def rate_row(
    label: str,
    contestant: str,
    variant: str,
    seconds: Summary | None,
    amount: float,
    unit: str,
    *,
    status: str = "ok",
) -> Row:
    """A row of a rate: ``amount`` per second over the durations in ``seconds``."""
    if seconds is None or status != "ok":
        return Row(
            label,
            contestant,
            variant,
            unit,
            higher_is_better=True,
            status=status if status != "ok" else "no data",
        )
    return Row(
        label,
        contestant,
        variant,
        unit,
        value=amount / seconds.median,
        lo=amount / seconds.p90,
        hi=amount / seconds.p10,
        n=seconds.n,
        higher_is_better=True,
    )


def speedup(ours: Row | None, theirs: Row | None) -> float | None:
    """How many times better ``ours`` is than ``theirs`` (same unit), or ``None``."""
    if ours is None or theirs is None or not ours.ok or not theirs.ok:
        return None
    assert ours.value is not None
    assert theirs.value is not None
    if ours.value <= 0 or theirs.value <= 0:
        return None
    if ours.higher_is_better:
        return ours.value / theirs.value
    return theirs.value / ours.value


def judge(row: Row, ratio: float | None, minimum: float, target: str) -> None:
    """Set ``row``'s ratio, target text and verdict: PASS when ``ratio >= minimum``."""
    row.ratio = ratio
    row.target = target
    row.verdict = None if ratio is None else (PASS if ratio >= minimum else MISS)


def judge_at_most(row: Row, limit: float, target: str) -> None:
    """Set ``row``'s target and verdict: PASS when its value is at most ``limit``."""
    row.target = target
    row.verdict = (
        None if not row.ok or row.value is None else (PASS if row.value <= limit else MISS)
    )


def format_value(x: float | None) -> str:
    """A number with about three significant figures (``-`` for none)."""
    if x is None or math.isnan(x):
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _ratio_text(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


_HEADER: tuple[str, ...] = ("row", "median", "p10-p90", "unit", "ratio", "target", "verdict")


def format_case(case: CaseResult, number: int) -> str:
    """The text block of one case: title, conditions, one line per row, warnings."""
    lines = [f"({number}) {case.title}", f"    {case.description}"]
    # Each entry: the seven cells of a measured row, or (label, status text).
    table: list[tuple[str, ...]] = [_HEADER]
    for row in case.rows:
        if not row.ok:
            note = f"  (target {row.target})" if row.target else ""
            table.append((row.label, row.status + note))
            continue
        table.append(
            (
                row.label,
                format_value(row.value),
                f"{format_value(row.lo)}-{format_value(row.hi)}",
                row.unit,
                _ratio_text(row.ratio),
                row.target or "",
                row.verdict or ("-" if row.target else ""),
            )
        )
    full = [r for r in table if len(r) == len(_HEADER)]
    widths = [max(len(r[i]) for r in full) for i in range(len(_HEADER))]
    widths[0] = max(len(r[0]) for r in table)
    for cells in table:
        if len(cells) != len(_HEADER):
            lines.append(f"    {cells[0].ljust(widths[0])}  {cells[1]}")
            continue
        parts = [
            cells[0].ljust(widths[0]),
            cells[1].rjust(widths[1]),
            cells[2].rjust(widths[2]),
            cells[3].ljust(widths[3]),
            cells[4].rjust(widths[4]),
            cells[5].ljust(widths[5]),
            cells[6],
        ]
        lines.append("    " + "  ".join(parts).rstrip())
    cpu = (
        "unknown (no /proc)"
        if case.other_cpu_share is None
        else f"{case.other_cpu_share:.1%} of the machine"
    )
    lines.append(f"    other processes' CPU during this case: {cpu}; took {case.seconds:.1f} s")
    for note in case.notes:
        lines.append(f"    note: {note}")
    if case.busy:
        lines.append(
            f"    WARNING: other processes used {case.other_cpu_share:.0%} of the machine "
            f"(over {BUSY_THRESHOLD:.0%}): these figures are unreliable"
        )
    return "\n".join(lines)


def summary_lines(cases: Sequence[CaseResult]) -> list[str]:
    """Every target of the run with its ratio and verdict, and the busy warnings."""
    lines = ["targets:"]
    for case in cases:
        for row in case.rows:
            if row.target is None:
                continue
            if row.verdict is None:
                lines.append(f"  {'-':<4}  {case.key}: {row.label}: {row.target}: not measured")
                continue
            figure = (
                _ratio_text(row.ratio)
                if row.ratio is not None
                else f"{format_value(row.value)} {row.unit}"
            )
            lines.append(f"  {row.verdict}  {case.key}: {row.label}: {figure}, target {row.target}")
    busy = [c.key for c in cases if c.busy]
    if busy:
        lines.append(
            f"WARNING: the machine was busy during {', '.join(busy)}: re-run on an idle machine"
        )
    return lines


# -- plot --------------------------------------------------------------------------------


def plot(doc: dict[str, Any], path: str) -> None:
    """Write a PNG summarising the run's cases (one panel per case).

    Raises
    ------
    RuntimeError
        matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(
            "--plot needs matplotlib: pip install 'workerbridge[bench]' (or matplotlib)"
        ) from None

    cases: dict[str, Any] = doc["cases"]
    panels = [k for k in _PANELS if k in cases]
    cols = 2 if len(panels) > 1 else 1
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(7.0 * cols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, panels, strict=False):
        rows = [r for r in cases[key]["rows"] if r["status"] == "ok" and r["value"] is not None]
        _PANELS[key](ax, rows, cases[key])
    machine = doc.get("machine", {})
    fig.suptitle(
        f"workerbridge {doc.get('versions', {}).get('workerbridge', '')} benchmarks "
        f"({doc.get('config', {}).get('mode', '')}; {doc.get('config', {}).get('workers')} "
        f"workers; {machine.get('cpu_model', '')}, {machine.get('cpus')} CPUs, "
        f"Python {machine.get('python', '')})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


_WB = "#1f77b4"
_PEER = "#9a9a9a"


def _bar_colors(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [_WB if str(r["contestant"]).startswith("workerbridge") else _PEER for r in rows]


def _errs(rows: Sequence[dict[str, Any]]) -> list[list[float]]:
    return [
        [max(0.0, r["value"] - (r["lo"] if r["lo"] is not None else r["value"])) for r in rows],
        [max(0.0, (r["hi"] if r["hi"] is not None else r["value"]) - r["value"]) for r in rows],
    ]


def _hbars(ax: Any, rows: Sequence[dict[str, Any]], title: str, xlabel: str, log: bool) -> None:
    rows = list(reversed(rows))
    ys = list(range(len(rows)))
    ax.barh(ys, [r["value"] for r in rows], xerr=_errs(rows), color=_bar_colors(rows), capsize=2)
    ax.set_yticks(ys, [r["label"] for r in rows], fontsize=7)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    for y, r in zip(ys, rows, strict=True):
        if r.get("verdict"):
            ax.annotate(
                f" {r['verdict']}",
                (r["value"], y),
                fontsize=6,
                va="center",
                color="green" if r["verdict"] == PASS else "red",
            )


def _panel_round_trip(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    _hbars(ax, rows, "(1) round trip of an empty task, one at a time", "microseconds (log)", True)


def _panel_map(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    _hbars(ax, rows, "(2) Executor.map of tiny tasks", "milliseconds per map (log)", True)


def _panel_echo(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    _hbars(ax, rows, "(3) bytes payload echoed by a worker", "GB/s (higher is better)", False)


def _panel_cold(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    _hbars(ax, rows, "(5) cold start to first result", "milliseconds", False)


def _panel_memory(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    _hbars(ax, rows, "(6) parent's peak RSS growth on a large file", "MiB (target <= 64)", False)
    ax.axvline(64, color="red", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 70)
    for y, r in enumerate(reversed(rows)):
        ax.annotate(f"  {format_value(r['value'])} MiB", (0, y + 0.2), fontsize=7, va="bottom")


def _panel_bridges(ax: Any, rows: list[dict[str, Any]], case: dict[str, Any]) -> None:
    direct = [r for r in rows if r["contestant"] == "direct" and r.get("ratio")]
    sizes: list[str] = list(case.get("extra", {}).get("sizes", []))
    ops: list[str] = []
    ratios: dict[tuple[str, str], float] = {}
    for r in direct:
        size = next((s for s in sizes if r["variant"].endswith(" " + s)), "")
        op = r["variant"][: len(r["variant"]) - len(size)].strip()
        if op not in ops:
            ops.append(op)
        ratios[op, size] = r["ratio"]
    width = 0.8 / max(1, len(sizes))
    for j, size in enumerate(sizes):
        xs = [
            i + (j - (len(sizes) - 1) / 2) * width
            for i, op in enumerate(ops)
            if (op, size) in ratios
        ]
        ys = [ratios[op, size] for op in ops if (op, size) in ratios]
        ax.bar(xs, ys, width=width, label=size)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1 / 1.5, color="red", linestyle=":", linewidth=0.8)
    ax.axhline(1.7, color="red", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(ops)), ops, fontsize=7, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("direct time / bridge time (log)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(
        "(4) bridge vs one direct call: above 1 the bridge is faster\n"
        "(dashed: the 1.7x target at the largest size; dotted: 1/1.5 at 1 KiB)",
        fontsize=9,
    )
    ax.legend(fontsize=7)


_PANELS = {
    "round_trip": _panel_round_trip,
    "map": _panel_map,
    "echo": _panel_echo,
    "bridges": _panel_bridges,
    "cold_start": _panel_cold,
    "memory": _panel_memory,
}
