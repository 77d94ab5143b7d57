"""Named POSIX shared memory segments under ``/dev/shm``, and their cleanup.

Data flow::

    Segment.create(kind, size)
        name = wb_<creator pid>_<kind>_<16 hex>
        shm_open(O_CREAT | O_EXCL | O_RDWR, 0600) -> fchmod 0600 -> ftruncate -> mmap
        name recorded in _created (made by this process, not unlinked yet)
            |
            |  the name travels to another process (pickle, message)
            v
    Segment.attach(name)
        name must match the wb_ pattern -> shm_open(O_RDWR) -> fstat size -> mmap

    seg.close()    release seg.buf, close the mmap and the fd (others keep their mappings)
    seg.unlink()   shm_unlink: the name goes away; the memory lives until the last unmap

    Cleanup, from gentle to forceful:
        atexit            unlink every name in _created still there (creator pid == us)
        watch_parent      an orphaned worker unlinks its names, then kills itself
                          (workerbridge._atomic.watch_parent)
        sweep_orphans()   unlink wb_<pid>_... segments whose creator pid is dead

This module deliberately avoids :class:`multiprocessing.shared_memory.SharedMemory`:
on Python 3.11 it registers every attach with the resource tracker, which then
warns about "leaks" and unlinks segments that other processes still use.
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import re
import secrets
import stat
import threading
import weakref
from types import TracebackType

try:
    import _posixshmem  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - CPython on Linux always has it
    _posixshmem = None

__all__ = [
    "PREFIX",
    "Segment",
    "list_segments",
    "parse_name",
    "sweep_orphans",
    "unlink_by_name",
]

PREFIX = "wb_"
SHM_DIR = "/dev/shm"

_NAME_RE = re.compile(
    r"wb_(?P<pid>[1-9][0-9]{0,9})_(?P<kind>[a-z0-9]{1,32})_(?P<token>[0-9a-f]{16})"
)
_KIND_RE = re.compile(r"[a-z0-9]{1,32}")

# Names this process created and has not unlinked: name -> creator pid.  The pid guards
# against a forked child (which inherits this dict) unlinking its parent's segments.
_created: dict[str, int] = {}
_created_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _created_lock
    _created_lock = threading.Lock()
    _created.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _shm_open(name: str, flags: int, mode: int) -> int:
    if _posixshmem is not None:
        fd: int = _posixshmem.shm_open("/" + name, flags, mode)
        return fd
    return os.open(f"{SHM_DIR}/{name}", flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def _shm_unlink(name: str) -> None:
    if _posixshmem is not None:
        _posixshmem.shm_unlink("/" + name)
    else:
        os.unlink(f"{SHM_DIR}/{name}")


def _check_plain_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"segment name must be a str, not {type(name).__name__}")
    bare = name.removeprefix("/")
    if not bare or "/" in bare or "\0" in bare or bare in {".", ".."} or len(bare) > 200:
        raise ValueError(f"invalid shared memory name {name!r}")
    return bare


def parse_name(name: str) -> tuple[int, str] | None:
    """Return ``(creator pid, kind)`` of a workerbridge segment name, or ``None``."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    return int(match["pid"]), match["kind"]


