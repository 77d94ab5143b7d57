"""``bridge.file``: streamed hashing, verified atomic copies, ranged reads, atomic writes.

Data flow (each operation is one plan, see :mod:`._base`)::

    hash(path)   stat ── a regular file ≤ INLINE_MAX bytes ──> handler in this thread
                      (no on_progress, no token: the engine directly, see BaseBridge._quick)
                      ── otherwise ──> one streaming task
    read(path)   stat ── ≤ INLINE_MAX bytes wanted ──> this thread ── else one task
    copy / write one task (they fsync: never in the caller's thread)

The engine (:mod:`._files`) defines the atomic-write protocol and the error
rule for paths; the handlers (:mod:`._file_handlers`) run it.
"""

from __future__ import annotations

from .._shared import CancellationToken
from . import _file_handlers as handlers
from . import _files
from ._base import (
    AsyncBaseBridge,
    BaseBridge,
    Bytes,
    Operation,
    Plan,
    ProgressCallback,
    copy_docs,
    documented,
    drive,
    drive_async,
    run_one,
)
from ._files import StrPath, _check_int, as_buffer, caller_path, new_hash
from ._parts import source_size

__all__ = ["AsyncFileBridge", "FileBridge"]


# --------------------------------------------------------------------------- plans


def hash_plan(op: Operation, path: StrPath, algorithm: str) -> Plan[str]:
    name = caller_path(path, "source")
    size = source_size(name)
    payload = {"path": name, "algorithm": algorithm}
    if size is not None and op.can_inline(size):
        return op.inline(handlers.hash_, payload, size)
    new_hash(algorithm)
    out: str = yield from run_one(op, "hash", payload, size)
    return out


def hash_here(bridge: BaseBridge, limit: int, path: StrPath, algorithm: str) -> str | None:
    """:func:`hash_plan` for a call that may skip it: a file of at most ``limit`` bytes.

    ``None`` when the file is larger (or not a regular file): the plan decides.
    """
    name = caller_path(path, "source")
    size = source_size(name)
    if size is None or size > limit:
        return None
    try:
        return _files.hash_file(name, algorithm)
    except Exception as exc:
        raise bridge._failure(exc) from None


def copy_plan(op: Operation, src: StrPath, dst: StrPath) -> Plan[None]:
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    payload = {"src": source, "dst": target}
    yield from run_one(op, "copy", payload, source_size(source), output=target)
    return None


def read_plan(op: Operation, path: StrPath, offset: int, length: int | None) -> Plan[bytes]:
    offset = _check_int(offset, "offset")
    if length is not None:
        length = _check_int(length, "length")
    name = caller_path(path, "source")
    size = source_size(name)
    want = None
    if size is not None:
        want = max(0, size - offset) if length is None else min(length, max(0, size - offset))
    payload = {"path": name, "offset": offset, "length": length}
    if want is not None and op.can_inline(want):
        return op.inline(handlers.read, payload, want)
    out: bytes = yield from run_one(op, "read", payload, want)
    return out


def write_plan(op: Operation, path: StrPath, data: object) -> Plan[None]:
    view = as_buffer(data)
    target = caller_path(path, "destination")
    payload = {"path": target, "data": view}
    yield from run_one(op, "write", payload, len(view), output=target)
    return None


# --------------------------------------------------------------------------- classes


