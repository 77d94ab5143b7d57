"""Crypto engine: one-shot AEAD, streaming file encryption, hashes, KDFs, keys.

Pure functions behind ``bridge.crypto`` on top of :mod:`cryptography`; they run
in worker processes or threads and never import the pool.  Data flow::

    encrypt(data, key, nonce|None, aad) ──> nonce(12) ‖ ciphertext ‖ tag(16)
    decrypt(blob, key, aad) ──────────────> plaintext           (IntegrityError on any doubt)

    parent process only: NonceRegistry.fingerprint(key, nonce, alg) ──> check_and_add()
                         (a keyed one-way digest; the table never holds a key)

    small one-shot calls: _CIPHERS.get(key, alg) ── keyed digest of the key ──> the
                         AEAD object built for it before (or a new one, remembered);
                         the bridge's own calls first try _CIPHERS.pinned: the same
                         bytes object as the latest key (``is``) ──> its AEAD object

    encrypt_file: src ──chunk_size pieces──> seal(subkey, nonce_i) ──> atomic_writer(dst)
    decrypt_file: src ──header, chunks─────> open(subkey, nonce_i) ──> temp file
                                             └─ renamed over dst only after the final
                                                chunk authenticated; otherwise removed

    parallel: make_header() once ── encrypt_file_range_to()/decrypt_file_range_to() per
              range in workers, each chunk written at its place in one temporary
              file (._parts.PlacedWriter) ── committed by one worker (._parts.commit)

The streaming file format ("WBSE" version 1)
--------------------------------------------
An online AEAD built with the STREAM construction (Hoang, Reyhanitabar, Rogaway
and Vizár, 2015), as Tink's streaming AEAD and age use it.  All integers are
big-endian.

Header, 46 bytes::

    offset  size  field
         0     4  magic            b"WBSE"
         4     1  version          0x01
         5     1  algorithm id     0x01 aes-gcm, 0x02 chacha20-poly1305
         6     1  log2(chunk size) 16..24, i.e. 64 KiB..16 MiB (default 20: 1 MiB)
         7    32  salt             random, fresh for every file
        39     7  nonce prefix     random, fresh for every file

Per-file subkey::

    subkey = HKDF-SHA256(IKM = key, salt = salt, info = the 46 header bytes, L = len(key))

(16, 24 or 32 bytes for aes-gcm, following the caller's key; 32 for
chacha20-poly1305.)

Body: the plaintext is cut into ``n = max(1, ceil(len / chunk_size))`` chunks
``P_0 .. P_{n-1}``; every chunk but the last holds exactly ``chunk_size`` bytes,
the last holds 1..chunk_size bytes, and an empty plaintext is exactly one empty
final chunk.  Chunk ``i`` is sealed as::

    nonce_i = nonce_prefix (7) ‖ uint32(i) (4) ‖ last_flag (1: 0x01 if i == n-1 else 0x00)
    C_i     = AEAD(subkey).encrypt(nonce_i, P_i, associated_data = b"")   # |P_i| + 16 bytes

and the file is ``header ‖ C_0 ‖ C_1 ‖ ... ‖ C_{n-1}``.  Its size is therefore
``46 + len + 16 * n``; a reader finds the chunk count from the file size alone
(every ciphertext chunk but the last is ``chunk_size + 16`` bytes; the last is
17..chunk_size+16 bytes, or 16 when it is the only one).  At most ``2**32``
chunks per file.

Why each attack fails (every failure raises :exc:`~workerbridge.IntegrityError`,
and file decryption then leaves no ``dst`` and no temporary file):

* header edits: the subkey is derived with the whole header as HKDF ``info``,
  so any changed bit yields an unrelated subkey and chunk 0 fails.  This is why
  the per-chunk associated data is empty: the header is already bound into the
  key, and repeating it as AAD in every chunk would add work, not security.
  Unknown magic, version or algorithm ids, or an algorithm other than the one
  requested, are rejected before any decryption;
* reordering, duplicating or dropping chunks: the counter in each nonce pins a
  chunk to its position;
* truncation (at a chunk boundary or inside a chunk): the new last chunk was
  sealed with last_flag 0x00 but is opened with 0x01, or is shorter than a tag;
* extension: the real final chunk (flag 0x01) is no longer last, so it is
  opened with 0x00 and fails; data after a final chunk is refused;
* chunks spliced from another file under the same key: that file's random salt
  gives it a different subkey (and nonce prefix);
* wrong key: chunk 0 fails.

Other errors: bad algorithm names, key lengths, nonce lengths, chunk sizes or
KDF parameters raise :exc:`~workerbridge.ValidationError`; messages never
contain key bytes or plaintext.  Paths follow the rule of :mod:`._files`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, Final, NamedTuple

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .._errors import IntegrityError, NonceReuseError, ValidationError
from .._types import WorkContext
from ._files import (
    HASH_ALGORITHMS,
    HashObject,
    PlacedWriter,
    StrPath,
    _check_int,
    _checkpoint,
    _report,
    as_buffer,
    assemble_file,
    atomic_writer,
    check_unchanged,
    new_hash,
    open_source,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_STREAM_CHUNK_SIZE",
    "HASHERS",
    "HASH_ALGORITHMS",
    "KDFS",
    "NONCE_SIZE",
    "STREAM_HEADER_SIZE",
    "TAG_SIZE",
    "NonceRegistry",
    "StreamHeader",
    "assemble_file",
    "ciphertext_chunk_count",
    "decrypt",
    "decrypt_file",
    "decrypt_file_range",
    "decrypt_file_range_to",
    "decrypt_one",
    "derive_key",
    "encrypt",
    "encrypt_file",
    "encrypt_file_range",
    "encrypt_file_range_to",
    "encrypt_one",
    "encrypted_size",
    "generate_key",
    "hash_bytes",
    "make_header",
    "nonce_fingerprint",
    "open_chunks",
    "parse_header",
    "plaintext_chunk_count",
    "read_stream_header",
    "seal_chunks",
]

ALGORITHMS: Final = ("aes-gcm", "chacha20-poly1305")
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
_MIN_SEALED: Final = NONCE_SIZE + TAG_SIZE
_KEY_SIZES: Final = {"aes-gcm": (16, 24, 32), "chacha20-poly1305": (32,)}
_AEAD = AESGCM | ChaCha20Poly1305

# ---- stream format constants (see the module docstring)
STREAM_MAGIC: Final = b"WBSE"
STREAM_VERSION: Final = 1
STREAM_HEADER_SIZE: Final = 46
_ALGORITHM_IDS: Final = {"aes-gcm": 1, "chacha20-poly1305": 2}
_SALT_SIZE: Final = 32
_PREFIX_SIZE: Final = 7
_MAX_CHUNKS: Final = 1 << 32
# Bigger chunks mean fewer tags and loop turns but more memory per worker and
# coarser parallel splits and cancel checks; 1 MiB matches the other engines.
DEFAULT_STREAM_CHUNK_SIZE: Final = 1 << 20
_MIN_CHUNK_LOG2: Final = 16
_MAX_CHUNK_LOG2: Final = 24

# ---- key derivation parameters
#: KDF names accepted by :func:`derive_key`.
KDFS: Final = ("scrypt", "pbkdf2-hmac-sha256", "hkdf-sha256", "argon2id")
# scrypt: N=2**15, r=8, p=1 (32 MiB, tens of milliseconds; RFC 7914's interactive setting).
SCRYPT_N: Final = 1 << 15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
# PBKDF2-HMAC-SHA256: OWASP's 2023 recommendation.
PBKDF2_ITERATIONS: Final = 600_000
# Argon2id: RFC 9106 section 4, second recommended option (t=3, p=4, m=64 MiB).
ARGON2_ITERATIONS: Final = 3
ARGON2_LANES: Final = 4
ARGON2_MEMORY_KIB: Final = 1 << 16
_MIN_SALT: Final = 8
_MIN_KEY_LENGTH: Final = 16
_MAX_KEY_LENGTH: Final = 1024
_HKDF_MAX: Final = 255 * 32

_FINGERPRINT_PERSON: Final = b"wb-nonce-fp-v1"
# Length-prefixed fields of the fingerprint message that never change.
_FINGERPRINT_ALGORITHM: Final = {
    name: len(name).to_bytes(2, "big") + name.encode("ascii") for name in ALGORITHMS
}
_FINGERPRINT_NONCE_LENGTH: Final = NONCE_SIZE.to_bytes(2, "big")

#: One-shot calls on at most this many bytes take their AEAD object from the
#: cipher cache: building one (an AES or ChaCha20 key set-up in OpenSSL) costs
#: about 1.2 µs, a quarter of a 1 KiB encryption, and finding it again about
#: 0.5 µs.  Larger inputs build a fresh object, which is noise next to their
#: work and keeps their keys out of the cache (and large calls are the ones
#: sent to workers, so workers rarely keep any).
CIPHER_CACHE_MAX_INPUT: Final = 64 * 1024
#: Keys the cipher cache remembers, oldest dropped first.  More entries serve
#: workloads rotating through more keys; fewer keep less key material alive.
CIPHER_CACHE_SIZE: Final = 32


# --------------------------------------------------------------------------- validation
def _check_algorithm(algorithm: object) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValidationError(
            f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
        )
    return algorithm


def _check_key(key: object, algorithm: str) -> bytes:
    view = as_buffer(key, "key")
    allowed = _KEY_SIZES[algorithm]
    if len(view) not in allowed:
        sizes = ", ".join(str(n) for n in allowed)
        raise ValidationError(f"{algorithm} key must be {sizes} bytes long, got {len(view)} bytes")
    return bytes(view)


def _raw_key(key: object, algorithm: object) -> bytes:
    """:func:`_check_algorithm` and :func:`_check_key` in one, without a copy of a bytes key.

    The one-shot calls' common case (a bytes key of a valid size for a known
    algorithm) costs two lookups here instead of two calls and a copy.
    """
    sizes = _KEY_SIZES.get(algorithm) if type(algorithm) is str else None
    if sizes is None:
        sizes = _KEY_SIZES[_check_algorithm(algorithm)]
    if type(key) is bytes and len(key) in sizes:
        return key
    return _check_key(key, str(algorithm))


def _cipher(key: bytes, algorithm: str) -> _AEAD:
    return AESGCM(key) if algorithm == "aes-gcm" else ChaCha20Poly1305(key)


class _CipherCache:
    """AEAD objects of recently used keys, found by a keyed one-way digest of the key.

    The index is BLAKE2b-128 over a random per-process secret, the algorithm
    and the key: it holds no key, and without the secret (kept only here) it
    cannot even be tested against guessed keys.  The cached objects hold the
    key schedule in OpenSSL memory, as every live AEAD object does, for at
    most :data:`CIPHER_CACHE_SIZE` keys; :meth:`clear` drops them, and a
    forked child starts with an empty cache.  AEAD objects of ``cryptography``
    copy their base context per call, so one may serve several threads.

    The one exception to "no key": :attr:`pinned`.  A call of the bridge in
    the caller's thread (:func:`encrypt_one` or :func:`decrypt_one` with
    ``pin=True``) whose key is a :class:`bytes` object (exactly ``bytes``, so
    nobody can change it in place) may leave a reference to *that very
    object*, the caller's own, in ``pinned``, with its algorithm and AEAD
    object.  The next call with the
    same object (``is``, not ``==``) then skips the key check and the digest,
    about 0.9 µs of a 3 µs encryption.  ``pinned`` holds one key at most, and
    only while it is the most recently looked-up one: every other lookup
    replaces or empties it (as do :meth:`clear` and a fork).  It never holds a
    copy made here, nor a ``bytearray`` or ``memoryview``, whose contents
    could change under it; those, and every worker's and handler's lookups,
    only ever go through the digest.  The slot is one tuple, replaced whole,
    so a thread never pairs one key with another key's object.
    """

    __slots__ = ("_entries", "_lock", "_prefixes", "pinned")

    def __init__(self) -> None:
        secret = os.urandom(32)
        # What the digest hashes before the key, per algorithm.
        self._prefixes = {name: secret + _FINGERPRINT_ALGORITHM[name] for name in ALGORITHMS}
        self._entries: dict[bytes, _AEAD] = {}
        self._lock = threading.Lock()
        #: ``(caller's bytes key, algorithm as passed, its AEAD object)``, or ``None``.
        self.pinned: tuple[bytes, str, _AEAD] | None = None

    def get(self, key: bytes, algorithm: str, pin: object = None) -> _AEAD:
        """The AEAD object for ``key`` (validated bytes) and ``algorithm``.

        ``pin``: the caller's original key argument; when it is ``key`` itself
        (a ``bytes`` object passed as it was), it becomes :attr:`pinned`.
        Otherwise :attr:`pinned` is emptied: it is no longer the latest key.
        """
        index = hashlib.blake2b(self._prefixes[algorithm] + key, digest_size=16).digest()
        cipher = self._entries.get(index)
        if cipher is None:
            # bytes(key): the object must not see later changes to the caller's buffer.
            cipher = _cipher(bytes(key), algorithm)
            with self._lock:
                entries = self._entries
                while len(entries) >= CIPHER_CACHE_SIZE:
                    del entries[next(iter(entries))]
                entries[index] = cipher
        self.pinned = (key, algorithm, cipher) if pin is key and type(key) is bytes else None
        return cipher

    def clear(self) -> None:
        """Forget every cached object (and the pinned key)."""
        with self._lock:
            self._entries = {}
            self.pinned = None

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<_CipherCache entries={len(self)} pinned={self.pinned is not None}>"


_CIPHERS: Final = _CipherCache()
os.register_at_fork(after_in_child=_CIPHERS.clear)


def _check_nonce(nonce: object) -> bytes:
    view = as_buffer(nonce, "nonce")
    if len(view) != NONCE_SIZE:
        raise ValidationError(f"nonce must be {NONCE_SIZE} bytes long, got {len(view)}")
    return bytes(view)


# --------------------------------------------------------------------------- one-shot AEAD
def encrypt(
    data: object,
    key: object,
    *,
    nonce: object = None,
    aad: object = b"",
    algorithm: str = "aes-gcm",
) -> bytes:
    """Encrypt and authenticate ``data``; return ``nonce(12) + ciphertext + tag(16)``.

    Parameters
    ----------
    data, aad
        Bytes-like plaintext and associated data (authenticated, not encrypted).
    key
        16, 24 or 32 bytes for ``"aes-gcm"``; 32 for ``"chacha20-poly1305"``.
    nonce
        12 bytes, or ``None`` to draw a random one.  Reuse across calls is the
        caller's concern here; the bridge checks it with :class:`NonceRegistry`.
    algorithm
        One of :data:`ALGORITHMS`.

    Raises
    ------
    ValidationError
        Bad algorithm, key length, nonce length, non-bytes arguments, or data
        too large for one AEAD call.
    """
    return encrypt_one(data, key, nonce, aad, algorithm, False)


def encrypt_one(
    data: object, key: object, nonce: object, aad: object, algorithm: str, pin: bool
) -> bytes:
    """:func:`encrypt` with positional arguments (keywords cost a tenth of a small call).

    ``pin``: the caller's ``bytes`` key may become the cipher cache's pinned
    key (see :class:`_CipherCache`).  Only the bridge's calls in the caller's
    own thread pass ``True``; handlers (workers) never pin.
    """
    pinned = _CIPHERS.pinned
    if pinned is not None and key is pinned[0] and algorithm is pinned[1]:
        cipher = pinned[2]  # its key was checked when it was pinned
        raw_nonce = os.urandom(NONCE_SIZE) if nonce is None else _check_nonce(nonce)
        plaintext = data if type(data) is bytes else as_buffer(data)
        associated = aad if type(aad) is bytes else as_buffer(aad, "aad")
    else:
        raw_key = _raw_key(key, algorithm)
        raw_nonce = os.urandom(NONCE_SIZE) if nonce is None else _check_nonce(nonce)
        # bytes pass through as they are: the buffer checks only matter for other types.
        plaintext = data if type(data) is bytes else as_buffer(data)
        associated = aad if type(aad) is bytes else as_buffer(aad, "aad")
        if len(plaintext) <= CIPHER_CACHE_MAX_INPUT:
            cipher = _CIPHERS.get(raw_key, algorithm, key if pin else None)
        else:
            cipher = _cipher(raw_key, algorithm)
    try:
        # Empty associated data is no associated data (the same tag, for both
        # algorithms); None spares the library a buffer conversion.
        sealed = cipher.encrypt(raw_nonce, plaintext, associated or None)
    except OverflowError:
        raise ValidationError("data or aad too large for one AEAD call (limit 2**31-1)") from None
    return raw_nonce + sealed


def decrypt(blob: object, key: object, *, aad: object = b"", algorithm: str = "aes-gcm") -> bytes:
    """Verify and decrypt ``nonce(12) + ciphertext + tag(16)``; return the plaintext.

    Raises
    ------
    ValidationError
        Bad algorithm, key length or non-bytes arguments.
    IntegrityError
        Authentication failed: wrong key, wrong ``aad``, a tampered or
        truncated blob (shorter than 28 bytes included).
    """
    return decrypt_one(blob, key, aad, algorithm, False)


def decrypt_one(blob: object, key: object, aad: object, algorithm: str, pin: bool) -> bytes:
    """:func:`decrypt` with positional arguments; ``pin`` as for :func:`encrypt_one`."""
    pinned = _CIPHERS.pinned
    if pinned is not None and key is pinned[0] and algorithm is pinned[1]:
        cipher = pinned[2]  # its key was checked when it was pinned
        view = memoryview(blob) if type(blob) is bytes else as_buffer(blob, "blob")
        associated = aad if type(aad) is bytes else as_buffer(aad, "aad")
    else:
        raw_key = _raw_key(key, algorithm)
        view = memoryview(blob) if type(blob) is bytes else as_buffer(blob, "blob")
        associated = aad if type(aad) is bytes else as_buffer(aad, "aad")
        if len(view) <= CIPHER_CACHE_MAX_INPUT:
            cipher = _CIPHERS.get(raw_key, algorithm, key if pin else None)
        else:
            cipher = _cipher(raw_key, algorithm)
    if len(view) < _MIN_SEALED:
        raise IntegrityError(
            f"ciphertext too short: {len(view)} bytes, at least {_MIN_SEALED} needed"
        )
    try:
        return cipher.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], associated or None)
    except InvalidTag:
        raise IntegrityError("authentication failed (wrong key or aad, or tampered data)") from None
    except OverflowError:
        raise ValidationError("blob or aad too large for one AEAD call (limit 2**31-1)") from None


# --------------------------------------------------------------------------- nonce reuse
def nonce_fingerprint(
    key: object, nonce: object, algorithm: str = "aes-gcm", *, secret: bytes = b""
) -> bytes:
    """Return a 32-byte one-way fingerprint of ``(algorithm, key, nonce)``.

    BLAKE2b-256, keyed with ``secret`` (up to 64 bytes; may be empty) and
    personalised with ``b"wb-nonce-fp-v1"``, over the length-prefixed
    algorithm name, key and nonce.  The digest reveals nothing usable about the
    key, and with a secret kept in memory a leaked table cannot even be tested
    against guessed keys.

    Raises
    ------
    ValidationError
        Bad algorithm, key length, nonce length, or a secret over 64 bytes.
    """
    raw_key = _raw_key(key, algorithm)
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        nonce = _check_nonce(nonce)
    if len(secret) > hashlib.blake2b.MAX_KEY_SIZE:
        raise ValidationError("fingerprint secret must be at most 64 bytes")
    # One message, one call: the same digest as updating field by field, for a third of the cost.
    message = b"".join(
        (
            _FINGERPRINT_ALGORITHM[algorithm],
            len(raw_key).to_bytes(2, "big"),
            raw_key,
            _FINGERPRINT_NONCE_LENGTH,
            nonce,
        )
    )
    return hashlib.blake2b(message, digest_size=32, key=secret, person=_FINGERPRINT_PERSON).digest()


class NonceRegistry:
    """Thread-safe set of nonce fingerprints; refuses a second use of one.

    Kept in the parent process, shared by every worker's calls: the parent
    computes :meth:`fingerprint` for each explicit nonce and calls
    :meth:`check_and_add` before dispatching the encryption.  Only 32-byte
    one-way digests keyed with this registry's random secret are stored, never
    keys or nonces.  The table grows by one entry per explicit nonce and is
    never pruned (forgetting an entry would let a reuse through).
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secrets.token_bytes(32) if secret is None else bytes(secret)
        if len(self._secret) > hashlib.blake2b.MAX_KEY_SIZE:
            raise ValidationError("fingerprint secret must be at most 64 bytes")
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def fingerprint(self, key: object, nonce: object, algorithm: str = "aes-gcm") -> bytes:
        """Return :func:`nonce_fingerprint` keyed with this registry's secret."""
        return nonce_fingerprint(key, nonce, algorithm, secret=self._secret)

    def check_and_add(self, fingerprint: bytes) -> None:
        """Record ``fingerprint``; raise :exc:`NonceReuseError` if it was already recorded."""
        with self._lock:
            if fingerprint in self._seen:
                raise NonceReuseError(
                    "this nonce was already used with this key; use a fresh nonce or nonce=None"
                )
            self._seen.add(fingerprint)

    def discard(self, fingerprint: bytes) -> None:
        """Forget ``fingerprint`` (only for an encryption that provably never ran)."""
        with self._lock:
            self._seen.discard(fingerprint)

    def __contains__(self, fingerprint: object) -> bool:
        with self._lock:
            return fingerprint in self._seen

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def __repr__(self) -> str:
        return f"<NonceRegistry entries={len(self)}>"


