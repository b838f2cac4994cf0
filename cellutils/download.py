"""Download the real datasets (for users with internet): parallel, verified, resumable, never
destructive.

``make data NAME=cpjump1|rxrx1|cpjump1_subset`` runs ``python -m cellutils.download NAME``.
What to fetch is each layout's ``manifest`` (``cellutils.datasets.cpjump1``, ``.rxrx1``),
handed to ``fetch_dataset`` by the command line; this module moves the bytes:

- **CPJUMP1** (Cell Painting Gallery, public S3 bucket): listed and fetched with boto3,
  unsigned, in a thread pool, botocore's standard retries plus a per-file retry with backoff.
  The five fluorescent channels by default (``--channels all`` for all eight).
- **RxRx1** (rxrx.ai zips over HTTPS, ~46 GB): resumed with ``Range`` + ``If-Range`` (the
  ETag or Last-Modified of the first response: a changed file restarts instead of splicing),
  checked against an MD5, extracted, and marked as extracted (``<zip>.extracted.json`` with
  the zip's size and MD5), so deleting the zip afterwards never triggers a new download.

Before any transfer the total size and the free disk are printed, and a download that will not
fit is refused with the fix. Every finished file is recorded in ``download_manifest.tsv``
beside the data (key, size, ETag, MD5): a rerun compares sizes with it instead of re-hashing,
fetches again only what is missing, truncated or changed, and never touches a file it did not
write (such a file is an error naming it). Partial files are ``<file>.part``; a file failing
its checksum is kept as ``<file>.bad``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path

from tqdm.auto import tqdm

from cellutils.paths import data_root

LEDGER = "download_manifest.tsv"  # key, size, etag, md5 of every finished file
RECORD = "download.json"  # what was asked for (e.g. CPJUMP1's channels), for the readers
GB = 1e9


class DownloadError(RuntimeError):
    """A download could not start or finish; what was fetched is kept for a rerun."""


@dataclass(frozen=True)
class Remote:
    """One file over HTTP(S)."""

    url: str
    dest: str  # relative to the dataset folder
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None  # published MD5, when known
    unzip: bool = False


@dataclass(frozen=True)
class S3Prefix:
    """Every object under ``prefix`` of a public bucket, mirrored without ``strip``."""

    bucket: str
    prefix: str
    strip: str = ""  # leading part of each key not repeated on disk
    keep: Callable[[str], bool] | None = None  # key filter (e.g. CPJUMP1's channels)
    max_keys: int | None = None  # at most this many objects (after ``keep``)
    channels: tuple[int, ...] | None = None  # the channels ``keep`` lets through, recorded
    required: bool = True  # an empty listing is an error


# --------------------------------------------------------------------------------------------
# The ledger: what this module downloaded, so a rerun checks sizes instead of hashing
# --------------------------------------------------------------------------------------------


class Ledger:
    """``download_manifest.tsv`` in the dataset folder: one appended row per finished file."""

    FIELDS = ("key", "size", "etag", "md5")

    def __init__(self, folder: Path):
        self.path = folder / LEDGER
        self.rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            with open(self.path, newline="") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    self.rows[row["key"]] = row  # the last row of a key wins

    def matches(self, key: str, local: Path, size: int, etag: str = "") -> bool:
        """True when ``key`` was downloaded by us, unchanged remotely and whole on disk."""
        row = self.rows.get(key)
        return (
            row is not None
            and int(row["size"]) == size
            and (not etag or not row["etag"] or row["etag"] == etag)
            and local.is_file()
            and local.stat().st_size == size
        )

    def record(self, key: str, size: int, etag: str = "", md5: str = "") -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            with open(self.path, "a", newline="") as fh:
                w = csv.writer(fh, delimiter="\t", lineterminator="\n")
                if new:
                    w.writerow(self.FIELDS)
                w.writerow([key, size, etag, md5])
                fh.flush()
                os.fsync(fh.fileno())
            self.rows[key] = {"key": key, "size": str(size), "etag": etag, "md5": md5}


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain_md5(etag: str) -> str:
    """An S3/GCS ETag is the object's MD5 unless it was a multipart upload (``...-N``)."""
    etag = etag.strip('"')
    return etag if len(etag) == 32 and "-" not in etag else ""


