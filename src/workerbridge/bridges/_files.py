"""File engine: atomic writes, streamed hashing, verified copies, ranged reads.

These are the pure functions behind ``bridge.file`` and the shared file plumbing
of the compression (:mod:`._codecs`) and crypto (:mod:`._aead`) engines.  They
run inside worker processes or threads, take plain values, return plain values,
and never import the pool.  Data flow of every streamed operation::

    src path ──open_source()──> (file, stat) ──read CHUNK_SIZE──> transform ──┐
      │                                 ctx.check_cancelled() before a chunk │
      │                                 ctx.report(bytes_read, size) after   │
      │                                                                       v
      └─ check_unchanged() at the end    atomic_writer(dst): .<name>.XXXX.tmp in dst's
                                         directory ── flush, fsync ── os.replace ── fsync dir
                                         (any exception: temp removed, dst untouched)

Error rule for paths (applied by every file API of the three engines)
---------------------------------------------------------------------
* A path that cannot serve as the argument it was given for -- missing source,
  a directory where a file is expected, a source that is not a regular file, a
  missing destination directory, a destination that is a directory, permission
  denied, a name too long, a symlink loop -- raises
  :exc:`~workerbridge.ValidationError` naming the role and the path, chained
  ``from`` the original :exc:`OSError`.  These are bad arguments: retrying the
  same call cannot succeed.
* Any other :exc:`OSError` (disk full, I/O error, read-only file system at
  write time, ...) propagates unchanged, with its ``filename`` set by the OS
  layer: these are environmental failures that a retry may cure.
* A source that changes while it is read (size, mtime, inode or device differ
  between the start and the end, the byte count read differs from the size at
  the start, or the path now names another file) raises
  :exc:`~workerbridge.IntegrityError`: the result would not be a consistent
  snapshot of any version of the file, so it is discarded exactly as a failed
  authentication is (no destination file is written).  A verified copy whose
  re-read temp file does not hash to the source's digest raises the same error.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final, Protocol

from .._errors import IntegrityError, ValidationError
from .._execute import TMP_TAG
from .._types import WorkContext

__all__ = [
    "CHUNK_SIZE",
    "HASH_ALGORITHMS",
    "HashObject",
    "PlacedWriter",
    "StrPath",
    "as_buffer",
    "assemble_file",
    "atomic_writer",
    "remove_tmp_files_of",
    "caller_path",
    "check_unchanged",
    "copy_file",
    "hash_file",
    "new_hash",
    "open_source",
    "read_range",
    "write_file",
]

StrPath = str | os.PathLike[str]

# Streaming unit for every file engine.  Larger chunks cut per-call overhead
# (progress reports, cancel checks, Python loop turns) but raise peak memory
# and the latency of noticing a cancellation; 1 MiB keeps both small.
CHUNK_SIZE: Final = 1 << 20

#: Digest algorithms offered by ``hash``/``hash_file``: the secure members of
#: :mod:`hashlib` only (no MD5, no SHA-1).  ``blake2b``/``blake2s`` use their
#: full default digest sizes (64 and 32 bytes), matching ``b2sum``.
HASH_ALGORITHMS: Final = (
    "sha256",
    "sha384",
    "sha512",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "blake2b",
    "blake2s",
)

# errno values that mean "this path is not a usable argument" (see the rule above).
_ARGUMENT_ERRNOS: Final = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)


class HashObject(Protocol):
    """The slice of :mod:`hashlib`'s hash objects that the engines use."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...


def new_hash(algorithm: str) -> HashObject:
    """Return a fresh :mod:`hashlib` object for ``algorithm``.

    Raises
    ------
    ValidationError
        ``algorithm`` is not one of :data:`HASH_ALGORITHMS`.
    """
    if not isinstance(algorithm, str) or algorithm not in HASH_ALGORITHMS:
        raise ValidationError(
            f"unknown hash algorithm {algorithm!r}; expected one of {', '.join(HASH_ALGORITHMS)}"
        )
    return hashlib.new(algorithm)


