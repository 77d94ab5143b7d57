"""The results and errors of network transfers: light enough to import everywhere.

Data flow::

    bridges._http (worker) --returns--> Transfer / raises TransferError, HTTPError
        --> workerbridge.Transfer, .TransferError, .HTTPError for the caller

Kept apart from :mod:`workerbridge.bridges._http` so that importing
:mod:`workerbridge` (and starting a worker) does not import urllib3.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import WorkerBridgeError

__all__ = ["HTTPError", "Transfer", "TransferError"]


@dataclass(frozen=True)
class Transfer:
    """The outcome of one download or upload.

    Attributes
    ----------
    url
        The URL transferred, credentials removed.  For a tus upload it is the
        upload URL the server assigned (its ``Location``).
    path
        The local file: the download's destination or the upload's source.
    bytes
        Size of the transferred file in bytes.
    sha256
        Lowercase hex SHA-256 of the local file's bytes.
    """

    url: str
    path: str
    bytes: int
    sha256: str


class TransferError(WorkerBridgeError):
    """A download or upload failed after its retries.

    Raised for connection failures (refused, reset, cut), timeouts, TLS
    verification failures, too many redirects, a redirect from https to http,
    a body shorter than its ``Content-Length`` once retries ran out, and
    servers that break the protocol asked for.

    Parameters
    ----------
    message
        Human-readable description; never contains URL credentials.
    url
        The URL concerned, credentials removed, or ``None``.
    """

    def __init__(self, message: str = "", url: str | None = None) -> None:
        super().__init__(message)
        self.url = url

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.url), self.__dict__)


class HTTPError(TransferError):
    """The server answered with an HTTP error status.

    Not retried: 4xx statuses except 408 and 429 (and 409 answering a tus
    PATCH, an offset conflict resolved with HEAD), and 501/505.  Retried,
    then raised with the last status: other 5xx, 408 and 429.

    Parameters
    ----------
    message
        Human-readable description; never contains URL credentials.
    url
        The URL that answered, credentials removed, or ``None``.
    status
        The HTTP status code, or ``None`` when unknown.
    """

    def __init__(
        self, message: str = "", url: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, url)
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.url, self.status), self.__dict__)


for _cls in (Transfer, TransferError, HTTPError):
    _cls.__module__ = "workerbridge"
del _cls
