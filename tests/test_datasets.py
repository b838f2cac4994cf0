"""Writer -> reader round trips for the four layouts, and every bad-input case."""

import hashlib
import shutil

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from cellutils import catalog, datasets, synthetic
from cellutils.images import ImageError


def test_rxrx1_round_trip(tiny):
    root = tiny["rxrx1"]
    ix = datasets.read_rxrx1(root, errors="raise")
    truth = synthetic.read_truth(root)["sites"]
    assert len(ix) == len(truth) == 3 * 4 * (2 + 1 + 1) * 2  # exps x plates x wells x sites
    assert set(ix.experiment) == {"HUVEC-01", "HUVEC-02", "RPE-01"}
    assert set(ix.dataset) == {"train", "test"}
    assert ix.sirna_id.max() == 9 and (ix[ix.well_type == "negative_control"].sirna_id == 9).all()
    # each siRNA once per experiment, all on one plate (the plate groups of RxRx1)
    trt = ix[(ix.well_type == "treatment") & (ix.site == 1)]
    assert trt.groupby(["experiment", "sirna_id"]).size().eq(1).all()
    assert trt.groupby("sirna_id").plate.nunique().eq(1).all()
    img = datasets.load_site(ix.iloc[0])
    assert img.shape == (6, 48, 48) and img.dtype == np.uint8
    merged = ix.merge(truth, left_on="site_id", right_on="key")
    assert (merged.sirna_id_x == merged.sirna_id_y).all()
    assert datasets.problems(ix).empty


def test_rxrx1_kaggle_form(tmp_path):
    root = datasets.write_rxrx1(
        tmp_path / "k",
        form="kaggle",
        n_sirnas=4,
        n_positive=1,
        experiments={"HUVEC": 2},
        size=32,
        seed=1,
        n_jobs=1,
    )
    for f in (
        "train.csv",
        "test.csv",
        "train_controls.csv",
        "test_controls.csv",
        "pixel_stats.csv",
    ):
        assert (root / f).exists()
    assert "sirna" not in pd.read_csv(root / "test.csv").columns  # hidden, as on Kaggle
    ix = datasets.read_rxrx1(root, errors="raise")
    assert len(ix) == 2 * 4 * 3 * 2
    assert ix[ix.dataset == "test"].query("well_type == 'treatment'").sirna_id.isna().all()
    stats = pd.read_csv(root / "pixel_stats.csv")
    row = ix.iloc[0]
    s = stats.query("id_code == @row.well_id and site == @row.site and channel == 1")
    assert s["mean"].iloc[0] == pytest.approx(datasets.load_site(row)[0].mean(), abs=1e-3)


def test_cpjump1_round_trip(tiny):
    ix = datasets.read_cpjump1(tiny["cpjump1"], errors="raise")
    assert len(ix) == 2 * (4 + 1 + 2) * 2
    assert list(datasets.path_columns(ix)) == [
        f"path_{s}" for s in datasets.cpjump1.CHANNELS.values()
    ]
    assert (ix.Metadata_pert_iname == "DMSO").sum() == 2 * 2 * 2
    assert set(ix.loc[ix.Metadata_pert_iname == "DMSO", "Metadata_control_type"]) == {"negcon"}
    # replicate plates share the platemap
    per_plate = ix.groupby("Metadata_Plate").apply(
        lambda d: tuple(sorted(zip(d.Metadata_Well, d.Metadata_pert_iname, strict=False)))
    )
    assert per_plate.nunique() == 1
    img = datasets.load_site(ix.iloc[0])
    assert img.shape == (8, 48, 48) and img.dtype == np.uint16
    dna = datasets.load_site(ix.iloc[0], ["DNA"])
    assert np.array_equal(dna[0], img[4])


def test_cpjump1_without_load_data_reads_file_names(copy_of):
    root = copy_of("cpjump1")
    shutil.rmtree(root / "load_data_csv")
    ix = datasets.read_cpjump1(root, errors="raise", plates=["BR00116992"])
    assert len(ix) == (4 + 1 + 2) * 2 and set(ix.Metadata_Plate) == {"BR00116992"}
    assert "DMSO" in set(ix.Metadata_pert_iname)


