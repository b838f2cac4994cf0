"""Local stand-ins for the download sources (never the internet): the Cell Painting Gallery as
a moto-mocked S3 bucket holding a tiny synthetic CPJUMP1 plate, and an HTTP server on loopback
serving an RxRx1-like zip with ETag, ``x-goog-hash``, ``Range`` and ``If-Range``."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cellutils.datasets import cpjump1

PLATE = "BR00116991"


# --------------------------------------------------------------------------------------------
# S3: the Gallery's bucket with one tiny plate (use inside moto's mock_aws)
# --------------------------------------------------------------------------------------------


def gallery_key(rel: str) -> str:
    """The Gallery's key of a file of the synthetic layout (load_data and metadata live under
    ``workspace/`` in the bucket)."""
    if rel.startswith(("load_data_csv/", "metadata/")):
        rel = f"workspace/{rel}"
    return cpjump1.PREFIX + rel


def fill_gallery(client, plate_root: Path) -> list[str]:
    """Upload plate ``PLATE`` of a synthetic CPJUMP1 folder (images, load_data, metadata)."""
    client.create_bucket(Bucket=cpjump1.BUCKET, ACL="public-read")  # public, as the Gallery
    keys = []
    for p in sorted(plate_root.rglob("*")):
        rel = p.relative_to(plate_root).as_posix()
        if not p.is_file() or rel.startswith("ground_truth") or rel.endswith(".json"):
            continue
        if ("__" in rel or "load_data" in rel) and PLATE not in rel:
            continue  # the other plate
        key = gallery_key(rel)
        client.put_object(Bucket=cpjump1.BUCKET, Key=key, Body=p.read_bytes(), ACL="public-read")
        keys.append(key)
    return keys


class Calls:
    """Counts S3 operations and the threads that made them (a client event hook)."""

    def __init__(self, client):
        self.ops: Counter = Counter()
        self.threads: set[int] = set()
        client.meta.events.register("before-call.s3", self)

    def __call__(self, model, **_):
        self.ops[model.name] += 1
        if model.name == "GetObject":
            self.threads.add(threading.get_ident())


class Flaky:
    """Fail the first ``n`` GetObject sends with a dropped connection (before moto answers)."""

    def __init__(self, client, n: int):
        from botocore.exceptions import ConnectionClosedError

        self.n, self.error, self.lock = n, ConnectionClosedError, threading.Lock()
        client.meta.events.register_first("before-send.s3.GetObject", self)

    def __call__(self, request, **_):
        with self.lock:
            if self.n <= 0:
                return None
            self.n -= 1
        raise self.error(endpoint_url=request.url)


# --------------------------------------------------------------------------------------------
# HTTP: an rxrx.ai-like server on loopback
# --------------------------------------------------------------------------------------------


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    """Serves ``Handler.payload`` at any path; ``etag`` and ``md5`` are what it states."""

    payload: bytes = b""
    etag: str = '"v1"'
    stated_md5: str | None = None  # default: the payload's own
    cut_after: int | None = None  # drop the connection after this many bytes, once
    requests: list = []

    def log_message(self, *a):
        pass

    def _common(self, status: int, body_len: int) -> None:
        self.send_response(status)
        md5 = Handler.stated_md5 or hashlib.md5(Handler.payload).hexdigest()
        self.send_header("ETag", Handler.etag)
        self.send_header(
            "x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(bytes.fromhex(md5)).decode()}"
        )
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(body_len))

    def do_HEAD(self):
        Handler.requests.append(("HEAD", self.path, dict(self.headers)))
        if self.path.endswith("/missing"):
            self.send_error(404)
            return
        self._common(200, len(Handler.payload))
        self.end_headers()

    def do_GET(self):
        Handler.requests.append(("GET", self.path, dict(self.headers)))
        if self.path.endswith("/missing"):
            self.send_error(404)
            return
        data, start = Handler.payload, 0
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if rng and (if_range is None or if_range == Handler.etag):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self._common(206, len(data) - start)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self._common(200, len(data))
        self.end_headers()
        body = data[start:]
        if Handler.cut_after is not None:
            n, Handler.cut_after = Handler.cut_after, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.connection.shutdown(2)  # an interrupted transfer
            return
        self.wfile.write(body)


def serve(payload: bytes, etag: str = '"v1"'):
    """Start the server; returns (base URL, httpd). Call ``stop(httpd)`` after."""
    Handler.payload, Handler.etag, Handler.stated_md5 = payload, etag, None
    Handler.cut_after, Handler.requests = None, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd


def stop(httpd) -> None:
    httpd.shutdown()
    httpd.server_close()


def gets(method: str = "GET") -> list:
    return [r for r in Handler.requests if r[0] == method]
