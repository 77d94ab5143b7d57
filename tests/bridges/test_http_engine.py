"""The network engine (``workerbridge.bridges._http``) against real servers on 127.0.0.1.

nginx serves static files (Range, ETag), WebDAV PUT and TLS; small Python
servers play faults nginx cannot; a TCP proxy cuts connections; tuspyserver is
the tus 1.0 server.  Every fault test ends with the right bytes (compared by
SHA-256) or a typed error with no file at the destination.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import workerbridge
from workerbridge import IntegrityError, TaskCancelledError, ValidationError
from workerbridge.bridges import _http
from workerbridge.bridges._http import HTTPError, Transfer, TransferError, download, upload

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import netservers as ns  # noqa: E402

BACKOFF = 0.01  # fast retries: base and cap of the backoff in seconds
CAP = 0.05
MIB = 1024 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(dst: Path) -> list[str]:
    """Every file the download to *dst* left behind (dst, part, meta)."""
    part, meta = _http.part_paths(dst)
    return [p.name for p in (dst, part, meta) if p.exists()]


class Ctx:
    """A WorkContext that records progress and cancels on request."""

    def __init__(
        self,
        *,
        cancel_after: int | None = None,
        on_report: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.reports: list[tuple[int, int | None]] = []
        self.cancel_after = cancel_after
        self.on_report = on_report
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check_cancelled(self) -> None:
        if self._cancelled:
            raise TaskCancelledError("cancelled by the test")

    def report(self, current: int, total: int | None = None) -> None:
        self.reports.append((current, total))
        if self.cancel_after is not None and len(self.reports) >= self.cancel_after:
            self._cancelled = True
        if self.on_report is not None:
            self.on_report(current, total)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ns.Nginx]:
    with ns.run_nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture
def fault() -> Iterator[ns.FaultServer]:
    with ns.FaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ns.TusServer]:
    server = ns.TusServer(tmp_path_factory.mktemp("tus"))
    with server:
        yield server


def publish(nginx: ns.Nginx, name: str, data: bytes) -> str:
    (nginx.docroot / name).write_bytes(data)
    return nginx.url(name)


def stored_uploads(tus: ns.TusServer) -> set[str]:
    return {p.name for p in tus.files_dir.iterdir() if not p.name.startswith(".")}


# --------------------------------------------------------------------------- downloads: nginx


def test_download_whole_file(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(3 * MIB + 123, 1)
    url = publish(nginx, "whole.bin", data)
    ctx = Ctx()
    dst = tmp_path / "whole.bin"
    result = download(url, dst, ctx=ctx)
    assert result == Transfer(url=url, path=str(dst), bytes=len(data), sha256=sha(data))
    assert dst.read_bytes() == data
    assert leftovers(dst) == ["whole.bin"]
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert ctx.reports[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in ctx.reports)
    assert max(b - a for a, b in zip([0, *currents], currents, strict=False)) <= MIB


def test_download_empty_file(nginx: ns.Nginx, tmp_path: Path) -> None:
    url = publish(nginx, "empty.bin", b"")
    result = download(url, tmp_path / "empty.bin")
    assert result.bytes == 0
    assert result.sha256 == sha(b"")
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_download_replaces_existing_destination(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(5000, 2)
    url = publish(nginx, "replace.bin", data)
    dst = tmp_path / "replace.bin"
    dst.write_bytes(b"old contents")
    download(url, dst)
    assert dst.read_bytes() == data


def test_cancel_keeps_part_then_resume_with_range(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(4 * MIB, 3)
    url = publish(nginx, "resume.bin", data)
    dst = tmp_path / "resume.bin"
    part, meta = _http.part_paths(dst)
    with pytest.raises(TaskCancelledError):
        download(url, dst, ctx=Ctx(cancel_after=3))
    assert not dst.exists()
    assert part.exists()
    assert meta.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    assert part.read_bytes() == data[:kept]
    assert json.loads(meta.read_text())["etag"]

    ctx = Ctx()
    result = download(url, dst, ctx=ctx)
    assert result.sha256 == sha(data)
    assert dst.read_bytes() == data
    assert leftovers(dst) == ["resume.bin"]
    assert ctx.reports[0] == (kept, len(data))  # continued, did not start over
    assert ctx.reports[1][0] > kept
    last = nginx.access_log("/resume.bin", at_least=2)[-1]
    assert last["status"] == "206"
    assert last["range"] == f"bytes={kept}-"
    assert last["if_range"] != "-"


def test_resume_false_starts_over(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(2 * MIB, 4)
    url = publish(nginx, "noresume.bin", data)
    dst = tmp_path / "noresume.bin"
    with pytest.raises(TaskCancelledError):
        download(url, dst, ctx=Ctx(cancel_after=2))
    download(url, dst, resume=False)
    assert dst.read_bytes() == data
    last = nginx.access_log("/noresume.bin", at_least=2)[-1]
    assert (last["status"], last["range"]) == ("200", "-")


def test_changed_remote_file_restarts_from_zero(nginx: ns.Nginx, tmp_path: Path) -> None:
    old, new = blob(2 * MIB, 5), blob(2 * MIB, 6)
    url = publish(nginx, "changing.bin", old)
    dst = tmp_path / "changing.bin"
    with pytest.raises(TaskCancelledError):
        download(url, dst, ctx=Ctx(cancel_after=2))
    assert _http.part_paths(dst)[0].stat().st_size > 0
    # Same size, different bytes and mtime: a new ETag.
    path = nginx.docroot / "changing.bin"
    path.write_bytes(new)
    stamp = time.time() + 10
    os.utime(path, (stamp, stamp))
    result = download(url, dst)
    assert result.sha256 == sha(new)
    assert dst.read_bytes() == new
    last = nginx.access_log("/changing.bin", at_least=2)[-1]
    assert last["status"] == "200"  # If-Range did not match: the whole new file
    assert last["if_range"] != "-"


def test_complete_part_file_is_finished_from_416(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(MIB, 23)
    url = publish(nginx, "done.bin", data)
    dst = tmp_path / "done.bin"
    with pytest.raises(TaskCancelledError):
        download(url, dst, ctx=Ctx(cancel_after=1))
    part, _ = _http.part_paths(dst)
    part.write_bytes(data)  # as if the last chunk landed just before a crash
    result = download(url, dst, sha256=sha(data))
    assert result.bytes == len(data)
    assert dst.read_bytes() == data
    assert leftovers(dst) == ["done.bin"]
    assert nginx.access_log("/done.bin", at_least=2)[-1]["status"] == "416"


def test_long_destination_name(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(1000, 24)
    url = publish(nginx, "long.bin", data)
    dst = tmp_path / ("n" * 250)
    part, meta = _http.part_paths(dst)
    assert len(meta.name) <= 255
    assert part.parent == dst.parent
    assert download(url, dst).sha256 == sha(data)
    assert leftovers(dst) == [dst.name]


def test_part_file_without_meta_is_not_trusted(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(300_000, 7)
    url = publish(nginx, "nometa.bin", data)
    dst = tmp_path / "nometa.bin"
    part, _ = _http.part_paths(dst)
    part.write_bytes(b"garbage that must not be spliced in")
    download(url, dst)
    assert dst.read_bytes() == data


def test_connection_cut_after_n_bytes_resumes(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(3 * MIB, 8)
    publish(nginx, "cut.bin", data)
    dst = tmp_path / "cut.bin"
    with ns.CutProxy(nginx.port, cut_after=700_000, cuts=3, direction="down") as proxy:
        result = download(
            proxy.url("cut.bin"), dst, sha256=sha(data), backoff=BACKOFF, max_backoff=CAP
        )
        assert proxy.cuts_done == 3
    assert result.sha256 == sha(data)
    assert dst.read_bytes() == data
    rows = nginx.access_log("/cut.bin", at_least=4)
    assert [r["status"] for r in rows].count("206") >= 3


def test_404_is_http_error_and_leaves_nothing(nginx: ns.Nginx, tmp_path: Path) -> None:
    dst = tmp_path / "missing.bin"
    with pytest.raises(HTTPError) as info:
        download(nginx.url("no-such-file.bin"), dst, backoff=BACKOFF, max_backoff=CAP)
    assert info.value.status == 404
    assert info.value.url == nginx.url("no-such-file.bin")
    assert "404" in str(info.value)
    assert leftovers(dst) == []
    assert len(nginx.access_log("/no-such-file.bin")) == 1


def test_max_size_announced(nginx: ns.Nginx, tmp_path: Path) -> None:
    url = publish(nginx, "big.bin", blob(MIB, 9))
    dst = tmp_path / "big.bin"
    with pytest.raises(ValidationError, match="max_size"):
        download(url, dst, max_size=1000)
    assert leftovers(dst) == []
    assert download(url, dst, max_size=MIB).bytes == MIB


def test_sha256_mismatch(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(500_000, 10)
    url = publish(nginx, "digest.bin", data)
    dst = tmp_path / "digest.bin"
    with pytest.raises(IntegrityError, match="sha256"):
        download(url, dst, sha256="0" * 64)
    assert leftovers(dst) == []
    assert download(url, dst, sha256=sha(data).upper()).sha256 == sha(data)


def test_tls_with_trustme_ca(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(MIB, 11)
    publish(nginx, "tls.bin", data)
    dst = tmp_path / "tls.bin"
    result = download(nginx.https_url("tls.bin"), dst, ca_certs=nginx.ca_file)
    assert result.sha256 == sha(data)
    assert result.url.startswith("https://")


def test_tls_without_the_ca_fails_fast(nginx: ns.Nginx, tmp_path: Path) -> None:
    publish(nginx, "tls2.bin", b"x" * 100)
    dst = tmp_path / "tls2.bin"
    start = time.monotonic()
    with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED") as info:
        download(nginx.https_url("tls2.bin"), dst, retries=5, backoff=1.0)
    assert time.monotonic() - start < 1.0  # not retried
    assert not isinstance(info.value, HTTPError)
    assert leftovers(dst) == []


def test_redirect_loop_and_downgrade(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(1000, 12)
    publish(nginx, "data.bin", data)
    assert download(nginx.url("moved"), tmp_path / "a").sha256 == sha(data)
    with pytest.raises(TransferError, match="too many redirects"):
        download(nginx.url("redirect-loop"), tmp_path / "b")
    with pytest.raises(TransferError, match="https to"):
        download(nginx.https_url("downgrade"), tmp_path / "c", ca_certs=nginx.ca_file)
    assert leftovers(tmp_path / "b") == []
    assert leftovers(tmp_path / "c") == []


# --------------------------------------------------------------------------- downloads: faults


def test_503_then_200_honours_retry_after_seconds(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(200_000, 13)
    fault.add("f.bin", data)
    fault.fail("f.bin", ns.Status(503, {"Retry-After": "1"}))
    result = download(fault.url("f.bin"), tmp_path / "f.bin", backoff=0.01, max_backoff=5)
    assert result.sha256 == sha(data)
    first, second = fault.seen("f.bin")
    assert second.time - first.time >= 0.9


def test_retry_after_http_date(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(1000, 14)
    fault.add("d.bin", data)
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    fault.fail("d.bin", ns.Status(503, {"Retry-After": when}))
    download(fault.url("d.bin"), tmp_path / "d.bin", backoff=0.01, max_backoff=5)
    first, second = fault.seen("d.bin")
    assert 0.5 <= second.time - first.time < 3.5


def test_retry_after_is_capped(fault: ns.FaultServer, tmp_path: Path) -> None:
    fault.add("cap.bin", b"abc")
    fault.fail("cap.bin", ns.Status(503, {"Retry-After": "3600"}))
    start = time.monotonic()
    download(fault.url("cap.bin"), tmp_path / "cap.bin", backoff=0.01, max_backoff=0.2)
    assert time.monotonic() - start < 3


def test_429_is_retried(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(10_000, 15)
    fault.add("r.bin", data)
    fault.fail("r.bin", ns.Status(429, {"Retry-After": "0"}), times=2)
    result = download(fault.url("r.bin"), tmp_path / "r.bin", backoff=BACKOFF, max_backoff=CAP)
    assert result.sha256 == sha(data)
    assert len(fault.seen("r.bin")) == 3


def test_5xx_retries_exhausted(fault: ns.FaultServer, tmp_path: Path) -> None:
    fault.add("down.bin", b"never")
    fault.fail("down.bin", ns.Status(503), times=None)
    dst = tmp_path / "down.bin"
    with pytest.raises(HTTPError) as info:
        download(fault.url("down.bin"), dst, retries=3, backoff=BACKOFF, max_backoff=CAP)
    assert info.value.status == 503
    assert len(fault.seen("down.bin")) == 4
    assert leftovers(dst) == []


def test_other_4xx_not_retried(fault: ns.FaultServer, tmp_path: Path) -> None:
    fault.add("forbidden.bin", b"x")
    fault.fail("forbidden.bin", ns.Status(403), times=None)
    with pytest.raises(HTTPError) as info:
        download(fault.url("forbidden.bin"), tmp_path / "x", backoff=BACKOFF, max_backoff=CAP)
    assert info.value.status == 403
    assert len(fault.seen("forbidden.bin")) == 1


def test_lying_content_length_once(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(150_000, 16)
    fault.add("lie.bin", data)
    fault.fail("lie.bin", ns.Short(extra=5000))  # claims 5000 more bytes than it sends
    result = download(fault.url("lie.bin"), tmp_path / "lie.bin", backoff=BACKOFF, max_backoff=CAP)
    assert result.sha256 == sha(data)
    assert (tmp_path / "lie.bin").read_bytes() == data


def test_lying_content_length_always(fault: ns.FaultServer, tmp_path: Path) -> None:
    fault.add("liar.bin", blob(50_000, 17))
    fault.fail("liar.bin", ns.Short(extra=1), times=None)
    dst = tmp_path / "liar.bin"
    with pytest.raises(TransferError, match="connection") as info:
        download(fault.url("liar.bin"), dst, retries=3, backoff=BACKOFF, max_backoff=CAP)
    assert not isinstance(info.value, HTTPError)
    assert not dst.exists()
    assert len(fault.seen("liar.bin")) == 4


def test_truncated_body_is_resumed(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(400_000, 18)
    fault.add("trunc.bin", data)
    fault.fail("trunc.bin", ns.Short(sent=123_457))
    result = download(
        fault.url("trunc.bin"), tmp_path / "trunc.bin", backoff=BACKOFF, max_backoff=CAP
    )
    assert result.sha256 == sha(data)
    second = fault.seen("trunc.bin")[1]
    assert second.headers["range"] == "bytes=123457-"
    assert second.headers["if-range"] == fault.files["/trunc.bin"].etag


def test_wrong_content_range_restarts_from_zero(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(300_000, 19)
    fault.add("range.bin", data)
    fault.fail("range.bin", ns.Short(sent=100_000))
    fault.fail("range.bin", ns.BadRange())
    result = download(
        fault.url("range.bin"), tmp_path / "range.bin", backoff=BACKOFF, max_backoff=CAP
    )
    assert result.sha256 == sha(data)
    assert (tmp_path / "range.bin").read_bytes() == data
    third = fault.seen("range.bin")[2]
    assert "range" not in third.headers


def test_max_size_while_streaming(fault: ns.FaultServer, tmp_path: Path) -> None:
    fault.add("chunked.bin", blob(500_000, 20), chunked=True)
    dst = tmp_path / "chunked.bin"
    with pytest.raises(ValidationError, match="max_size"):
        download(fault.url("chunked.bin"), dst, max_size=100_000)
    assert leftovers(dst) == []
    assert download(fault.url("chunked.bin"), dst).bytes == 500_000


def test_redirect_limit(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(1000, 21)
    fault.add("target.bin", data)
    assert download(fault.url("redirect/10/target.bin"), tmp_path / "ok").sha256 == sha(data)
    with pytest.raises(TransferError, match="too many redirects"):
        download(fault.url("redirect/11/target.bin"), tmp_path / "no")
    assert leftovers(tmp_path / "no") == []


def test_read_timeout_is_retried(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(1000, 22)
    fault.add("slow.bin", data)
    fault.fail("slow.bin", ns.Stall(1.0))
    result = download(
        fault.url("slow.bin"), tmp_path / "slow.bin", timeout=0.3, backoff=BACKOFF, max_backoff=CAP
    )
    assert result.sha256 == sha(data)


def test_basic_auth_from_url_and_credentials_stripped(
    fault: ns.FaultServer, tmp_path: Path
) -> None:
    fault.add("auth.bin", b"secret data")
    url = fault.url("auth.bin").replace("http://", "http://alice:s3cret@")
    result = download(url, tmp_path / "auth.bin")
    assert result.url == fault.url("auth.bin")
    assert fault.seen("auth.bin")[0].headers["authorization"] == "Basic YWxpY2U6czNjcmV0"
    with pytest.raises(HTTPError) as info:
        download(url.replace("auth.bin", "nope.bin"), tmp_path / "nope.bin")
    assert "s3cret" not in str(info.value)
    assert "alice" not in str(info.value)
    assert info.value.url == fault.url("nope.bin")


def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://bob:hunter2@127.0.0.1:{ns.free_port()}/x.bin"
    with pytest.raises(TransferError) as info:
        download(url, tmp_path / "x.bin", retries=2, backoff=BACKOFF, max_backoff=CAP)
    assert "hunter2" not in str(info.value)
    assert info.value.url is not None
    assert "bob" not in info.value.url
    assert leftovers(tmp_path / "x.bin") == []


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://user:pw@127.0.0.1/file", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("http://[::1", "malformed"),
        ("http://", "malformed"),
        ("http://127.0.0.1:99999/x", "malformed"),
        ("not a url", "malformed"),
        ("127.0.0.1/x", "malformed"),
        ("", "malformed"),
        ("http://exa mple/x", "malformed"),
    ],
)
def test_bad_urls(url: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        download(url, tmp_path / "out")
    assert "pw@" not in str(info.value)
    assert leftovers(tmp_path / "out") == []


def test_credentials_stripped_from_validation_messages(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        download("gopher://user:pass@host.example/x", tmp_path / "x")
    assert "gopher://host.example/x" in str(info.value)
    assert "pass" not in str(info.value)
    assert _http.strip_credentials("https://user:pass@host/") == "https://host/"
    assert _http.strip_credentials("https://u:p@ss@host:8/a?b") == "https://host:8/a?b"
    assert _http.strip_credentials("https://host/a@b") == "https://host/a@b"
    assert _http.strip_credentials("user:pw@host/x") == "host/x"


def test_missing_destination_directory(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist") as info:
        download("https://user:pw@127.0.0.1:1/x", tmp_path / "nope" / "x")
    assert "pw" not in str(info.value)
    assert "https://127.0.0.1:1/x" in str(info.value)
    with pytest.raises(ValidationError, match="is a directory"):
        download("https://127.0.0.1:1/x", tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retries": -1},
        {"sha256": "abc"},
        {"max_size": -5},
        {"timeout": 0},
        {"ca_certs": "/no/such/ca.pem"},
        {"headers": {"X": "a\r\nb"}},
    ],
)
def test_bad_download_arguments(kwargs: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        download("http://127.0.0.1:1/x", tmp_path / "x", **kwargs)  # type: ignore[arg-type]


def test_tus_location_relative_or_absolute() -> None:
    create = _http._parse_url("http://u:p@127.0.0.1:8080/api/files/")
    for location, expected in [
        ("/api/files/abc", "http://127.0.0.1:8080/api/files/abc"),
        ("abc", "http://127.0.0.1:8080/api/files/abc"),
        ("http://127.0.0.1:8080/api/files/abc", "http://127.0.0.1:8080/api/files/abc"),
        ("http://127.0.0.1:9/x", "http://127.0.0.1:9/x"),
    ]:
        target = _http._resolve_location(create, location, "POST")
        assert target.request_url == expected
        # credentials follow only to the same origin
        assert (target.auth == "u:p") == (":8080/" in expected)
    secure = _http._parse_url("https://127.0.0.1/files/")
    with pytest.raises(TransferError, match="https to"):
        _http._resolve_location(secure, "http://127.0.0.1/files/x", "POST")


def test_tls_to_a_plain_http_port_is_not_retried(nginx: ns.Nginx, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(TransferError):
        download(f"https://127.0.0.1:{nginx.port}/data.bin", tmp_path / "x", backoff=1.0)
    assert time.monotonic() - start < 1.0


def test_errors_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lead re-exports these from workerbridge; pickle looks them up there.
    for name in ("Transfer", "TransferError", "HTTPError"):
        monkeypatch.setattr(workerbridge, name, getattr(_http, name), raising=False)
    err = HTTPError("GET http://h/x: HTTP 404", url="http://h/x", status=404)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is HTTPError
    assert (str(back), back.url, back.status) == (str(err), "http://h/x", 404)
    terr = pickle.loads(pickle.dumps(TransferError("cut", url="http://h/y")))
    assert (str(terr), terr.url) == ("cut", "http://h/y")
    assert isinstance(err, TransferError)
    assert isinstance(err, workerbridge.WorkerBridgeError)
    t = Transfer(url="u", path="p", bytes=3, sha256="s")
    assert pickle.loads(pickle.dumps(t)) == t
    assert HTTPError.__module__ == TransferError.__module__ == Transfer.__module__ == "workerbridge"


def test_without_urllib3_a_clear_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['urllib3'] = None\n"
        "from workerbridge.bridges import _http\n"
        "try:\n"
        "    _http.download('http://127.0.0.1:1/x', 'x')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("ValidationError")
    assert "pip install 'workerbridge[network]'" in out.stdout


# --------------------------------------------------------------------------- uploads: tus


def test_tus_upload(tus: ns.TusServer, tmp_path: Path) -> None:
    data = blob(3 * MIB + 5, 30)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    ctx = Ctx()
    result = upload(src, tus.url, chunk_size=MIB, ctx=ctx)
    assert result.url.startswith(tus.url)
    assert result.url != tus.url
    assert (result.path, result.bytes, result.sha256) == (str(src), len(data), sha(data))
    assert ns.sha256_file(tus.stored(result.url)) == sha(data)
    assert [c for c, _ in ctx.reports] == [MIB, 2 * MIB, 3 * MIB, len(data)]
    assert all(t == len(data) for _, t in ctx.reports)


def test_tus_upload_empty_file(tus: ns.TusServer, tmp_path: Path) -> None:
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    result = upload(src, tus.url, protocol="tus")
    assert (result.bytes, result.sha256) == (0, sha(b""))
    assert tus.stored(result.url).read_bytes() == b""


def test_tus_server_restarted_mid_upload(tmp_path: Path) -> None:
    data = blob(4 * MIB, 31)
    src = tmp_path / "restart.bin"
    src.write_bytes(data)
    with ns.TusServer(tmp_path / "srv") as server:
        errors: list[BaseException] = []
        threads: list[threading.Thread] = []

        def start_again() -> None:
            try:
                time.sleep(0.3)
                server.start()
            except BaseException as exc:
                errors.append(exc)

        def on_report(current: int, total: int | None) -> None:
            if not threads and current >= len(data) // 3:
                server.kill()  # between two PATCHes: the server is idle
                threads.append(threading.Thread(target=start_again))
                threads[0].start()

        ctx = Ctx(on_report=on_report)
        result = upload(
            src,
            server.url,
            chunk_size=256 * 1024,
            retries=60,
            backoff=0.05,
            max_backoff=0.5,
            ctx=ctx,
        )
        threads[0].join(timeout=30)
        assert not errors
        assert server.starts == 2
        assert result.sha256 == sha(data)
        assert ns.sha256_file(server.stored(result.url)) == sha(data)
        currents = [c for c, _ in ctx.reports]
        assert currents == sorted(currents)
        assert currents[-1] == len(data)


def test_tus_resume_after_cut(tus: ns.TusServer, tmp_path: Path) -> None:
    data = blob(3 * MIB, 32)
    src = tmp_path / "cut.bin"
    src.write_bytes(data)
    with ns.CutProxy(tus.port, cut_after=600_000, cuts=2, direction="up") as proxy:
        ctx = Ctx()
        result = upload(
            src, proxy.url("files/"), chunk_size=MIB, ctx=ctx, backoff=BACKOFF, max_backoff=CAP
        )
        assert proxy.cuts_done == 2
    assert result.url.startswith(f"http://127.0.0.1:{proxy.port}/files/")
    assert ns.sha256_file(tus.stored(result.url)) == sha(data)
    currents = [c for c, _ in ctx.reports]
    assert currents == sorted(currents)
    assert currents[-1] == len(data)


def test_tus_cancel_terminates_upload(tus: ns.TusServer, tmp_path: Path) -> None:
    src = tmp_path / "cancel.bin"
    src.write_bytes(blob(2 * MIB, 33))
    before = stored_uploads(tus)
    with pytest.raises(TaskCancelledError):
        upload(src, tus.url, chunk_size=256 * 1024, ctx=Ctx(cancel_after=1))
    assert stored_uploads(tus) == before  # DELETEd: data and info gone


def test_tus_metadata_sent(tus: ns.TusServer, tmp_path: Path) -> None:
    src = tmp_path / "meta.txt"
    src.write_bytes(b"hello")
    result = upload(src, tus.url, metadata={"owner": "zoë"})
    info = json.loads((tus.files_dir / (Path(result.url).name + ".info")).read_text())
    assert info["metadata"] == {"filename": "meta.txt", "filetype": "text/plain", "owner": "zoë"}


def test_protocol_tus_against_a_plain_server(nginx: ns.Nginx, tmp_path: Path) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"data")
    with pytest.raises(TransferError, match="does not speak tus"):
        upload(src, nginx.url("upload/x.bin"), protocol="tus", backoff=BACKOFF, max_backoff=CAP)
    assert not (nginx.uploads / "x.bin").exists()


# --------------------------------------------------------------------------- uploads: PUT


def test_put_fallback_against_nginx_dav(nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(2 * MIB + 1, 34)
    src = tmp_path / "put.bin"
    src.write_bytes(data)
    ctx = Ctx()
    result = upload(src, nginx.url("upload/put.bin"), ctx=ctx)
    assert result == Transfer(
        url=nginx.url("upload/put.bin"), path=str(src), bytes=len(data), sha256=sha(data)
    )
    assert ns.sha256_file(nginx.uploads / "put.bin") == sha(data)
    assert ctx.reports[-1] == (len(data), len(data))
    methods = [r["method"] for r in nginx.access_log("/upload/put.bin", at_least=2)]
    assert methods[-2:] == ["OPTIONS", "PUT"]


def test_put_empty_file(nginx: ns.Nginx, tmp_path: Path) -> None:
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    result = upload(src, nginx.url("upload/empty.bin"), protocol="put")
    assert (result.bytes, result.sha256) == (0, sha(b""))
    assert (nginx.uploads / "empty.bin").read_bytes() == b""


def test_put_explicit_and_retried(fault: ns.FaultServer, tmp_path: Path) -> None:
    data = blob(700_000, 35)
    src = tmp_path / "p.bin"
    src.write_bytes(data)
    fault.fail("dst.bin", ns.Status(503, {"Retry-After": "0"}))
    result = upload(src, fault.url("dst.bin"), protocol="put", backoff=BACKOFF, max_backoff=CAP)
    assert result.sha256 == sha(data)
    assert fault.uploads["/dst.bin"] == data
    assert [r.method for r in fault.seen("dst.bin")] == ["PUT", "PUT"]
    assert all(r.headers["content-length"] == str(len(data)) for r in fault.seen("dst.bin"))


def test_put_4xx(fault: ns.FaultServer, tmp_path: Path) -> None:
    src = tmp_path / "p.bin"
    src.write_bytes(b"abc")
    fault.fail("deny.bin", ns.Status(403), times=None)
    with pytest.raises(HTTPError) as info:
        upload(src, fault.url("deny.bin"), backoff=BACKOFF, max_backoff=CAP)
    assert info.value.status == 403


@pytest.mark.parametrize(
    "kwargs",
    [{"protocol": "ftp"}, {"chunk_size": 0}, {"metadata": {"bad key": "v"}}, {"retries": -1}],
)
def test_bad_upload_arguments(kwargs: dict[str, object], tmp_path: Path) -> None:
    src = tmp_path / "s.bin"
    src.write_bytes(b"x")
    with pytest.raises(ValidationError):
        upload(src, "http://127.0.0.1:1/u", **kwargs)  # type: ignore[arg-type]


def test_bad_upload_sources(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="upload source"):
        upload(tmp_path / "missing.bin", "http://127.0.0.1:1/u")
    with pytest.raises(ValidationError, match="upload source"):
        upload(tmp_path, "http://127.0.0.1:1/u")
    with pytest.raises(ValidationError, match="unsupported scheme"):
        upload(tmp_path / "missing.bin", "s3://bucket/key")
