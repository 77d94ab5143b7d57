"""Real servers for the network engine's tests, all on 127.0.0.1.

* :func:`run_nginx` -- a private nginx (Debian package ``nginx-light``) with its
  own prefix, config, logs and pid under a temp dir: static files with Range
  and ETag, a WebDAV ``PUT`` location, redirects, and an https server whose
  certificate comes from a trustme CA.
* :class:`FaultServer` -- a small threaded ``http.server`` that plays scripted
  faults per path (status codes with ``Retry-After``, bodies shorter than
  their ``Content-Length``, stalls, wrong ``Content-Range``, redirect chains)
  and records every request it saw.
* :class:`CutProxy` -- a TCP proxy that cuts connections after N bytes in one
  direction, a given number of times.
* :class:`TusServer` -- tuspyserver (FastAPI) under uvicorn in a subprocess,
  restartable on the same port and storage.  Run as a script
  (``python netservers.py tus PORT DIR``) this module is that server.

Every start waits for its port with a deadline; every stop is bounded in time
and kills what does not stop.  Tools that are missing make the tests that need
them fail when ``CI=true`` and skip otherwise, with the install command.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import hashlib
import http.server
import importlib.util
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
NGINX_INSTALL = "apt-get install -y --no-install-recommends nginx-light"
TUS_INSTALL = "pip install tuspyserver uvicorn"


def missing_tool(message: str) -> None:
    """Fail (``CI=true``) or skip (elsewhere) the current test for a missing tool."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Wait until something accepts connections on *port*; bounded by *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before listening:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> None:
    """Stop *proc*: *sig*, then SIGKILL after 5 s; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- nginx


def nginx_binary() -> str | None:
    """Path of the nginx executable, or ``None``."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Nginx:
    """A running private nginx."""

    prefix: Path
    docroot: Path
    uploads: Path
    port: int
    tls_port: int
    ca_file: Path
    proc: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def https_url(self, path: str) -> str:
        return f"https://{HOST}:{self.tls_port}/{path.lstrip('/')}"

    def access_log(self, uri: str | None = None, *, at_least: int = 1) -> list[dict[str, str]]:
        """Parsed access log rows (method, uri, status, range, if_range, sent) for *uri*.

        nginx logs a request after answering it, so this waits (at most 2 s)
        until *at_least* rows are there.
        """
        deadline = time.monotonic() + 2
        while True:
            rows = [r for r in self._read_log() if uri is None or r["uri"] == uri]
            if len(rows) >= at_least or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def _read_log(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        log = self.prefix / "access.log"
        if not log.exists():
            return rows
        keys = ("method", "uri", "status", "range", "if_range", "sent")
        for line in log.read_text().splitlines():
            m = re.match(r'^(\S+) (\S+) (\d+) "([^"]*)" "([^"]*)" (\d+)$', line)
            if m:
                rows.append(dict(zip(keys, m.groups(), strict=True)))
        return rows


_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    log_format wb '$request_method $uri $status "$http_range" "$http_if_range" $body_bytes_sent';
    access_log {prefix}/access.log wb;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_timeout 30s;
    server {{
        listen {host}:{port};
        root {docroot};
        location /upload/ {{
            alias {uploads}/;
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 0;
        }}
        location = /redirect-loop {{ return 302 /redirect-loop; }}
        location = /moved {{ return 301 /data.bin; }}
    }}
    server {{
        listen {host}:{tls_port} ssl;
        ssl_certificate {pem};
        ssl_certificate_key {pem};
        root {docroot};
        location = /downgrade {{ return 302 http://{host}:{port}/data.bin; }}
    }}
}}
"""


@contextlib.contextmanager
def run_nginx(tmp: Path) -> Iterator[Nginx]:
    """Start a private nginx under *tmp* (http and https on free ports); stop it at exit.

    Missing nginx fails the test with ``CI=true`` and skips it otherwise.
    """
    binary = nginx_binary()
    if binary is None:
        missing_tool(f"nginx is not installed; install it with: {NGINX_INSTALL}")
        raise AssertionError("unreachable")
    try:
        import trustme
    except ImportError:
        missing_tool("trustme is not installed: pip install trustme")
        raise AssertionError("unreachable") from None
    prefix = tmp / "nginx"
    docroot = tmp / "docroot"
    uploads = tmp / "uploads"
    for d in (prefix / "tmp", docroot, uploads):
        d.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    pem = prefix / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = prefix / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port, tls_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            prefix=prefix,
            host=HOST,
            port=port,
            tls_port=tls_port,
            docroot=docroot,
            uploads=uploads,
            pem=pem,
        )
    )
    errors = prefix / "error.log"
    log = prefix / "stderr.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-e", str(errors)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, timeout=10, proc=proc, log=log)
        wait_for_port(tls_port, timeout=10, proc=proc, log=log)
        yield Nginx(prefix, docroot, uploads, port, tls_port, ca_file, proc)
    finally:
        stop_process(proc, sig=signal.SIGQUIT)


# --------------------------------------------------------------------------- fault server


@dataclass
class Status:
    """Answer with this status (and headers, body) instead of the resource."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Short:
    """Answer 200 claiming ``len(data) + extra`` bytes, send ``data[:sent]``, then close."""

    sent: int | None = None
    extra: int = 0


@dataclass
class Stall:
    """Sleep this long before answering normally (a read timeout on the client)."""

    seconds: float


@dataclass
class BadRange:
    """Answer a ranged GET with 206 and a Content-Range that starts at 0, not where asked."""


@dataclass
class Resource:
    data: bytes
    etag: str
    last_modified: str
    chunked: bool = False


@dataclass
class Seen:
    """One request as the fault server saw it."""

    time: float
    method: str
    path: str
    headers: dict[str, str]
    body_length: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> FaultServer:
        server: _FaultHTTPServer = self.server  # type: ignore[assignment]
        return server.owner

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _record(self, body_length: int = 0) -> None:
        owner = self.owner
        with owner.lock:
            owner.requests.append(
                Seen(
                    time.monotonic(),
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body_length,
                )
            )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, code: int, headers: dict[str, str], body: bytes, *, head: bool = False) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        if not any(k.lower() == "content-length" for k in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _fault(self) -> object | None:
        owner = self.owner
        with owner.lock:
            queue = owner.faults.get(self.path)
            if queue:
                fault, times = queue[0]
                if times is not None:
                    if times <= 1:
                        queue.popleft()
                    else:
                        queue[0] = (fault, times - 1)
                return fault
        return None

    def _apply_common_fault(self, fault: object | None) -> bool:
        if isinstance(fault, Stall):
            time.sleep(fault.seconds)
            return False
        if isinstance(fault, Status):
            self._send(fault.code, fault.headers, fault.body, head=self.command == "HEAD")
            return True
        return False

    def do_GET(self, head: bool = False) -> None:
        self._record()
        m = re.fullmatch(r"/redirect/(\d+)/(.*)", self.path)
        if m:
            n = int(m.group(1))
            nxt = f"/redirect/{n - 1}/{m.group(2)}" if n > 1 else f"/{m.group(2)}"
            self._send(302, {"Location": nxt}, b"")
            return
        fault = self._fault()
        if self._apply_common_fault(fault):
            return
        res = self.owner.files.get(self.path)
        if res is None:
            self._send(404, {}, b"not found\n", head=head)
            return
        data = res.data
        base = {"ETag": res.etag, "Last-Modified": res.last_modified, "Accept-Ranges": "bytes"}
        if isinstance(fault, Short):
            body = data if fault.sent is None else data[: fault.sent]
            self.close_connection = True
            self._send(
                200,
                {**base, "Content-Length": str(len(data) + fault.extra), "Connection": "close"},
                body,
                head=head,
            )
            return
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and (if_range is None or if_range in (res.etag, res.last_modified)):
            rm = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if rm:
                start = int(rm.group(1))
                end = int(rm.group(2)) if rm.group(2) else len(data) - 1
                if start >= len(data):
                    self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", head=head)
                    return
                end = min(end, len(data) - 1)
                if isinstance(fault, BadRange):
                    start = 0
                self._send(
                    206,
                    {**base, "Content-Range": f"bytes {start}-{end}/{len(data)}"},
                    data[start : end + 1],
                    head=head,
                )
                return
        if res.chunked:
            self.send_response(200)
            for key, value in base.items():
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not head:
                for i in range(0, len(data), 65536):
                    piece = data[i : i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            return
        self._send(200, base, data, head=head)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_PUT(self) -> None:
        fault = self._fault()
        body = self._read_body()
        self._record(len(body))
        if self._apply_common_fault(fault):
            return
        owner = self.owner
        with owner.lock:
            owner.uploads[self.path] = body
        self._send(201, {}, b"")

    def do_OPTIONS(self) -> None:
        self._record()
        self._send(200, {"Allow": "GET, HEAD, PUT, OPTIONS"}, b"")

    def do_POST(self) -> None:
        body = self._read_body()
        self._record(len(body))
        self._send(405, {"Allow": "GET, HEAD, PUT, OPTIONS"}, b"no POST here\n")


class _FaultHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # clients that hang up mid-answer are expected here


class FaultServer:
    """A threaded HTTP server with scripted per-path faults; a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, Resource] = {}
        self.faults: dict[str, collections.deque[tuple[object, int | None]]] = {}
        self.requests: list[Seen] = []
        self.uploads: dict[str, bytes] = {}
        self._httpd = _FaultHTTPServer((HOST, 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes, *, chunked: bool = False) -> Resource:
        """Serve *data* at *path* (with Range, a strong ETag and Last-Modified)."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        res = Resource(data, etag, email.utils.formatdate(1_700_000_000, usegmt=True), chunked)
        with self.lock:
            self.files["/" + path.lstrip("/")] = res
        return res

    def fail(self, path: str, fault: object, *, times: int | None = 1) -> None:
        """Play *fault* on the next *times* requests for *path* (``None``: forever)."""
        with self.lock:
            self.faults.setdefault("/" + path.lstrip("/"), collections.deque()).append(
                (fault, times)
            )

    def seen(self, path: str, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path == "/" + path.lstrip("/") and (method is None or r.method == method)
            ]


# --------------------------------------------------------------------------- cutting proxy


class CutProxy:
    """A TCP proxy to ``127.0.0.1:upstream`` that cuts connections after *cut_after* bytes.

    Bytes are counted per connection in one *direction* (``"down"``: server to
    client, ``"up"``: client to server).  The first *cuts* connections that
    reach the limit are cut there (both sockets closed after forwarding
    exactly *cut_after* bytes); later traffic is relayed untouched.
    """

    def __init__(self, upstream: int, *, cut_after: int, cuts: int, direction: str = "down"):
        if direction not in ("down", "up"):
            raise ValueError(direction)
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = cuts
        self.direction = direction
        self.cuts_done = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> CutProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepter.join(timeout=5)
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(t)
            t.start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((HOST, self.upstream), timeout=5)
        except OSError:
            client.close()
            return
        counted_from = upstream if self.direction == "down" else client
        sel = selectors.DefaultSelector()
        count = 0
        try:
            client.setblocking(True)
            upstream.setblocking(True)
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            deadline = time.monotonic() + 60
            while not self._stop.is_set() and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    try:
                        data = src.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if src is counted_from:
                        with self._lock:
                            cut = self.cuts_done < self.cuts and count + len(data) >= self.cut_after
                            if cut:
                                self.cuts_done += 1
                        if cut:
                            with contextlib.suppress(OSError):
                                dst.sendall(data[: self.cut_after - count])
                            return
                        count += len(data)
                    try:
                        dst.sendall(data)
                    except OSError:
                        return
        finally:
            sel.close()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


# --------------------------------------------------------------------------- tus server


def tus_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("tuspyserver", "uvicorn"))


class TusServer:
    """tuspyserver under uvicorn in a subprocess; :meth:`restart` keeps port and storage."""

    def __init__(self, tmp: Path) -> None:
        if not tus_available():
            missing_tool(f"the tus test server is not installed: {TUS_INSTALL}")
        self.port = free_port()
        self.files_dir = tmp / "tus-files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "tus-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The creation endpoint."""
        return f"http://{HOST}:{self.port}/files/"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "tus", str(self.port), str(self.files_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        wait_for_port(self.port, timeout=30, proc=self.proc, log=self.log)

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown)."""
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGKILL)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> TusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stored(self, upload_url: str) -> Path:
        """The server-side data file of an upload URL."""
        return self.files_dir / upload_url.rstrip("/").rsplit("/", 1)[-1]


def _serve_tus(port: int, files_dir: str) -> None:
    import uvicorn
    from fastapi import FastAPI
    from tuspyserver import create_tus_router

    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=files_dir))
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "tus":
        _serve_tus(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(f"usage: {sys.argv[0]} tus PORT FILES_DIR")