def test_cpjump1_foreign_pathnames_fall_back_to_local_plate_folder(copy_of):
    root = copy_of("cpjump1")
    for ld in root.rglob("load_data.csv"):
        df = pd.read_csv(ld)
        for c in [c for c in df if c.startswith("PathName_")]:
            df[c] = "s3://cellpainting-gallery/cpg0000-jump-pilot/source_4/images/x/Images"
        df.to_csv(ld, index=False)
    ix = datasets.read_cpjump1(root, errors="raise")
    assert len(ix) == 28 and ix.path_DNA.map(lambda p: p.exists()).all()


def test_subset_round_trip_with_real_columns(tiny):
    root = tiny["cpjump1_subset"]
    raw = pd.read_csv(root / "metadata_BR00116991.csv")
    assert raw.columns[0].startswith("Unnamed")  # the original's unnamed index column
    ix = datasets.read_cpjump1_subset(root, errors="raise")
    assert list(ix.columns[:17]) == datasets.cpjump1_subset.COLUMNS
    assert len(ix) == (6 + 2 * 2 + 3) * 3
    counts = ix.Metadata_pert_iname.value_counts()
    assert counts.index[0] == "DMSO" and counts.iloc[0] == 9
    assert sorted(counts.unique()) == [3, 6, 9]
    assert ix.Metadata_Well.iloc[0] == "A01" and ix.core.iloc[0] == "r01c01f01"
    cases = datasets.problems(ix)
    assert (cases.problem == "case_mismatch").sum() > 0  # matched anyway, but reported
    assert datasets.load_site(ix.iloc[0]).shape == (1, 48, 48)


def test_cell_lines_round_trip(tiny):
    root = tiny["cell_lines"]
    ix = datasets.read_cell_lines(root, errors="raise")
    truth = synthetic.read_truth(root)["sites"]
    assert len(ix) == 40 and ix.cell_line.isin(datasets.cell_lines.WEIGHTS).all()
    assert (
        dict(zip(ix.filename, ix.cell_line, strict=False)).items()
        <= dict(zip(truth.key, truth.cell_line, strict=False)).items()
    )
    test = datasets.read_cell_lines(root, split="test")
    assert len(test) == 10 and (test.cell_line == datasets.MISSING).all()  # labels hidden
    assert datasets.load_site(ix.iloc[0]).shape == (3, 32, 32)


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    kw = dict(n_sirnas=4, n_positive=1, experiments={"HUVEC": 1}, size=32, n_jobs=1)
    a = datasets.write_rxrx1(tmp_path / "a", seed=5, **kw)
    b = datasets.write_rxrx1(tmp_path / "b", seed=5, **{**kw, "n_jobs": 2})
    c = datasets.write_rxrx1(tmp_path / "c", seed=6, **kw)
    assert _tree_hash(a) == _tree_hash(b) != _tree_hash(c)


def test_writers_never_overwrite(tmp_path, tiny):
    kw = synthetic.load_manifest(tiny["cell_lines"])["params"]
    assert (
        datasets.write_cell_lines(
            tiny["cell_lines"], n_train=kw["n_train"], n_test=kw["n_test"], size=kw["size"], seed=3
        )
        == tiny["cell_lines"]
    )  # found
    with pytest.raises(FileExistsError, match="other parameters"):
        datasets.write_cell_lines(tiny["cell_lines"], n_train=5, seed=3)
    mine = tmp_path / "my_results"
    mine.mkdir()
    (mine / "precious.csv").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        datasets.write_cell_lines(mine, n_train=5, n_test=1)
    assert (mine / "precious.csv").read_text() == "keep me"


def test_catalog_keeps_override_sets_apart(tmp_path):
    small = {"n_train": 9, "n_test": 2, "size": 24}
    a = catalog.locate("cell_lines", data_root=tmp_path, overrides=small, verbose=False)
    assert a.name.startswith("cell_lines-") and catalog.is_synthetic(a)
    with pytest.raises(FileNotFoundError, match="make data NAME=rxrx1"):
        catalog.locate("rxrx1", real=tmp_path / "nope")


# ---------------------------------------------------------------------------- bad input


