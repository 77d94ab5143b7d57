"""Download many files at once, verified, resumed after a cut connection, with one progress bar.

The script starts its own small HTTP server on 127.0.0.1 (the standard
library's :mod:`http.server`, in a thread) serving files it creates in a
temporary directory, with ETags and ``Range`` support; it contacts no other
host.  The server cuts the connection half-way through one file the first
time it is asked for it.

The client reads the site's ``index.json`` (names, sizes and SHA-256 digests),
then fetches every file with ``bridge.network.download_many``: four at a
time in the workers, each verified against its digest, under one tqdm bar.
The cut download is retried and *resumed* (``Range`` plus ``If-Range``), so
only its missing bytes travel again.  Finally, with ``return_exceptions=True``,
a missing file fails alone, as :exc:`~workerbridge.HTTPError` in its place.

Run it with ``python examples/download_many.py`` (needs the ``network``
extra, urllib3; the bar needs the ``progress`` extra).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import pathlib
import random
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import workerbridge as wb
import workerbridge.progress


class FileHandler(http.server.BaseHTTPRequestHandler):
    """GET for the files of ``server.root``, with ETag, Range and If-Range."""

    protocol_version = "HTTP/1.1"
    server: SiteServer

    def do_GET(self) -> None:
        site = self.server
        path = site.root / self.path.lstrip("/")
        if not path.is_file() or site.root not in path.resolve().parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and self.headers.get("If-Range", etag) == etag:
            start = int(match.group(1))
        site.record(self.path, self.headers.get("Range"))
        if start and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if site.cut_once(self.path):
            # Promise the whole body, send half, hang up: the client sees a cut transfer.
            self.wfile.write(body[: len(body) // 2])
            site.sent(len(body) // 2)
            self.close_connection = True
            return
        self.wfile.write(body)
        site.sent(len(body))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the example's output readable; requests are recorded in site.log


class SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: pathlib.Path, cut: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.root = root.resolve()
        self.log: list[str] = []
        self.bytes_sent = 0
        self._cut = set(cut)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, path: str, range_header: str | None) -> None:
        with self._lock:
            self.log.append(f"GET {path}" + (f" Range: {range_header}" if range_header else ""))

    def sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def cut_once(self, path: str) -> bool:
        with self._lock:
            if path in self._cut:
                self._cut.discard(path)
                return True
            return False


@contextmanager
def serve(root: pathlib.Path, cut: set[str]) -> Iterator[SiteServer]:
    server = SiteServer(root, cut)
    thread = threading.Thread(target=server.serve_forever, name="example-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def make_site(root: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Files of 100 KiB to 4 MiB, and an index.json with their sizes and digests."""
    rng = random.Random(7)
    index = {}
    for i, size in enumerate(
        [100_000, 250_000, 600_000, 1_000_000, 1_500_000, 2_500_000, 4_000_000]
    ):
        name = f"dataset-{i}.bin"
        data = rng.randbytes(size)
        (root / name).write_bytes(data)
        index[name] = {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
    (root / "index.json").write_text(json.dumps(index, indent=1))
    return index


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        site, dest = pathlib.Path(tmp, "site"), pathlib.Path(tmp, "downloads")
        site.mkdir()
        dest.mkdir()
        make_site(site)
        with serve(site, cut={"/dataset-6.bin"}) as server, wb.WorkerBridge(workers=2) as bridge:
            print(f"serving {len(list(site.iterdir()))} files at {server.url}")

            # 1. The index: one download, then read it.
            got = bridge.network.download(f"{server.url}/index.json", dest / "index.json")
            index = json.loads((dest / "index.json").read_text())
            total = sum(entry["size"] for entry in index.values())
            print(f"  index.json: {got.bytes} bytes, {len(index)} files, {total / 2**20:.1f} MiB")

            # 2. Every file, four at a time, each checked against its digest, one bar.
            items = [
                (f"{server.url}/{name}", dest / name, entry["sha256"])
                for name, entry in index.items()
            ]
            before = server.bytes_sent
            transfers = bridge.network.download_many(
                items, concurrency=4, on_progress=wb.progress.tqdm(desc="download", total=total)
            )
            verified = sum(
                isinstance(t, wb.Transfer)
                and t.sha256 == index[pathlib.Path(t.path).name]["sha256"]
                for t in transfers
            )
            print(f"  downloaded {len(transfers)} files, {verified} verified by SHA-256")
            resumed = "; ".join(line for line in server.log if "Range" in line)
            sent = server.bytes_sent - before
            print(f"  the cut download was resumed: {resumed}")
            print(
                f"  the server sent {sent:,} bytes for {total:,} bytes of files: "
                f"the resume fetched only what was missing"
            )

            # 3. One bad item fails alone with return_exceptions=True.
            items = [
                (f"{server.url}/dataset-0.bin", dest / "again-0.bin"),
                (f"{server.url}/missing.bin", dest / "missing.bin"),
            ]
            for (url, _), outcome in zip(
                items, bridge.network.download_many(items, return_exceptions=True), strict=True
            ):
                if isinstance(outcome, wb.HTTPError):
                    print(f"  {url.rsplit('/', 1)[1]}: HTTPError {outcome.status}: {outcome}")
                elif isinstance(outcome, wb.Transfer):
                    print(f"  {url.rsplit('/', 1)[1]}: {outcome.bytes:,} bytes")
            names = sorted(p.name for p in dest.iterdir())
            print(
                f"  {len(names)} files in the destination, no part files: "
                f"{not any(n.endswith('.part') or n.endswith('.meta') for n in names)}"
            )


if __name__ == "__main__":
    main()
