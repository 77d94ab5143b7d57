"""The process backend: spawning workers, the handshake, I/O, crash detection, restart.

Data flow::

    PoolBackend                      control segment wb_<pid>_ctl_*: one 64-byte slot of
      │                              int64 words per worker (cancel id, running id,
      │                              progress id/current/total, heartbeat, done count)
      └─ WorkerProcess (one per lane, one thread each)
           spawn: python -c 'from workerbridge._worker import main'  (pipes: to, from,
                  lifeline; nothing else inherited; no re-import of __main__)
           hello  ──────────────────────────────>  worker imports handler modules
           ready  <──────────────────────────────
           start(req): large buffers memcpy'd into the request arena
                  wb_<pid>_req_* (warm, reused), then a small request frame
           response/error frames  <──────────────  result buffers in the worker's
                  (decoded here, copied out of        response arena wb_<wpid>_resp_*)
                   the arena, handed to the Dispatcher)
           direct answers  <──────────────────────  a request started at once for a caller
                  (read by that caller, in run(),     blocked in run() carries d=true: the
                   spinning up to `spin` first)       worker answers on the direct pipe,
                                                      then spins up to `spin` for the next
           EOF on the pipe → reap → exit code → Dispatcher.slot_dead → new lane

A worker is stopped by force with SIGKILL (timeouts, ignored cancellation,
``close(wait=False)``); every segment it created is unlinked by name prefix
after it dies, and a worker whose parent dies sees EOF on its lifeline pipe,
unlinks the parent's and its own segments, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from ._atomic import atomic_array
from ._dispatcher import RUNNING, UNSET, mark_internal_thread
from ._errors import ProtocolError
from ._protocol import (
    ERROR,
    HELLO,
    READY,
    REQUEST,
    RESPONSE,
    SHUTDOWN,
    Frame,
    FrameReader,
    decode_frame,
    encode_frame,
    pack_payload,
    unpack_payload,
    write_frame,
)
from ._remote import exception_from_record
from ._shm import Segment, list_segments, sweep_orphans, unlink_by_name
from ._spin import spin_readable, spin_seconds

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher, Request

__all__ = [
    "HEADER_WORDS",
    "SLOT_WORDS",
    "W_BEAT",
    "W_CANCEL",
    "W_DONE",
    "W_PROG_CUR",
    "W_PROG_ID",
    "W_PROG_TOT",
    "W_RUNNING",
    "PoolBackend",
    "WorkerProcess",
]

logger = logging.getLogger("workerbridge")

# Control segment layout: HEADER_WORDS words, then SLOT_WORDS words per worker
# (8 words = one 64-byte cache line, so workers never share a line).
HEADER_WORDS: Final = 8
SLOT_WORDS: Final = 8
W_CANCEL, W_RUNNING, W_PROG_ID, W_PROG_CUR, W_PROG_TOT, W_BEAT, W_DONE = range(7)

#: Seconds a new worker has to import its handler modules and answer ``ready``.
STARTUP_TIMEOUT: Final = 60.0

#: Seconds a worker told to shut down gets before it is killed.
SHUTDOWN_TIMEOUT: Final = 5.0

#: Arenas are sized in powers of two from this minimum; a smaller minimum saves
#: memory for mid-sized payloads, a larger one avoids regrowing.
MIN_ARENA: Final = 1 << 20

_ALIGN: Final = 64


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


def _arena_size(n: int) -> int:
    size = MIN_ARENA
    while size < n:
        size <<= 1
    return size


#: Held while a worker is started; os.fork() from any thread waits for it (see _spawn).
#: Reentrant, in case a fork inside Popen itself ever runs the at-fork handlers.
_spawn_lock = threading.RLock()

if hasattr(os, "register_at_fork"):
    # the forking thread holds it across the fork; both processes then release it
    os.register_at_fork(
        before=_spawn_lock.acquire,
        after_in_parent=_spawn_lock.release,
        after_in_child=_spawn_lock.release,
    )


def _package_root() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(here)


class WorkerProcess:
    """One worker process and the thread that reads its answers."""

    def __init__(self, index: int, dispatcher: Dispatcher, backend: PoolBackend) -> None:
        self.index = index
        self._dispatcher = dispatcher
        self._backend = backend
        self._ctl = backend.ctl
        self._base = HEADER_WORDS + index * SLOT_WORDS
        self._proc: subprocess.Popen[bytes] | None = None
        self._wfd = -1
        self._rfd = -1
        self._lfd = -1
        # The direct pipe: a caller blocked in run() reads its own answer from it, with no
        # hop through this lane's thread.  The wake pipe interrupts that caller's poll when
        # its task is stopped.
        self._dfd = -1
        self._wake_r = -1
        self._wake_w = -1
        self._direct_lock = threading.Lock()  # held by the caller reading the direct pipe
        self._wake_lock = threading.Lock()  # the wake pipe's fds are not closed mid-write
        self._direct_id = 0
        self._dreader: FrameReader | None = None
        self._poller: select.poll | None = None
        self._send_lock = threading.Lock()
        self._life_lock = threading.Lock()
        self._stop = False
        self._arena: Segment | None = None
        self._resp: Segment | None = None
        #: (task id, {segment name: HandedBuffer}) of the running task's handed buffers,
        #: which its answer may give back by name (see SegmentRange)
        self._handed: tuple[int, dict[str, Any]] | None = None
        self.pid: int | None = None
        self._thread = threading.Thread(
            target=self._life, name=f"workerbridge-worker-{index}", daemon=True
        )
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------

    def _spawn(self) -> None:
        # No os.fork() in another thread while the pipes exist with both ends here: a forked
        # child would keep the worker's ends open (we would never see the worker's EOF) and
        # Popen's own error pipe (Popen would wait for that child to exit).
        with _spawn_lock:
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        life_r, life_w = os.pipe()
        d_r, d_w = os.pipe()
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        code = (
            "import sys; sys.path.insert(0, sys.argv[4]); "
            "from workerbridge._worker import main; main()"
        )
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    str(p2c_r),
                    str(c2p_w),
                    str(life_r),
                    _package_root(),
                    str(d_w),
                ],
                pass_fds=(p2c_r, c2p_w, life_r, d_w),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            for fd in (p2c_r, p2c_w, c2p_r, c2p_w, life_r, life_w, d_r, d_w, wake_r, wake_w):
                os.close(fd)
            raise
        for fd in (p2c_r, c2p_w, life_r, d_w):
            os.close(fd)
        self._proc = proc
        self.pid = proc.pid
        self._wfd, self._rfd, self._lfd = p2c_w, c2p_r, life_w
        with self._direct_lock:
            self._dfd, self._wake_r, self._wake_w = d_r, wake_r, wake_w
            self._dreader = FrameReader(d_r)
            poller = select.poll()
            poller.register(d_r, select.POLLIN)
            poller.register(wake_r, select.POLLIN)
            self._poller = poller

    def _handshake(self, reader: FrameReader) -> None:
        config = {
            "index": self.index,
            "ctl": self._backend.control.name,
            "ctl_offset": (HEADER_WORDS + self.index * SLOT_WORDS) * 8,
            "sys_path": list(sys.path),
            "handlers": list(self._backend.handler_modules),
            "main_path": self._backend.main_path,
            "debug": self._backend.debug,
            "ppid": os.getpid(),
            "spin": self._backend.spin,
        }
        packed, _ = pack_payload(config)
        write_frame(self._wfd, encode_frame(HELLO, 0, payload=packed))
        ready, _, _ = select.select([self._rfd], [], [], STARTUP_TIMEOUT)
        if not ready:
            raise ProtocolError(f"worker did not answer within {STARTUP_TIMEOUT:.0f} s")
        data = reader.read_frame()
        if data is None:
            raise EOFError("worker exited during start-up")
        frame = decode_frame(data)
        if frame.kind == ERROR:
            record = unpack_payload(frame.payload or b"\xc0", lambda i: None)
            exc = exception_from_record(record, None)
            raise ProtocolError(f"worker failed to start: {exc}")
        if frame.kind != READY:
            raise ProtocolError(f"expected a ready frame, got {frame.kind!r}")

    def _life(self) -> None:
        mark_internal_thread()
        starting = True
        try:
            with self._life_lock:
                if self._stop:
                    return
                self._spawn()
            reader = FrameReader(self._rfd)
            self._handshake(reader)
            starting = False
            self._dispatcher.slot_ready(self)
            self._loop(reader)
        except Exception as exc:
            if starting and not self._stop:
                logger.warning("worker %d failed to start: %s", self.index, exc)
        finally:
            self._died(starting)

    def _loop(self, reader: FrameReader) -> None:
        while True:
            try:
                data = reader.read_frame()
            except ProtocolError as exc:
                logger.warning("worker %d sent a bad frame: %s", self.index, exc)
                continue
            except OSError:
                return
            if data is None:
                return
            frame = self._decode(data)
            if frame is not None:
                self._answer(frame)

    def _decode(self, data: bytes) -> Frame | None:
        """Decode a frame from the worker; ``None`` (and the worker killed) if it cannot be."""
        try:
            return decode_frame(data)
        except ProtocolError as exc:
            # Our own worker's encoder never produces this: its stream is not to be
            # trusted any more.  Kill it; its task fails with WorkerCrashedError.
            logger.warning(
                "worker %d sent an undecodable frame (%s): replacing it", self.index, exc
            )
            self.kill()
            return None

    def _answer(self, frame: Frame, direct: Request | None = None) -> Any:
        """Hand a decoded response or error frame to the dispatcher.

        ``direct``: the task whose caller read the frame itself; a success then
        goes through :meth:`Dispatcher.settle_direct`, whose answer this returns
        (otherwise :data:`UNSET`).
        """
        try:
            if frame.kind == RESPONSE:
                value = None
                if frame.payload is not None:

                    def resolve(i: int, table: list[list[Any]] = frame.bufs) -> object:
                        return self._copy_out(table, i, frame.id)

                    value = unpack_payload(frame.payload, resolve)
                self._forget_handed(frame.id)
                if direct is not None:
                    return self._dispatcher.settle_direct(self, direct, value)
                self._dispatcher.on_result(self, frame.id, True, value)
            elif frame.kind == ERROR:
                record = unpack_payload(frame.payload or b"\xc0", lambda i: None)
                failure = exception_from_record(record, frame.id)
                self._forget_handed(frame.id)
                self._dispatcher.on_result(self, frame.id, False, failure)
            else:
                raise ProtocolError(f"unexpected frame kind {frame.kind!r} from a worker")
        except ProtocolError as exc:
            logger.warning("worker %d sent a bad frame: %s", self.index, exc)
            exc_for_task = ProtocolError(f"bad answer from worker {self.index}: {exc}")
            self._forget_handed(frame.id)
            self._dispatcher.on_result(self, frame.id, False, exc_for_task)
        return UNSET

    def _forget_handed(self, task_id: int | None) -> None:
        """Drop the answered task's handed buffers (before the lane can take a new task)."""
        handed = self._handed
        if handed is not None and handed[0] == task_id:
            self._handed = None

    def read_direct(self, req: Request) -> Any:
        """Read ``req``'s answer from the direct pipe on the calling thread.

        Returns once the task is resolved, stopped (timeout, cancellation,
        close: the wake pipe interrupts the wait) or its worker is gone (end of
        file; this lane's thread reports the death).  Returns the result when
        :meth:`Dispatcher.settle_direct` lets the caller take it as it is, else
        :data:`UNSET`: the caller then waits on the task as usual.
        """
        with self._direct_lock:
            poller, reader = self._poller, self._dreader
            if poller is None or reader is None or self._dfd < 0:
                return UNSET
            dfd, wake = self._dfd, self._wake_r
            self._direct_id = req.id
            spin = self._backend.spin
            try:
                while req.state == RUNNING:
                    ready = False
                    if spin:  # small tasks answer within microseconds: no sleep, no wake-up
                        spin_readable((dfd, wake), spin)
                        spin = 0.0
                    for fd, _ in poller.poll():
                        if fd == dfd:
                            ready = True
                        else:  # the wake pipe: a cancel, a timeout or a close
                            with contextlib.suppress(OSError):
                                os.read(wake, 512)
                    if not ready:
                        if req.task.done():
                            return UNSET
                        continue
                    try:
                        data = reader.read_frame()
                    except (OSError, ProtocolError):
                        return UNSET  # the worker died mid-frame: this lane's thread reports it
                    if data is None:
                        return UNSET
                    frame = self._decode(data)
                    if frame is None:
                        return UNSET
                    if frame.id != req.id:
                        continue  # the late answer of an earlier direct task: already settled
                    return self._answer(frame, req)
                return UNSET
            finally:
                self._direct_id = 0

    def _copy_out(self, table: list[list[Any]], index: int, task_id: int | None) -> object:
        if not 0 <= index < len(table):
            raise ProtocolError("result references a missing buffer")
        name, off, n = table[index]
        prefix = f"wb_{self.pid}_"
        if not str(name).startswith(prefix):
            handed = self._handed
            hb = handed[1].get(name) if handed is not None and handed[0] == task_id else None
            if hb is not None and off == 0 and n == hb.nbytes:
                return hb.reclaim()  # the handler gave back the buffer it was handed
            raise ProtocolError("result references a segment the worker does not own")
        seg = self._resp
        if seg is None or seg.name != name:
            if seg is not None:
                seg.close()
            seg = self._resp = Segment.attach(str(name))
        if off + n > seg.size:
            raise ProtocolError("result buffer reference out of bounds")
        return bytes(seg.buf[off : off + n])

    def _died(self, starting: bool) -> None:
        proc = self._proc
        exitcode: int | None = None
        if proc is not None:
            try:
                exitcode = proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                exitcode = proc.wait()
        for fd in (self._wfd, self._rfd, self._lfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wfd = self._rfd = self._lfd = -1
        # a caller reading the direct pipe has seen its end by now (the worker is gone)
        with self._direct_lock, self._wake_lock:
            for fd in (self._dfd, self._wake_r, self._wake_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._dfd = self._wake_r = self._wake_w = -1
            self._poller = None
            self._dreader = None
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if self._arena is not None:
            self._arena.close()
            self._arena.unlink()
            self._arena = None
        if self.pid is not None:
            for name in list_segments(f"wb_{self.pid}_"):
                unlink_by_name(name)
        self._ctl.store(self._base + W_RUNNING, 0)
        self._dispatcher.slot_dead(self, exitcode, starting)

    # -- Slot interface ----------------------------------------------------------------

    def start(self, req: Request) -> None:
        table: list[list[object]] = []
        self._handed = None
        if req.buffers:
            handed: dict[str, Any] = {}
            plain = [b for b in req.buffers if not hasattr(b, "_wb_segment_name")]
            need = sum(_align(len(b) if isinstance(b, bytes) else b.nbytes) for b in plain)
            arena = self._arena
            if plain and (arena is None or arena.size < need):
                if arena is not None:
                    arena.close()
                    arena.unlink()
                arena = self._arena = Segment.create("req", _arena_size(need))
            off = 0
            for b in req.buffers:
                name = getattr(b, "_wb_segment_name", None)
                if name is not None:
                    handed[name] = b
                    table.append([name, 0, b.nbytes])
                    continue
                assert arena is not None
                view = memoryview(b)
                n = view.nbytes
                arena.buf[off : off + n] = view
                table.append([arena.name, off, n])
                off += _align(n)
            if handed:  # before the request goes out: its answer may give them back
                self._handed = (req.id, handed)
        frame = encode_frame(
            REQUEST, req.id, req.channel, req.op, req.payload, table, direct=req.direct
        )
        with self._send_lock:
            if self._wfd < 0:
                raise BrokenPipeError("worker is gone")
            write_frame(self._wfd, frame)

    def cancel(self, task_id: int) -> None:
        self._ctl.store(self._base + W_CANCEL, task_id)
        if self._direct_id == task_id:
            with self._wake_lock:
                if self._wake_w >= 0:
                    with contextlib.suppress(OSError):  # full: a wake is pending anyway
                        os.write(self._wake_w, b"!")

    def progress(self, task_id: int) -> tuple[int, int] | None:
        if self._ctl.load(self._base + W_PROG_ID) != task_id:
            return None
        cur, tot = self._ctl.load(self._base + W_PROG_CUR), self._ctl.load(self._base + W_PROG_TOT)
        if self._ctl.load(self._base + W_PROG_ID) != task_id:
            return None
        return cur, tot

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)

    def shutdown(self, wait: bool) -> None:
        with self._life_lock:
            self._stop = True
        if wait:
            with self._send_lock:
                if self._wfd >= 0:
                    with contextlib.suppress(OSError):
                        write_frame(self._wfd, encode_frame(SHUTDOWN, None))
            if self._thread is not threading.current_thread():
                self._thread.join(SHUTDOWN_TIMEOUT)
        self.kill()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "heartbeat": self._ctl.load(self._base + W_BEAT),
            "running_task": self._ctl.load(self._base + W_RUNNING) or None,
        }