def test_missing_channel_file_is_reported_not_hidden(copy_of):
    root = copy_of("rxrx1")
    victim = next((root / "images").rglob("*_s1_w3.png"))
    victim.unlink()
    with pytest.warns(UserWarning, match="missing_file: 1"):
        ix = datasets.read_rxrx1(root)
    probs = datasets.problems(ix)
    assert probs.file.str.endswith(victim.name).any()
    assert len(ix) == 95  # that site left out, and said so
    with pytest.raises(datasets.DatasetError, match=victim.name):
        datasets.read_rxrx1(root, errors="raise")


def test_images_without_metadata_and_rows_without_images(copy_of):
    root = copy_of("cpjump1_subset")
    extra = root / "images" / "r16c24f09_median_aggregated.tiff"
    tifffile.imwrite(extra, np.zeros((48, 48), np.uint16))
    md = pd.read_csv(root / "metadata_BR00116991.csv", index_col=0)
    md.loc[len(md)] = md.iloc[0].to_numpy()
    md.loc[len(md) - 1, "FileName_OrigRNA"] = "r15c01f01p01-ch3sk1fk1fl1.tiff"
    md.to_csv(root / "metadata_BR00116991.csv")
    with pytest.warns(UserWarning) as rec:
        ix = datasets.read_cpjump1_subset(root)
    probs = datasets.problems(ix)
    assert set(probs.problem) >= {"no_metadata", "missing_file"}
    assert "no_metadata: 1" in str(rec[0].message) and "missing_file: 1" in str(rec[0].message)
    assert "r15c01f01" not in set(ix.core)


def test_size_dtype_and_unreadable_images_name_the_file(copy_of):
    root = copy_of("rxrx1")
    ix = datasets.read_rxrx1(root)
    row = ix.iloc[0]
    iio.imwrite(row.path_w2, np.zeros((40, 48), np.uint8))
    with pytest.raises(ImageError, match=r"size mismatch.*" + row.path_w2.name):
        datasets.load_site(row)
    iio.imwrite(row.path_w2, np.full((48, 48), 300, np.uint16))  # kept exactly, never wrapped
    site = datasets.load_site(row)
    assert site.dtype == np.uint16 and (site[1] == 300).all()
    assert np.array_equal(site[0], iio.imread(row.path_w1))
    row.path_w2.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageError, match=rf"cannot read image .*{row.path_w2.name}.*download"):
        datasets.load_site(row)
    row.path_w2.unlink()
    with pytest.raises(ImageError, match="missing image file"):
        datasets.load_site(row)


def test_filename_case_differences_are_matched_and_reported(copy_of):
    root = copy_of("cell_lines")
    ix = datasets.read_cell_lines(root)
    p = ix.path_red.iloc[0]
    p.rename(p.with_name(p.name.upper()))
    with pytest.warns(UserWarning, match="case_mismatch"):
        ix2 = datasets.read_cell_lines(root, errors="raise")  # case alone is not an error
    assert len(ix2) == len(ix) and ix2.path_red.iloc[0].name == p.name.upper()


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(datasets.DatasetError, match="neither metadata.csv"):
        datasets.read_rxrx1(tmp_path / "x")
    with pytest.raises(datasets.DatasetError, match="load_data"):
        datasets.read_cpjump1(tmp_path / "x")
    with pytest.raises(datasets.DatasetError, match="metadata_"):
        datasets.read_cpjump1_subset(tmp_path / "x")
    with pytest.raises(datasets.DatasetError, match="not found"):
        datasets.read_cell_lines(tmp_path / "missing")


def test_every_layout_module_is_complete(tiny):
    """One module per layout: its writer's output is read back by its reader, labelled, with one
    path column per channel in its table and a display colour for each composite channel."""
    assert list(datasets.LAYOUTS) == ["rxrx1", "cpjump1", "cpjump1_subset", "cell_lines"]
    for name, layout in datasets.LAYOUTS.items():
        index = layout.read(tiny[name])
        assert len(index) and (index[layout.label].astype(str) != datasets.MISSING).all(), name
        paths = datasets.path_columns(index)
        assert len(paths) <= len(layout.channels), name
        assert 1 <= len(layout.colours) <= len(layout.channels), name
        assert layout.licence and layout.get_real and layout.markers, name
    assert {n for n, lay in datasets.LAYOUTS.items() if lay.manifest} == {"rxrx1", "cpjump1"}
