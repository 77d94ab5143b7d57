"""``bridge.network``: resumable downloads and tus / PUT uploads, in workers.

Data flow (each operation is one plan, see :mod:`._base`)::

    download(url, dst)  validate here (URL, types; urllib3 present) ── one task
                        ──> ._http.download in a worker ──> record ──> Transfer
    upload(src, url)    likewise with ._http.upload
    download_many / upload_many
                        validate every item first, then at most ``concurrency``
                        tasks in flight (._base.gather); one progress total; results
                        in input order; first failure cancels the rest, or
                        return_exceptions=True keeps each item's error in its place

The HTTP client is urllib3 (the ``network`` extra); :mod:`._http` holds the
retry, resume and tus logic and the error mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import ValidationError
from .._shared import CancellationToken
from . import _http
from ._base import (
    AsyncBaseBridge,
    BaseBridge,
    Job,
    Operation,
    Plan,
    ProgressCallback,
    copy_docs,
    documented,
    drive,
    drive_async,
    gather,
    run_one,
)
from ._files import StrPath, caller_path
from ._http import DEFAULT_CHUNK_SIZE, Transfer, UploadProtocol
from ._network_handlers import transfer_from_record
from ._parts import source_size

__all__ = ["AsyncNetworkBridge", "NetworkBridge"]

#: A ``download_many`` item: ``(url, dst)`` or ``(url, dst, sha256)``.
DownloadItem = tuple[str, StrPath] | tuple[str, StrPath, str | None]
#: An ``upload_many`` item: ``(src, url)``.
UploadItem = tuple[StrPath, str]


# --------------------------------------------------------------------------- payloads


#: ``(socket_timeout, ca_certs, headers)``, the connection options every transfer takes.
Connection = tuple[float | None, StrPath | None, Mapping[str, str] | None]


def _connection(
    socket_timeout: float | None,
    ca_certs: StrPath | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    _http._require_urllib3()
    if socket_timeout is not None:
        socket_timeout = _http._check_seconds("socket_timeout", socket_timeout)
    return {
        "timeout": socket_timeout,
        "ca_certs": None if ca_certs is None else caller_path(ca_certs, "ca_certs"),
        "headers": _http._check_headers(headers) or None,
    }


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be a bool, got {value!r}")
    return value


def _download_payload(
    url: str,
    dst: StrPath,
    sha256: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    _http._parse_url(url)
    if sha256 is not None and not isinstance(sha256, str):
        raise ValidationError(f"sha256 must be a hex str or None, got {type(sha256).__name__}")
    return {"url": url, "dst": caller_path(dst, "destination"), "sha256": sha256, **options}


def _download_options(
    resume: bool, retries: int, max_size: int | None, connection: dict[str, Any]
) -> dict[str, Any]:
    if max_size is not None:
        max_size = _http._check_count("max_size", max_size)
    return {
        "resume": _flag("resume", resume),
        "retries": _http._check_count("retries", retries),
        "max_size": max_size,
        **connection,
    }


def _upload_payload(src: StrPath, url: str, options: dict[str, Any]) -> dict[str, Any]:
    _http._parse_url(url)
    return {"src": caller_path(src, "source"), "url": url, **options}


def _upload_options(
    protocol: UploadProtocol,
    chunk_size: int,
    retries: int,
    metadata: Mapping[str, str] | None,
    connection: dict[str, Any],
) -> dict[str, Any]:
    if protocol not in ("auto", "tus", "put"):
        raise ValidationError(f"protocol must be 'auto', 'tus' or 'put', got {protocol!r}")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ValidationError("metadata must be a mapping of str to str")
        _http._encode_metadata(metadata)
        metadata = dict(metadata)
    return {
        "protocol": protocol,
        "chunk_size": _http._check_count("chunk_size", chunk_size, minimum=1),
        "retries": _http._check_count("retries", retries),
        "metadata": metadata,
        **connection,
    }


def _download_items(items: object, options: dict[str, Any]) -> list[Job]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError("items must be an iterable of (url, dst[, sha256]) tuples")
    jobs: list[Job] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) not in (2, 3):
            raise ValidationError(
                f"each item must be (url, dst) or (url, dst, sha256), got {item!r}"
            )
        url, dst, *rest = item
        jobs.append(
            ("download", _download_payload(url, dst, rest[0] if rest else None, options), None)
        )
    return jobs


def _upload_items(items: object, options: dict[str, Any]) -> list[Job]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError("items must be an iterable of (src, url) tuples")
    jobs: list[Job] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValidationError(f"each item must be (src, url), got {item!r}")
        payload = _upload_payload(item[0], item[1], options)
        jobs.append(("upload", payload, source_size(payload["src"])))
    return jobs


# --------------------------------------------------------------------------- plans


def _transfers(
    op: Operation, jobs: list[Job], concurrency: int, return_exceptions: bool
) -> Plan[list[Transfer | BaseException]]:
    limit = _http._check_count("concurrency", concurrency, minimum=1)
    _flag("return_exceptions", return_exceptions)
    results: list[Transfer | BaseException] = yield from gather(
        op,
        jobs,
        limit=limit,
        convert=transfer_from_record,
        return_exceptions=return_exceptions,
    )
    return results


def download_plan(
    op: Operation,
    url: str,
    dst: StrPath,
    sha256: str | None,
    resume: bool,
    retries: int,
    max_size: int | None,
    connection: Connection,
) -> Plan[Transfer]:
    options = _download_options(resume, retries, max_size, _connection(*connection))
    payload = _download_payload(url, dst, sha256, options)
    record = yield from run_one(op, "download", payload, None)
    return transfer_from_record(record)


def upload_plan(
    op: Operation,
    src: StrPath,
    url: str,
    protocol: UploadProtocol,
    chunk_size: int,
    retries: int,
    metadata: Mapping[str, str] | None,
    connection: Connection,
) -> Plan[Transfer]:
    options = _upload_options(protocol, chunk_size, retries, metadata, _connection(*connection))
    payload = _upload_payload(src, url, options)
    record = yield from run_one(op, "upload", payload, source_size(payload["src"]))
    return transfer_from_record(record)


def download_many_plan(
    op: Operation,
    items: Iterable[DownloadItem],
    concurrency: int,
    return_exceptions: bool,
    resume: bool,
    retries: int,
    max_size: int | None,
    connection: Connection,
) -> Plan[list[Transfer | BaseException]]:
    options = _download_options(resume, retries, max_size, _connection(*connection))
    jobs = _download_items(items, options)
    return (yield from _transfers(op, jobs, concurrency, return_exceptions))


def upload_many_plan(
    op: Operation,
    items: Iterable[UploadItem],
    concurrency: int,
    return_exceptions: bool,
    protocol: UploadProtocol,
    chunk_size: int,
    retries: int,
    metadata: Mapping[str, str] | None,
    connection: Connection,
) -> Plan[list[Transfer | BaseException]]:
    options = _upload_options(protocol, chunk_size, retries, metadata, _connection(*connection))
    jobs = _upload_items(items, options)
    return (yield from _transfers(op, jobs, concurrency, return_exceptions))


# --------------------------------------------------------------------------- classes


class NetworkBridge(BaseBridge):
    """HTTP transfers in worker processes: ``bridge.network``.

    Downloads stream into a part file beside the destination, resume with
    HTTP ``Range`` (validated with ``If-Range``, so a remote file that changed
    restarts from zero), retry with jittered exponential backoff on connection
    errors, timeouts, 5xx and 429, and are renamed into place only when
    complete (and verified, with ``sha256=``).  Uploads use the tus 1.0
    resumable protocol where the server speaks it, else one streamed ``PUT``.
    Needs urllib3 (``pip install 'workerbridge[network]'``).  Get the instance
    from :attr:`workerbridge.WorkerBridge.network`.

    Errors: :exc:`~workerbridge.HTTPError` for an error status,
    :exc:`~workerbridge.TransferError` for any other failure once retries are
    spent, :exc:`~workerbridge.IntegrityError` for a digest mismatch and
    :exc:`~workerbridge.ValidationError` for bad arguments; URLs in messages
    have their credentials removed.
    """

    __slots__ = ()
    _channel = "network"

    @documented
    def download(
        self,
        url: str,
        dst: StrPath,
        *,
        resume: bool = True,
        retries: int = 5,
        sha256: str | None = None,
        max_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> Transfer:
        """Download ``url`` to ``dst``, resuming, retrying and verifying.

        The body streams into ``.<name>.part`` beside ``dst`` and is renamed
        onto ``dst`` only once complete, so ``dst`` is never partial.  A
        failed, timed-out or cancelled download keeps its part file, and a
        later call resumes from it.

        Parameters
        ----------
        url
            An ``http://`` or ``https://`` URL; ``user:password@`` becomes
            Basic authentication.
        dst
            The destination file; its directory must exist.
        resume
            Continue from an existing part file; ``False`` starts from zero.
        retries
            Failed attempts in a row tolerated; an attempt that stores new
            bytes resets the count.
        sha256
            Expected hex digest; on a mismatch the part file is discarded.
        max_size
            Largest body accepted, in bytes.
        headers
            Extra request headers.
        ca_certs
            A PEM file of CAs to trust instead of the system's.
        socket_timeout
            Connect and per-read timeout in seconds (default 30), per attempt;
            ``timeout`` bounds the whole call.
        {options}

        Returns
        -------
        workerbridge.Transfer
            ``url`` (credentials removed), ``path``, ``bytes`` and ``sha256``.

        Raises
        ------
        workerbridge.HTTPError
            The server answered with an error status (not retried, or retried
            in vain).
        workerbridge.TransferError
            Any other failure once retries are spent; the part file is kept.
        workerbridge.IntegrityError
            The bytes do not match ``sha256``.
        workerbridge.ValidationError
            Bad arguments, a missing destination directory, a body over
            ``max_size``, or urllib3 missing.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = download_plan(op, url, dst, sha256, resume, retries, max_size, connection)
        return drive(op, plan)

    @documented
    def upload(
        self,
        src: StrPath,
        url: str,
        *,
        protocol: UploadProtocol = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 5,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> Transfer:
        """Upload the file ``src`` to ``url``: tus 1.0 where the server speaks it, else one PUT.

        A tus upload survives failures: after each one it asks the server for
        its offset (``HEAD``) and continues from there.  Cancelling a tus
        upload, or its timeout, terminates it on the server (``DELETE``) where
        the server offers the termination extension.

        Parameters
        ----------
        src
            The regular file to send.
        url
            For tus, the creation endpoint; for PUT, the resource to write.
        protocol
            ``"auto"`` (ask with ``OPTIONS``), ``"tus"`` (required) or ``"put"``.
        chunk_size
            Bytes per tus ``PATCH`` (default 8 MiB).
        retries
            Failed attempts in a row tolerated; a PUT restarts from the first byte.
        metadata
            tus ``Upload-Metadata`` pairs; ``filename`` and ``filetype`` are
            added unless given.
        headers
            Extra request headers.
        ca_certs
            A PEM file of CAs to trust instead of the system's.
        socket_timeout
            Connect and per-read timeout in seconds (default 30), per attempt.
        {options}

        Returns
        -------
        workerbridge.Transfer
            ``url`` is the tus upload URL the server assigned (or the PUT
            URL); ``path``, ``bytes`` and ``sha256`` describe ``src``.

        Raises
        ------
        workerbridge.HTTPError
            The server answered with an error status.
        workerbridge.TransferError
            Any other failure once retries are spent, or no tus where it was required.
        workerbridge.IntegrityError
            ``src`` changed while it was uploaded.
        workerbridge.ValidationError
            Bad arguments, a missing source, a file over the server's
            ``Tus-Max-Size``, or urllib3 missing.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = upload_plan(op, src, url, protocol, chunk_size, retries, metadata, connection)
        return drive(op, plan)

    @documented
    def download_many(
        self,
        items: Iterable[DownloadItem],
        *,
        concurrency: int = 4,
        return_exceptions: bool = False,
        resume: bool = True,
        retries: int = 5,
        max_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> list[Transfer | BaseException]:
        """Download many files, at most ``concurrency`` at a time, as :meth:`download` does each.

        Every item is validated before the first download starts.  Progress
        is one total for all items: ``current`` is the bytes on disk so far,
        ``total`` the sum of the sizes known so far (a download's size is
        known once its server answered).

        Parameters
        ----------
        items
            ``(url, dst)`` or ``(url, dst, sha256)`` tuples.
        concurrency
            Downloads in flight at once (``>= 1``).
        return_exceptions
            ``False``: the first failure cancels the downloads still queued or
            running (each keeps its part file, for a later resume) and is
            raised.  ``True``: each item's own error takes its place in the
            returned list and the others carry on; a timeout or cancellation
            of the whole call is still raised.
        resume, retries, max_size, headers, ca_certs, socket_timeout
            As for :meth:`download`, applied to every item.
        {options}

        Returns
        -------
        list
            One :class:`~workerbridge.Transfer` per item, in the order of
            ``items`` (or the item's exception, with ``return_exceptions``).

        Raises
        ------
        workerbridge.HTTPError
            An item's server answered with an error status.
        workerbridge.TransferError
            An item failed otherwise once its retries were spent.
        workerbridge.IntegrityError
            An item's bytes do not match its ``sha256``.
        workerbridge.ValidationError
            Bad arguments in any item (nothing was started), or a body over ``max_size``.
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = download_many_plan(
            op, items, concurrency, return_exceptions, resume, retries, max_size, connection
        )
        return drive(op, plan)

    @documented
    def upload_many(
        self,
        items: Iterable[UploadItem],
        *,
        concurrency: int = 4,
        return_exceptions: bool = False,
        protocol: UploadProtocol = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 5,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> list[Transfer | BaseException]:
        """Upload many files, at most ``concurrency`` at a time, as :meth:`upload` does each.

        Every item is validated before the first upload starts.  Progress is
        one total: the bytes the servers acknowledged, out of the sizes of all
        the sources.

        Parameters
        ----------
        items
            ``(src, url)`` tuples.
        concurrency
            Uploads in flight at once (``>= 1``).
        return_exceptions
            ``False``: the first failure cancels the uploads still queued or
            running and is raised.  ``True``: each item's own error takes its
            place in the returned list and the others carry on; a timeout or
            cancellation of the whole call is still raised.
        protocol, chunk_size, retries, metadata, headers, ca_certs, socket_timeout
            As for :meth:`upload`, applied to every item.
        {options}

        Returns
        -------
        list
            One :class:`~workerbridge.Transfer` per item, in the order of
            ``items`` (or the item's exception, with ``return_exceptions``).

        Raises
        ------
        workerbridge.HTTPError
            An item's server answered with an error status.
        workerbridge.TransferError
            An item failed otherwise once its retries were spent.
        workerbridge.IntegrityError
            A source changed while it was uploaded.
        workerbridge.ValidationError
            Bad arguments in any item (nothing was started).
        {errors}
        """
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = upload_many_plan(
            op,
            items,
            concurrency,
            return_exceptions,
            protocol,
            chunk_size,
            retries,
            metadata,
            connection,
        )
        return drive(op, plan)


class AsyncNetworkBridge(AsyncBaseBridge):
    """The asyncio flavour of :class:`NetworkBridge`: the same methods, as coroutines.

    Get the instance from :attr:`workerbridge.AsyncWorkerBridge.network`.
    """

    __slots__ = ()
    _channel = "network"

    async def download(
        self,
        url: str,
        dst: StrPath,
        *,
        resume: bool = True,
        retries: int = 5,
        sha256: str | None = None,
        max_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> Transfer:
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = download_plan(op, url, dst, sha256, resume, retries, max_size, connection)
        return await drive_async(op, plan)

    async def upload(
        self,
        src: StrPath,
        url: str,
        *,
        protocol: UploadProtocol = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 5,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> Transfer:
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = upload_plan(op, src, url, protocol, chunk_size, retries, metadata, connection)
        return await drive_async(op, plan)

    async def download_many(
        self,
        items: Iterable[DownloadItem],
        *,
        concurrency: int = 4,
        return_exceptions: bool = False,
        resume: bool = True,
        retries: int = 5,
        max_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> list[Transfer | BaseException]:
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = download_many_plan(
            op, items, concurrency, return_exceptions, resume, retries, max_size, connection
        )
        return await drive_async(op, plan)

    async def upload_many(
        self,
        items: Iterable[UploadItem],
        *,
        concurrency: int = 4,
        return_exceptions: bool = False,
        protocol: UploadProtocol = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 5,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_certs: StrPath | None = None,
        socket_timeout: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancellationToken | None = None,
        priority: int = 0,
    ) -> list[Transfer | BaseException]:
        op = self._op(timeout, on_progress, cancel, priority)
        connection = (socket_timeout, ca_certs, headers)
        plan = upload_many_plan(
            op,
            items,
            concurrency,
            return_exceptions,
            protocol,
            chunk_size,
            retries,
            metadata,
            connection,
        )
        return await drive_async(op, plan)


copy_docs(AsyncNetworkBridge, NetworkBridge)
for _cls in (NetworkBridge, AsyncNetworkBridge):
    _cls.__module__ = "workerbridge.bridges"
del _cls