# --------------------------------------------------------------------------- stream format
class StreamHeader(NamedTuple):
    """A parsed stream header (public values only: it holds no key)."""

    algorithm: str
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    raw: bytes


def _check_chunk_size(chunk_size: object) -> int:
    size = _check_int(chunk_size, "chunk_size", minimum=1)
    log2 = size.bit_length() - 1
    if size != 1 << log2 or not _MIN_CHUNK_LOG2 <= log2 <= _MAX_CHUNK_LOG2:
        raise ValidationError(
            f"chunk_size must be a power of two from {1 << _MIN_CHUNK_LOG2} to "
            f"{1 << _MAX_CHUNK_LOG2} bytes, got {size}"
        )
    return size


def make_header(algorithm: str = "aes-gcm", chunk_size: int = DEFAULT_STREAM_CHUNK_SIZE) -> bytes:
    """Return a fresh 46-byte stream header (random salt and nonce prefix).

    Raises
    ------
    ValidationError
        Unknown algorithm, or ``chunk_size`` not a power of two in 64 KiB..16 MiB.
    """
    algorithm = _check_algorithm(algorithm)
    size = _check_chunk_size(chunk_size)
    return (
        STREAM_MAGIC
        + bytes((STREAM_VERSION, _ALGORITHM_IDS[algorithm], size.bit_length() - 1))
        + secrets.token_bytes(_SALT_SIZE)
        + secrets.token_bytes(_PREFIX_SIZE)
    )


