"""A small HTTP server for the network guide's examples, on 127.0.0.1 only.

``Site()`` serves files held in memory with strong ETags and ``Range`` /
``If-Range``, stores the bodies of ``PUT`` requests, and speaks enough of the
tus 1.0 resumable upload protocol (core, ``creation`` and ``termination``) at
``/uploads/`` for the bridge's uploads.  ``Site(tls=True)`` serves https with a
certificate from a throwaway CA (``trustme``), whose PEM file is
``site.ca_file``.  Faults can be scripted per path (see :meth:`Site.fault`),
and every request is recorded in :attr:`Site.log`.

It runs in a thread of the documentation build's own process; the bridge's
workers reach it over the loopback interface like any other server.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import ssl
import tempfile
import threading
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded in Site.log instead

    # -- helpers -------------------------------------------------------------------------

    @property
    def site(self) -> Site:
        server: _Server = self.server  # type: ignore[assignment]
        return server.site

    def _answer(
        self, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _record(self) -> str | None:
        """Record the request; return the fault scripted for its path, if any."""
        line = f"{self.command} {self.path}"
        if self.headers.get("Range"):
            line += f" Range: {self.headers['Range']}"
        if self.command == "PATCH":
            line += f" Upload-Offset: {self.headers.get('Upload-Offset')}"
        return self.site._record(line, self.path)

    # -- files: GET and PUT --------------------------------------------------------------

    def do_GET(self) -> None:
        fault = self._record()
        if fault == "503":
            self._answer(503, {"Retry-After": "0"})
            return
        data = self.site.files.get(self.path)
        if data is None:
            self._answer(404)
            return
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        match = _RANGE.fullmatch(self.headers.get("Range", ""))
        if match and self.headers.get("If-Range", etag) == etag:
            start = int(match.group(1))
        if start and start >= len(data):
            self._answer(416, {"Content-Range": f"bytes */{len(data)}"})
            return
        body = data[start:]
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(206 if start else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault in ("cut", "stall"):
            # Promise the whole body, send half of it, then hang up (or hang).
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if fault == "stall":
                self.site._stop.wait(10)
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self._record()
        self.site.files[self.path] = self._body()
        self._answer(201)

    # -- tus 1.0 at /uploads/ ------------------------------------------------------------

    def _tus(self) -> bool:
        return self.path.startswith("/uploads/")

    def do_OPTIONS(self) -> None:
        self._record()
        if not self._tus():
            self._answer(204, {"Allow": "GET, PUT, OPTIONS"})
            return
        self._answer(
            204,
            {
                "Tus-Resumable": "1.0.0",
                "Tus-Version": "1.0.0",
                "Tus-Extension": "creation,termination",
                "Tus-Max-Size": str(1 << 30),
            },
        )

    def do_POST(self) -> None:
        self._record()
        self._body()
        if self.path != "/uploads/" or "Upload-Length" not in self.headers:
            self._answer(400 if self._tus() else 404)
            return
        with self.site._lock:
            self.site._next_id += 1
            location = f"/uploads/{self.site._next_id}"
        self.site.uploads[location] = bytearray()
        self.site.lengths[location] = int(self.headers["Upload-Length"])
        self._answer(201, {"Tus-Resumable": "1.0.0", "Location": location})

    def do_HEAD(self) -> None:
        self._record()
        stored = self.site.uploads.get(self.path)
        if stored is None:
            self._answer(404, {"Tus-Resumable": "1.0.0"})
            return
        self._answer(
            200,
            {
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(len(stored)),
                "Upload-Length": str(self.site.lengths[self.path]),
                "Cache-Control": "no-store",
            },
        )

    def do_PATCH(self) -> None:
        fault = self._record()
        stored = self.site.uploads.get(self.path)
        body = self._body()
        if stored is None:
            self._answer(404, {"Tus-Resumable": "1.0.0"})
            return
        if int(self.headers.get("Upload-Offset", -1)) != len(stored):
            self._answer(409, {"Tus-Resumable": "1.0.0"})
            return
        if fault == "cut":
            # Keep the first half of this PATCH, then hang up without answering.
            stored += body[: len(body) // 2]
            self.close_connection = True
            return
        stored += body
        self._answer(204, {"Tus-Resumable": "1.0.0", "Upload-Offset": str(len(stored))})

    def do_DELETE(self) -> None:
        self._record()
        found = self.site.uploads.pop(self.path, None)
        self._answer(204 if found is not None else 404, {"Tus-Resumable": "1.0.0"})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up or refuses the certificate is part of the examples

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class Site:
    """The server: ``files`` (path -> bytes), ``uploads`` (tus), ``log`` (requests)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.lengths: dict[str, int] = {}
        self.log: list[str] = []
        self.ca_file: str | None = None
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_id = 0
        self._tmp = tempfile.TemporaryDirectory()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site = self
        scheme = "http"
        if tls:
            import trustme

            ca = trustme.CA()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            self.ca_file = os.path.join(self._tmp.name, "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            scheme = "https"
        host, port = self._server.server_address[:2]
        self.base = f"{scheme}://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="docs-http", daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        """The full URL of ``path`` on this server."""
        return self.base + path

    def fault(self, path: str, kind: str, times: int = 1) -> None:
        """Script ``kind`` for the next ``times`` requests of ``path``.

        ``"503"``: answer 503 with ``Retry-After: 0``.  ``"cut"``: a GET sends
        half its body and hangs up; a PATCH keeps half its body and hangs up
        without answering.  ``"stall"``: a GET sends half its body, then waits
        until the site closes.
        """
        with self._lock:
            self._faults.setdefault(path, []).extend([kind] * times)

    def requests(self, path: str) -> list[str]:
        """The recorded requests whose path starts with ``path``."""
        with self._lock:
            return [line for line in self.log if line.split(" ")[1].startswith(path)]

    def _record(self, line: str, path: str) -> str | None:
        with self._lock:
            self.log.append(line)
            pending = self._faults.get(path)
            return pending.pop(0) if pending else None

    def close(self) -> None:
        """Stop the server (a second call does nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._tmp.cleanup()