class FileBridge(BaseBridge):
    """File operations in worker processes: ``bridge.file``.

    Reads are streamed in bounded memory; writes are atomic (a temporary file
    next to the destination, flushed, fsynced and renamed over it), so a
    destination is always either the old file or the whole new one.  Small
    reads and hashes run in the calling thread.  Get the instance from
    :attr:`workerbridge.WorkerBridge.file`.

    Paths are ``str`` or ``os.PathLike``.  A path that cannot serve for
    its role (missing, a directory, permission denied, a missing destination
    directory) raises :exc:`~workerbridge.ValidationError` naming it; other
    operating-system errors (disk full, I/O errors) arrive as
    :exc:`~workerbridge.RemoteError`; a source that changes while it is read
    raises :exc:`~workerbridge.IntegrityError`.
    """

    __slots__ = ()
    _channel = "file"

    @documented
    def hash(
        self,
        path: StrPath,
        algorithm: str = "sha256",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> str:
        """Return the lowercase hex digest of the file at ``path``, read in bounded memory.

        Parameters
        ----------
        path
            A regular file.
        algorithm
            ``"sha256"``, ``"sha384"``, ``"sha512"``, ``"sha3_256"``,
            ``"sha3_384"``, ``"sha3_512"``, ``"blake2b"`` or ``"blake2s"``.
        {options}

        Returns
        -------
        str
            The digest, equal to what ``sha256sum`` (``sha512sum``, ``b2sum``,
            ...) prints.

        Raises
        ------
        workerbridge.ValidationError
            Unknown algorithm, or an unusable path.
        workerbridge.IntegrityError
            The file changed while it was read.
        {errors}
        """
        limit = self._quick(timeout, on_progress, cancel, priority)
        digest = None if limit < 0 else hash_here(self, limit, path, algorithm)
        if digest is not None:
            return digest
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, hash_plan(op, path, algorithm))

    @documented
    def copy(
        self,
        src: StrPath,
        dst: StrPath,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Copy ``src`` to ``dst`` atomically, verify the copy, keep mode and timestamps.

        The copy is read back and compared (BLAKE2b) before it is renamed over
        ``dst``; on any failure, timeout or cancellation ``dst`` is untouched
        and no temporary file is left.

        Parameters
        ----------
        src, dst
            Paths; ``dst``'s directory must exist.
        {options}

        Raises
        ------
        workerbridge.ValidationError
            An unusable path.
        workerbridge.IntegrityError
            ``src`` changed during the copy, or the copy read back differently.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, copy_plan(op, src, dst))

    @documented
    def read(
        self,
        path: StrPath,
        offset: int = 0,
        length: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Return up to ``length`` bytes of the file at ``path``, from ``offset``.

        Reading past the end returns what exists (possibly ``b""``), as
        ``io.RawIOBase.read`` does.

        Parameters
        ----------
        path
            A regular file.
        offset
            First byte to read (``>= 0``).
        length
            Most bytes to read (``>= 0``); ``None`` reads to the end.
        {options}

        Returns
        -------
        bytes
            The bytes read.

        Raises
        ------
        workerbridge.ValidationError
            Negative or non-int ``offset``/``length``, or an unusable path.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, read_plan(op, path, offset, length))

    @documented
    def write(
        self,
        path: StrPath,
        data: Bytes,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Replace the file at ``path`` with ``data``, atomically.

        Until the call succeeds ``path`` is the old file (or absent); on
        failure, timeout or cancellation no temporary file is left.

        Parameters
        ----------
        path
            The destination; its directory must exist.
        data
            A bytes-like object.
        {options}

        Raises
        ------
        workerbridge.ValidationError
            ``data`` not bytes-like, or an unusable path.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, write_plan(op, path, data))


class AsyncFileBridge(AsyncBaseBridge):
    """The asyncio flavour of :class:`FileBridge`: the same methods, as coroutines.

    Get the instance from :attr:`workerbridge.AsyncWorkerBridge.file`.
    """

    __slots__ = ()
    _channel = "file"

    async def hash(
        self,
        path: StrPath,
        algorithm: str = "sha256",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> str:
        limit = self._quick(timeout, on_progress, cancel, priority)
        digest = None if limit < 0 else hash_here(self, limit, path, algorithm)
        if digest is not None:
            return digest
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, hash_plan(op, path, algorithm))

    async def copy(
        self,
        src: StrPath,
        dst: StrPath,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, copy_plan(op, src, dst))

    async def read(
        self,
        path: StrPath,
        offset: int = 0,
        length: int | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, read_plan(op, path, offset, length))

    async def write(
        self,
        path: StrPath,
        data: Bytes,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, write_plan(op, path, data))


copy_docs(AsyncFileBridge, FileBridge)
for _cls in (FileBridge, AsyncFileBridge):
    _cls.__module__ = "workerbridge.bridges"
del _cls
