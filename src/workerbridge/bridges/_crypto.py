"""``bridge.crypto``: AEAD encryption, streaming file encryption, hashes, KDFs, keys.

Data flow (each operation is one plan, see :mod:`._base`)::

    encrypt(data, key, nonce=n)  validate ── n given? NonceRegistry.check_and_add(
                                 fingerprint(key, n)) in this process, before anything
                                 runs (NonceReuseError) ── small: this thread ── else one task
    small, plain calls           (no on_progress, no cancel token) skip the plan entirely:
                                 BaseBridge._fits ──> the engine, in this thread; a bytes
                                 key may stay pinned in the cipher cache (see ._aead)
    decrypt / hash               validate ── small: this thread ── else one task
    derive_key                   one task (slow by design: never in the caller's thread)
    generate_key                 this thread (32 random bytes)
    encrypt_file / decrypt_file  sync, no deadline, no token, no on_progress, src ≤
                                 INLINE_MAX: file_here() ──> the engine, in this thread
                                 ── otherwise: stat src ── ≥ SPLIT_PER_WORKER * workers ──>
                                 make_header() here (encrypt) / read the header (decrypt),
                                 one temp file next to dst, one task per run of chunks
                                 writing at its fixed offset ──> file/assemble ──> dst
                                 ── otherwise ──> one streaming task

The stream format, the nonce rules and every error are the engine's
(:mod:`._aead`).  The nonce registry belongs to the :class:`WorkerBridge`, so
the sync and async crypto bridges of one bridge share it; it holds keyed
one-way fingerprints, never keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .._errors import ValidationError
from .._shared import CancellationToken
from .._task import Task
from . import _aead
from . import _crypto_handlers as handlers
from ._aead import (
    DEFAULT_STREAM_CHUNK_SIZE,
    HASHERS,
    KDFS,
    STREAM_HEADER_SIZE,
    TAG_SIZE,
    NonceRegistry,
    _check_algorithm,
    _check_key,
    _check_nonce,
    ciphertext_chunk_count,
    decrypt_one,
    encrypt_one,
    encrypted_size,
    make_header,
    read_stream_header,
)
from ._base import (
    AsyncBaseBridge,
    BaseBridge,
    Bytes,
    Job,
    Operation,
    Plan,
    ProgressCallback,
    _dispatcher_closed,
    attached,
    byte_length,
    copy_docs,
    documented,
    drive,
    drive_async,
    gather,
    run_one,
    split_ranges,
)
from ._files import StrPath, _check_int, as_buffer, caller_path, new_hash
from ._parts import OutputFiles, assemble, check_unchanged, flushed, source_state

if TYPE_CHECKING:
    from .._bridge import WorkerBridge

__all__ = ["AsyncCryptoBridge", "CryptoBridge"]

#: ``HASHERS.get``, bound once: Python 3.11 compiles ``name.method(...)`` on a
#: name bound by an import without its method-call shortcut, which costs 5%
#: of a 1 KiB hash.
_hasher: Final = HASHERS.get


# --------------------------------------------------------------------------- plans


def _reserve(nonces: NonceRegistry, key: object, nonce: object, algorithm: str) -> bytes | None:
    """Record an explicit nonce (validating algorithm, key and nonce); ``None`` for a random one.

    Raises
    ------
    NonceReuseError
        ``nonce`` was already used with ``key``.
    """
    if nonce is None:
        return None
    fingerprint = nonces.fingerprint(key, nonce, algorithm)
    nonces.check_and_add(fingerprint)
    return fingerprint


def encrypt_here(
    bridge: BaseBridge,
    nonces: NonceRegistry,
    data: object,
    key: object,
    nonce: object,
    aad: object,
    algorithm: str,
) -> bytes:
    """:func:`encrypt_plan` for a call that may skip it (:meth:`~._base.BaseBridge._quick`)."""
    fingerprint = None if nonce is None else _reserve(nonces, key, nonce, algorithm)
    try:
        return encrypt_one(data, key, nonce, aad, algorithm, True)
    except BaseException as exc:
        if fingerprint is not None:  # no ciphertext came back: the nonce is unused
            nonces.discard(fingerprint)
        if isinstance(exc, Exception):
            raise bridge._failure(exc) from None
        raise


def encrypt_plan(
    op: Operation,
    nonces: NonceRegistry,
    data: object,
    key: object,
    nonce: object,
    aad: object,
    algorithm: str,
) -> Plan[bytes]:
    size = byte_length(data)
    fingerprint = _reserve(nonces, key, nonce, algorithm)
    payload = {"data": data, "key": key, "nonce": nonce, "aad": aad, "algorithm": algorithm}
    try:
        if op.can_inline(size):
            return op.inline(handlers.encrypt, payload, size)
        algorithm = _check_algorithm(algorithm)
        payload["data"] = as_buffer(data)
        payload["key"] = _check_key(key, algorithm)
        payload["nonce"] = None if nonce is None else _check_nonce(nonce)
        payload["aad"] = as_buffer(aad, "aad")
        task: Task[bytes] = op.submit("encrypt", payload, size)
    except BaseException:
        # Nothing left this process, or no ciphertext came back: the nonce is unused.
        if fingerprint is not None:
            nonces.discard(fingerprint)
        raise
    yield (task,)
    return op.result(task)


def decrypt_plan(
    op: Operation, blob: object, key: object, aad: object, algorithm: str
) -> Plan[bytes]:
    size = byte_length(blob, "blob")
    payload = {"blob": blob, "key": key, "aad": aad, "algorithm": algorithm}
    if op.can_inline(size):
        return op.inline(handlers.decrypt, payload, size)
    payload["blob"] = as_buffer(blob, "blob")
    payload["key"] = _check_key(key, _check_algorithm(algorithm))
    payload["aad"] = as_buffer(aad, "aad")
    out: bytes = yield from run_one(op, "decrypt", payload, size)
    return out


def file_here(
    bridge: BaseBridge,
    engine: Callable[..., int],
    limit: int,
    src: StrPath,
    dst: StrPath,
    key: object,
    algorithm: str,
) -> bool:
    """Run ``engine`` (:func:`._aead.encrypt_file` or ``decrypt_file``) on a small file right here.

    For a call that may skip its plan (:meth:`~._base.BaseBridge._file_max`):
    the arguments are checked as the plan checks them, then a regular file of
    at most ``limit`` bytes is processed in this thread, through the same
    engine and atomic writer as in a worker, its errors mapped as a worker's
    are.  ``False`` (nothing done) for any other source: the plan decides.
    """
    algorithm = _check_algorithm(algorithm)
    raw_key = _check_key(key, algorithm)
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    before = source_state(source)
    if before is None or before[0] > limit:
        return False
    try:
        engine(source, target, raw_key, algorithm=algorithm)
    except Exception as exc:
        raise bridge._failure(exc) from None
    return True


def encrypt_file_plan(
    op: Operation, src: StrPath, dst: StrPath, key: object, algorithm: str
) -> Plan[None]:
    algorithm = _check_algorithm(algorithm)
    raw_key = _check_key(key, algorithm)
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    before = source_state(source)
    chunk = DEFAULT_STREAM_CHUNK_SIZE
    ranges = None
    if before is not None:
        ranges = split_ranges(before[0], op.workers, op.tuning, align=chunk)
    if before is None or ranges is None:
        whole = {"src": source, "dst": target, "key": raw_key, "algorithm": algorithm}
        size = None if before is None else before[0]
        yield from run_one(op, "encrypt_file", whole, size, output=target)
        return None
    size = before[0]
    header = make_header(algorithm, chunk)
    out = OutputFiles(target)
    op.expect(size)
    try:
        tmp = out.new()
        jobs: list[Job] = []
        for start, n in ranges:
            first = start // chunk
            payload = {
                "src": source,
                "key": raw_key,
                "header": header,
                "first": first,
                "count": math.ceil(n / chunk),
                "last": start + n == size,
                "out": tmp,
                "offset": STREAM_HEADER_SIZE + first * (chunk + TAG_SIZE),
            }
            jobs.append(("encrypt_range", payload, n))
        yield from flushed(op, tmp, gather(op, jobs))
        check_unchanged(source, before)
        yield from assemble(op, out, tmp, encrypted_size(size, chunk))
    finally:
        out.discard()
    return None


def decrypt_file_plan(
    op: Operation, src: StrPath, dst: StrPath, key: object, algorithm: str
) -> Plan[None]:
    algorithm = _check_algorithm(algorithm)
    raw_key = _check_key(key, algorithm)
    source = caller_path(src, "source")
    target = caller_path(dst, "destination")
    before = source_state(source)
    ranges = None
    if before is not None and split_ranges(before[0], op.workers, op.tuning) is not None:
        header = read_stream_header(source, algorithm)
        sealed = header.chunk_size + TAG_SIZE
        body = before[0] - STREAM_HEADER_SIZE
        count = ciphertext_chunk_count(body, header.chunk_size)
        ranges = split_ranges(body, op.workers, op.tuning, align=sealed)
    if before is None or ranges is None:
        whole = {"src": source, "dst": target, "key": raw_key, "algorithm": algorithm}
        size = None if before is None else before[0]
        yield from run_one(op, "decrypt_file", whole, size, output=target)
        return None
    out = OutputFiles(target)
    op.expect(before[0])
    try:
        tmp = out.new()
        jobs: list[Job] = []
        for start, n in ranges:
            first = start // sealed
            payload = {
                "src": source,
                "key": raw_key,
                "algorithm": algorithm,
                "first": first,
                "count": math.ceil(n / sealed),
                "last": start + n == body,
                "out": tmp,
                "offset": first * header.chunk_size,
            }
            jobs.append(("decrypt_range", payload, n + (STREAM_HEADER_SIZE if start == 0 else 0)))
        yield from flushed(op, tmp, gather(op, jobs))
        check_unchanged(source, before)
        yield from assemble(op, out, tmp, body - TAG_SIZE * count)
    finally:
        out.discard()
    return None


def hash_plan(op: Operation, data: object, algorithm: str) -> Plan[str]:
    size = byte_length(data)
    payload = {"data": data, "algorithm": algorithm}
    if op.can_inline(size):
        return op.inline(handlers.hash_, payload, size)
    new_hash(algorithm)
    payload["data"] = as_buffer(data)
    out: str = yield from run_one(op, "hash", payload, size)
    return out


def derive_key_plan(
    op: Operation, password: object, salt: object, kdf: str, length: int
) -> Plan[bytes]:
    if not isinstance(kdf, str) or kdf not in KDFS:
        raise ValidationError(f"unknown kdf {kdf!r}; expected one of {', '.join(KDFS)}")
    if not isinstance(password, str):
        password = as_buffer(password, "password")
    payload = {
        "password": password,
        "salt": as_buffer(salt, "salt"),
        "kdf": kdf,
        "length": _check_int(length, "length"),
    }
    out: bytes = yield from run_one(op, "derive_key", payload, 1)
    return out


def generate_key_plan(op: Operation, algorithm: str) -> Plan[bytes]:
    key = op.inline(handlers.generate_key, {"algorithm": algorithm}, 32)
    yield from ()  # a plan, though it never waits for a task
    return key


# --------------------------------------------------------------------------- classes


class CryptoBridge(BaseBridge):
    """Authenticated encryption, hashing and key derivation in worker processes: ``bridge.crypto``.

    AEAD algorithms: ``"aes-gcm"`` (16, 24 or 32-byte keys) and
    ``"chacha20-poly1305"`` (32-byte keys), from ``cryptography``.  Files
    use a streaming format (STREAM construction: a versioned header, then
    1 MiB chunks sealed under nonces built from a random prefix, the chunk
    counter and a last-chunk flag), so truncation, reordering, splicing and
    header edits are detected.  Large files are sealed and opened in parallel.

    An explicit nonce that this :class:`~workerbridge.WorkerBridge` already
    used with the same key, in any call, thread or worker, is refused with
    :exc:`~workerbridge.NonceReuseError`; the check keeps keyed one-way
    fingerprints, never keys.  Keys and plaintext never appear in errors.
    Encryptions and decryptions of up to 64 KiB reuse the AEAD object
    (``cryptography``'s, holding the key set-up) of the process's 32 most
    recently used keys, looked up by a keyed digest of the key; larger calls
    build their own.  The one key object the bridge may hold is the caller's
    own ``bytes`` key of its latest call in the caller's thread, by reference,
    never a copy (see the crypto guide).  Get the instance from
    :attr:`workerbridge.WorkerBridge.crypto`.
    """

    __slots__ = ("_nonces",)
    _channel = "crypto"

    def __init__(self, bridge: WorkerBridge) -> None:
        super().__init__(bridge)
        self._nonces = attached(bridge, "_wb_nonces", NonceRegistry)

    @documented
    def encrypt(
        self,
        data: Bytes,
        key: Bytes,
        *,
        nonce: Bytes | None = None,
        aad: Bytes = b"",
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Encrypt and authenticate ``data``; return ``nonce(12) + ciphertext + tag(16)``.

        Parameters
        ----------
        data
            The plaintext, bytes-like (at most 2 GiB: one AEAD call).
        key
            16, 24 or 32 bytes for ``"aes-gcm"``, 32 for ``"chacha20-poly1305"``.
        nonce
            12 bytes, or ``None`` (recommended) to draw a random one.  An
            explicit nonce is recorded before the encryption runs and refused
            the second time with the same key, even if the first call then
            timed out or was cancelled (it may have run).
        aad
            Associated data: authenticated, not encrypted; needed again to decrypt.
        algorithm
            ``"aes-gcm"`` or ``"chacha20-poly1305"``.
        {options}

        Returns
        -------
        bytes
            ``nonce + ciphertext + tag``, as :meth:`decrypt` takes it.

        Raises
        ------
        workerbridge.NonceReuseError
            ``nonce`` was already used with ``key`` on this bridge.
        workerbridge.ValidationError
            Bad algorithm, key length or nonce length, or arguments not bytes-like.
        {errors}
        """
        if (
            type(data) is bytes
            and len(data) <= self._plain_max
            and timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and not _dispatcher_closed(self._dispatcher)
        ) or self._fits(data, timeout, on_progress, cancel, priority):
            if nonce is None:  # the common case, without a layer: nothing to record
                try:
                    return encrypt_one(data, key, None, aad, algorithm, True)
                except Exception as exc:
                    raise self._failure(exc) from None
            return encrypt_here(self, self._nonces, data, key, nonce, aad, algorithm)
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, encrypt_plan(op, self._nonces, data, key, nonce, aad, algorithm))

    @documented
    def decrypt(
        self,
        blob: Bytes,
        key: Bytes,
        *,
        aad: Bytes = b"",
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Verify and decrypt ``nonce + ciphertext + tag`` made by :meth:`encrypt`.

        Parameters
        ----------
        blob
            The output of :meth:`encrypt`.
        key
            The key it was encrypted with.
        aad
            The associated data it was encrypted with.
        algorithm
            ``"aes-gcm"`` or ``"chacha20-poly1305"``.
        {options}

        Returns
        -------
        bytes
            The plaintext.

        Raises
        ------
        workerbridge.IntegrityError
            Authentication failed: wrong key or ``aad``, tampered or truncated data.
        workerbridge.ValidationError
            Bad algorithm or key length, or arguments not bytes-like.
        {errors}
        """
        if (
            type(blob) is bytes
            and len(blob) <= self._plain_max
            and timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and not _dispatcher_closed(self._dispatcher)
        ) or self._fits(blob, timeout, on_progress, cancel, priority, "blob"):
            try:
                return decrypt_one(blob, key, aad, algorithm, True)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, decrypt_plan(op, blob, key, aad, algorithm))

    @documented
    def encrypt_file(
        self,
        src: StrPath,
        dst: StrPath,
        key: Bytes,
        *,
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Encrypt the file ``src`` into ``dst`` in the streaming format, in bounded memory.

        Every file gets a fresh random salt and nonce prefix, so one key may
        encrypt any number of files.  Files of 8 MiB per worker and more are
        sealed in parallel, each task writing its run of chunks at its place
        in one temporary file.  ``dst`` is replaced atomically: on failure, timeout
        or cancellation it is untouched and no temporary file is left.  Files of
        up to 16 KiB are sealed in the calling thread when the call has no
        ``timeout`` (nor a bridge ``default_timeout``), ``cancel`` or
        ``on_progress``: the same engine and atomic write, without the round
        trip to a worker.

        Parameters
        ----------
        src, dst
            Paths (``str`` or ``os.PathLike``).
        key
            16, 24 or 32 bytes for ``"aes-gcm"``, 32 for ``"chacha20-poly1305"``.
        algorithm
            ``"aes-gcm"`` or ``"chacha20-poly1305"``.
        {options}

        Raises
        ------
        workerbridge.ValidationError
            Bad algorithm or key, or an unusable path.
        workerbridge.IntegrityError
            ``src`` changed while it was read.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        limit = self._file_max(timeout, on_progress, cancel, priority)
        if limit >= 0 and file_here(self, _aead.encrypt_file, limit, src, dst, key, algorithm):
            return None
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, encrypt_file_plan(op, src, dst, key, algorithm))

    @documented
    def decrypt_file(
        self,
        src: StrPath,
        dst: StrPath,
        key: Bytes,
        *,
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        """Verify and decrypt a file made by :meth:`encrypt_file` into ``dst``.

        The plaintext is written to a temporary file that becomes ``dst`` only
        after every chunk, the final one included, authenticated; on any
        failure, timeout or cancellation ``dst`` is neither created nor
        changed and nothing else is left.  Files of 8 MiB per worker and more
        are opened in parallel; files of up to 16 KiB in the calling thread, as
        :meth:`encrypt_file` says.  Progress counts encrypted bytes read.

        Parameters
        ----------
        src, dst
            Paths (``str`` or ``os.PathLike``).
        key
            The key the file was encrypted with.
        algorithm
            The algorithm it was encrypted with.
        {options}

        Raises
        ------
        workerbridge.IntegrityError
            Wrong key, or a truncated, extended, reordered, spliced or
            tampered file (header included), or ``src`` changed while read.
        workerbridge.ValidationError
            Bad algorithm or key, or an unusable path.
        workerbridge.RemoteError
            Any other operating-system error (disk full, I/O error).
        {errors}
        """
        limit = self._file_max(timeout, on_progress, cancel, priority)
        if limit >= 0 and file_here(self, _aead.decrypt_file, limit, src, dst, key, algorithm):
            return None
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, decrypt_file_plan(op, src, dst, key, algorithm))

    @documented
    def hash(
        self,
        data: Bytes,
        algorithm: str = "sha256",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> str:
        """Return the lowercase hex digest of ``data``.

        Parameters
        ----------
        data
            A bytes-like object.
        algorithm
            ``"sha256"``, ``"sha384"``, ``"sha512"``, ``"sha3_256"``,
            ``"sha3_384"``, ``"sha3_512"``, ``"blake2b"`` or ``"blake2s"``.
        {options}

        Returns
        -------
        str
            The digest in lowercase hex, as ``sha256sum`` prints it.

        Raises
        ------
        workerbridge.ValidationError
            Unknown algorithm, or ``data`` not bytes-like.
        {errors}
        """
        if (
            type(data) is bytes
            and len(data) <= self._plain_max
            and timeout is None
            and on_progress is None
            and cancel is None
            and type(priority) is int
            and not _dispatcher_closed(self._dispatcher)
        ):
            new = _hasher(algorithm) if type(algorithm) is str else None
            if new is not None:  # (hash_bytes, inline: a call is 5% of a 1 KiB hash)
                return new(data).hexdigest()
        if self._fits(data, timeout, on_progress, cancel, priority):
            try:
                return _aead.hash_bytes(data, algorithm)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, hash_plan(op, data, algorithm))

    @documented
    def derive_key(
        self,
        password: str | Bytes,
        salt: Bytes,
        *,
        kdf: str = "scrypt",
        length: int = 32,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Derive ``length`` key bytes from a password, always in a worker (it is slow by design).

        Parameters
        ----------
        password
            ``str`` (encoded as UTF-8) or bytes-like; for ``"hkdf-sha256"``,
            high-entropy key material, never a password.
        salt
            Bytes-like, at least 8 bytes (16 or more recommended) for the
            password KDFs; any length for ``"hkdf-sha256"``.
        kdf
            ``"scrypt"`` (N=2**15, r=8, p=1), ``"pbkdf2-hmac-sha256"``
            (600,000 iterations), ``"argon2id"`` (t=3, p=4, m=64 MiB, where the
            installed ``cryptography`` offers it) or ``"hkdf-sha256"``.
        length
            Key bytes wanted, 16..1024 (HKDF: up to 8160).
        {options}

        Returns
        -------
        bytes
            The derived key.

        Raises
        ------
        workerbridge.ValidationError
            Unknown KDF, short salt, bad length, or arguments of the wrong type.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, derive_key_plan(op, password, salt, kdf, length))

    @documented
    def generate_key(
        self,
        algorithm: str = "aes-gcm",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        """Return a fresh random 32-byte key for ``algorithm`` (AES-256 for ``"aes-gcm"``).

        Drawing 32 bytes from the operating system is cheaper than a round trip
        to a worker, so this runs in the calling thread.

        Parameters
        ----------
        algorithm
            ``"aes-gcm"`` or ``"chacha20-poly1305"``.
        {options}

        Returns
        -------
        bytes
            32 random bytes from ``os.urandom``.

        Raises
        ------
        workerbridge.ValidationError
            Unknown algorithm.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        return drive(op, generate_key_plan(op, algorithm))


class AsyncCryptoBridge(AsyncBaseBridge):
    """The asyncio flavour of :class:`CryptoBridge`: the same methods, as coroutines.

    It shares its :class:`~workerbridge.WorkerBridge`'s nonce registry with
    the sync :class:`CryptoBridge`.  Get the instance from
    :attr:`workerbridge.AsyncWorkerBridge.crypto`.
    """

    __slots__ = ("_nonces",)
    _channel = "crypto"

    def __init__(self, bridge: WorkerBridge) -> None:
        super().__init__(bridge)
        self._nonces = attached(bridge, "_wb_nonces", NonceRegistry)

    async def encrypt(
        self,
        data: Bytes,
        key: Bytes,
        *,
        nonce: Bytes | None = None,
        aad: Bytes = b"",
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        if self._fits(data, timeout, on_progress, cancel, priority):
            if nonce is None:  # the common case, without a layer: nothing to record
                try:
                    return encrypt_one(data, key, None, aad, algorithm, True)
                except Exception as exc:
                    raise self._failure(exc) from None
            return encrypt_here(self, self._nonces, data, key, nonce, aad, algorithm)
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(
            op, encrypt_plan(op, self._nonces, data, key, nonce, aad, algorithm)
        )

    async def decrypt(
        self,
        blob: Bytes,
        key: Bytes,
        *,
        aad: Bytes = b"",
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        if self._fits(blob, timeout, on_progress, cancel, priority, "blob"):
            try:
                return decrypt_one(blob, key, aad, algorithm, True)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, decrypt_plan(op, blob, key, aad, algorithm))

    async def encrypt_file(
        self,
        src: StrPath,
        dst: StrPath,
        key: Bytes,
        *,
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, encrypt_file_plan(op, src, dst, key, algorithm))

    async def decrypt_file(
        self,
        src: StrPath,
        dst: StrPath,
        key: Bytes,
        *,
        algorithm: str = "aes-gcm",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> None:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, decrypt_file_plan(op, src, dst, key, algorithm))

    async def hash(
        self,
        data: Bytes,
        algorithm: str = "sha256",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> str:
        if self._fits(data, timeout, on_progress, cancel, priority):
            try:
                return _aead.hash_bytes(data, algorithm)
            except Exception as exc:
                raise self._failure(exc) from None
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, hash_plan(op, data, algorithm))

    async def derive_key(
        self,
        password: str | Bytes,
        salt: Bytes,
        *,
        kdf: str = "scrypt",
        length: int = 32,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, derive_key_plan(op, password, salt, kdf, length))

    async def generate_key(
        self,
        algorithm: str = "aes-gcm",
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> bytes:
        op = self._op(timeout, on_progress, cancel, priority)
        return await drive_async(op, generate_key_plan(op, algorithm))


copy_docs(AsyncCryptoBridge, CryptoBridge)
for _cls in (CryptoBridge, AsyncCryptoBridge):
    _cls.__module__ = "workerbridge.bridges"
del _cls
