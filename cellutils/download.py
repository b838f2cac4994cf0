"""Download the real datasets (for users with internet): resumable, verified, never destructive.

``make data NAME=rxrx1`` / ``make data NAME=cpjump1`` call ``python -m cellutils.download NAME``.
A download goes to ``<file>.part`` and resumes from its size with an HTTP Range request; a
failed or interrupted transfer keeps the partial file for the next try; a finished file is
checked against its checksum (when one is known) before it is renamed into place. A file that
fails its checksum is kept as ``<file>.bad`` for inspection, never deleted.

CPJUMP1 files are listed from the Cell Painting Gallery's public S3 bucket (anonymous
``ListObjectsV2`` over HTTPS) and mirrored under ``<dest>/`` with the gallery's own paths below
``source_4/``, which ``cellutils.datasets.read_cpjump1`` reads. What to fetch is each layout's
``manifest`` (``cellutils.datasets.rxrx1``, ``cellutils.datasets.cpjump1``); this module moves
the bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path

from tqdm.auto import tqdm

from cellutils.paths import data_root


class DownloadError(RuntimeError):
    """A download could not finish; the partial file is kept for a resume."""


@dataclass(frozen=True)
class Remote:
    url: str
    dest: str  # relative to the dataset folder
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    unzip: bool = False


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, sha256: str | None, md5: str | None) -> bool:
    if sha256 and _digest(path, "sha256") != sha256.lower():
        return False
    return not (md5 and _digest(path, "md5") != md5.lower())


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    chunk: int = 1 << 20,
    backoff: float = 2.0,
) -> Path:
    """Fetch ``url`` to ``dest``, resuming ``dest.part``; return ``dest``.

    An existing ``dest`` that passes its checksum (or has none) is left alone and returned.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if _check(dest, sha256, md5):
            return dest
        raise DownloadError(
            f"{dest} exists but does not match its checksum. It was left in place: move it away "
            "(or delete it) and run the download again."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(retries):
        start = part.stat().st_size if part.exists() else 0
        headers = (
            {"User-Agent": "cellutils-download", "Range": f"bytes={start}-"}
            if start
            else {"User-Agent": "cellutils-download"}
        )
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as resp:
                if start and resp.status != 206:  # server ignored the Range: start over
                    start = 0
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                mode = "ab" if start else "wb"
                with (
                    open(part, mode) as fh,
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
                    while True:
                        block = resp.read(chunk)
                        if not block:
                            break
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
            last_error = exc
        except (urllib.error.URLError, OSError, IncompleteRead, TimeoutError) as exc:
            last_error = exc
        if attempt + 1 < retries:
            time.sleep(backoff * (attempt + 1))
    else:
        size = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: gave up after {retries} tries ({last_error}). {size} bytes are kept in "
            f"{part}; run the same command again to resume."
        )
    if not _check(part, sha256, md5):
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        raise DownloadError(
            f"{url}: checksum mismatch; the file is kept as {bad}. Move it away "
            "and download again; if it repeats, the source changed."
        )
    os.replace(part, dest)
    return dest


def list_s3(
    bucket_url: str, prefix: str, timeout: float = 60.0, max_keys: int | None = None
) -> list[Remote]:
    """Anonymous S3 ListObjectsV2 of ``prefix`` (follows continuation tokens)."""
    out: list[Remote] = []
    token = None
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token:
            query["continuation-token"] = token
        url = f"{bucket_url}/?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            tree = ET.fromstring(resp.read())
        for item in tree.findall("s3:Contents", ns):
            key = item.findtext("s3:Key", namespaces=ns)
            size = int(item.findtext("s3:Size", "0", namespaces=ns))
            etag = (item.findtext("s3:ETag", "", namespaces=ns) or "").strip('"')
            md5 = etag if len(etag) == 32 and "-" not in etag else None  # single-part uploads
            out.append(Remote(f"{bucket_url}/{urllib.parse.quote(key)}", key, size, md5=md5))
            if max_keys and len(out) >= max_keys:
                return out
        if tree.findtext("s3:IsTruncated", namespaces=ns) != "true":
            return out
        token = tree.findtext("s3:NextContinuationToken", namespaces=ns)


def fetch_dataset(layout, dest: str | os.PathLike | None = None, **kw) -> Path:
    """Download a dataset into ``<data root>/<layout.name>``: the files its layout's
    ``manifest`` lists (``cellutils.datasets.<name>.LAYOUT``; ``cellutils.catalog.fetch``
    takes a name). The layout is passed in: this engine never imports the layouts."""
    base = Path(dest) if dest else data_root() / layout.name
    name = layout.name
    if layout.manifest is None:
        raise ValueError(f"dataset {name!r} has no download manifest.")
    manifest = layout.manifest(**kw)
    for i, item in enumerate(manifest, 1):
        print(f"[{i}/{len(manifest)}] {item.dest}", flush=True)
        path = download(item.url, base / item.dest, sha256=item.sha256, md5=item.md5)
        if item.unzip:
            marker = path.with_name(path.name + ".extracted")
            if not marker.exists():
                with zipfile.ZipFile(path) as zf:
                    for member in tqdm(
                        zf.infolist(),
                        f"extract {path.name}",
                        unit="file",
                        leave=False,
                        mininterval=1.0,
                    ):
                        zf.extract(member, base)
                marker.touch()
    print(f"{name}: {len(manifest)} files in {base}")
    return base


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cellutils.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="a dataset with a download manifest: rxrx1 or cpjump1")
    p.add_argument("--dest", help="target folder (default: <data root>/<name>)")
    p.add_argument("--plates", nargs="*", help="CPJUMP1 plates (default BR00116991)")
    p.add_argument("--max-images", type=int, help="CPJUMP1: at most this many image files")
    p.add_argument("--metadata-only", action="store_true", help="RxRx1: skip the 46 GB images")
    a = p.parse_args(argv)
    from cellutils.catalog import fetch  # the CLI names a dataset; the catalog knows them

    try:
        fetch(a.name, a.dest, plates=a.plates, max_images=a.max_images, images=not a.metadata_only)
    except (DownloadError, urllib.error.URLError) as exc:
        print(f"download failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