def parse_header(header: object, algorithm: str | None = None) -> StreamHeader:
    """Parse and check a stream header; ``algorithm``, if given, must match it.

    Raises
    ------
    IntegrityError
        Short input, bad magic, unknown version, algorithm id or chunk size, or
        an algorithm other than the one requested.
    """
    if algorithm is not None:
        algorithm = _check_algorithm(algorithm)
    raw = bytes(as_buffer(header, "header")[:STREAM_HEADER_SIZE])
    if len(raw) < STREAM_HEADER_SIZE:
        raise IntegrityError("truncated stream header")
    if raw[:4] != STREAM_MAGIC:
        raise IntegrityError("not a workerbridge encrypted stream (bad magic)")
    if raw[4] != STREAM_VERSION:
        raise IntegrityError(f"unsupported stream format version {raw[4]}")
    names = {ident: name for name, ident in _ALGORITHM_IDS.items()}
    found = names.get(raw[5])
    if found is None:
        raise IntegrityError(f"unknown algorithm id {raw[5]} in stream header")
    if algorithm is not None and found != algorithm:
        raise IntegrityError(f"stream was encrypted with {found}, not {algorithm}")
    if not _MIN_CHUNK_LOG2 <= raw[6] <= _MAX_CHUNK_LOG2:
        raise IntegrityError("bad chunk size in stream header")
    return StreamHeader(found, 1 << raw[6], raw[7:39], raw[39:46], raw)