class PoolBackend:
    """Owns the control segment and creates :class:`WorkerProcess` lanes."""

    mode: Literal["pool", "inprocess"] = "pool"

    def __init__(
        self, workers: int, handler_modules: list[str], debug: bool, main_path: str | None
    ) -> None:
        self.handler_modules = handler_modules
        self.debug = debug
        self.main_path = main_path
        #: seconds a worker spins for its next task after answering, and a caller of
        #: run() for its answer, before sleeping (see workerbridge._spin)
        self.spin = spin_seconds()
        # Segments left by processes that died without cleaning up (a parent killed while
        # its workers were stuck, say) are removed here, by whichever bridge starts next.
        swept = sweep_orphans()
        if swept:
            logger.info("removed %d shared-memory segments of dead processes", len(swept))
        self.control = Segment.create("ctl", (HEADER_WORDS + workers * SLOT_WORDS) * 8)
        self.ctl = atomic_array(self.control)
        self.ctl.store(0, 0x77625F63746C0001)  # magic "wb_ctl" + layout version
        self.ctl.store(1, workers)
        self.ctl.store(2, int(time.time()))

    def new_slot(self, index: int, dispatcher: Dispatcher) -> WorkerProcess:
        return WorkerProcess(index, dispatcher, self)

    def close(self) -> None:
        self.ctl.release()
        try:
            self.control.close()
        except BufferError:  # pragma: no cover - an AtomicArray still pins it
            pass
        self.control.unlink()
