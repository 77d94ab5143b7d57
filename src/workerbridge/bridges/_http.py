"""Network engine: resumable HTTP downloads, tus 1.0 and PUT uploads, over urllib3.

These are the pure functions behind ``bridge.network``.  They run inside a
worker process or a thread, take plain values, return a plain :class:`Transfer`,
and never import the pool.  urllib3 is an optional dependency (the ``network``
extra): this module imports without it, and its functions then raise
:exc:`~workerbridge.ValidationError` telling how to install it.

Data flow of :func:`download`::

    url ── _parse_url() ── ValidationError (scheme, malformed, missing dst directory)
     │
     │   .<name>.part.meta  {"url", "etag", "last_modified", "total"}   (validator of the part)
     │   .<name>.part       bytes received so far (kept across calls, so a later call resumes)
     v
    GET (Range: bytes=<part size>- + If-Range: <ETag or Last-Modified> when resuming;
     │   redirects followed up to 10, never https -> http)
     ├─ 200 ── truncate the part, record the new validator, write from zero
     ├─ 206 ── Content-Range must start at the part size, else restart from zero
     ├─ 416 ── the part already holds the whole entity (checked), else restart from zero
     ├─ 5xx / 429 / cut / timeout ── back off (Retry-After or jittered), retry, resume
     └─ other 4xx ── HTTPError (the part file is left as it was)
     │
     └─ per chunk: ctx.check_cancelled(), write, sha256 update, ctx.report(bytes_on_disk, total)
          │
          v  complete: sha256 checked ── fsync ── os.replace(part, dst) ── meta removed

Data flow of :func:`upload`::

    src ── stat ── OPTIONS url ──┬─ Tus-Resumable + Tus-Version 1.0.0 ── tus
                                 └─ anything else (protocol="auto") ─── one streamed PUT
    tus: POST (Upload-Length, Upload-Metadata) ── Location = upload URL
         loop: PATCH <chunk> at Upload-Offset ── 204 + new Upload-Offset ── ctx.report(acked, size)
               any failure ── back off ── HEAD upload URL ── continue from the server's offset
         cancelled ── DELETE upload URL when the server lists the termination extension

Error mapping
-------------
* Bad arguments -- not ``str`` URL, malformed URL, a scheme other than http or
  https, a missing destination directory, a destination that is a directory, a
  missing or non-regular upload source, an unknown ``protocol`` -- raise
  :exc:`~workerbridge.ValidationError`.  So does a body larger than
  ``max_size`` (nothing is left on disk) and a file larger than a tus server's
  ``Tus-Max-Size``.
* The server answered with an error status that is not retried (4xx other than
  408 and 429 -- and 409 on a tus PATCH, which resynchronises with HEAD --,
  501, 505), or a retried status persisted past ``retries``:
  :exc:`HTTPError`, with :attr:`HTTPError.status` and :attr:`TransferError.url`.
* The transfer failed for any other reason -- connection refused or cut,
  timeouts, TLS verification failure, too many redirects, an https -> http
  redirect, a server that closed the connection before the ``Content-Length``
  it promised once retries ran out, a server that does not speak tus when
  ``protocol="tus"`` -- :exc:`TransferError`.  A short body is a cut
  connection (the same bytes may arrive on a retry), not an integrity failure.
* The downloaded bytes do not hash to the ``sha256`` asked for, or the upload
  source changed while it was read: :exc:`~workerbridge.IntegrityError`.
* Cancellation: ``ctx.check_cancelled()`` raises
  :exc:`~workerbridge.TaskCancelledError`; a download keeps its part file (a
  later call resumes) and never leaves a file at ``dst``.

Every URL that appears in a message or an attribute has its credentials
removed (``https://user:pass@host/`` -> ``https://host/``).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import errno
import hashlib
import http.client
import json
import math
import mimetypes
import os
import random
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from .._errors import IntegrityError, TaskCancelledError, ValidationError, WorkerBridgeError
from .._types import WorkContext
from ._files import open_source
from ._transfer import HTTPError, Transfer, TransferError

try:
    import urllib3
    from urllib3 import exceptions as _u3exc

    _HAVE_URLLIB3 = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _HAVE_URLLIB3 = False

if TYPE_CHECKING:
    from hashlib import _Hash

    from urllib3 import BaseHTTPResponse, PoolManager

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_TIMEOUT",
    "HTTPError",
    "MAX_REDIRECTS",
    "Transfer",
    "TransferError",
    "download",
    "part_paths",
    "strip_credentials",
    "upload",
]

DEFAULT_CHUNK_SIZE: Final = 8 * 1024 * 1024
"""Default tus PATCH size in bytes."""

DEFAULT_TIMEOUT: Final = 30.0
"""Connect and per-read socket timeout in seconds when ``timeout=None``."""

MAX_REDIRECTS: Final = 10
"""Redirects followed by one request; the eleventh raises :exc:`TransferError`."""

_IO_CHUNK: Final = 256 * 1024
_HASH_BLOCK: Final = 1024 * 1024
_TUS_VERSION: Final = "1.0.0"
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_FOLLOW_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_CONTENT_RANGE_RE: Final = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE_RE: Final = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_USERINFO_RE: Final = re.compile(r"^([a-z][a-z0-9+.\-]*://)[^/?#]*@", re.IGNORECASE)
_SHA256_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_METADATA_KEY_RE: Final = re.compile(r"^[!-+\--~]+$")  # printable ASCII without space or comma
_INSTALL_HINT: Final = "pip install 'workerbridge[network]'"
_PERMANENT_TLS_MARKERS: Final = (
    "CERTIFICATE_VERIFY_FAILED",
    "doesn't match",
    "WRONG_VERSION_NUMBER",
)
_NAME_MAX: Final = 255
_BAD_PATH_ERRNOS: Final = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP}
)

UploadProtocol = Literal["auto", "tus", "put"]


# --------------------------------------------------------------------------- small helpers


class _NullContext:
    """A :class:`~workerbridge._types.WorkContext` that is never cancelled and ignores progress."""

    @property
    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        return None

    def report(self, current: int, total: int | None = None) -> None:
        return None


_NULL_CONTEXT: Final = _NullContext()


def _require_urllib3() -> None:
    if not _HAVE_URLLIB3:
        raise ValidationError(f"network transfers need urllib3: {_INSTALL_HINT}")


def strip_credentials(url: str) -> str:
    """Return *url* with any ``user:password@`` removed from its authority.

    Parameters
    ----------
    url
        Any string; malformed URLs are handled too.

    Returns
    -------
    str
        ``https://user:pass@host/x`` becomes ``https://host/x``.
    """
    stripped = _USERINFO_RE.sub(r"\1", url)
    if "://" not in stripped:
        head, sep, tail = stripped.partition("@")
        if sep and not any(c in head for c in "/?#"):
            stripped = tail
    return stripped


@dataclass(frozen=True)
class _Target:
    """A parsed http(s) URL: what goes on the wire and what may be shown."""

    request_url: str  # no userinfo, no fragment: safe to show and to send
    scheme: str
    origin: tuple[str, str, int]
    auth: str | None  # "user:password" for Basic auth, from the URL's userinfo

    @property
    def safe(self) -> str:
        return self.request_url


def _parse_url(url: object, *, role: str = "URL") -> _Target:
    """Validate an http(s) URL; every failure is a :exc:`ValidationError` naming it."""
    if not isinstance(url, str):
        raise ValidationError(f"{role} must be a str, got {type(url).__name__}")
    safe = strip_credentials(url)
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValidationError(f"malformed {role} {safe!r}: empty or contains whitespace")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"malformed {role} {safe!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme and scheme not in ("http", "https") and "://" in url:
        raise ValidationError(
            f"unsupported scheme {scheme!r} in {role} {safe!r}: only http and https are supported"
        )
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"malformed {role} {safe!r}: expected http(s)://host/path")
    if not host:
        raise ValidationError(f"malformed {role} {safe!r}: no host")
    netloc = parts.netloc.rpartition("@")[2]
    request_url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    try:
        urllib3.util.parse_url(request_url)
    except _u3exc.LocationParseError as exc:
        raise ValidationError(f"malformed {role} {safe!r}: {exc}") from None
    auth = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    default_port = 443 if scheme == "https" else 80
    return _Target(request_url, scheme, (scheme, host.lower(), port or default_port), auth)


def _resolve_location(current: _Target, location: str, method: str) -> _Target:
    """The target of a redirect or a tus ``Location``; refuses https -> http."""
    joined = urljoin(current.request_url, location.strip())
    try:
        nxt = _parse_url(joined)
    except ValidationError as exc:
        raise TransferError(
            f"{method} {current.safe}: unusable Location {strip_credentials(joined)!r} ({exc})",
            url=current.safe,
        ) from None
    if current.scheme == "https" and nxt.scheme != "https":
        raise TransferError(
            f"{method} {current.safe}: refusing to follow a redirect from https to {nxt.safe}",
            url=current.safe,
        )
    if nxt.auth is None and current.auth is not None and nxt.origin == current.origin:
        nxt = _Target(nxt.request_url, nxt.scheme, nxt.origin, current.auth)
    return nxt


def _check_count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or not (seconds > 0 or (allow_zero and seconds == 0)):
        raise ValidationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return seconds


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationError(f"headers must be a mapping of str to str, got {type(headers)}")
    result: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError("headers must map str to str")
        if any(c in key + value for c in "\r\n\0"):
            raise ValidationError(f"header {key!r} contains a line break or NUL")
        result[key] = value
    return result


def _check_ca_certs(ca_certs: str | os.PathLike[str] | None) -> str | None:
    if ca_certs is None:
        return None
    path = os.fspath(ca_certs)
    if not os.path.isfile(path):
        raise ValidationError(f"ca_certs {path!r} is not a file")
    return path


def _make_pool(ca_certs: str | None) -> PoolManager:
    return urllib3.PoolManager(num_pools=4, maxsize=1, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs)


def _sleep(seconds: float, ctx: WorkContext) -> None:
    """Sleep up to *seconds*, noticing cancellation every 50 ms."""
    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        ctx.check_cancelled()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 0.05))


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_retryable_status(status: int) -> bool:
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def _is_permanent_tls_error(exc: BaseException) -> bool:
    """Whether *exc* (or what it wraps) is a TLS failure a retry cannot cure.

    Certificate verification failures and talking TLS to a plain-HTTP port.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        text = str(item)
        if any(marker in text for marker in _PERMANENT_TLS_MARKERS):
            return True
        todo.extend([item.__cause__, item.__context__])
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo.extend(arg for arg in item.args if isinstance(arg, BaseException))
    return False