def check_space(folder: Path, need: int, what: str) -> None:
    """Print the size to fetch and the free disk; refuse (before any transfer) when short."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    print(f"{what}: {need / GB:.2f} GB to write into {folder}; {free / GB:.2f} GB free there.")
    if need > free:
        raise DownloadError(
            f"not enough disk in {folder}: {need / GB:.2f} GB needed, {free / GB:.2f} GB free. "
            "Nothing was downloaded. Free space, or pass --dest on a larger disk (CPJUMP1: "
            "fewer --plates or --channels)."
        )


def _write_record(folder: Path, name: str, channels: Sequence[int] | None) -> None:
    """``download.json``: the dataset and (CPJUMP1) every channel fetched so far."""
    path = folder / RECORD
    old = json.loads(path.read_text()) if path.exists() else {}
    rec = {"dataset": name}
    if channels is not None:
        rec["channels"] = sorted(set(old.get("channels", [])) | {int(c) for c in channels})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# S3 (boto3, unsigned, parallel)
# --------------------------------------------------------------------------------------------


def s3_client(workers: int = 16, attempts: int = 8, endpoint_url: str | None = None):
    """An anonymous boto3 S3 client with botocore's standard retries (throttling, 5xx, resets)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        signature_version=UNSIGNED,
        retries={"mode": "standard", "max_attempts": attempts},
        max_pool_connections=max(workers, 10),
        connect_timeout=30,
        read_timeout=60,
    )
    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint_url, config=config)


def list_prefix(client, source: S3Prefix) -> list[dict]:
    """``[{key, size, etag}]`` under ``source.prefix`` (paginated), filtered by ``keep``."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=source.bucket, Prefix=source.prefix
    ):
        for obj in page.get("Contents", []):
            if source.keep is None or source.keep(obj["Key"]):
                out.append({"key": obj["Key"], "size": obj["Size"], "etag": obj["ETag"].strip('"')})
                if source.max_keys and len(out) >= source.max_keys:
                    return out
    return out


def _plan(objects: list[dict], base: Path, strip: str, ledger: Ledger) -> tuple[list, list]:
    """Split listed objects into (to fetch, already here). Sizes are compared with the ledger;
    a file we did not write is hashed once against a plain-MD5 ETag, else refused."""
    todo, done, foreign = [], [], []
    for obj in objects:
        local = base / obj["key"][len(strip) :]
        if ledger.matches(obj["key"], local, obj["size"], obj["etag"]):
            done.append(obj)
        elif obj["key"] in ledger.rows or not local.exists():
            todo.append({**obj, "local": local})  # ours but truncated or changed, or absent
        elif local.stat().st_size == obj["size"] and _plain_md5(obj["etag"]) == _md5_file(local):
            ledger.record(obj["key"], obj["size"], obj["etag"], _plain_md5(obj["etag"]))
            done.append(obj)  # an earlier download without a ledger, verified once
        else:
            foreign.append(local)
    if foreign:
        raise DownloadError(
            f"{len(foreign)} files in the download folder differ from the bucket and were not "
            f"written by this download (e.g. {foreign[0]}); they were left untouched. Move them "
            "away and run the download again."
        )
    return todo, done


def _get_object(client, bucket: str, obj: dict, ledger: Ledger, retries: int, backoff: float):
    """One object to ``<file>.part`` (MD5 computed while streaming), checked, renamed."""
    from botocore.exceptions import BotoCoreError, ClientError

    local: Path = obj["local"]
    part = local.with_name(local.name + ".part")
    local.parent.mkdir(parents=True, exist_ok=True)
    want_md5 = _plain_md5(obj["etag"])
    last: Exception | None = None
    for attempt in range(retries):
        try:
            body = client.get_object(Bucket=bucket, Key=obj["key"])["Body"]
            h = hashlib.md5()
            with open(part, "wb") as fh:
                for block in body.iter_chunks(1 << 20):
                    fh.write(block)
                    h.update(block)
            got = part.stat().st_size
            if got != obj["size"]:
                raise DownloadError(f"{obj['key']}: got {got} of {obj['size']} bytes")
            if want_md5 and h.hexdigest() != want_md5:
                raise DownloadError(f"{obj['key']}: MD5 {h.hexdigest()} != ETag {want_md5}")
            os.replace(part, local)
            ledger.record(obj["key"], obj["size"], obj["etag"], h.hexdigest())
            return obj["size"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "AccessDenied", "403", "404"):
                raise DownloadError(
                    f"s3://{bucket}/{obj['key']}: {code} (final: the bucket refuses it; check "
                    "the bucket and plate names)"
                ) from exc
            last = exc
        except (BotoCoreError, OSError, DownloadError) as exc:
            last = exc
        if attempt + 1 < retries:
            time.sleep(backoff * 2**attempt)
    raise DownloadError(f"s3://{bucket}/{obj['key']}: gave up after {retries} tries ({last})")


def fetch_s3(
    sources: Sequence[S3Prefix],
    base: Path,
    client=None,
    workers: int = 16,
    retries: int = 4,
    backoff: float = 1.0,
    progress: bool = True,
) -> dict[str, int]:
    """Mirror every listed object under ``base``, ``workers`` at a time; a rerun fetches only
    what is missing, truncated or changed. Returns counts: listed, fetched, kept."""
    client = client or s3_client(workers)
    ledger = Ledger(base)
    plans = []
    for src in sources:
        objects = list_prefix(client, src)
        todo, done = _plan(objects, base, src.strip, ledger)
        plans.append((src, objects, todo, done))
    listed = sum(len(p[1]) for p in plans)
    empty = [
        f"s3://{src.bucket}/{src.prefix}" for src, objs, _, _ in plans if src.required and not objs
    ]
    if empty:
        raise DownloadError(
            f"the listing of {empty} came back empty; check the plate names (nothing was "
            "downloaded)."
        )
    todo_all = [(src.bucket, o) for src, _, todo, _ in plans for o in todo]
    need = sum(o["size"] for _, o in todo_all)
    kept = listed - len(todo_all)
    print(f"{listed} files listed, {kept} already here (sizes match {LEDGER}).")
    check_space(base, need, f"{len(todo_all)} files to fetch")
    failed: list[str] = []
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=need,
            unit="B",
            unit_scale=True,
            desc="download",
            disable=not progress or None,
            mininterval=1,
        ) as bar,
    ):
        futures = {
            pool.submit(_get_object, client, bucket, o, ledger, retries, backoff): o
            for bucket, o in todo_all
        }
        for fut in as_completed(futures):
            try:
                bar.update(fut.result())
            except DownloadError as exc:
                failed.append(str(exc))
    if failed:
        raise DownloadError(
            f"{len(failed)} of {len(todo_all)} files failed (first: {failed[0]}). The others "
            "are kept; run the same command again to fetch the rest."
        )
    return {"listed": listed, "fetched": len(todo_all), "kept": kept}


# --------------------------------------------------------------------------------------------
# HTTP (RxRx1's zips): Range + If-Range resume, MD5, extraction marker
# --------------------------------------------------------------------------------------------


def _server_md5(headers) -> str:
    """The MD5 a server states: GCS ``x-goog-hash: md5=<b64>``, ``Content-MD5``, or a plain
    ETag."""
    for part in (headers.get("x-goog-hash") or "").split(","):
        k, _, v = part.strip().partition("=")
        if k == "md5" and v:
            return base64.b64decode(v).hex()
    if headers.get("Content-MD5"):
        return base64.b64decode(headers["Content-MD5"]).hex()
    return _plain_md5(headers.get("ETag") or "")


def _head(url: str, timeout: float) -> dict:
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "cellutils-download"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return {
            "size": int(resp.headers.get("Content-Length") or 0),
            "etag": resp.headers.get("ETag") or "",
            "md5": _server_md5(resp.headers),
        }


def download(url: str, dest: str | os.PathLike, **kw) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``; return ``dest`` (see ``_download``)."""
    return _download(url, dest, **kw)[0]