def read_stream_header(src: StrPath, algorithm: str | None = None) -> StreamHeader:
    """Read and parse the header of the encrypted file ``src``."""
    fh, _ = open_source(src)
    with fh:
        return parse_header(fh.read(STREAM_HEADER_SIZE), algorithm)


def plaintext_chunk_count(plaintext_size: int, chunk_size: int) -> int:
    """Chunks in a stream of ``plaintext_size`` bytes (at least one)."""
    size = _check_int(plaintext_size, "plaintext_size")
    return max(1, math.ceil(size / _check_chunk_size(chunk_size)))


def encrypted_size(plaintext_size: int, chunk_size: int = DEFAULT_STREAM_CHUNK_SIZE) -> int:
    """Size of the encrypted file for ``plaintext_size`` bytes of plaintext."""
    n = plaintext_chunk_count(plaintext_size, chunk_size)
    return STREAM_HEADER_SIZE + plaintext_size + TAG_SIZE * n


def ciphertext_chunk_count(body_size: int, chunk_size: int) -> int:
    """Chunks in an encrypted body (file size minus the header) of ``body_size`` bytes.

    Raises
    ------
    IntegrityError
        No chunk count produces that size: the file was truncated or extended.
    """
    body = _check_int(body_size, "body_size")
    sealed = _check_chunk_size(chunk_size) + TAG_SIZE
    n = max(1, math.ceil(body / sealed))
    last = body - (n - 1) * sealed
    if last < TAG_SIZE or (n > 1 and last == TAG_SIZE) or n > _MAX_CHUNKS:
        raise IntegrityError("encrypted stream has an impossible size (truncated or extended)")
    return n


