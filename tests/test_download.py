"""Downloads against local stubs, never the internet: CPJUMP1 through boto3 against a
moto-mocked Gallery bucket, RxRx1's zips against an HTTP server on loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import moto
import numpy as np
import pytest
import tifffile
from download_stubs import PLATE, Calls, Flaky, fill_gallery, gets, make_zip, serve, stop

from cellutils import catalog, datasets
from cellutils import download as dl

# --------------------------------------------------------------------------------------------
# CPJUMP1: S3 through boto3
# --------------------------------------------------------------------------------------------


@pytest.fixture
def gallery(tiny):
    """(client factory, uploaded keys) of a mocked Gallery bucket holding plate BR00116991."""
    with moto.mock_aws():
        keys = fill_gallery(dl.s3_client(), tiny["cpjump1"])
        yield (lambda **kw: dl.s3_client(workers=4, **kw)), keys


def _fetch(dest, client, **kw):
    kw.setdefault("workers", 4)
    return dl.fetch_dataset(
        datasets.LAYOUTS["cpjump1"], dest, client=client, progress=False, backoff=0, **kw
    )


def _images(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tiff"))


def test_parallel_download_of_a_plate_keeps_the_five_fluorescent_channels(gallery, tiny, tmp_path):
    make_client, keys = gallery
    client = make_client()
    calls = Calls(client)
    dest = _fetch(tmp_path / "cpjump1", client)
    chans = {int(datasets.cpjump1.FILE.match(p.name)["ch"]) for p in _images(dest)}
    assert chans == {1, 2, 3, 4, 5}  # ch6-8 (brightfield) filtered on purpose
    n_img = sum(".tiff" in k for k in keys)
    assert len(_images(dest)) == n_img * 5 // 8 == calls.ops["GetObject"] - (len(keys) - n_img)
    assert len(calls.threads) > 1  # transfers ran in parallel
    assert json.loads((dest / dl.RECORD).read_text())["channels"] == [1, 2, 3, 4, 5]
    ledger = dl.Ledger(dest)
    assert len(ledger.rows) == calls.ops["GetObject"]  # one row per file, with its MD5
    row = next(iter(ledger.rows.values()))
    local = dest / row["key"][len(datasets.cpjump1.PREFIX) :]
    assert row["md5"] == hashlib.md5(local.read_bytes()).hexdigest() == row["etag"]
    # the reader takes the filtered plate without complaint, pixels intact
    ix = datasets.read_cpjump1(dest, errors="raise")
    ref = datasets.read_cpjump1(tiny["cpjump1"], plates=[PLATE], errors="raise")
    assert [c for c in ix if c.startswith("path_")] == [
        "path_Mito",
        "path_AGP",
        "path_RNA",
        "path_ER",
        "path_DNA",
    ]
    assert len(ix) == len(ref) and list(ix.Metadata_pert_iname) == list(ref.Metadata_pert_iname)
    np.testing.assert_array_equal(tifffile.imread(ix.path_DNA[0]), tifffile.imread(ref.path_DNA[0]))


def test_all_channels_on_request(gallery, tmp_path):
    make_client, keys = gallery
    dest = _fetch(tmp_path / "cpjump1", make_client(), channels=list(range(1, 9)))
    assert len(_images(dest)) == sum(".tiff" in k for k in keys)
    assert len(datasets.read_cpjump1(dest, errors="raise").filter(like="path_").columns) == 8


def test_rerun_checks_sizes_and_transfers_nothing(gallery, tmp_path, monkeypatch):
    make_client, _ = gallery
    dest = _fetch(tmp_path / "cpjump1", make_client())
    client = make_client()
    calls = Calls(client)
    monkeypatch.setattr(dl, "_md5_file", lambda p: pytest.fail(f"re-hashed {p}"))
    _fetch(dest, client)
    assert calls.ops["GetObject"] == 0 and calls.ops["ListObjectsV2"] >= 3


def test_a_truncated_file_is_fetched_again(gallery, tmp_path):
    make_client, _ = gallery
    dest = _fetch(tmp_path / "cpjump1", make_client())
    victim = _images(dest)[3]
    whole = victim.read_bytes()
    victim.write_bytes(whole[:100])
    client = make_client()
    calls = Calls(client)
    _fetch(dest, client)
    assert calls.ops["GetObject"] == 1 and victim.read_bytes() == whole


def test_transient_failures_are_retried_per_file(gallery, tmp_path):
    make_client, keys = gallery
    client = make_client(attempts=1)  # no botocore retries: the per-file retry must cope
    Flaky(client, 3)
    dest = _fetch(tmp_path / "cpjump1", client, retries=4)
    assert len(_images(dest)) == sum(".tiff" in k for k in keys) * 5 // 8


def test_transient_failures_are_retried_by_botocore(gallery, tmp_path):
    make_client, keys = gallery
    client = make_client(attempts=4)
    Flaky(client, 2)
    dest = _fetch(tmp_path / "cpjump1", client, retries=1)  # no per-file retry
    assert len(_images(dest)) == sum(".tiff" in k for k in keys) * 5 // 8


def test_failures_that_persist_are_reported_and_the_rest_kept(gallery, tmp_path):
    make_client, _ = gallery
    client = make_client(attempts=1)
    Flaky(client, 10**6)
    with pytest.raises(dl.DownloadError, match="failed .*run the same command again"):
        _fetch(tmp_path / "cpjump1", client, retries=2)


def test_not_enough_disk_is_refused_before_any_transfer(gallery, tmp_path, monkeypatch, capsys):
    make_client, _ = gallery
    client = make_client()
    calls = Calls(client)
    usage = dl.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    dest = tmp_path / "cpjump1"
    with pytest.raises(dl.DownloadError, match=rf"not enough disk in {dest}.*Nothing was"):
        _fetch(dest, client)
    assert calls.ops["GetObject"] == 0 and not _images(tmp_path)
    assert "GB to write into" in capsys.readouterr().out  # the size was stated first


def test_a_file_it_did_not_write_is_left_alone(gallery, tmp_path):
    make_client, _ = gallery
    dest = _fetch(tmp_path / "cpjump1", make_client())
    victim = _images(dest)[0]
    (dest / dl.LEDGER).unlink()  # as if the file came from elsewhere
    victim.write_bytes(b"the user's own bytes")
    with pytest.raises(dl.DownloadError, match=rf"not written by this download.*{victim.name}"):
        _fetch(dest, make_client())
    assert victim.read_bytes() == b"the user's own bytes"


def test_files_of_an_earlier_download_without_ledger_are_verified_once(gallery, tmp_path):
    make_client, _ = gallery
    dest = _fetch(tmp_path / "cpjump1", make_client())
    (dest / dl.LEDGER).unlink()
    client = make_client()
    calls = Calls(client)
    _fetch(dest, client)
    assert calls.ops["GetObject"] == 0 and len(dl.Ledger(dest).rows) > 0


def test_an_unknown_plate_lists_nothing_and_says_so(gallery, tmp_path):
    make_client, _ = gallery
    dest = tmp_path / "x"
    with pytest.raises(dl.DownloadError, match="came back empty; check the plate names"):
        dl.fetch_dataset(
            datasets.LAYOUTS["cpjump1"], dest, client=make_client(), plates=["BR0"], progress=False
        )


# --------------------------------------------------------------------------------------------
# RxRx1: HTTP zips
# --------------------------------------------------------------------------------------------


@pytest.fixture
def rxrx_zip(tiny):
    """An rxrx.ai-like zip of the tiny synthetic RxRx1 (files under ``rxrx1/``)."""
    root = tiny["rxrx1"]
    files = {
        f"rxrx1/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "ground_truth" not in p.parts and p.suffix != ".json"
    }
    return make_zip(files)


@pytest.fixture
def server(rxrx_zip):
    url, httpd = serve(rxrx_zip)
    yield url
    stop(httpd)


def _remote(url: str, md5: str | None = None) -> dl.Remote:
    return dl.Remote(f"{url}/rxrx1-images.zip", "rxrx1-images.zip", md5=md5, unzip=True)


def test_zip_is_verified_extracted_and_never_fetched_again(server, rxrx_zip, tiny, tmp_path):
    dl.fetch_http([_remote(server)], tmp_path, progress=False)
    zip_path = tmp_path / "rxrx1-images.zip"
    marker = json.loads((tmp_path / "rxrx1-images.zip.extracted.json").read_text())
    assert marker == {
        "zip": "rxrx1-images.zip",
        "size": len(rxrx_zip),
        "md5": hashlib.md5(rxrx_zip).hexdigest(),
    }
    ix = datasets.read_rxrx1(tmp_path, errors="raise")
    assert len(ix) == len(datasets.read_rxrx1(tiny["rxrx1"], errors="raise"))
    zip_path.unlink()  # the user frees 46 GB
    n = len(dl_requests := gets("GET") + gets("HEAD"))
    dl.fetch_http([_remote(server)], tmp_path, progress=False)
    assert len(gets("GET") + gets("HEAD")) == n and dl_requests is not None
    assert not zip_path.exists()


def test_extracted_files_of_another_version_are_an_error(server, tmp_path):
    dl.fetch_http([_remote(server)], tmp_path, progress=False)
    with pytest.raises(dl.DownloadError, match=r"extracted.json records MD5 .* another version"):
        dl.fetch_http([_remote(server, md5="f" * 32)], tmp_path, progress=False)
    (tmp_path / "rxrx1-images.zip.extracted.json").unlink()
    with pytest.raises(dl.DownloadError, match=r"rxrx1-images.zip: download_manifest.tsv records"):
        dl.fetch_http([_remote(server, md5="f" * 32)], tmp_path, progress=False)


def test_interrupted_zip_resumes_with_if_range(server, rxrx_zip, tmp_path):
    from download_stubs import Handler

    Handler.cut_after = len(rxrx_zip) // 3
    with pytest.raises(dl.DownloadError, match="kept in"):
        dl.fetch_http([_remote(server)], tmp_path, progress=False, retries=1)
    part = tmp_path / "rxrx1-images.zip.part"
    size = part.stat().st_size
    assert 0 < size < len(rxrx_zip)
    dl.fetch_http([_remote(server)], tmp_path, progress=False, retries=1)
    last = gets("GET")[-1][2]
    assert last["Range"] == f"bytes={size}-" and last["If-Range"] == '"v1"'
    assert (tmp_path / "rxrx1-images.zip").read_bytes() == rxrx_zip
    assert dl.Ledger(tmp_path).rows["rxrx1-images.zip"]["md5"] == hashlib.md5(rxrx_zip).hexdigest()


def test_a_changed_file_restarts_instead_of_splicing(server, rxrx_zip, tmp_path):
    from download_stubs import Handler

    Handler.cut_after = len(rxrx_zip) // 3
    with pytest.raises(dl.DownloadError):
        dl.download(f"{server}/z.zip", tmp_path / "z.zip", progress=False, retries=1)
    Handler.etag = '"v2"'  # the file changed on the server since the part began
    out = dl.download(f"{server}/z.zip", tmp_path / "z.zip", progress=False, retries=1)
    assert gets("GET")[-1][2]["If-Range"] == '"v1"'  # asked; the server answered 200
    assert out.read_bytes() == rxrx_zip


def test_md5_stated_by_the_server_is_checked(server, tmp_path):
    from download_stubs import Handler

    Handler.stated_md5 = "0" * 32
    with pytest.raises(dl.DownloadError, match=r"rxrx1-images\.zip: checksum mismatch"):
        dl.fetch_http([_remote(server)], tmp_path, progress=False)
    assert (tmp_path / "rxrx1-images.zip.bad").exists()
    assert not (tmp_path / "rxrx1-images.zip.extracted.json").exists()


def test_published_md5_wins_over_the_server(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="checksum mismatch"):
        dl.fetch_http([_remote(server, md5="f" * 32)], tmp_path, progress=False)


def test_http_errors_are_final_and_clear(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{server}/missing", tmp_path / "m.bin", progress=False)


def test_existing_file_with_wrong_checksum_is_not_touched(server, tmp_path):
    mine = tmp_path / "f.bin"
    mine.write_bytes(b"user data")
    with pytest.raises(dl.DownloadError, match="left in place"):
        dl.download(f"{server}/f.bin", mine, md5="0" * 32, progress=False)
    assert mine.read_bytes() == b"user data"


def test_zip_space_is_checked_before_the_transfer(server, tmp_path, monkeypatch):
    usage = dl.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage._replace(free=10))
    with pytest.raises(dl.DownloadError, match=rf"not enough disk in {tmp_path}"):
        dl.fetch_http([_remote(server)], tmp_path, progress=False)
    assert gets("GET") == [] and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# The command line and the registry
# --------------------------------------------------------------------------------------------


def test_command_line_names_what_can_be_fetched(capsys):
    assert dl.main(["hpa"]) == 2
    assert "choose from ['cpjump1', 'rxrx1'] or cpjump1_subset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no download manifest"):
        dl.fetch_dataset(datasets.LAYOUTS["cell_lines"])


def test_channels_option():
    assert dl._channels(None) is None
    assert dl._channels(["all"]) == list(range(1, 9))
    assert dl._channels(["ch1,ch3", "5"]) == [1, 3, 5]
    with pytest.raises(SystemExit, match="channel numbers"):
        dl._channels(["DNA"])
    with pytest.raises(SystemExit, match="channel numbers"):
        dl._channels(["9"])


def test_download_module_does_not_import_the_registry():
    import subprocess
    import sys

    code = "import sys, cellutils.download; print('cellutils.datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_dataset_name():
    with pytest.raises(
        ValueError, match=r"cannot be downloaded; choose from \['cpjump1', 'rxrx1'\]"
    ):
        catalog.fetch("hpa")
    with pytest.raises(ValueError, match="come from their courses"):
        catalog.fetch("cell_lines")  # a layout without a download manifest
