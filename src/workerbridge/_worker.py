"""The worker process's main loop (runs only in workers).

Data flow::

    argv: fd_in fd_out fd_lifeline package_root
    hello frame (config) --> sys.path, attach control segment, lifeline watch,
                             import handler modules --> ready frame
    loop:
      spin up to the parent's spin budget for the next frame, then block reading it
      request frame --> RUNNING word = id --> resolve out-of-band buffers as
        read-only memoryviews over the parent's segment --> run_request()
        --> result buffers copied into this worker's response arena
        --> response / error frame --> RUNNING word = 0
      garbage --> error frame (ProtocolError, id None), keep going
      shutdown frame or EOF --> exit

The handler's ``ctx.cancelled`` reads this worker's CANCEL word in the control
segment (the parent stores the task id there); ``ctx.report`` stores progress
words the parent's supervisor samples.  SIGINT is ignored: Ctrl-C is the
parent's to handle.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ._errors import ProtocolError
from ._execute import run_request, set_owner
from ._protocol import (
    ERROR,
    HELLO,
    READY,
    REQUEST,
    RESPONSE,
    SHUTDOWN,
    FrameReader,
    SegmentRange,
    decode_frame,
    encode_frame,
    no_buffers,
    pack_payload,
    unpack_payload,
    write_frame,
)
from ._registry import Context
from ._remote import error_record
from ._shm import parse_name
from ._spin import spin_readable

__all__ = ["main"]

_MIN_ARENA = 1 << 20


class _Control:
    """This worker's words of the control segment (the ``TaskControl`` of its contexts)."""

    def __init__(self, array: Any, base: int) -> None:
        from ._pool import W_BEAT, W_CANCEL, W_DONE, W_PROG_CUR, W_PROG_ID, W_PROG_TOT, W_RUNNING

        self.a = array
        self.cancel = base + W_CANCEL
        self.running = base + W_RUNNING
        self.prog_id = base + W_PROG_ID
        self.prog_cur = base + W_PROG_CUR
        self.prog_tot = base + W_PROG_TOT
        self.beat = base + W_BEAT
        self.done = base + W_DONE

    def is_cancelled(self, task_id: int) -> bool:
        return bool(self.a.load(self.cancel) == task_id)

    def report(self, task_id: int, current: int, total: int) -> None:
        a = self.a
        a.store(self.prog_cur, current)
        a.store(self.prog_tot, total)
        a.store(self.prog_id, task_id)


