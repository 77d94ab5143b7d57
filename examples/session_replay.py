"""Session replay: a recording streamed into worker-resident state, queried by time range.

A recorder streams a session as frames over a socket: each frame is one
snappy-compressed JSON chunk of one source's events (browser, api, db).
Delivery is at-least-once, so some chunks arrive twice and some overlap.

The caller reads each frame's bytes straight into a shared buffer
(:meth:`~workerbridge.WorkerBridge.allocate`) and hands the buffer to the
source's home worker (``affinity=source``).  That worker decompresses,
parses and de-duplicates the chunk and keeps the events in its ``ctx.state``
(handlers in ``replay_handlers.py``).  The caller then asks only for time
ranges and summaries: the bulk of the recording never comes back to this
process.

Run it with ``python examples/session_replay.py``.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import snappy

import workerbridge as wb

SOURCES = {"browser": ["click", "scroll", "input"], "api": ["request", "response"], "db": ["query"]}
DETAILS = {
    "click": "button#{n} at ({x}, {y})",
    "scroll": "to {y}px",
    "input": "field#{n}: {x} chars",
    "request": "GET /api/orders/{n}?page={x}",
    "response": "{x} items in {y} us",
    "query": "SELECT * FROM orders WHERE id = {n} LIMIT {x}",
}
SECONDS = 60
HEADER = struct.Struct(">16sI")  # source name, chunk length


def record_session(seed: int = 42) -> dict[str, list[dict[str, Any]]]:
    """A minute of events per source, each with a unique id and a time in ms."""
    rng = random.Random(seed)
    session: dict[str, list[dict[str, Any]]] = {}
    for source, kinds in SOURCES.items():
        t, events = 0, []
        while True:
            t += rng.randint(1, 40)
            if t >= SECONDS * 1000:
                break
            kind = rng.choice(kinds)
            status = 500 if kind == "response" and rng.random() < 0.02 else 200
            events.append(
                {
                    "id": f"{source}-{len(events)}",
                    "t": t,
                    "kind": kind,
                    "status": status,
                    "detail": DETAILS[kind].format(
                        n=rng.randint(1, 5000), x=rng.randint(1, 80), y=rng.randint(0, 9000)
                    ),
                }
            )
        session[source] = events
    return session


def frames(session: dict[str, list[dict[str, Any]]], seed: int = 7) -> Iterator[bytes]:
    """The session as it arrives: chunks of 250 events, with resends and overlaps."""
    rng = random.Random(seed)
    chunks = []
    for source, events in session.items():
        start = 0
        while start < len(events):
            end = min(start + 250, len(events))
            chunks.append((source, events[max(0, start - rng.randint(0, 20)) : end]))  # overlap
            start = end
    chunks += rng.sample(chunks, k=len(chunks) // 10)  # at-least-once: some resent whole
    rng.shuffle(chunks)  # sources interleave, and arrive out of order
    for source, events in chunks:
        payload = snappy.compress(json.dumps(events).encode())
        yield HEADER.pack(source.encode(), len(payload)) + payload


def recorder(sock: socket.socket, session: dict[str, list[dict[str, Any]]]) -> None:
    with sock:
        for frame in frames(session):
            sock.sendall(frame)


def read_into(stream: BinaryIO, view: memoryview) -> None:
    """Fill ``view`` from ``stream`` (no intermediate bytes object)."""
    filled = 0
    while filled < len(view):
        with view[filled:] as rest:
            n = stream.readinto(rest)
        if not n:
            raise EOFError("the stream ended inside a frame")
        filled += n


def main() -> None:
    session = record_session()
    unique = sum(len(events) for events in session.values())
    ours, theirs = socket.socketpair()
    producer = threading.Thread(target=recorder, args=(theirs, session), name="recorder")
    producer.start()

    with wb.WorkerBridge(workers=2, handlers=["replay_handlers"]) as bridge, ours:
        # 1. Ingest: every frame goes from the socket into shared memory, then to
        #    its source's home worker.  Many chunks are in flight at once.
        stream = ours.makefile("rb")
        tasks, received = [], 0
        while header := stream.read(HEADER.size):
            name, length = HEADER.unpack(header)
            source = name.rstrip(b"\0").decode()
            buf = bridge.allocate(length)
            read_into(stream, buf.view)
            received += HEADER.size + length
            chunk = {"source": source, "chunk": buf}  # the buffer is handed over, not copied
            tasks.append(bridge.submit("replay", "ingest", chunk, affinity=source, block=True))
        stream.close()
        producer.join()
        acks = [task.result() for task in tasks]
        raw = sum(ack["raw_bytes"] for ack in acks)
        print(
            f"ingested {len(acks)} chunks: {received:,} bytes received, "
            f"{raw:,} bytes of JSON parsed in the workers"
        )

        # 2. What each worker holds.
        answered = len(json.dumps(acks))  # count every answer that came back, acks included
        for source in SOURCES:
            s = bridge.run("replay", "summary", {"source": source}, affinity=source)
            answered += len(json.dumps(s))
            print(
                f"  {source:<8} on worker {s['worker']}: {s['events']:,} events from "
                f"{s['chunks']} chunks, {s['duplicates']:,} duplicates dropped, "
                f"{s['first'] / 1000:.2f}-{s['last'] / 1000:.2f} s"
            )

        # 3. Time ranges: the caller asks, the workers answer from their state.
        start, end = 30_000, 30_250
        window: list[dict[str, Any]] = []
        counts = {}
        queries = [
            bridge.submit(
                "replay",
                "range",
                {"source": s, "start": start, "end": end, "limit": 100},
                affinity=s,
            )
            for s in SOURCES
        ]
        for source, task in zip(SOURCES, queries, strict=True):
            answer = task.result()
            answered += len(json.dumps(answer))
            counts[source] = answer["count"]
            window += [{**event, "source": source} for event in answer["events"]]
        window.sort(key=lambda e: e["t"])
        print(f"  events in [{start / 1000:.2f} s, {end / 1000:.2f} s): {counts}")
        for event in window[:6]:
            print(
                f"    {event['t'] / 1000:7.3f} s  {event['source']:<8} {event['kind']:<8} "
                f"{event['detail']}"
            )
        api = bridge.run(
            "replay",
            "range",
            {"source": "api", "start": 0, "end": 60_000, "limit": 0},
            affinity="api",
        )
        answered += len(json.dumps(api))
        print(f"  api over the whole minute: {api['kinds']}, {api['errors']} server errors")

        # 4. The check: nothing lost, nothing doubled, and little came back.
        stored = sum(
            bridge.run("replay", "summary", {"source": s}, affinity=s)["events"] for s in SOURCES
        )
        print(
            f"  {stored:,} unique events stored, {unique:,} recorded: "
            f"{'all there, once each' if stored == unique else 'MISMATCH'}"
        )
        print(
            f"  answers returned to this process: about {answered:,} bytes, "
            f"{answered / raw:.2%} of the recording"
        )


if __name__ == "__main__":
    main()