def as_buffer(data: object, name: str = "data") -> memoryview:
    """Return ``data`` as a flat byte :class:`memoryview`, rejecting non-bytes-like values.

    Raises
    ------
    ValidationError
        ``data`` does not support the buffer protocol (``str`` included).
    """
    if isinstance(data, str):
        raise ValidationError(f"{name} must be bytes-like, not str (encode it first)")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise ValidationError(
            f"{name} must be bytes-like (bytes, bytearray, memoryview), not {type(data).__name__}"
        ) from None
    if view.ndim != 1 or view.itemsize != 1 or view.format not in ("B", "b", "c"):
        try:
            view = view.cast("B")
        except TypeError:
            raise ValidationError(f"{name} must be a contiguous bytes-like object") from None
    return view


def _fspath(path: object, role: str) -> str:
    try:
        result = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        raise ValidationError(
            f"{role} path must be str or os.PathLike, not {type(path).__name__}"
        ) from None
    if not isinstance(result, str):
        raise ValidationError(f"{role} path must be a str path, not bytes")
    if not result or "\0" in result:
        raise ValidationError(f"{role} path {result!r} is empty or contains NUL")
    return result


def caller_path(path: object, role: str) -> str:
    """:func:`_fspath`, made absolute against the *caller's* working directory.

    The parent resolves every path before sending it: a worker's working
    directory is the one it started in, not the caller's after a ``chdir``.
    """
    return os.path.abspath(_fspath(path, role))


def _argument_error(exc: OSError, role: str, path: str) -> ValidationError | OSError:
    """Map an :exc:`OSError` met while opening ``path`` per the module's error rule."""
    if exc.errno in _ARGUMENT_ERRNOS:
        reason = exc.strerror or type(exc).__name__
        return ValidationError(f"{role} {path!r}: {reason}")
    return exc


def _check_int(value: object, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}")
    return value


_open_fd = os.open  # one name for the tests to make fail