def _subkey_cipher(key: object, header: StreamHeader) -> _AEAD:
    raw_key = _check_key(key, header.algorithm)
    subkey = HKDF(
        algorithm=hashes.SHA256(), length=len(raw_key), salt=header.salt, info=header.raw
    ).derive(raw_key)
    return _cipher(subkey, header.algorithm)


def _chunk_nonce(header: StreamHeader, index: int, last: bool) -> bytes:
    if not 0 <= index < _MAX_CHUNKS:
        raise ValidationError(f"chunk index {index} out of range (at most 2**32 chunks)")
    return header.nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _seal(cipher: _AEAD, header: StreamHeader, index: int, chunk: bytes, last: bool) -> bytes:
    return cipher.encrypt(_chunk_nonce(header, index, last), chunk, None)


def _check_sealed(header: StreamHeader, index: int, sealed: bytes | memoryview, last: bool) -> None:
    if len(sealed) < TAG_SIZE:
        raise IntegrityError(f"chunk {index} is truncated")
    if last and index > 0 and len(sealed) == TAG_SIZE:
        raise IntegrityError(f"chunk {index}: empty final chunk after data (stream was altered)")
    if not last and len(sealed) != header.chunk_size + TAG_SIZE:
        raise IntegrityError(f"chunk {index} has the wrong size (stream truncated)")


def _tampered(index: int) -> IntegrityError:
    return IntegrityError(
        f"chunk {index} failed authentication (wrong key, or tampered, truncated, "
        "reordered or spliced data)"
    )


def _open(
    cipher: _AEAD, header: StreamHeader, index: int, sealed: bytes | memoryview, last: bool
) -> bytes:
    _check_sealed(header, index, sealed, last)
    try:
        return cipher.decrypt(_chunk_nonce(header, index, last), sealed, None)
    except InvalidTag:
        raise _tampered(index) from None