class _Worker:
    def __init__(self, rfd: int, wfd: int, lfd: int, dfd: int = -1) -> None:
        self.reader = FrameReader(rfd)
        self.wfd = wfd
        self.lfd = lfd
        self.dfd = dfd  # the direct pipe: answers to requests whose caller reads them itself
        self.state: dict[Any, Any] = {}
        self.segments: dict[str, Any] = {}
        self.resp: Any = None
        self.debug = False
        self.arena_names: set[str] = set()
        self.index = 0
        self.ppid = os.getppid()
        self.spin = 0.0  # seconds to spin for the next request after an answer

    def send(
        self, kind: str, task_id: int | None, payload: bytes | None, bufs: Any = (), fd: int = -1
    ) -> None:
        frame = encode_frame(kind, task_id, payload=payload, bufs=bufs)
        write_frame(self.wfd if fd < 0 else fd, frame)

    def send_error(self, task_id: int | None, exc: BaseException, fd: int = -1) -> None:
        packed, _ = pack_payload(error_record(exc, self.debug))
        self.send(ERROR, task_id, packed, fd=fd)

    def start(self) -> None:
        data = self.reader.read_frame()
        if data is None:
            sys.exit(0)
        frame = decode_frame(data)
        if frame.kind != HELLO or frame.payload is None:
            raise ProtocolError("expected a hello frame")
        config = unpack_payload(frame.payload, lambda i: None)
        if not isinstance(config, dict):
            raise ProtocolError("malformed hello frame")
        self.debug = bool(config.get("debug", False))
        self.spin = float(config.get("spin", 0.0))
        self.index = int(config["index"])
        self.ppid = int(config.get("ppid", self.ppid))
        set_owner(self.ppid)
        for entry in reversed(config.get("sys_path", [])):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        from . import _builtin_handlers
        from ._atomic import IMPLEMENTATION, atomic_array, set_pdeathsig, watch_parent
        from ._shm import Segment

        self.Segment = Segment
        watch_parent(self.lfd, [f"wb_{self.ppid}_*", f"wb_{os.getpid()}_*"])
        if IMPLEMENTATION == "python":
            # The pure-Python watcher is a thread: a handler stuck in C code holding the
            # GIL would starve it.  Let the kernel kill us when the parent dies instead
            # (the parent spawns each worker from a thread that outlives it); segments
            # then left behind are swept by the next bridge that starts.
            set_pdeathsig(signal.SIGKILL)
            if os.getppid() != self.ppid:
                raise SystemExit(0)
        self.ctl_seg = Segment.attach(str(config["ctl"]))
        self.control = _Control(atomic_array(self.ctl_seg), int(config["ctl_offset"]) // 8)
        _builtin_handlers.MAIN_PATH[0] = config.get("main_path")
        try:
            for name in config.get("handlers", []):
                if name in ("__main__", "__mp_main__"):
                    path = config.get("main_path")
                    if path:
                        from multiprocessing import spawn

                        spawn._fixup_main_from_path(path)  # type: ignore[attr-defined]
                        _builtin_handlers.MAIN_FIXED.set()
                else:
                    importlib.import_module(name)
        except BaseException as exc:
            self.send_error(None, exc)
            raise SystemExit(3) from None
        packed, _ = pack_payload({"pid": os.getpid()})
        self.send(READY, 0, packed)

    def attach(self, name: str) -> Any:
        seg = self.segments.get(name)
        if seg is None:
            if not name.startswith(f"wb_{self.ppid}_"):
                raise ProtocolError("request references a segment its parent does not own")
            seg = self.Segment.attach(name)
            self.segments[name] = seg
        return seg

    def detach_all_but(self, keep: set[str]) -> None:
        for name in [n for n in self.segments if n not in keep]:
            seg = self.segments.pop(name)
            try:
                seg.close()
            except BufferError:
                # a handler kept a view of it: leave the mapping to the handler
                pass

    def write_results(self, buffers: list[Any]) -> list[list[object]]:
        if not buffers:
            return []
        need = sum(
            (memoryview(b).nbytes + 63) & ~63 for b in buffers if not isinstance(b, SegmentRange)
        )
        resp = self.resp
        if need and (resp is None or resp.size < need):
            if resp is not None:
                resp.close()
                resp.unlink()
            size = _MIN_ARENA
            while size < need:
                size <<= 1
            resp = self.resp = self.Segment.create("resp", size)
        table: list[list[object]] = []
        off = 0
        for b in buffers:
            if isinstance(b, SegmentRange):  # a handed buffer given back: by name
                table.append([b._wb_segment_name, b.offset, b.nbytes])
                continue
            view = memoryview(b)
            n = view.nbytes
            resp.buf[off : off + n] = view.cast("B") if view.format != "B" else view
            table.append([resp.name, off, n])
            off += (n + 63) & ~63
        return table

    def run(self, frame: Any) -> None:
        ctl = self.control
        array = ctl.a
        task_id = frame.id
        array.store(ctl.running, task_id)
        views: list[memoryview] = []
        table = frame.bufs
        resolve: Callable[[int], object] = no_buffers
        returned: dict[int, SegmentRange] | None = None
        if table:
            returned = {}

            def resolve(i: int) -> object:
                if not 0 <= i < len(table):
                    raise ProtocolError("payload references a missing buffer")
                name, off, n = table[i]
                seg = self.attach(name)
                if off + n > seg.size:
                    raise ProtocolError("buffer reference out of bounds")
                view = seg.buf[off : off + n].toreadonly()
                views.append(view)
                parsed = parse_name(str(name))
                if parsed is not None and parsed[1] == "buf":
                    # a buffer the caller handed over (allocate): if the handler returns
                    # this very view, it goes back by name, not copied
                    returned[id(view)] = SegmentRange(str(name), int(off), int(n))
                return view

        try:
            ctx = Context(task_id, self.index, self.state, ctl)
            ok, data, out = run_request(
                frame.channel, frame.op, frame.payload, resolve, ctx, self.debug, returned
            )
            # A direct request's caller reads the answer from the direct pipe -- unless the
            # task was stopped (its cancel word is set): then the caller has gone and the
            # parent's reader thread must see the answer to free this worker.
            fd = self.dfd if frame.direct and array.load(ctl.cancel) != task_id else self.wfd
            if ok:
                try:
                    bufs = self.write_results(out)
                except Exception as exc:
                    self.send_error(task_id, exc, fd=fd)
                else:
                    self.send(RESPONSE, task_id, data, bufs, fd=fd)
            else:
                packed, _ = pack_payload(data)
                self.send(ERROR, task_id, packed, fd=fd)
        finally:
            if table:
                for view in views:
                    view.release()
                self._forget_used([str(t[0]) for t in table])
            array.store(ctl.running, 0)
            array.fetch_add(ctl.done, 1)
            array.fetch_add(ctl.beat, 1)

    def _forget_used(self, names: list[str]) -> None:
        """Keep the parent's current request arena mapped (warm); drop hand-off buffers."""
        keep = set()
        for name in names:
            parsed = parse_name(name)
            if parsed is not None and parsed[1] == "req":
                keep.add(name)
        if keep:
            self.arena_names = keep
        self.detach_all_but(self.arena_names)

    def loop(self) -> None:
        fds, spin = [self.reader.fd], self.spin
        while True:
            if spin and not self.reader.buffered:
                spin_readable(fds, spin)  # the next task often follows at once
            try:
                data = self.reader.read_frame()
            except ProtocolError as exc:
                self.send_error(None, exc)
                continue
            if data is None:
                return
            try:
                frame = decode_frame(data)
                if frame.kind == SHUTDOWN:
                    return
                if frame.kind != REQUEST:
                    raise ProtocolError(f"unexpected frame kind {frame.kind!r} in a worker")
            except ProtocolError as exc:
                self.send_error(None, exc)
                continue
            except Exception as exc:  # a decoder bug must not end the worker
                self.send_error(None, ProtocolError(f"malformed frame: {type(exc).__name__}"))
                continue
            self.run(frame)

    def cleanup(self) -> None:
        if self.resp is not None:
            with contextlib.suppress(BufferError):
                self.resp.close()
            self.resp.unlink()
        self.detach_all_but(set())


def main() -> None:
    """Entry point of a worker process (``argv``: fd_in fd_out fd_lifeline root fd_direct).

    With ``WORKERBRIDGE_PROFILE_DIR`` set, the worker runs under :mod:`cProfile`
    and writes ``worker-<pid>.prof`` there when it exits normally.
    """
    profile_dir = os.environ.get("WORKERBRIDGE_PROFILE_DIR")
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        try:
            profiler.runcall(_main)
        finally:
            profiler.dump_stats(os.path.join(profile_dir, f"worker-{os.getpid()}.prof"))
        return
    _main()


def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd, lfd = (int(a) for a in sys.argv[1:4])
    dfd = int(sys.argv[5]) if len(sys.argv) > 5 else -1
    worker = _Worker(rfd, wfd, lfd, dfd)
    try:
        try:
            worker.start()
        except (OSError, ProtocolError, ValueError) as exc:
            # e.g. the parent died while we started: tell it if it is still there
            with contextlib.suppress(OSError):
                worker.send_error(None, exc)
            raise SystemExit(3) from None
        worker.loop()
    except BrokenPipeError:
        pass
    finally:
        worker.cleanup()
