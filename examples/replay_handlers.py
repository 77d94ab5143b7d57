"""Handlers for ``session_replay.py``: a recording's events kept in worker-resident state.

A bridge created with ``handlers=["replay_handlers"]`` imports this module in
every worker.  Each source of a recording has a home worker (the caller
submits with ``affinity=source``), and that worker's ``ctx.state`` holds the
source's events: ingesting a chunk decompresses, parses and de-duplicates it
there, and queries answer from there, so the bulk of the recording never
travels back to the caller.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

import snappy

import workerbridge as wb


@dataclass
class Timeline:
    """One source's events, de-duplicated by id, sorted by time when queried."""

    ids: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    in_order: bool = True
    duplicates: int = 0
    chunks: int = 0
    raw_bytes: int = 0

    def add(self, events: list[dict[str, Any]]) -> int:
        new = 0
        for event in events:
            if event["id"] in self.ids:  # delivered before: at-least-once delivery resends
                self.duplicates += 1
                continue
            self.ids.add(event["id"])
            self.events.append(event)
            new += 1
        self.in_order = False
        return new

    def between(self, start: int, end: int) -> list[dict[str, Any]]:
        if not self.in_order:
            self.events.sort(key=lambda e: (e["t"], e["id"]))
            self.times = [e["t"] for e in self.events]
            self.in_order = True
        lo, hi = bisect.bisect_left(self.times, start), bisect.bisect_left(self.times, end)
        return self.events[lo:hi]


def _timeline(ctx: wb.Context, source: str) -> Timeline:
    timeline: Timeline = ctx.state.setdefault(("replay", source), Timeline())
    return timeline


@wb.handler("replay", "ingest")
def ingest(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, int]:
    """Decompress (snappy), parse (JSON) and keep one chunk of a source's events."""
    # The chunk arrives as a read-only view of the shared buffer the caller
    # filled; only what is kept (the parsed events) outlives this call.
    raw = snappy.decompress(payload["chunk"])
    timeline = _timeline(ctx, payload["source"])
    new = timeline.add(json.loads(raw))
    timeline.chunks += 1
    timeline.raw_bytes += len(raw)
    return {"new": new, "kept": len(timeline.events), "raw_bytes": len(raw), "worker": ctx.worker}


@wb.handler("replay", "range")
def time_range(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """A source's events with ``start <= t < end``: counts per kind, errors, the first few."""
    events = _timeline(ctx, payload["source"]).between(payload["start"], payload["end"])
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    return {
        "count": len(events),
        "kinds": kinds,
        "errors": sum(event["status"] >= 500 for event in events),
        "events": events[: payload.get("limit", 10)],
    }


@wb.handler("replay", "summary")
def summary(ctx: wb.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """How much of a source this worker holds."""
    timeline = _timeline(ctx, payload["source"])
    events = timeline.between(-(2**62), 2**62)
    return {
        "worker": ctx.worker,
        "events": len(events),
        "duplicates": timeline.duplicates,
        "chunks": timeline.chunks,
        "raw_bytes": timeline.raw_bytes,
        "first": events[0]["t"] if events else None,
        "last": events[-1]["t"] if events else None,
    }


if __name__ == "__main__":
    print("replay_handlers: the handlers module of session_replay.py; run that script instead.")