class Segment:
    """A named shared memory segment mapped into this process.

    Use :meth:`create` or :meth:`attach`; do not call the constructor.

    Attributes
    ----------
    name
        The segment's name, without a leading slash: ``wb_<pid>_<kind>_<16 hex>``.
    size
        Size in bytes.
    buf
        A writable :class:`memoryview` of the whole mapping (released by :meth:`close`).
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_created",
        "_fd",
        "_fd_finalizer",
        "_mmap",
        "_unlinked",
        "buf",
        "name",
        "size",
    )

    def __init__(self, name: str, fd: int, size: int, *, created: bool) -> None:
        # Takes ownership of fd, closing it if mapping fails.
        try:
            self._mmap = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.name = name
        self.size = size
        self.buf = memoryview(self._mmap)
        self._fd = fd
        self._fd_finalizer = weakref.finalize(self, os.close, fd)
        self._created = created
        self._closed = False
        self._unlinked = False

    @classmethod
    def create(cls, kind: str, size: int) -> Segment:
        """Create a new segment of *size* bytes, readable and writable by this user only.

        Parameters
        ----------
        kind
            A short tag (``[a-z0-9]+``) that goes into the name, such as ``"ctr"``.
        size
            Size in bytes, at least 1.

        Returns
        -------
        Segment
            The mapped segment; its name is unlinked at interpreter exit unless
            :meth:`unlink` is called first.
        """
        if not isinstance(kind, str) or _KIND_RE.fullmatch(kind) is None:
            raise ValueError(f"kind must match [a-z0-9]{{1,32}}, got {kind!r}")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 1:
            raise ValueError(f"size must be at least 1 byte, got {size}")
        pid = os.getpid()
        flags = os.O_CREAT | os.O_EXCL | os.O_RDWR
        for _ in range(16):
            name = f"{PREFIX}{pid}_{kind}_{secrets.token_hex(8)}"
            try:
                fd = _shm_open(name, flags, 0o600)
            except FileExistsError:  # pragma: no cover - 64 random bits collided
                continue
            break
        else:  # pragma: no cover
            raise FileExistsError("could not find an unused shared memory name")
        with _created_lock:
            _created[name] = pid
        try:
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # the umask may have removed bits
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            unlink_by_name(name)
            raise
        try:
            return cls(name, fd, size, created=True)
        except BaseException:
            unlink_by_name(name)
            raise

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map an existing segment by name.

        Parameters
        ----------
        name
            A name made by :meth:`create` (a leading slash is accepted).

        Returns
        -------
        Segment
            The mapped segment.

        Raises
        ------
        ValueError
            The name is not a workerbridge segment name, or the segment is empty.
        FileNotFoundError
            No segment has that name (any more).
        """
        if not isinstance(name, str):
            raise TypeError(f"segment name must be a str, not {type(name).__name__}")
        bare = name.removeprefix("/")
        if parse_name(bare) is None:
            raise ValueError(f"not a workerbridge shared memory name: {name!r}")
        fd = _shm_open(bare, os.O_RDWR, 0)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise ValueError(f"shared memory segment {bare!r} is empty")
        except BaseException:
            os.close(fd)
            raise
        return cls(bare, fd, size, created=False)

    @property
    def fd(self) -> int:
        """The segment's file descriptor, or ``-1`` once closed."""
        return -1 if self._closed else self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has completed."""
        return self._closed

    @property
    def created(self) -> bool:
        """Whether this object created the segment (rather than attached to it)."""
        return self._created

    def close(self) -> None:
        """Unmap the segment and close its descriptor; idempotent.

        The name is not unlinked: other processes may still attach.

        Raises
        ------
        BufferError
            Something still uses the memory (an atomic array or a view of
            :attr:`buf`); the segment then stays open and usable.
        """
        if self._closed:
            return
        try:
            self.buf.release()
        except BufferError as exc:
            raise BufferError(
                f"cannot close shared memory segment {self.name!r}: its memory is still "
                "in use (release atomic arrays and views of .buf first)"
            ) from exc
        try:
            self._mmap.close()
        except BufferError as exc:
            self.buf = memoryview(self._mmap)
            raise BufferError(
                f"cannot close shared memory segment {self.name!r}: its memory is still "
                "in use (release atomic arrays and views of .buf first)"
            ) from exc
        self._closed = True
        self._fd_finalizer()

    def unlink(self) -> None:
        """Remove the segment's name; idempotent, and quiet if it is already gone."""
        if self._unlinked:
            return
        unlink_by_name(self.name)
        self._unlinked = True

    def __enter__(self) -> Segment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Segment {self.name!r} size={self.size}{state}>"


def unlink_by_name(name: str) -> bool:
    """Unlink a shared memory segment by name.

    Parameters
    ----------
    name
        The name, with or without a leading slash.

    Returns
    -------
    bool
        ``True`` if it existed.
    """
    bare = _check_plain_name(name)
    with _created_lock:
        _created.pop(bare, None)
    try:
        _shm_unlink(bare)
    except FileNotFoundError:
        return False
    return True


def list_segments(prefix: str = PREFIX) -> list[str]:
    """Return the sorted names of the segments in ``/dev/shm`` that start with *prefix*."""
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this system
        return []
    return sorted(n for n in names if n.startswith(prefix))


def _pid_alive(pid: int) -> bool:
    """Whether *pid* runs; zombies (dead, not yet reaped) count as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    state = data[data.rfind(b")") + 2 :][:1]
    return state != b"Z"


def sweep_orphans() -> list[str]:
    """Unlink the workerbridge segments whose creator process is no longer alive.

    A process killed with SIGKILL cannot clean up after itself; this finds its
    segments by the creator pid in their names.  Segments of other users are
    skipped.

    Returns
    -------
    list of str
        The names that were unlinked.
    """
    me = os.getpid()
    removed = []
    for name in list_segments(PREFIX):
        parsed = parse_name(name)
        if parsed is None or parsed[0] == me or _pid_alive(parsed[0]):
            continue
        try:
            if unlink_by_name(name):
                removed.append(name)
        except PermissionError:
            continue
    return removed


@atexit.register
def _unlink_created_at_exit() -> None:
    pid = os.getpid()
    with _created_lock:
        names = [name for name, creator in _created.items() if creator == pid]
    for name in names:
        with contextlib.suppress(OSError):
            unlink_by_name(name)
