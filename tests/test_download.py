"""Downloads against a local HTTP server on loopback: resume, checksums, S3 listing."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cellutils import catalog
from cellutils import download as dl

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    cut_after: int | None = None  # close the connection after this many bytes, once
    requests: list = []

    def log_message(self, *a):  # keep test output clean
        pass

    def do_GET(self):
        Handler.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/?list-type=2"):
            return self._listing()
        if self.path == "/missing":
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if Handler.cut_after is not None:
            n, Handler.cut_after = Handler.cut_after, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.connection.shutdown(2)  # an interrupted transfer
            return
        self.wfile.write(body)

    def _listing(self):
        second = "continuation-token=page2" in self.path
        keys = ["src/b.tiff"] if second else ["src/a.tiff"]
        items = "".join(
            f"<Contents><Key>{k}</Key><Size>3</Size><ETag>&quot;{'0' * 32}&quot;</ETag></Contents>"
            for k in keys
        )
        more = "" if second else "<NextContinuationToken>page2</NextContinuationToken>"
        body = (
            f'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
            f'2006-03-01/"><IsTruncated>{"false" if second else "true"}</IsTruncated>'
            f"{items}{more}</ListBucketResult>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    Handler.cut_after, Handler.requests = None, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_plain_download_with_checksum(server, tmp_path):
    out = dl.download(f"{server}/f.bin", tmp_path / "f.bin", sha256=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    n = len(Handler.requests)
    dl.download(f"{server}/f.bin", out, sha256=SHA, progress=False)  # present and valid: no request
    assert len(Handler.requests) == n


def test_interrupted_transfer_keeps_the_part_and_resumes(server, tmp_path):
    dest = tmp_path / "f.bin"
    Handler.cut_after = 300_000
    with pytest.raises(dl.DownloadError, match="kept in"):
        dl.download(f"{server}/f.bin", dest, sha256=SHA, retries=1, progress=False)
    part = tmp_path / "f.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD) and not dest.exists()
    size = part.stat().st_size
    dl.download(f"{server}/f.bin", dest, sha256=SHA, retries=1, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.requests[-1][1] == f"bytes={size}-"  # resumed, not restarted


def test_retry_within_one_call_resumes(server, tmp_path):
    Handler.cut_after = 100_000
    dest = dl.download(
        f"{server}/f.bin", tmp_path / "g.bin", sha256=SHA, retries=3, backoff=0, progress=False
    )
    assert dest.read_bytes() == PAYLOAD and Handler.requests[-1][1] == "bytes=100000-"


def test_checksum_mismatch_keeps_the_file_as_bad(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="checksum mismatch"):
        dl.download(f"{server}/f.bin", tmp_path / "f.bin", sha256="0" * 64, progress=False)
    assert (tmp_path / "f.bin.bad").read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin").exists()


def test_existing_file_with_wrong_checksum_is_not_touched(server, tmp_path):
    mine = tmp_path / "f.bin"
    mine.write_bytes(b"user data")
    with pytest.raises(dl.DownloadError, match="left in place"):
        dl.download(f"{server}/f.bin", mine, sha256=SHA, progress=False)
    assert mine.read_bytes() == b"user data"


def test_http_errors_are_final_and_clear(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{server}/missing", tmp_path / "m.bin", progress=False)


def test_s3_listing_follows_continuation(server):
    items = dl.list_s3(server, "src/")
    assert [i.dest for i in items] == ["src/a.tiff", "src/b.tiff"]
    assert items[0].url == f"{server}/src/a.tiff" and items[0].md5 == "0" * 32


def test_unknown_dataset_name():
    with pytest.raises(
        ValueError, match=r"cannot be downloaded; choose from \['cpjump1', 'rxrx1'\]"
    ):
        catalog.fetch("hpa")
    with pytest.raises(ValueError, match="come from their courses"):
        catalog.fetch("cell_lines")  # a layout without a download manifest
