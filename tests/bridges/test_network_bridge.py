"""``bridge.network`` through both backends against real servers on 127.0.0.1.

nginx serves files (Range, ETag) and takes WebDAV PUTs; tuspyserver is the tus
1.0 server.  The fault matrix (cuts, 503s, changed files, restarts) is covered
by ``test_http_engine.py``; here: the bridge path returns the same
:class:`workerbridge.Transfer` and raises the same typed errors in both modes,
fans out with one progress total, and stops on cancellation.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import workerbridge as wb
from workerbridge.bridges import _http

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import netservers as ns  # noqa: E402

MIB = 1024 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ns.Nginx]:
    with ns.run_nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ns.TusServer]:
    with ns.TusServer(tmp_path_factory.mktemp("tus")) as server:
        yield server


def publish(nginx: ns.Nginx, name: str, data: bytes) -> str:
    (nginx.docroot / name).write_bytes(data)
    return nginx.url(name)


def test_download(bridge: wb.WorkerBridge, nginx: ns.Nginx, tmp_path: Path) -> None:
    data = blob(3 * MIB + 7, 1)
    url = publish(nginx, "one.bin", data)
    dst = tmp_path / "one.bin"
    progress: list[wb.Progress] = []
    result = bridge.network.download(url, dst, sha256=sha(data), on_progress=progress.append)
    assert result == wb.Transfer(url=url, path=str(dst), bytes=len(data), sha256=sha(data))
    assert dst.read_bytes() == data
    assert progress[-1] == wb.Progress(len(data), len(data))
    assert [p.current for p in progress] == sorted(p.current for p in progress)
    # TLS with the test CA, and credentials stripped from the reported URL.
    https = nginx.https_url("one.bin").replace("https://", "https://user:secret@")
    again = bridge.network.download(https, tmp_path / "tls.bin", ca_certs=nginx.ca_file)
    assert again.url == nginx.https_url("one.bin")
    assert again.sha256 == sha(data)


def test_download_errors_are_typed(
    bridge: wb.WorkerBridge, nginx: ns.Nginx, tmp_path: Path
) -> None:
    network = bridge.network
    with pytest.raises(wb.HTTPError) as info:
        network.download(nginx.url("missing.bin"), tmp_path / "x", retries=0)
    assert info.value.status == 404
    assert info.value.url == nginx.url("missing.bin")
    assert isinstance(info.value, wb.TransferError)
    url = publish(nginx, "digest.bin", b"abc")
    with pytest.raises(wb.IntegrityError, match="sha256 mismatch"):
        network.download(url, tmp_path / "d", sha256="0" * 64)
    with pytest.raises(wb.TransferError):
        network.download(
            f"http://127.0.0.1:{ns.free_port()}/x", tmp_path / "x", retries=0, socket_timeout=2
        )
    before = bridge.stats().submitted
    with pytest.raises(wb.ValidationError, match="unsupported scheme"):
        network.download("ftp://example.com/x", tmp_path / "x")
    with pytest.raises(wb.ValidationError, match="retries"):
        network.download(url, tmp_path / "x", retries=-1)
    with pytest.raises(wb.ValidationError, match="headers"):
        network.download(url, tmp_path / "x", headers={"X": 1})  # type: ignore[dict-item]
    assert bridge.stats().submitted == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_download_many(bridge: wb.WorkerBridge, nginx: ns.Nginx, tmp_path: Path) -> None:
    datas = [blob(MIB + i * 1000, 10 + i) for i in range(5)]
    items = [(publish(nginx, f"m{i}.bin", d), tmp_path / f"m{i}.bin") for i, d in enumerate(datas)]
    progress: list[wb.Progress] = []
    results = bridge.network.download_many(items, concurrency=2, on_progress=progress.append)
    assert [r.sha256 for r in results if isinstance(r, wb.Transfer)] == [sha(d) for d in datas]
    assert [r.path for r in results if isinstance(r, wb.Transfer)] == [str(d) for _, d in items]
    total = sum(len(d) for d in datas)
    assert progress[-1] == wb.Progress(total, total)
    assert [p.current for p in progress] == sorted(p.current for p in progress)

    # One bad item: by default its error is raised; with return_exceptions it takes its place.
    bad = [*items[:2], (nginx.url("nope.bin"), tmp_path / "nope.bin"), items[3]]
    with pytest.raises(wb.HTTPError):
        bridge.network.download_many(bad, retries=0)
    mixed = bridge.network.download_many(bad, retries=0, return_exceptions=True)
    assert isinstance(mixed[2], wb.HTTPError)
    assert mixed[2].status == 404
    assert [r.sha256 for r in mixed if isinstance(r, wb.Transfer)] == [
        sha(datas[0]),
        sha(datas[1]),
        sha(datas[3]),
    ]
    with pytest.raises(wb.ValidationError, match="each item"):
        bridge.network.download_many([("http://127.0.0.1/x",)])  # type: ignore[list-item]


def test_cancelled_download_keeps_its_part_and_resumes(
    bridge: wb.WorkerBridge, nginx: ns.Nginx, tmp_path: Path
) -> None:
    data = blob(64 * MIB, 2)
    url = publish(nginx, "big.bin", data)
    dst = tmp_path / "big.bin"
    token = wb.CancellationToken()
    try:
        with pytest.raises(wb.TaskCancelledError):
            bridge.network.download(url, dst, on_progress=lambda p: token.cancel(), cancel=token)
    finally:
        token.close()
    assert not dst.exists()
    result = bridge.network.download(url, dst, sha256=sha(data))
    assert result.bytes == len(data)
    part, meta = _http.part_paths(dst)
    assert not part.exists()
    assert not meta.exists()


def test_uploads_tus_and_put(
    bridge: wb.WorkerBridge, nginx: ns.Nginx, tus: ns.TusServer, tmp_path: Path
) -> None:
    data = blob(2 * MIB + 3, 3)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    progress: list[wb.Progress] = []
    result = bridge.network.upload(
        src, tus.url, chunk_size=MIB, metadata={"owner": "zoë"}, on_progress=progress.append
    )
    assert result.url.startswith(tus.url)
    assert (result.path, result.bytes, result.sha256) == (str(src), len(data), sha(data))
    assert ns.sha256_file(tus.stored(result.url)) == sha(data)
    assert [p.current for p in progress][-1] == len(data)

    put = bridge.network.upload(src, nginx.url("upload/put.bin"), protocol="put")
    assert put.url == nginx.url("upload/put.bin")
    assert (nginx.uploads / "put.bin").read_bytes() == data

    results = bridge.network.upload_many(
        [(src, tus.url), (src, nginx.url("upload/many.bin"))], concurrency=2
    )
    assert all(isinstance(r, wb.Transfer) and r.sha256 == sha(data) for r in results)
    assert (nginx.uploads / "many.bin").read_bytes() == data
    with pytest.raises(wb.TransferError, match="tus"):
        bridge.network.upload(src, nginx.url("upload/x.bin"), protocol="tus", retries=0)
    with pytest.raises(wb.ValidationError, match="protocol"):
        bridge.network.upload(src, tus.url, protocol="ftp")  # type: ignore[arg-type]
