"""Bad input, one table-driven test per area: each case asserts a loud error that names the file
(or folder) and the fix, or a correct result. Sections are independent; fixtures and helpers
are prefixed with their area's name."""

from __future__ import annotations

import pytest

# ---- downloads ----
# Real downloads (cellutils.download) against local stubs, and the course subset built from a
# plate (cellutils.datasets.cpjump1_subset.build_cpjump1_subset). Each case gets the tiny
# synthetic datasets, a private tmp folder and a loopback HTTP server serving a zip.


@pytest.fixture
def downloads_server(tiny):
    """(base URL, zip bytes) of a loopback server serving an rxrx.ai-like zip."""
    from download_stubs import make_zip, serve, stop

    root = tiny["rxrx1"]
    payload = make_zip(
        {
            f"rxrx1/{p.relative_to(root).as_posix()}": p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "ground_truth" not in p.parts and p.suffix != ".json"
        }
    )
    url, httpd = serve(payload)
    yield url, payload
    stop(httpd)


def _downloads_remote(url: str, md5: str | None = None):
    from cellutils import download as dl

    return dl.Remote(f"{url}/rxrx1-images.zip", "rxrx1-images.zip", md5=md5, unzip=True)


def downloads_s3_disk_full(tiny, tmp_path, server, monkeypatch):
    """Not enough disk for a CPJUMP1 plate: refused before any transfer, naming the folder."""
    import moto
    from download_stubs import Calls, fill_gallery

    from cellutils import datasets
    from cellutils import download as dl

    with moto.mock_aws():
        fill_gallery(dl.s3_client(), tiny["cpjump1"])
        client = dl.s3_client(workers=2)
        calls = Calls(client)
        usage = dl.shutil.disk_usage(tmp_path)
        monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage._replace(free=1))
        dest = tmp_path / "cpjump1"
        with pytest.raises(dl.DownloadError, match=rf"not enough disk in {dest}.*--dest"):
            dl.fetch_dataset(datasets.LAYOUTS["cpjump1"], dest, client=client, progress=False)
    assert calls.ops["GetObject"] == 0 and not dest.exists()


def downloads_http_disk_full(tiny, tmp_path, server, monkeypatch):
    """Not enough disk for a zip and its extraction: refused before the GET, naming the folder."""
    from download_stubs import gets

    from cellutils import download as dl

    usage = dl.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage._replace(free=10))
    with pytest.raises(dl.DownloadError, match=rf"not enough disk in {tmp_path}"):
        dl.fetch_http([_downloads_remote(server[0])], tmp_path, progress=False)
    assert gets("GET") == []


def downloads_md5_mismatch(tiny, tmp_path, server, monkeypatch):
    """A zip whose MD5 differs from the published one: an error naming the file, kept as .bad,
    nothing extracted."""
    from cellutils import download as dl

    with pytest.raises(dl.DownloadError, match=rf"{tmp_path}/rxrx1-images\.zip: checksum mismatch"):
        dl.fetch_http([_downloads_remote(server[0], md5="0" * 32)], tmp_path, progress=False)
    assert (tmp_path / "rxrx1-images.zip.bad").read_bytes() == server[1]
    assert not (tmp_path / "rxrx1").exists()


def downloads_truncated_partial(tiny, tmp_path, server, monkeypatch):
    """A truncated partial zip (interrupted run) is resumed with Range + If-Range, not restarted,
    and the whole file passes its MD5."""
    from download_stubs import Handler, gets

    from cellutils import download as dl

    Handler.cut_after = len(server[1]) // 2
    with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
        dl.fetch_http([_downloads_remote(server[0])], tmp_path, progress=False, retries=1)
    size = (tmp_path / "rxrx1-images.zip.part").stat().st_size
    dl.fetch_http([_downloads_remote(server[0])], tmp_path, progress=False, retries=1)
    assert gets("GET")[-1][2]["Range"] == f"bytes={size}-" and "If-Range" in gets("GET")[-1][2]
    assert (tmp_path / "rxrx1-images.zip").read_bytes() == server[1]


def downloads_rerun_after_extraction(tiny, tmp_path, server, monkeypatch):
    """After extraction the zip is deleted: a rerun neither downloads nor extracts again."""
    from download_stubs import Handler

    from cellutils import datasets
    from cellutils import download as dl

    dl.fetch_http([_downloads_remote(server[0])], tmp_path, progress=False)
    (tmp_path / "rxrx1-images.zip").unlink()
    before = len(Handler.requests)
    monkeypatch.setattr(dl, "_extract", lambda *a: pytest.fail("extracted again"))
    dl.fetch_http([_downloads_remote(server[0])], tmp_path, progress=False)
    assert len(Handler.requests) == before
    assert len(datasets.read_rxrx1(tmp_path, errors="raise")) > 0