def open_source(path: StrPath, role: str = "source") -> tuple[IO[bytes], os.stat_result]:
    """Open a regular file for streamed reading and return it with its ``fstat``.

    Raises
    ------
    ValidationError
        The path is missing, a directory, not a regular file, or unreadable.
    OSError
        Any other failure of the operating system.
    """
    name = _fspath(path, role)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
        # before the type check below could refuse it
        fd = _open_fd(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _argument_error(exc, role, name) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ValidationError(f"{role} {name!r}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(f"{role} {name!r}: not a regular file")
        os.set_blocking(fd, True)
        fh = open(fd, "rb", closefd=True)  # noqa: SIM115 - returned to the caller, who closes it
    except BaseException:
        os.close(fd)
        raise
    return fh, st


def check_unchanged(fh: IO[bytes], path: StrPath, before: os.stat_result, bytes_read: int) -> None:
    """Raise :exc:`IntegrityError` if the open file at ``path`` changed since ``before``.

    ``bytes_read`` is how many bytes the caller read from offset 0 to EOF; it
    must equal the size recorded at the start.
    """
    name = os.fspath(path)
    after = os.fstat(fh.fileno())
    try:
        now = os.stat(name)
    except OSError:
        now = None
    same = (
        bytes_read == before.st_size
        and after.st_size == before.st_size
        and after.st_mtime_ns == before.st_mtime_ns
        and after.st_ino == before.st_ino
        and now is not None
        and (now.st_ino, now.st_dev) == (before.st_ino, before.st_dev)
    )
    if not same:
        raise IntegrityError(
            f"source {name!r} changed while it was being read; nothing was written"
        )


def _report(ctx: WorkContext | None, current: int, total: int | None) -> None:
    if ctx is not None:
        ctx.report(current, total)


def _checkpoint(ctx: WorkContext | None) -> None:
    if ctx is not None:
        ctx.check_cancelled()


def _umask() -> int:
    """The process umask, read without the racy set-and-restore dance."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems refuse fsync on directories; the rename is done either way.
        pass
    finally:
        os.close(fd)


def remove_tmp_files_of(dst: str, tag: str) -> int:
    """Remove the temporary files ``atomic_writer(dst)`` made for the request ``tag``.

    Called by the caller of a task that failed: its worker may have been killed
    (a crash, or a stop it did not heed in time) before removing its own.
    Returns how many were removed.
    """
    directory, base = os.path.split(os.path.abspath(dst))
    pattern = os.path.join(glob.escape(directory), "." + glob.escape(base) + "." + tag + ".*.tmp")
    removed = 0
    for path in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_writer(dst: StrPath, *, mode: int | None = None) -> Iterator[IO[bytes]]:
    """Write ``dst`` all at once or not at all.

    Yields a binary file opened read-write on a temporary file created next to
    ``dst`` (same directory, so the final rename is atomic), named
    ``.<name>.<random>.tmp``; its ``name`` attribute is that temporary path.
    When the block exits normally the file is flushed, fsynced, given ``mode``
    (default: ``dst``'s current mode, or ``0o666 & ~umask`` for a new file),
    renamed over ``dst`` with :func:`os.replace`, and the directory is
    fsynced.  When the block raises anything (cancellation
    included) the temporary file is closed and removed, ``dst`` is untouched,
    and the exception propagates.

    Raises
    ------
    ValidationError
        ``dst`` is a directory, or its directory is missing or not writable.
    OSError
        Any other failure (disk full, I/O error).
    """
    name = _fspath(dst, "destination")
    directory, base = os.path.split(os.path.abspath(name))
    if not base:
        raise ValidationError(f"destination {name!r}: not a file name")
    try:
        existing: os.stat_result | None = os.stat(name)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _argument_error(exc, "destination", name) from exc
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise ValidationError(f"destination {name!r}: is a directory")
    if mode is None:
        mode = 0o666 & ~_umask() if existing is None else stat.S_IMODE(existing.st_mode)
    # .<name>.<tag>.<random>.tmp: the tag names the request (see tmp_files_of), so its
    # caller can remove the file if this process is killed before the cleanup below
    tag = TMP_TAG.get()
    prefix = "." + base + "." + (tag + "." if tag else "")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ValidationError(
                f"destination {name!r}: directory {directory!r} does not exist"
            ) from exc
        raise _argument_error(exc, "destination directory", directory) from exc
    committed = False
    try:
        os.close(fd)
        with open(tmp, "r+b") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, name)
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _fsync_dir(directory)


class PlacedWriter:
    """Write consecutive pieces into the existing file ``path`` from ``offset`` on.

    The writer of the parallel paths (:mod:`._parts`): the file is opened
    without ``O_CREAT``, so a temporary file removed because the operation
    failed is never re-created.
    """

    __slots__ = ("_fd", "_offset", "written")

    def __init__(self, path: str, offset: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self._offset = offset
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        """Write all of ``data`` after what was written before; return its length."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._offset + self.written + done)
        self.written += done
        return done

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> PlacedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stream(
    fh: IO[bytes],
    total: int,
    ctx: WorkContext | None,
    sink: Callable[[bytes], object],
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Feed ``fh`` to ``sink`` chunk by chunk with cancel checks and progress; return bytes read."""
    done = 0
    while True:
        _checkpoint(ctx)
        chunk = fh.read(chunk_size)
        if not chunk:
            break
        sink(chunk)
        done += len(chunk)
        _report(ctx, done, total)
    if done == 0:
        _report(ctx, 0, total)
    return done


def hash_file(path: StrPath, algorithm: str = "sha256", *, ctx: WorkContext | None = None) -> str:
    """Return the lowercase hex digest of a file, read in bounded memory.

    The result equals ``sha256sum`` (``sha512sum``, ``b2sum``, ...) of the file.

    Raises
    ------
    ValidationError
        Unknown algorithm, or a bad path (see the module's error rule).
    IntegrityError
        The file changed while it was being read.
    TaskCancelledError
        ``ctx`` was cancelled; checked before every chunk.
    """
    digest = new_hash(algorithm)
    fh, before = open_source(path)
    with fh:
        done = _stream(fh, before.st_size, ctx, digest.update)
        check_unchanged(fh, path, before, done)
    return digest.hexdigest()


def copy_file(src: StrPath, dst: StrPath, *, ctx: WorkContext | None = None) -> int:
    """Copy ``src`` to ``dst`` atomically and verify the copy; return the bytes copied.

    The source is hashed (BLAKE2b) while it is copied into a temporary file next
    to ``dst``; the temporary file is then flushed, read back and hashed, and
    only if the digests agree (and the source did not change meanwhile) is it
    given the source's mode, timestamps and flags (:func:`shutil.copystat`)
    and renamed over ``dst``.

    Raises
    ------
    ValidationError
        A bad path (see the module's error rule).
    IntegrityError
        The source changed during the copy, or the copy read back differently.
    TaskCancelledError
        ``ctx`` was cancelled; checked before every chunk.  Nothing is written.
    """
    src_name = _fspath(src, "source")
    fh, before = open_source(src_name)
    source_digest = hashlib.blake2b()
    with fh, atomic_writer(dst, mode=stat.S_IMODE(before.st_mode)) as out:

        def sink(chunk: bytes) -> None:
            source_digest.update(chunk)
            out.write(chunk)

        done = _stream(fh, before.st_size, ctx, sink)
        check_unchanged(fh, src_name, before, done)
        out.flush()
        copy_digest = hashlib.blake2b()
        offset = 0
        while offset < done:
            block = os.pread(out.fileno(), CHUNK_SIZE, offset)
            if not block:
                break
            copy_digest.update(block)
            offset += len(block)
        if copy_digest.digest() != source_digest.digest():
            raise IntegrityError(f"copy of {src_name!r} read back differently; nothing was written")
        _checkpoint(ctx)
        shutil.copystat(src_name, out.name)
    return done


def read_range(
    path: StrPath, offset: int = 0, length: int | None = None, *, ctx: WorkContext | None = None
) -> bytes:
    """Return up to ``length`` bytes of ``path`` starting at ``offset``.

    ``length=None`` reads to the end of the file.  Reading past the end returns
    what exists (possibly ``b""``), as :meth:`io.RawIOBase.read` does.

    Raises
    ------
    ValidationError
        Negative or non-int ``offset``/``length``, or a bad path.
    TaskCancelledError
        ``ctx`` was cancelled; checked before every chunk.
    """
    offset = _check_int(offset, "offset")
    if length is not None:
        length = _check_int(length, "length")
    fh, st = open_source(path)
    with fh:
        available = max(0, st.st_size - offset)
        want = available if length is None else min(length, available)
        fh.seek(offset)
        parts = bytearray()
        while len(parts) < want:
            _checkpoint(ctx)
            chunk = fh.read(min(CHUNK_SIZE, want - len(parts)))
            if not chunk:
                break
            parts += chunk
            _report(ctx, len(parts), want)
        if want == 0:
            _report(ctx, 0, 0)
    return bytes(parts)


def write_file(path: StrPath, data: object, *, ctx: WorkContext | None = None) -> int:
    """Atomically replace ``path`` with ``data``; return the bytes written.

    Raises
    ------
    ValidationError
        ``data`` is not bytes-like, or a bad path.
    TaskCancelledError
        ``ctx`` was cancelled; checked before every chunk.  Nothing is written.
    """
    view = as_buffer(data)
    return assemble_file(
        path, (view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE)), ctx=ctx
    )


def assemble_file(dst: StrPath, parts: Iterable[object], *, ctx: WorkContext | None = None) -> int:
    """Atomically write the concatenation of ``parts`` to ``dst``; return the bytes written.

    This is the assembler of the parallel paths: ``parts`` may be a generator
    that waits for each worker's result in order; if it raises, nothing is
    written and the exception propagates.

    Raises
    ------
    ValidationError
        A part is not bytes-like, or a bad path.
    TaskCancelledError
        ``ctx`` was cancelled; checked before every part.  Nothing is written.
    """
    written = 0
    with atomic_writer(dst) as out:
        for part in parts:
            _checkpoint(ctx)
            view = as_buffer(part, "part")
            out.write(view)
            written += len(view)
            _report(ctx, written, None)
        _checkpoint(ctx)
    return written
