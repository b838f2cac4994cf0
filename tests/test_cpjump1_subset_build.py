"""The course subset rebuilt from a (tiny, synthetic) CPJUMP1 plate: ``build_cpjump1_subset``
and ``make data NAME=cpjump1_subset``, read back with ``read_cpjump1_subset``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellutils import datasets
from cellutils.datasets import cpjump1_subset as sub
from cellutils.datasets.cpjump1_subset import build_cpjump1_subset

PLATE = "BR00116991"


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    """(subset index, plate index) of the subset built from the tiny plate at full size."""
    out = build_cpjump1_subset(tiny["cpjump1"], tmp_path_factory.mktemp("s") / "subset")
    plate = datasets.read_cpjump1(tiny["cpjump1"], plates=[PLATE], errors="raise")
    return datasets.read_cpjump1_subset(out, errors="raise"), plate, out


def test_counts_labels_and_columns(built):
    ix, plate, out = built
    assert len(ix) == len(plate) < sub.COURSE_SITES  # the tiny plate has fewer sites
    assert list(pd.read_csv(out / f"metadata_{PLATE}.csv").columns) == sub.COLUMNS
    key = ["Metadata_Well", "Metadata_Site"]
    got = ix.assign(Metadata_Site=ix.Metadata_Site.astype(int)).set_index(key)
    want = plate.set_index(key)
    assert sorted(got.index) == sorted(want.index)
    assert (got.Metadata_pert_iname == want.Metadata_pert_iname.loc[got.index]).all()
    assert (got.Metadata_target == want.Metadata_target.loc[got.index]).all()
    assert set(ix.Metadata_experiment_type) == {"Compound"} and set(ix.Metadata_cell_line) == {
        "A549"
    }
    assert list(ix.ImageNumber.astype(int)) == list(range(1, len(ix) + 1))
    assert all(f.endswith("p01-ch3sk1fk1fl1.tiff") for f in ix.FileName_OrigRNA)


def test_sites_are_in_plate_order(built):
    ix, _, _ = built
    order = [
        (w[0], int(w[1:]), int(s)) for w, s in zip(ix.Metadata_Well, ix.Metadata_Site, strict=True)
    ]
    assert order == sorted(order)


def test_one_image_is_the_median_of_the_first_three_channels(built):
    ix, plate, _ = built
    row = ix.iloc[len(ix) // 2]
    src = plate[
        (plate.Metadata_Well == row.Metadata_Well) & (plate.Metadata_Site == int(row.Metadata_Site))
    ].iloc[0]
    chans = [tifffile.imread(src[f"path_{s}"]) for s in ("Mito", "AGP", "RNA")]
    middle = np.median(np.stack(chans).astype(np.float64), axis=0)
    got = tifffile.imread(row.path_median)
    assert got.dtype == chans[0].dtype == np.uint16
    np.testing.assert_array_equal(got.astype(np.float64), middle)
    assert not np.array_equal(got, chans[2])  # not simply the RNA channel


def test_pubchem_ids_come_from_the_compound_metadata(built, tiny):
    ix, plate, _ = built
    cm = datasets.read_table(next(tiny["cpjump1"].rglob("*compound_metadata*")))
    cid = dict(zip(cm.pert_iname, cm.pubchem_cid, strict=True))
    treated = ix[ix.Metadata_pert_iname != "DMSO"]
    assert len(treated) and all(
        str(c) == cid[n]
        for n, c in zip(treated.Metadata_pert_iname, treated.Metadata_pubchem_cid, strict=True)
    )


def test_downsampled_and_limited_to_the_first_sites(tiny, tmp_path):
    out = build_cpjump1_subset(tiny["cpjump1"], tmp_path / "s", size=24, n_sites=5)
    ix = datasets.read_cpjump1_subset(out, errors="raise")
    full = datasets.read_cpjump1(tiny["cpjump1"], plates=[PLATE], errors="raise")
    assert len(ix) == 5
    img = tifffile.imread(ix.path_median[0])
    assert img.shape == (24, 24) and img.dtype == np.uint16
    src = full[(full.Metadata_Well == ix.Metadata_Well[0]) & (full.Metadata_Site == 1)].iloc[0]
    ref = np.median([tifffile.imread(src[f"path_{s}"]) for s in ("Mito", "AGP", "RNA")], axis=0)
    assert abs(img.mean() - ref.mean()) < 0.02 * ref.mean()  # resizing keeps the intensity


def test_an_existing_subset_is_never_overwritten(tiny, tmp_path):
    out = tmp_path / "subset"
    out.mkdir()
    (out / "metadata_BR00116991.csv").write_text("the course's own file\n")
    with pytest.raises(FileExistsError, match=f"{out} already exists and is not empty"):
        build_cpjump1_subset(tiny["cpjump1"], out)
    assert (out / "metadata_BR00116991.csv").read_text() == "the course's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subset"]


def test_an_interrupted_build_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    calls = []

    def boom(paths, size):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return np.zeros((4, 4), np.uint16)

    monkeypatch.setattr(sub, "_median_image", boom)
    with pytest.raises(OSError, match="disk full"):
        build_cpjump1_subset(tiny["cpjump1"], tmp_path / "subset", n_jobs=1)
    assert list(tmp_path.iterdir()) == []


def test_a_plate_without_the_median_channels_is_refused(copy_of, tmp_path):
    root = copy_of("cpjump1")
    for p in root.rglob("*-ch2sk1fk1fl1.tiff"):
        p.unlink()
    folder = next(root.rglob(f"{PLATE}__*")) / "Images"
    with pytest.raises(datasets.DatasetError, match=rf"{folder} has no files of channel.*ch2"):
        build_cpjump1_subset(root, tmp_path / "subset")
    assert not (tmp_path / "subset").exists()


def test_a_missing_plate_names_the_folder(tmp_path):
    with pytest.raises(datasets.DatasetError, match=f"no image folder of plate {PLATE}"):
        build_cpjump1_subset(tmp_path, tmp_path / "subset")


def test_make_data_builds_the_subset_from_the_downloaded_plate(tiny, tmp_path):
    """``make data NAME=cpjump1_subset`` runs ``python -m cellutils.download cpjump1_subset``
    (checked with ``make -n``), which builds from ``<data root>/cpjump1``."""
    repo = Path(__file__).resolve().parents[1]
    if shutil.which("make"):
        dry = subprocess.run(
            ["make", "-n", "data", "NAME=cpjump1_subset", f"STAMP={tmp_path}/stamp"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        assert "-m cellutils.download cpjump1_subset" in dry.stdout
    shutil.copytree(tiny["cpjump1"], tmp_path / "cpjump1")
    env = {**os.environ, "CELLUTILS_DATA": str(tmp_path), "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "cellutils.download", "cpjump1_subset", "--size", "32"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ix = datasets.read_cpjump1_subset(tmp_path / "cpjump1_subset", errors="raise")
    assert len(ix) == len(datasets.read_cpjump1(tmp_path / "cpjump1", plates=[PLATE]))
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already exists and is not empty" in again.stderr