def downloads_foreign_file(tiny, tmp_path, server, monkeypatch):
    """A file in the download folder that the download did not write is never overwritten."""
    import moto
    from download_stubs import fill_gallery

    from cellutils import datasets
    from cellutils import download as dl

    with moto.mock_aws():
        keys = fill_gallery(dl.s3_client(), tiny["cpjump1"])
        key = next(k for k in keys if k.endswith("-ch1sk1fk1fl1.tiff"))
        mine = tmp_path / "cpjump1" / key[len(datasets.cpjump1.PREFIX) :]
        mine.parent.mkdir(parents=True)
        mine.write_bytes(b"mine")
        with pytest.raises(dl.DownloadError, match=rf"not written by this download.*{mine.name}"):
            dl.fetch_dataset(
                datasets.LAYOUTS["cpjump1"], tmp_path / "cpjump1", client=dl.s3_client(2)
            )
    assert mine.read_bytes() == b"mine"


def downloads_filtered_channels_read(tiny, tmp_path, server, monkeypatch):
    """A plate downloaded with ch1-ch5 only is read without missing-file complaints."""
    import moto
    from download_stubs import fill_gallery

    from cellutils import datasets
    from cellutils import download as dl

    with moto.mock_aws():
        fill_gallery(dl.s3_client(), tiny["cpjump1"])
        dest = dl.fetch_dataset(
            datasets.LAYOUTS["cpjump1"], tmp_path / "c", client=dl.s3_client(2), progress=False
        )
    ix = datasets.read_cpjump1(dest, errors="raise")
    assert len(ix) > 0 and "path_DNA" in ix and "path_Brightfield" not in ix
    assert len(datasets.problems(ix)) == 0


def downloads_subset_exists(tiny, tmp_path, server, monkeypatch):
    """Building the course subset onto an existing subset is refused; the old one is intact."""
    from cellutils.datasets.cpjump1_subset import build_cpjump1_subset

    out = tiny["cpjump1_subset"]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match=rf"{out} already exists.*--dest"):
        build_cpjump1_subset(tiny["cpjump1"], out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def downloads_subset_channels_missing(tiny, tmp_path, server, monkeypatch):
    """A plate folder without ch3 files: the subset build refuses, naming the folder."""
    import shutil

    from cellutils import datasets
    from cellutils.datasets.cpjump1_subset import build_cpjump1_subset

    root = shutil.copytree(tiny["cpjump1"], tmp_path / "cpjump1")
    for p in root.rglob("*-ch3sk1fk1fl1.tiff"):
        p.unlink()
    folder = next(root.rglob("BR00116991__*")) / "Images"
    with pytest.raises(datasets.DatasetError, match=rf"{folder} has no files of channel.*ch3"):
        build_cpjump1_subset(root, tmp_path / "subset")
    assert not (tmp_path / "subset").exists()


def downloads_subset_incomplete_site(tiny, tmp_path, server, monkeypatch):
    """One site's ch2 file is missing: the build stops naming the file (no silent skip)."""
    import shutil

    from cellutils import datasets
    from cellutils.datasets.cpjump1_subset import build_cpjump1_subset

    root = shutil.copytree(tiny["cpjump1"], tmp_path / "cpjump1")
    victim = sorted(next(root.rglob("BR00116991__*")).rglob("*-ch2sk1fk1fl1.tiff"))[0]
    victim.unlink()
    with pytest.raises(datasets.DatasetError, match=rf"missing_file: {victim}"):
        build_cpjump1_subset(root, tmp_path / "subset")
    assert not (tmp_path / "subset").exists()


DOWNLOAD_CASES = [
    downloads_s3_disk_full,
    downloads_http_disk_full,
    downloads_md5_mismatch,
    downloads_truncated_partial,
    downloads_rerun_after_extraction,
    downloads_foreign_file,
    downloads_filtered_channels_read,
    downloads_subset_exists,
    downloads_subset_channels_missing,
    downloads_subset_incomplete_site,
]


@pytest.mark.parametrize("case", DOWNLOAD_CASES, ids=lambda f: f.__name__)
def test_downloads_bad_input(case, tiny, tmp_path, downloads_server, monkeypatch):
    case(tiny, tmp_path, downloads_server, monkeypatch)