def _with_lookahead(items: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def seal_chunks(
    key: object, header: object, first_index: int, chunks: Iterable[object], *, last: bool
) -> bytes:
    """Seal consecutive plaintext chunks starting at ``first_index``; return their concatenation.

    Every chunk must be exactly ``chunk_size`` bytes except, when ``last`` is
    true, the final one of ``chunks``, which becomes the stream's final chunk
    (1..chunk_size bytes; empty only as chunk 0).

    Raises
    ------
    ValidationError
        Bad key, header or chunk sizes.
    """
    parsed = _parse_own_header(header)
    cipher = _subkey_cipher(key, parsed)
    index = _check_int(first_index, "first_index")
    out = []
    views = (bytes(as_buffer(chunk, "chunk")) for chunk in chunks)
    for chunk, is_final_item in _with_lookahead(views):
        final = last and is_final_item
        if final:
            if len(chunk) > parsed.chunk_size or (not chunk and index > 0):
                raise ValidationError(
                    f"the final chunk must hold 1..{parsed.chunk_size} bytes "
                    "(0 only when it is the only chunk)"
                )
        elif len(chunk) != parsed.chunk_size:
            raise ValidationError(f"non-final chunks must hold exactly {parsed.chunk_size} bytes")
        out.append(_seal(cipher, parsed, index, chunk, final))
        index += 1
    return b"".join(out)


def open_chunks(
    key: object, header: object, first_index: int, ciphertext: object, *, last: bool
) -> bytes:
    """Open consecutive sealed chunks starting at ``first_index``; return the plaintext.

    ``ciphertext`` is whole sealed chunks (``chunk_size + 16`` bytes each); when
    ``last`` is true its final, possibly shorter, chunk must be the stream's
    final chunk.

    Raises
    ------
    IntegrityError
        Any chunk fails authentication, or the sizes do not fit the layout.
    """
    parsed = parse_header(header)
    cipher = _subkey_cipher(key, parsed)
    index = _check_int(first_index, "first_index")
    view = as_buffer(ciphertext, "ciphertext")
    sealed = parsed.chunk_size + TAG_SIZE
    if not last and len(view) % sealed:
        raise IntegrityError("ciphertext is not a whole number of chunks")
    count = max(1, math.ceil(len(view) / sealed)) if last else len(view) // sealed
    out = []
    for j in range(count):
        piece = view[j * sealed : (j + 1) * sealed]
        out.append(_open(cipher, parsed, index + j, piece, last and j == count - 1))
    return b"".join(out)


def _parse_own_header(header: object) -> StreamHeader:
    """Parse a header we are about to seal with, reporting problems as bad arguments."""
    try:
        return parse_header(header)
    except IntegrityError as exc:
        raise ValidationError(f"bad stream header: {exc}") from None


# --------------------------------------------------------------------------- files
def encrypt_file(
    src: StrPath,
    dst: StrPath,
    key: object,
    *,
    algorithm: str = "aes-gcm",
    chunk_size: int = DEFAULT_STREAM_CHUNK_SIZE,
    ctx: WorkContext | None = None,
) -> int:
    """Encrypt the file ``src`` into ``dst`` in the stream format; return the bytes written.

    Memory stays at about two chunks.  ``dst`` is replaced atomically.

    Raises
    ------
    ValidationError
        Bad algorithm, key, chunk size or path.
    IntegrityError
        ``src`` changed while it was read.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each chunk); ``dst`` untouched.
    """
    header_bytes = make_header(algorithm, chunk_size)
    header = parse_header(header_bytes)
    cipher = _subkey_cipher(key, header)
    fh, before = open_source(src)
    total = before.st_size
    with fh, atomic_writer(dst) as out:
        written = out.write(header_bytes)
        _checkpoint(ctx)
        current = fh.read(header.chunk_size)
        done = len(current)
        index = 0
        while True:
            _checkpoint(ctx)
            following = fh.read(header.chunk_size) if len(current) == header.chunk_size else b""
            done += len(following)
            last = not following
            written += out.write(_seal(cipher, header, index, current, last))
            _report(ctx, done - len(following), total)
            if last:
                break
            current = following
            index += 1
        check_unchanged(fh, src, before, done)
        _report(ctx, done, total)
        _checkpoint(ctx)
    return written


def decrypt_file(
    src: StrPath,
    dst: StrPath,
    key: object,
    *,
    algorithm: str = "aes-gcm",
    ctx: WorkContext | None = None,
) -> int:
    """Verify and decrypt a stream-format file into ``dst``; return the plaintext bytes.

    The plaintext goes to a temporary file next to ``dst`` that is renamed over
    ``dst`` only after the final chunk authenticated; on any failure it is
    removed, so ``dst`` is neither created nor changed.

    Raises
    ------
    ValidationError
        Bad algorithm, key or path.
    IntegrityError
        Wrong key, or a tampered, truncated, extended, reordered or spliced
        file, or ``src`` changed while it was read.
    TaskCancelledError
        ``ctx`` was cancelled (checked before each chunk); ``dst`` untouched.
    """
    algorithm = _check_algorithm(algorithm)
    _check_key(key, algorithm)
    fh, before = open_source(src)
    total = before.st_size
    with fh:
        header = parse_header(fh.read(STREAM_HEADER_SIZE), algorithm)
        cipher = _subkey_cipher(key, header)
        sealed_size = header.chunk_size + TAG_SIZE
        with atomic_writer(dst) as out:
            written = 0
            _checkpoint(ctx)
            current = fh.read(sealed_size)
            done = STREAM_HEADER_SIZE + len(current)
            index = 0
            while True:
                _checkpoint(ctx)
                following = fh.read(sealed_size) if len(current) == sealed_size else b""
                done += len(following)
                last = not following
                written += out.write(_open(cipher, header, index, current, last))
                _report(ctx, done - len(following), total)
                if last:
                    break
                current = following
                index += 1
            check_unchanged(fh, src, before, done)
            _checkpoint(ctx)
    return written


def _read_chunks(
    fh: IO[bytes],
    offset: int,
    piece: int,
    count: int,
    *,
    is_last_range: bool,
    ctx: WorkContext | None,
) -> Iterator[tuple[int, memoryview, bool]]:
    """Yield ``(j, data, final)`` for ``count`` pieces read from ``offset``; check the ends.

    ``data`` is a view of one buffer reused for every piece: it is valid only
    until the next piece is asked for (a range allocates nothing per chunk).
    """
    fh.seek(offset)
    buf = memoryview(bytearray(piece))
    done = 0
    for j in range(count):
        _checkpoint(ctx)
        n = _fill(fh, buf)
        done += n
        final = is_last_range and j == count - 1
        if final:
            if fh.read(1):
                raise IntegrityError("data continues after the planned final chunk")
        elif n != piece:
            raise IntegrityError("input ends before the planned range (truncated or changed)")
        yield j, buf[:n], final
        _report(ctx, done, None)


def _fill(fh: IO[bytes], buf: memoryview) -> int:
    """Read into ``buf`` until it is full or the file ends; return the bytes read."""
    got = 0
    while got < len(buf):
        n = fh.readinto(buf[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


class _ChunkSealer:
    """Seal or open chunks of one stream into one reused output buffer.

    ``encrypt_into``/``decrypt_into`` (cryptography 45 and later) write into
    the buffer; older versions return new bytes, which are used as they are.
    A returned view is valid until the next call.
    """

    __slots__ = ("_buffer", "_cipher", "_header", "_into")

    def __init__(self, cipher: _AEAD, header: StreamHeader, size: int) -> None:
        self._cipher = cipher
        self._header = header
        self._into = hasattr(cipher, "encrypt_into")
        self._buffer = memoryview(bytearray(size if self._into else 0))

    def seal(self, index: int, chunk: memoryview, last: bool) -> bytes | memoryview:
        nonce = _chunk_nonce(self._header, index, last)
        if not self._into:
            return self._cipher.encrypt(nonce, chunk, None)
        out = self._buffer[: len(chunk) + TAG_SIZE]
        self._cipher.encrypt_into(nonce, chunk, None, out)
        return out

    def open(self, index: int, sealed: memoryview, last: bool) -> bytes | memoryview:
        if not self._into:
            return _open(self._cipher, self._header, index, sealed, last)
        _check_sealed(self._header, index, sealed, last)  # (a short chunk fails here)
        out = self._buffer[: len(sealed) - TAG_SIZE]
        try:
            self._cipher.decrypt_into(_chunk_nonce(self._header, index, last), sealed, None, out)
        except InvalidTag:
            raise _tampered(index) from None
        return out


def _sealed_range(
    src: StrPath,
    key: object,
    header: object,
    first_chunk_index: int,
    n_chunks: int,
    is_last_range: bool,
    ctx: WorkContext | None,
) -> Generator[bytes | memoryview, None, None]:
    """Yield the sealed chunks of a range (:func:`encrypt_file_range`), each valid till the next."""
    parsed = _parse_own_header(header)
    cipher = _subkey_cipher(key, parsed)
    first = _check_int(first_chunk_index, "first_chunk_index")
    count = _check_int(n_chunks, "n_chunks", minimum=1)
    if first + count > _MAX_CHUNKS:
        raise ValidationError("chunk range beyond 2**32 chunks")
    fh, _ = open_source(src)
    sealer = _ChunkSealer(cipher, parsed, parsed.chunk_size + TAG_SIZE)
    with fh:
        chunks = _read_chunks(
            fh,
            first * parsed.chunk_size,
            parsed.chunk_size,
            count,
            is_last_range=is_last_range,
            ctx=ctx,
        )
        for j, data, final in chunks:
            if final and not data and first + j > 0:
                raise IntegrityError("input ends before the planned final chunk (it changed)")
            yield sealer.seal(first + j, data, final)


def _opened_range(
    src: StrPath,
    key: object,
    first_chunk_index: int,
    n_chunks: int,
    is_last_range: bool,
    algorithm: str,
    ctx: WorkContext | None,
) -> Generator[bytes | memoryview, None, None]:
    """Yield the opened chunks of a range (:func:`decrypt_file_range`), each valid till the next."""
    algorithm = _check_algorithm(algorithm)
    _check_key(key, algorithm)
    first = _check_int(first_chunk_index, "first_chunk_index")
    count = _check_int(n_chunks, "n_chunks", minimum=1)
    fh, _ = open_source(src)
    with fh:
        parsed = parse_header(fh.read(STREAM_HEADER_SIZE), algorithm)
        cipher = _subkey_cipher(key, parsed)
        sealed = parsed.chunk_size + TAG_SIZE
        opener = _ChunkSealer(cipher, parsed, parsed.chunk_size)
        chunks = _read_chunks(
            fh,
            STREAM_HEADER_SIZE + first * sealed,
            sealed,
            count,
            is_last_range=is_last_range,
            ctx=ctx,
        )
        for j, data, final in chunks:
            yield opener.open(first + j, data, final)


def _joined(pieces: Generator[bytes | memoryview, None, None]) -> bytes:
    """The pieces of a range, each copied before the next reuses its buffer, joined."""
    with contextlib.closing(pieces):
        return b"".join([bytes(piece) for piece in pieces])


def _placed(pieces: Generator[bytes | memoryview, None, None], dst: str, offset: int) -> int:
    """Write the pieces of a range one after the other from ``offset`` of ``dst``."""
    with contextlib.closing(pieces), PlacedWriter(dst, offset) as out:
        for piece in pieces:
            out.write(piece)
        return out.written


def encrypt_file_range(
    src: StrPath,
    key: object,
    header: object,
    first_chunk_index: int,
    n_chunks: int,
    *,
    is_last_range: bool,
    ctx: WorkContext | None = None,
) -> bytes:
    """Seal chunks ``first_chunk_index .. +n_chunks`` of the plaintext file ``src``.

    The parallel encryption path: ``header = make_header(...)`` once,
    ``n = plaintext_chunk_count(size, chunk_size)``, split ``range(n)`` into
    ranges (the one holding chunk ``n - 1`` has ``is_last_range=True``), seal
    each in a worker, then ``assemble_file(dst, [header, *parts])``.  The
    workers of the bridge write each sealed chunk straight into its place
    instead (:func:`encrypt_file_range_to`).

    Raises
    ------
    ValidationError
        Bad key, header, indices or path.
    IntegrityError
        The file does not have the planned size any more (it changed).
    """
    return _joined(_sealed_range(src, key, header, first_chunk_index, n_chunks, is_last_range, ctx))


def encrypt_file_range_to(
    src: StrPath,
    key: object,
    header: object,
    first_chunk_index: int,
    n_chunks: int,
    *,
    is_last_range: bool,
    dst: str,
    offset: int,
    ctx: WorkContext | None = None,
) -> int:
    """Seal a range as :func:`encrypt_file_range` does, writing it at ``offset`` of ``dst``.

    ``dst`` must exist (the parent made it, see :mod:`._parts`).  Each chunk is
    written as soon as it is sealed, from one reused buffer; returns the bytes
    written.  Raises as :func:`encrypt_file_range` does.
    """
    pieces = _sealed_range(src, key, header, first_chunk_index, n_chunks, is_last_range, ctx)
    return _placed(pieces, dst, offset)


def decrypt_file_range(
    src: StrPath,
    key: object,
    first_chunk_index: int,
    n_chunks: int,
    *,
    is_last_range: bool,
    algorithm: str = "aes-gcm",
    ctx: WorkContext | None = None,
) -> bytes:
    """Verify and open chunks ``first_chunk_index .. +n_chunks`` of the encrypted file ``src``.

    The parallel decryption path: ``h = read_stream_header(src, algorithm)``,
    ``n = ciphertext_chunk_count(size - STREAM_HEADER_SIZE, h.chunk_size)``,
    split ``range(n)`` into ranges (the one holding chunk ``n - 1`` has
    ``is_last_range=True``), open each in a worker, and only when every range
    succeeded ``assemble_file(dst, parts)``.  A generator that raises the first
    failure makes the assembler leave nothing behind.  The workers of the
    bridge write each opened chunk straight into its place in a temporary
    file instead (:func:`decrypt_file_range_to`).

    Raises
    ------
    ValidationError
        Bad algorithm, key, indices or path.
    IntegrityError
        A chunk fails authentication, or the file does not fit the plan.
    """
    pieces = _opened_range(src, key, first_chunk_index, n_chunks, is_last_range, algorithm, ctx)
    return _joined(pieces)


def decrypt_file_range_to(
    src: StrPath,
    key: object,
    first_chunk_index: int,
    n_chunks: int,
    *,
    is_last_range: bool,
    algorithm: str = "aes-gcm",
    dst: str,
    offset: int,
    ctx: WorkContext | None = None,
) -> int:
    """Open a range as :func:`decrypt_file_range` does, writing it at ``offset`` of ``dst``.

    ``dst`` is the temporary file the parent made; it is renamed over the
    destination only after every range authenticated, so plaintext of a range
    that fails later never reaches the destination.  Returns the bytes
    written; raises as :func:`decrypt_file_range` does.
    """
    pieces = _opened_range(src, key, first_chunk_index, n_chunks, is_last_range, algorithm, ctx)
    return _placed(pieces, dst, offset)


# --------------------------------------------------------------------------- hashes, KDFs, keys
#: The :mod:`hashlib` constructor of each algorithm: calling it with the data
#: costs a third less than ``hashlib.new(name)`` plus ``update``.
HASHERS: Final[dict[str, Callable[[bytes | memoryview], HashObject]]] = {
    name: getattr(hashlib, name) for name in HASH_ALGORITHMS
}


def hash_bytes(data: object, algorithm: str = "sha256") -> str:
    """Return the lowercase hex digest of ``data`` (one of :data:`HASH_ALGORITHMS`)."""
    constructor = HASHERS.get(algorithm) if type(algorithm) is str else None
    if constructor is None:  # not a plain str: the full check (and its ValidationError)
        digest = new_hash(algorithm)
        digest.update(as_buffer(data))
        return digest.hexdigest()
    return constructor(data if type(data) is bytes else as_buffer(data)).hexdigest()


def _argon2id(password: bytes, salt: bytes, length: int) -> bytes:
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    except ImportError:  # cryptography < 44
        raise ValidationError("argon2id needs cryptography >= 44") from None
    try:
        kdf = Argon2id(
            salt=salt,
            length=length,
            iterations=ARGON2_ITERATIONS,
            lanes=ARGON2_LANES,
            memory_cost=ARGON2_MEMORY_KIB,
        )
    except UnsupportedAlgorithm:
        raise ValidationError("argon2id is not supported by this OpenSSL build") from None
    return kdf.derive(password)


def derive_key(password: object, salt: object, *, kdf: str = "scrypt", length: int = 32) -> bytes:
    """Derive ``length`` key bytes from a password (or, for HKDF, from key material).

    Parameters
    ----------
    password
        ``str`` (encoded as UTF-8) or bytes-like.
    salt
        Bytes-like; at least 8 bytes (16 or more recommended) for the
        password KDFs, any length (even empty) for ``"hkdf-sha256"``.
    kdf
        ``"scrypt"`` (N=2**15, r=8, p=1), ``"pbkdf2-hmac-sha256"`` (600,000
        iterations), ``"argon2id"`` (RFC 9106: t=3, p=4, m=64 MiB) or
        ``"hkdf-sha256"`` (RFC 5869, empty ``info``; for high-entropy input
        only, never for passwords).
    length
        16..1024 bytes (HKDF: 16..8160).

    Raises
    ------
    ValidationError
        Unknown KDF, short salt, bad length, non-bytes arguments, or argon2id
        unavailable in this build.
    """
    if not isinstance(kdf, str) or kdf not in KDFS:
        raise ValidationError(f"unknown kdf {kdf!r}; expected one of {', '.join(KDFS)}")
    secret = (
        password.encode("utf-8")
        if isinstance(password, str)
        else bytes(as_buffer(password, "password"))
    )
    raw_salt = bytes(as_buffer(salt, "salt"))
    maximum = _HKDF_MAX if kdf == "hkdf-sha256" else _MAX_KEY_LENGTH
    size = _check_int(length, "length", minimum=_MIN_KEY_LENGTH)
    if size > maximum:
        raise ValidationError(f"length must be at most {maximum} for {kdf}, got {size}")
    if kdf == "hkdf-sha256":
        return HKDF(algorithm=hashes.SHA256(), length=size, salt=raw_salt, info=b"").derive(secret)
    if len(raw_salt) < _MIN_SALT:
        raise ValidationError(f"salt must be at least {_MIN_SALT} bytes for {kdf}")
    if kdf == "scrypt":
        return Scrypt(salt=raw_salt, length=size, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(secret)
    if kdf == "pbkdf2-hmac-sha256":
        return PBKDF2HMAC(
            algorithm=hashes.SHA256(), length=size, salt=raw_salt, iterations=PBKDF2_ITERATIONS
        ).derive(secret)
    return _argon2id(secret, raw_salt, size)


def generate_key(algorithm: str = "aes-gcm") -> bytes:
    """Return a fresh random 32-byte key for ``algorithm`` (AES-256 for aes-gcm)."""
    _check_algorithm(algorithm)
    return os.urandom(32)