def _describe(exc: BaseException) -> str:
    """A one-line description of a network exception (it never holds credentials)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _network_errors() -> tuple[type[BaseException], ...]:
    return (_u3exc.HTTPError, OSError, http.client.HTTPException)


class _Cut(Exception):
    """The network failed while a response body was read (wraps the original error)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _guard(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield *chunks*, turning network errors into :exc:`_Cut` (local I/O errors stay apart)."""
    network_errors = _network_errors()
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except network_errors as exc:
            raise _Cut(exc) from exc
        yield chunk


def _finish(resp: BaseHTTPResponse, *, reuse: bool) -> None:
    """Give a response's connection back: drained for reuse, or closed."""
    with contextlib.suppress(Exception):
        if reuse:
            resp.drain_conn()
        else:
            resp.close()
    with contextlib.suppress(Exception):
        resp.release_conn()


def _http_error(method: str, target: _Target, resp: BaseHTTPResponse, what: str = "") -> HTTPError:
    reason = f" {resp.reason}" if resp.reason else ""
    extra = f": {what}" if what else ""
    return HTTPError(
        f"{method} {target.safe}: HTTP {resp.status}{reason}{extra}",
        url=target.safe,
        status=resp.status,
    )


class _Retrier:
    """Counts consecutive failed attempts and sleeps between them.

    ``retries`` is the number of failed attempts in a row tolerated; an
    attempt that makes progress (more bytes stored or acknowledged than ever
    before) resets the count, so a long transfer over a flaky link finishes.
    The wait is ``Retry-After`` when the server sent one (capped at
    ``max_backoff``), else full jitter: uniform in ``[0, min(max_backoff,
    backoff * 2**n)]``.
    """

    def __init__(self, retries: int, backoff: float, max_backoff: float, ctx: WorkContext):
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.ctx = ctx
        self.failures = 0

    def progressed(self) -> None:
        self.failures = 0

    def failed(
        self,
        error: WorkerBridgeError,
        *,
        cause: BaseException | None = None,
        retry_after: float | None = None,
        wait: bool = True,
    ) -> None:
        """Record a failed attempt: raise *error* when out of retries, else sleep."""
        if self.failures >= self.retries:
            raise error from cause
        self.failures += 1
        if not wait:
            return
        if retry_after is not None:
            delay = min(retry_after, self.max_backoff)
        else:
            delay = random.uniform(
                0.0, min(self.max_backoff, self.backoff * 2 ** (self.failures - 1))
            )
        _sleep(delay, self.ctx)


@dataclass
class _Session:
    """What every request of one transfer shares."""

    pool: PoolManager
    timeout: float
    headers: dict[str, str]
    origin: tuple[str, str, int]
    ctx: WorkContext

    def send(
        self,
        method: str,
        target: _Target,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
        timeout: float | None = None,
    ) -> tuple[BaseHTTPResponse, _Target]:
        """One request, following redirects for GET/HEAD/OPTIONS (at most :data:`MAX_REDIRECTS`).

        Network exceptions propagate raw (the caller decides about retries);
        a redirect that cannot be followed raises :exc:`TransferError`.
        """
        current = target
        seconds = self.timeout if timeout is None else min(timeout, self.timeout)
        for _hop in range(MAX_REDIRECTS + 1):
            all_headers = dict(self.headers)
            if current.origin != self.origin:
                for key in list(all_headers):
                    if key.lower() in _SENSITIVE_HEADERS:
                        del all_headers[key]
            if current.auth is not None and not any(
                k.lower() == "authorization" for k in all_headers
            ):
                all_headers.update(urllib3.util.make_headers(basic_auth=current.auth))
            all_headers.update(headers or {})
            resp = self.pool.urlopen(
                method,
                current.request_url,
                body=body,
                headers=all_headers,
                redirect=False,
                retries=False,
                preload_content=not stream,
                decode_content=False,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
            )
            location = resp.headers.get("Location")
            if method not in _FOLLOW_METHODS or resp.status not in _REDIRECT_STATUSES:
                return resp, current
            if not location:
                return resp, current
            _finish(resp, reuse=True)
            current = _resolve_location(current, location, method)
        raise TransferError(
            f"{method} {target.safe}: too many redirects (more than {MAX_REDIRECTS})",
            url=target.safe,
        )


def _session(
    target: _Target,
    *,
    timeout: float | None,
    ca_certs: str | os.PathLike[str] | None,
    headers: Mapping[str, str] | None,
    ctx: WorkContext | None,
) -> _Session:
    seconds = DEFAULT_TIMEOUT if timeout is None else _check_seconds("timeout", timeout)
    return _Session(
        pool=_make_pool(_check_ca_certs(ca_certs)),
        timeout=seconds,
        headers=_check_headers(headers),
        origin=target.origin,
        ctx=ctx if ctx is not None else _NULL_CONTEXT,
    )


# --------------------------------------------------------------------------- download


def part_paths(dst: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The resumable part file of *dst* and its sidecar: ``.<name>.part``, ``.<name>.part.meta``.

    Parameters
    ----------
    dst
        A download destination.

    Returns
    -------
    tuple of Path
        ``(part, meta)``, both in *dst*'s directory.  A name too long to
        carry the suffixes is shortened to its first 200 characters plus a
        hash of the whole name.
    """
    path = Path(os.fspath(dst))
    stem = path.name
    if len(os.fsencode(f".{stem}.part.meta")) > _NAME_MAX:
        digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:16]
        stem = f"{stem[:200]}~{digest}"
        while len(os.fsencode(f".{stem}.part.meta")) > _NAME_MAX:  # multi-byte characters
            stem = stem[1:]
    return path.with_name(f".{stem}.part"), path.with_name(f".{stem}.part.meta")


def _local_error(exc: OSError, path: Path, url: str) -> Exception:
    """Map an error creating the part file: unusable destination -> ValidationError."""
    if exc.errno in _BAD_PATH_ERRNOS:
        error = ValidationError(
            f"destination {str(path)!r} cannot be written ({exc.strerror}; download {url})"
        )
        error.__cause__ = exc
        return error
    return exc


@dataclass
class _PartFile:
    """The part file of a download and the validator recorded when it was started."""

    part: Path
    meta: Path
    url: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None

    def load(self) -> int:
        """Bytes usable for a resume; an inconsistent part file is discarded (returns 0)."""
        try:
            size = self.part.stat().st_size
            data = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.discard()
            return 0
        if (
            not isinstance(data, dict)
            or data.get("url") != self.url
            or not isinstance(data.get("etag"), str | None)
            or not isinstance(data.get("last_modified"), str | None)
            or not isinstance(data.get("total"), int | None)
        ):
            self.discard()
            return 0
        self.etag = data["etag"]
        self.last_modified = data["last_modified"]
        self.total = data["total"]
        if self.validator is None or (self.total is not None and size > self.total):
            self.discard()
            return 0
        return size

    @property
    def validator(self) -> str | None:
        """The ``If-Range`` value: a strong ETag, else Last-Modified, else ``None``."""
        return self.etag or self.last_modified

    def begin(self, resp: BaseHTTPResponse, total: int | None) -> None:
        """Start the part file from zero for the entity *resp* describes."""
        etag = resp.headers.get("ETag")
        self.etag = etag if etag and not etag.startswith(("W/", "w/")) else None
        self.last_modified = resp.headers.get("Last-Modified") or None
        self.total = total
        record = {
            "url": self.url,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "total": total,
        }
        self.meta.write_text(json.dumps(record), encoding="utf-8")
        with open(self.part, "wb"):
            pass

    def discard(self) -> None:
        for path in (self.part, self.meta):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _begin(state: _PartFile, resp: BaseHTTPResponse, total: int | None, url: str) -> None:
    try:
        state.begin(resp, total)
    except OSError as exc:
        with contextlib.suppress(OSError):
            state.discard()
        raise _local_error(exc, state.part, url) from exc


def _hash_prefix(path: Path, length: int, ctx: WorkContext) -> _Hash:
    """SHA-256 of the first *length* bytes of *path* (the part kept from before)."""
    hasher = hashlib.sha256()
    remaining = length
    with open(path, "rb") as f:
        while remaining > 0:
            ctx.check_cancelled()
            block = f.read(min(_HASH_BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            remaining -= len(block)
    return hasher


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_destination(dst: str | os.PathLike[str], safe_url: str) -> Path:
    if not isinstance(dst, str | os.PathLike):
        raise ValidationError(f"dst must be a path, got {type(dst).__name__}")
    path = Path(os.fspath(dst))
    if path.name in ("", ".", ".."):
        raise ValidationError(f"destination {str(path)!r} is not a file name (download {safe_url})")
    if not path.parent.is_dir():
        raise ValidationError(
            f"destination directory {str(path.parent)!r} does not exist (download {safe_url})"
        )
    if path.is_dir():
        raise ValidationError(f"destination {str(path)!r} is a directory (download {safe_url})")
    return path


def download(
    url: str,
    dst: str | os.PathLike[str],
    *,
    resume: bool = True,
    retries: int = 5,
    sha256: str | None = None,
    max_size: int | None = None,
    timeout: float | None = None,
    ca_certs: str | os.PathLike[str] | None = None,
    headers: Mapping[str, str] | None = None,
    ctx: WorkContext | None = None,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> Transfer:
    """Download *url* to *dst*, resuming, retrying and verifying.

    The body streams into ``.<name>.part`` beside *dst*, whose validator
    (ETag or Last-Modified) is recorded in ``.<name>.part.meta``; the part file
    is renamed onto *dst* only once complete and verified, so *dst* is never
    partial.  A later call resumes from the part file with ``Range`` and
    ``If-Range``: a remote file that changed meanwhile restarts from zero.

    Parameters
    ----------
    url
        ``http://`` or ``https://`` URL; ``user:password@`` becomes Basic auth.
    dst
        Destination file; its directory must exist.  Replaced atomically.
    resume
        Reuse an existing part file; ``False`` discards it first.
    retries
        Failed attempts in a row tolerated (connection errors, timeouts, cuts,
        5xx, 408, 429); an attempt that stores new bytes resets the count.
    sha256
        Expected lowercase or uppercase hex digest; a mismatch raises
        :exc:`~workerbridge.IntegrityError` and discards the part file.
    max_size
        Largest body accepted in bytes; a larger one raises
        :exc:`~workerbridge.ValidationError` and leaves nothing on disk.
    timeout
        Connect and per-read socket timeout in seconds (``None``:
        :data:`DEFAULT_TIMEOUT`).
    ca_certs
        PEM file of CAs to trust instead of the system's.
    headers
        Extra request headers (dropped on redirects to another origin when
        they carry credentials).
    ctx
        Progress and cancellation: ``ctx.report(bytes_on_disk, total_or_None)``
        and ``ctx.check_cancelled()`` once per chunk of 256 KiB.
    backoff, max_backoff
        Base and cap in seconds of the jittered exponential backoff; the cap
        also bounds a server's ``Retry-After``.

    Returns
    -------
    Transfer
        ``url`` (credentials removed), ``path`` (*dst*), ``bytes``, ``sha256``.

    Raises
    ------
    ValidationError
        Bad arguments, urllib3 missing, or the body exceeds *max_size*.
    HTTPError
        The server answered with an error status (see the module docstring).
    TransferError
        Any other failure once retries are spent; the part file is kept.
    IntegrityError
        The bytes do not match *sha256*.
    TaskCancelledError
        Raised by ``ctx.check_cancelled()``; the part file is kept, *dst* untouched.
    """
    _require_urllib3()
    target = _parse_url(url)
    safe = strip_credentials(url)
    path = _check_destination(dst, safe)
    retries = _check_count("retries", retries)
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_RE.match(sha256)):
        raise ValidationError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if max_size is not None:
        max_size = _check_count("max_size", max_size)
    backoff = _check_seconds("backoff", backoff, allow_zero=True)
    max_backoff = _check_seconds("max_backoff", max_backoff, allow_zero=True)
    session = _session(target, timeout=timeout, ca_certs=ca_certs, headers=headers, ctx=ctx)
    part_path, meta_path = part_paths(path)
    state = _PartFile(part_path, meta_path, safe)
    if not resume:
        state.discard()
    try:
        size, digest = _download_loop(
            session, target, state, _Retrier(retries, backoff, max_backoff, session.ctx), max_size
        )
        if sha256 is not None and digest != sha256.lower():
            state.discard()
            raise IntegrityError(
                # 16 hex digits each: enough to tell the digests apart, short enough
                # to pass the error sanitizer (which redacts runs of 32 and more)
                f"download of {safe}: sha256 mismatch (expected {sha256.lower()[:16]}…, "
                f"got {digest[:16]}…); nothing was kept"
            )
        fd = os.open(part_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part_path, path)
        with contextlib.suppress(FileNotFoundError):
            meta_path.unlink()
        _fsync_dir(path.parent)
        session.ctx.report(size, size)
        return Transfer(url=safe, path=os.fspath(dst), bytes=size, sha256=digest)
    finally:
        session.pool.clear()


def _download_loop(
    session: _Session,
    target: _Target,
    state: _PartFile,
    retrier: _Retrier,
    max_size: int | None,
) -> tuple[int, str]:
    """Attempts until the part file holds the whole entity; returns ``(size, sha256)``."""
    ctx = session.ctx
    safe = target.safe
    network_errors = _network_errors()
    offset = state.load()
    high_water = offset
    hasher: _Hash | None = None
    hashed = -1
    while True:
        ctx.check_cancelled()
        request_headers = {"Accept-Encoding": "identity"}
        validator = state.validator
        if offset > 0 and validator is not None:
            request_headers["Range"] = f"bytes={offset}-"
            request_headers["If-Range"] = validator
        elif offset > 0:
            state.discard()
            offset = 0
        try:
            resp, answered = session.send("GET", target, headers=request_headers, stream=True)
        except network_errors as exc:
            if _is_permanent_tls_error(exc):
                raise TransferError(f"GET {safe}: {_describe(exc)}", url=safe) from exc
            retrier.failed(TransferError(f"GET {safe}: {_describe(exc)}", url=safe), cause=exc)
            continue
        reuse = False
        try:
            status = resp.status
            total: int | None
            if status == 416 and offset > 0:
                # The part may already be complete: "bytes */<total>" equal to its size.
                match = _UNSATISFIED_RANGE_RE.match(resp.headers.get("Content-Range") or "")
                reuse = True
                if match and int(match.group(1)) == offset and state.total in (None, offset):
                    break
                state.discard()
                offset = 0
                retrier.failed(
                    TransferError(f"GET {safe}: range not satisfiable", url=safe), wait=False
                )
                continue
            if status == 206:
                match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range") or "")
                start = int(match.group(1)) if match else -1
                total = int(match.group(3)) if match and match.group(3) != "*" else None
                if (
                    match is None
                    or start != offset
                    or (total is not None and state.total is not None and total != state.total)
                ):
                    # A range we did not ask for: never splice it, start over.
                    state.discard()
                    offset = 0
                    retrier.failed(
                        TransferError(f"GET {safe}: unexpected Content-Range", url=safe),
                        wait=False,
                    )
                    continue
                if offset == 0:
                    _begin(state, resp, total, safe)
            elif status == 200:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.strip().isdigit() else None
                _begin(state, resp, total, safe)
                offset = 0
            elif _is_retryable_status(status):
                reuse = True
                retrier.failed(
                    _http_error("GET", answered, resp),
                    retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
                )
                continue
            else:
                reuse = True
                raise _http_error("GET", answered, resp)

            if max_size is not None and total is not None and total > max_size:
                state.discard()
                raise ValidationError(
                    f"GET {safe}: the body is {total} bytes, more than max_size={max_size}"
                )
            if hasher is None or hashed != offset:
                hasher = _hash_prefix(state.part, offset, ctx)
                hashed = offset
            if offset > 0:
                ctx.report(offset, total)
            try:
                with open(state.part, "r+b") as f:
                    f.seek(offset)
                    f.truncate()
                    for chunk in _guard(resp.stream(_IO_CHUNK, decode_content=False)):
                        ctx.check_cancelled()
                        if max_size is not None and offset + len(chunk) > max_size:
                            state.discard()
                            raise ValidationError(
                                f"GET {safe}: the body is larger than max_size={max_size}"
                            )
                        data = chunk
                        if total is not None and offset + len(data) > total:
                            data = data[: total - offset]
                        f.write(data)
                        hasher.update(data)
                        offset += len(data)
                        hashed = offset
                        if offset > high_water:
                            high_water = offset
                            retrier.progressed()
                        ctx.report(offset, total)
                        if total is not None and offset >= total:
                            break
            except _Cut as cut:
                retrier.failed(
                    TransferError(
                        f"GET {safe}: connection lost after {offset} bytes "
                        f"({_describe(cut.error)})",
                        url=safe,
                    ),
                    cause=cut.error,
                )
                continue
            if total is not None and offset < total:
                retrier.failed(
                    TransferError(
                        f"GET {safe}: the server closed the connection after {offset} of "
                        f"{total} bytes",
                        url=safe,
                    )
                )
                continue
            reuse = total is not None
            break
        finally:
            _finish(resp, reuse=reuse)
    if hasher is None or hashed != offset:
        hasher = _hash_prefix(state.part, offset, ctx)
    return offset, hasher.hexdigest()


# --------------------------------------------------------------------------- upload


class _SourceReader:
    """Reads the upload source at offsets, hashing its bytes once, in order."""

    def __init__(self, f: Any, size: int, path: str, ctx: WorkContext) -> None:
        self.f = f
        self.size = size
        self.path = path
        self.ctx = ctx
        self.hasher = hashlib.sha256()
        self.hashed = 0

    def read_at(self, offset: int, length: int) -> bytes:
        self.f.seek(offset)
        data: bytes = self.f.read(length)
        if len(data) != length:
            raise IntegrityError(f"upload source {self.path!r} changed while it was read")
        end = offset + len(data)
        if offset <= self.hashed < end:
            self.hasher.update(memoryview(data)[self.hashed - offset :])
            self.hashed = end
        return data

    def digest(self) -> str:
        while self.hashed < self.size:
            self.ctx.check_cancelled()
            self.read_at(self.hashed, min(_HASH_BLOCK, self.size - self.hashed))
        return self.hasher.hexdigest()


def _encode_metadata(metadata: Mapping[str, str]) -> str:
    parts = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY_RE.match(key):
            raise ValidationError(
                f"metadata key {key!r} must be non-empty printable ASCII without spaces or commas"
            )
        if not isinstance(value, str):
            raise ValidationError(f"metadata value of {key!r} must be a str")
        encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        parts.append(f"{key} {encoded}" if value else key)
    return ",".join(parts)


def upload(
    src: str | os.PathLike[str],
    url: str,
    *,
    protocol: UploadProtocol = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retries: int = 5,
    timeout: float | None = None,
    ca_certs: str | os.PathLike[str] | None = None,
    headers: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    ctx: WorkContext | None = None,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> Transfer:
    """Upload the file *src* to *url* with tus 1.0 where the server speaks it, else one PUT.

    Parameters
    ----------
    src
        The regular file to send.
    url
        For tus, the creation endpoint (the upload is created with ``POST``);
        for PUT, the resource to write.
    protocol
        ``"auto"`` asks the server with ``OPTIONS`` and uses tus when the answer
        carries ``Tus-Resumable`` and a ``Tus-Version`` listing 1.0.0, else PUT;
        ``"tus"`` requires tus (:exc:`TransferError` otherwise); ``"put"`` sends
        a single streamed PUT.
    chunk_size
        Bytes per tus ``PATCH``.
    retries
        Failed attempts in a row tolerated; for tus, a PATCH the server
        acknowledged resets the count, and each retry first asks the server
        for its offset with ``HEAD``.  A PUT restarts from the first byte.
    timeout
        Connect and per-read socket timeout in seconds (``None``:
        :data:`DEFAULT_TIMEOUT`).
    ca_certs
        PEM file of CAs to trust instead of the system's.
    headers
        Extra request headers.
    metadata
        tus ``Upload-Metadata`` pairs; ``filename`` (the source's name) and
        ``filetype`` (guessed, else ``application/octet-stream``) are added
        unless given.
    ctx
        Progress and cancellation.  Progress is the offset the server
        acknowledged (tus) or the bytes sent (PUT).  On cancellation a tus
        upload is terminated with ``DELETE`` when the server lists the
        ``termination`` extension.
    backoff, max_backoff
        Base and cap in seconds of the jittered exponential backoff.

    Returns
    -------
    Transfer
        ``url`` is the tus upload URL (or the PUT URL), credentials removed;
        ``path`` is *src*; ``sha256`` is the local file's digest.

    Raises
    ------
    ValidationError
        Bad arguments, urllib3 missing, a source that is missing, unreadable or not
        a regular file, or a file over the server's ``Tus-Max-Size``.
    OSError
        Any other failure of the operating system opening the source.
    HTTPError
        The server answered with an error status.
    TransferError
        Any other failure once retries are spent, or no tus where it was required.
    IntegrityError
        The source file changed while it was uploaded.
    TaskCancelledError
        Raised by ``ctx.check_cancelled()``.
    """
    _require_urllib3()
    target = _parse_url(url)
    if protocol not in ("auto", "tus", "put"):
        raise ValidationError(f"protocol must be 'auto', 'tus' or 'put', got {protocol!r}")
    chunk_size = _check_count("chunk_size", chunk_size, minimum=1)
    retries = _check_count("retries", retries)
    backoff = _check_seconds("backoff", backoff, allow_zero=True)
    max_backoff = _check_seconds("max_backoff", max_backoff, allow_zero=True)
    if not isinstance(src, str | os.PathLike):
        raise ValidationError(f"src must be a path, got {type(src).__name__}")
    src_path = os.fspath(src)
    fields = {
        "filename": os.path.basename(src_path),
        "filetype": mimetypes.guess_type(src_path)[0] or "application/octet-stream",
    }
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ValidationError("metadata must be a mapping of str to str")
        fields.update(metadata)
    encoded_metadata = _encode_metadata(fields)
    session = _session(target, timeout=timeout, ca_certs=ca_certs, headers=headers, ctx=ctx)
    retrier = _Retrier(retries, backoff, max_backoff, session.ctx)
    try:
        f, before = open_source(src_path, "upload source")  # closed in the finally below
    except BaseException:
        session.pool.clear()
        raise
    try:
        reader = _SourceReader(f, before.st_size, src_path, session.ctx)
        tus: _TusServer | None = None
        if protocol != "put":
            tus = _tus_probe(session, target, retrier, required=protocol == "tus")
        if tus is None:
            final_url = _put(session, target, reader, retrier)
        else:
            if tus.max_size is not None and reader.size > tus.max_size:
                raise ValidationError(
                    f"{src_path!r} is {reader.size} bytes, more than the server's "
                    f"Tus-Max-Size of {tus.max_size} ({target.safe})"
                )
            final_url = _tus_upload(
                session,
                target=target,
                reader=reader,
                retrier=retrier,
                server=tus,
                chunk_size=chunk_size,
                metadata=encoded_metadata,
            )
        digest = reader.digest()
        after = os.stat(src_path)
        if (after.st_size, after.st_mtime_ns, after.st_ino) != (
            before.st_size,
            before.st_mtime_ns,
            before.st_ino,
        ):
            raise IntegrityError(f"upload source {src_path!r} changed while it was uploaded")
        return Transfer(url=final_url, path=src_path, bytes=reader.size, sha256=digest)
    finally:
        f.close()
        session.pool.clear()


def _put(session: _Session, target: _Target, reader: _SourceReader, retrier: _Retrier) -> str:
    """One streamed PUT of the whole file, restarted from the first byte on failure."""
    ctx = session.ctx
    network_errors = _network_errors()

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < reader.size:
            ctx.check_cancelled()
            data = reader.read_at(sent, min(_IO_CHUNK, reader.size - sent))
            yield data
            sent += len(data)
            ctx.report(sent, reader.size)

    while True:
        ctx.check_cancelled()
        request_headers = {
            "Content-Length": str(reader.size),
            "Content-Type": "application/octet-stream",
        }
        try:
            resp, _ = session.send("PUT", target, headers=request_headers, body=body())
        except network_errors as exc:
            if _is_permanent_tls_error(exc):
                raise TransferError(
                    f"PUT {target.safe}: {_describe(exc)}", url=target.safe
                ) from exc
            retrier.failed(
                TransferError(f"PUT {target.safe}: {_describe(exc)}", url=target.safe), cause=exc
            )
            continue
        if 200 <= resp.status < 300:
            ctx.report(reader.size, reader.size)
            return target.safe
        if _is_retryable_status(resp.status):
            retrier.failed(
                _http_error("PUT", target, resp),
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
            )
            continue
        raise _http_error("PUT", target, resp)


@dataclass
class _TusServer:
    """What the server told about itself (from OPTIONS; all empty when it said nothing)."""

    extensions: frozenset[str] = field(default_factory=frozenset)
    max_size: int | None = None


def _tus_probe(
    session: _Session, target: _Target, retrier: _Retrier, *, required: bool
) -> _TusServer | None:
    """Ask with OPTIONS whether the server speaks tus 1.0.0; ``None`` means use PUT."""
    network_errors = _network_errors()
    safe = target.safe
    while True:
        session.ctx.check_cancelled()
        try:
            resp, _ = session.send("OPTIONS", target)
        except network_errors as exc:
            if _is_permanent_tls_error(exc):
                raise TransferError(f"OPTIONS {safe}: {_describe(exc)}", url=safe) from exc
            retrier.failed(TransferError(f"OPTIONS {safe}: {_describe(exc)}", url=safe), cause=exc)
            continue
        if _is_retryable_status(resp.status):
            retrier.failed(
                _http_error("OPTIONS", target, resp),
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
            )
            continue
        break
    versions = {v.strip() for v in (resp.headers.get("Tus-Version") or "").split(",") if v.strip()}
    speaks_tus = 200 <= resp.status < 300 and resp.headers.get("Tus-Resumable") is not None
    if speaks_tus and versions and _TUS_VERSION not in versions:
        raise TransferError(
            f"{safe}: the tus server supports versions {sorted(versions)}, not {_TUS_VERSION}",
            url=safe,
        )
    if not speaks_tus:
        # A tus server need not answer OPTIONS; with protocol="tus" the POST decides.
        return _TusServer() if required else None
    extensions = frozenset(
        e.strip().lower() for e in (resp.headers.get("Tus-Extension") or "").split(",") if e.strip()
    )
    if extensions and "creation" not in extensions:
        raise TransferError(
            f"{safe}: the tus server does not offer the creation extension", url=safe
        )
    max_size_header = (resp.headers.get("Tus-Max-Size") or "").strip()
    return _TusServer(extensions, int(max_size_header) if max_size_header.isdigit() else None)


def _tus_headers() -> dict[str, str]:
    return {"Tus-Resumable": _TUS_VERSION}


def _tus_upload(
    session: _Session,
    *,
    target: _Target,
    reader: _SourceReader,
    retrier: _Retrier,
    server: _TusServer,
    chunk_size: int,
    metadata: str,
) -> str:
    """Create the upload, then PATCH it chunk by chunk; returns the upload URL (safe)."""
    upload_target = _tus_create(session, target, reader.size, retrier, metadata)
    try:
        _tus_send(session, upload_target, reader, retrier, chunk_size)
    except TaskCancelledError:
        if "termination" in server.extensions:
            _tus_terminate(session, upload_target)
        raise
    return upload_target.safe


def _tus_create(
    session: _Session, target: _Target, size: int, retrier: _Retrier, metadata: str
) -> _Target:
    network_errors = _network_errors()
    safe = target.safe
    request_headers = {
        "Tus-Resumable": _TUS_VERSION,
        "Upload-Length": str(size),
        "Upload-Metadata": metadata,
        "Content-Length": "0",
    }
    while True:
        session.ctx.check_cancelled()
        try:
            resp, _ = session.send("POST", target, headers=request_headers, body=b"")
        except network_errors as exc:
            if _is_permanent_tls_error(exc):
                raise TransferError(f"POST {safe}: {_describe(exc)}", url=safe) from exc
            retrier.failed(TransferError(f"POST {safe}: {_describe(exc)}", url=safe), cause=exc)
            continue
        if resp.headers.get("Tus-Resumable") is None:
            raise TransferError(
                f"POST {safe}: the server does not speak tus (HTTP {resp.status}, "
                "no Tus-Resumable header)",
                url=safe,
            )
        if _is_retryable_status(resp.status):
            retrier.failed(
                _http_error("POST", target, resp),
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
            )
            continue
        if resp.status == 413:
            raise ValidationError(f"POST {safe}: the server refused a {size}-byte upload (413)")
        if not 200 <= resp.status < 300:
            raise _http_error("POST", target, resp)
        location = resp.headers.get("Location")
        if not location:
            raise TransferError(f"POST {safe}: the tus server sent no Location", url=safe)
        retrier.progressed()
        return _resolve_location(target, location, "POST")


def _tus_head(session: _Session, upload: _Target, size: int, limit: int) -> int | HTTPError:
    """The server's offset for *upload*, or the retryable HTTP error it answered."""
    resp, _ = session.send("HEAD", upload, headers=_tus_headers())
    if _is_retryable_status(resp.status):
        return _http_error("HEAD", upload, resp)
    if not 200 <= resp.status < 300:
        raise _http_error("HEAD", upload, resp, "the upload is gone")
    value = (resp.headers.get("Upload-Offset") or "").strip()
    if not value.isdigit() or int(value) > min(size, limit):
        raise TransferError(
            f"HEAD {upload.safe}: invalid Upload-Offset {value!r} (size {size})", url=upload.safe
        )
    return int(value)


def _tus_send(
    session: _Session, upload: _Target, reader: _SourceReader, retrier: _Retrier, chunk_size: int
) -> None:
    ctx = session.ctx
    safe = upload.safe
    network_errors = _network_errors()
    size = reader.size
    offset = 0
    sent_high = 0  # the furthest byte ever sent: the server cannot hold more
    resync = False
    while True:
        ctx.check_cancelled()
        if resync:
            try:
                answer = _tus_head(session, upload, size, sent_high)
            except network_errors as exc:
                retrier.failed(TransferError(f"HEAD {safe}: {_describe(exc)}", url=safe), cause=exc)
                continue
            if isinstance(answer, HTTPError):
                retrier.failed(answer)
                continue
            if answer > offset:
                retrier.progressed()
            offset = answer
            resync = False
            ctx.report(offset, size)
        if offset >= size:
            return
        length = min(chunk_size, size - offset)
        data = reader.read_at(offset, length)
        sent_high = max(sent_high, offset + length)

        def body(data: bytes = data) -> Iterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(view), _IO_CHUNK):
                ctx.check_cancelled()
                yield bytes(view[start : start + _IO_CHUNK])

        request_headers = _tus_headers()
        request_headers.update(
            {
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            }
        )
        try:
            resp, _ = session.send("PATCH", upload, headers=request_headers, body=body())
        except network_errors as exc:
            retrier.failed(
                TransferError(f"PATCH {safe} at {offset}: {_describe(exc)}", url=safe), cause=exc
            )
            resync = True
            continue
        if 200 <= resp.status < 300:
            value = (resp.headers.get("Upload-Offset") or "").strip()
            new = int(value) if value.isdigit() else -1
            if new > offset + length:
                raise TransferError(
                    f"PATCH {safe}: the server acknowledged offset {value} after {length} bytes "
                    f"at {offset}",
                    url=safe,
                )
            if new <= offset:
                retrier.failed(
                    TransferError(
                        f"PATCH {safe}: no progress acknowledged (Upload-Offset {value!r})",
                        url=safe,
                    )
                )
                resync = True
                continue
            offset = new
            retrier.progressed()
            ctx.report(offset, size)
            continue
        if resp.status == 409 or _is_retryable_status(resp.status):
            retrier.failed(
                _http_error("PATCH", upload, resp),
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
            )
            resync = True
            continue
        raise _http_error("PATCH", upload, resp)


def _tus_terminate(session: _Session, upload: _Target) -> None:
    """Best-effort DELETE of a cancelled upload (termination extension)."""
    with contextlib.suppress(Exception):
        resp, _ = session.send("DELETE", upload, headers=_tus_headers(), timeout=5.0)
        _finish(resp, reuse=False)