def _download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    chunk: int = 1 << 20,
    backoff: float = 2.0,
) -> tuple[Path, str]:
    """Fetch ``url`` to ``dest`` through ``dest.part``; return ``dest`` and the MD5 checked
    (the file's own MD5 where none was known).

    A partial file resumes with ``Range`` and ``If-Range`` (the validator of the response that
    began it, kept in ``dest.part.json``): 206 appends, 200 (the file changed) starts over.
    The whole file is checked against ``sha256``/``md5``, else against the MD5 the server
    states; a mismatch is kept as ``dest.bad`` and is an error naming the file. An existing
    ``dest`` that passes its checksum is returned untouched; one that fails is an error.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    side = dest.with_name(dest.name + ".part.json")
    if dest.exists():
        if _passes(dest, sha256, md5):
            return dest, md5.lower() if md5 else _md5_file(dest)
        raise DownloadError(
            f"{dest} exists but does not match its checksum. It was left in place: move it away "
            "(or delete it) and run the download again."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(side.read_text()) if side.exists() and part.exists() else {}
    last: Exception | None = None
    for attempt in range(retries):
        start = part.stat().st_size if part.exists() and state.get("validator") else 0
        headers = {"User-Agent": "cellutils-download"}
        if start:
            headers.update(Range=f"bytes={start}-", **{"If-Range": state["validator"]})
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as resp:
                if resp.status != 206:  # a fresh start, or the file changed since the part
                    start = 0
                    state = {
                        "validator": resp.headers.get("ETag")
                        or resp.headers.get("Last-Modified")
                        or "",
                        "md5": _server_md5(resp.headers),
                    }
                    side.write_text(json.dumps(state))
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                with (
                    open(part, "ab" if start else "wb") as fh,
                    tqdm(
                        total=total,
                        initial=start,
                        unit="B",
                        unit_scale=True,
                        leave=False,
                        desc=dest.name,
                        disable=not progress or None,
                        mininterval=1,
                    ) as bar,
                ):
                    for block in iter(lambda: resp.read(chunk), b""):
                        fh.write(block)
                        bar.update(len(block))
            got = part.stat().st_size
            if total is not None and got < total:
                raise IncompleteRead(b"", total - got)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.exists():  # nothing left to fetch: the part is whole
                break
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL.") from exc
            last = exc
        except (urllib.error.URLError, OSError, IncompleteRead, TimeoutError) as exc:
            last = exc
        if attempt + 1 < retries:
            time.sleep(backoff * (attempt + 1))
    else:
        size = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: gave up after {retries} tries ({last}). {size} bytes are kept in "
            f"{part}; run the same command again to resume."
        )
    want_md5 = (md5 or state.get("md5") or "").lower()
    got_md5 = _md5_file(part)
    if (want_md5 and got_md5 != want_md5) or (sha256 and _digest(part, "sha256") != sha256.lower()):
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        side.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest}: checksum mismatch (expected MD5 {want_md5 or '-'}, SHA-256 "
            f"{sha256 or '-'}); the file is kept as {bad}. Move it away and download again; "
            "if it repeats, the source changed."
        )
    if not want_md5:
        print(
            f"{dest.name}: no MD5 is published or stated by the server; its MD5 {got_md5} is "
            f"recorded in {LEDGER} and checked from now on."
        )
    os.replace(part, dest)
    side.unlink(missing_ok=True)
    return dest, got_md5


def _passes(path: Path, sha256: str | None, md5: str | None) -> bool:
    if sha256 and _digest(path, "sha256") != sha256.lower():
        return False
    return not (md5 and _md5_file(path) != md5.lower())


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_http(files: Sequence[Remote], base: Path, timeout: float = 60.0, **kw) -> dict[str, int]:
    """Fetch (and extract) each file: skipped when its extraction marker or its ledger row says
    it is done; the space for the download and its extraction is checked before starting."""
    ledger = Ledger(base)
    todo = []
    for item in files:
        path = base / item.dest
        marker = path.with_name(path.name + ".extracted.json")
        if marker.exists():
            done = json.loads(marker.read_text())
            if item.md5 and done.get("md5") != item.md5.lower():
                raise DownloadError(
                    f"{marker} records MD5 {done.get('md5')}, but the published MD5 of "
                    f"{item.dest} is {item.md5}: the extracted files are another version. Move "
                    "them and the marker away to download again."
                )
            print(f"{item.dest}: already extracted ({marker.name}); not downloaded again.")
            continue
        todo.append(item)
    need = 0
    for item in todo:
        path = base / item.dest
        row = ledger.rows.get(item.dest)
        if row and item.md5 and row["md5"] != item.md5.lower():
            raise DownloadError(
                f"{path}: {LEDGER} records MD5 {row['md5']}, the published MD5 is {item.md5}. "
                "Move the file away (and its row out of the ledger) to download it again."
            )
        if row and path.is_file() and path.stat().st_size == int(row["size"]):
            size = int(row["size"])  # downloaded and verified earlier
        else:
            size = item.size or _head(item.url, timeout)["size"]
            part = path.with_name(path.name + ".part")
            need += size - (part.stat().st_size if part.exists() else 0)
        need += size if item.unzip else 0  # the extracted files take about the zip's size
    if todo:
        check_space(base, need, f"{len(todo)} files to fetch or extract")
    for item in todo:
        path = base / item.dest
        row = ledger.rows.get(item.dest)
        if not (row and path.is_file() and path.stat().st_size == int(row["size"])):
            _, digest = _download(
                item.url, path, sha256=item.sha256, md5=item.md5, timeout=timeout, **kw
            )
            ledger.record(item.dest, path.stat().st_size, "", digest)
        if item.unzip:
            _extract(path, base, ledger.rows[item.dest]["md5"])
    return {"listed": len(files), "fetched": len(todo)}


def _extract(path: Path, base: Path, md5: str) -> None:
    """Extract a zip into ``base``, then write ``<zip>.extracted.json`` (its size and MD5)."""
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
        check_space(base, sum(m.file_size for m in members), f"extract {path.name}")
        for member in tqdm(members, f"extract {path.name}", unit="file", leave=False):
            zf.extract(member, base)
    marker = path.with_name(path.name + ".extracted.json")
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"zip": path.name, "size": path.stat().st_size, "md5": md5}) + "\n")
    os.replace(tmp, marker)


# --------------------------------------------------------------------------------------------
# One dataset
# --------------------------------------------------------------------------------------------


def fetch_dataset(layout, dest: str | os.PathLike | None = None, client=None, **kw) -> Path:
    """Download the files ``layout.manifest(**kw)`` lists into ``dest`` (default
    ``<data root>/<layout name>``): ``S3Prefix`` items through boto3, ``Remote`` ones over HTTP.
    """
    if layout.manifest is None:
        raise ValueError(
            f"dataset {layout.name!r} has no download manifest (the course subset is built "
            "from the downloaded plate: `make data NAME=cpjump1_subset`; the cell-line images "
            "come from their course)."
        )
    base = Path(dest) if dest else data_root() / layout.name
    items = layout.manifest(**kw)
    s3 = [i for i in items if isinstance(i, S3Prefix)]
    http = [i for i in items if isinstance(i, Remote)]
    if s3:
        fetch_s3(s3, base, client=client, **_only(kw, "workers", "retries", "backoff", "progress"))
    if http:
        fetch_http(http, base, **_only(kw, "retries", "backoff", "progress"))
    chans = {c for i in s3 if i.channels for c in i.channels}
    _write_record(base, layout.name, sorted(chans) if chans else None)
    print(f"{layout.name}: done, in {base}")
    return base


def _only(kw: dict, *names: str) -> dict:
    return {k: kw[k] for k in names if kw.get(k) is not None}


def _channels(text: Sequence[str] | None) -> list[int] | None:
    """``--channels``: ``all``, or channel numbers (``1 2 3``, ``ch1,ch5``)."""
    if not text:
        return None
    words = [w for t in text for w in t.replace(",", " ").split()]
    if words == ["all"]:
        return list(range(1, 9))
    try:
        chans = sorted({int(w.lower().removeprefix("ch")) for w in words})
    except ValueError:
        chans = [0]
    if not set(chans) <= set(range(1, 9)):
        raise SystemExit(f"--channels takes 'all' or channel numbers (1-8), got {text}")
    return chans


def main(argv: list[str] | None = None) -> int:
    from cellutils import catalog  # the CLI names a dataset; the catalog knows the layouts

    p = argparse.ArgumentParser(
        prog="python -m cellutils.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="rxrx1, cpjump1, or cpjump1_subset (built from cpjump1)")
    p.add_argument("--dest", help="target folder (default: <data root>/<name>)")
    p.add_argument("--plates", nargs="*", help="CPJUMP1 plates (default BR00116991)")
    p.add_argument(
        "--channels", nargs="*", help="CPJUMP1 channels: numbers (default 1-5) or 'all' (1-8)"
    )
    p.add_argument("--max-images", type=int, help="CPJUMP1: at most this many image files")
    p.add_argument("--workers", type=int, default=16, help="parallel transfers (CPJUMP1)")
    p.add_argument("--metadata-only", action="store_true", help="RxRx1: skip the 46 GB images")
    p.add_argument("--plate-root", help="cpjump1_subset: the plate folder (default data/cpjump1)")
    p.add_argument("--size", type=int, help="cpjump1_subset: image side in pixels (default: as is)")
    a = p.parse_args(argv)
    try:
        if a.name == "cpjump1_subset":
            catalog.build_cpjump1_subset(
                a.plate_root or data_root() / "cpjump1",
                a.dest or data_root() / "cpjump1_subset",
                plate=(a.plates or ["BR00116991"])[0],
                size=a.size,
            )
            return 0
        if a.name not in catalog.LAYOUTS or catalog.LAYOUTS[a.name].manifest is None:
            fetchable = sorted(k for k, v in catalog.LAYOUTS.items() if v.manifest)
            print(
                f"dataset {a.name!r} cannot be downloaded; choose from {fetchable} or "
                "cpjump1_subset (the cell-line images come from their course).",
                file=sys.stderr,
            )
            return 2
        kw = dict(plates=a.plates, max_images=a.max_images, images=not a.metadata_only)
        if a.name == "cpjump1":
            kw.update(channels=_channels(a.channels), workers=a.workers)
        catalog.fetch(a.name, a.dest, **kw)
    except (DownloadError, catalog.DatasetError, FileExistsError, urllib.error.URLError) as exc:
        print(f"{a.name} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
