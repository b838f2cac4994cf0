"""The readers against the real metadata files (tests/fixtures, with their sources) and the
real variants of them: every variant reads correctly or fails naming the file and the fix."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from cellutils import datasets

FIXTURES = Path(__file__).parent / "fixtures" / "cpjump1"
MAP = "JUMP-Target-1_compound_platemap"
META = "JUMP-Target-1_compound_metadata"


@pytest.fixture
def real_meta(copy_of):
    """The tiny synthetic CPJUMP1 images with the real plate map, compound metadata and
    barcode file in place of the generator's."""
    root = copy_of("cpjump1")
    shutil.rmtree(root / "metadata")
    meta = root / "metadata"
    (meta / "platemap").mkdir(parents=True)
    (meta / "external").mkdir()
    shutil.copy(FIXTURES / "barcode_platemap.csv", meta / "barcode_platemap.csv")
    shutil.copy(FIXTURES / f"{MAP}.tsv", meta / "platemap" / f"{MAP}.tsv")
    shutil.copy(FIXTURES / f"{META}.tsv", meta / "external" / f"{META}.tsv")
    return root


def _expected(wells):
    pm = pd.read_csv(FIXTURES / f"{MAP}.tsv", sep="\t", dtype=str, keep_default_na=False)
    cm = pd.read_csv(FIXTURES / f"{META}.tsv", sep="\t", dtype=str, keep_default_na=False)
    samples = pm.set_index("well_position").broad_sample
    names = samples.map(cm.set_index("broad_sample").pert_iname)
    # DMSO only where the plate map has a row with no compound; a well without a row gets
    # no label (NaN, which equals nothing), never DMSO
    return names.where(samples != "", "DMSO").reindex(wells)


def test_the_real_files_label_every_site_and_normalise_na(real_meta):
    ix = datasets.read_cpjump1(real_meta, errors="raise")
    assert len(ix) == 28 and (ix.Metadata_pert_iname != datasets.MISSING).all()
    assert (ix.Metadata_pert_iname.to_numpy() == _expected(ix.Metadata_Well).to_numpy()).all()
    dmso = ix[ix.Metadata_pert_iname == "DMSO"]
    assert len(dmso) and (dmso.Metadata_broad_sample == datasets.MISSING).all()
    trt = ix[ix.Metadata_pert_iname != "DMSO"]
    assert not ix.isin(["NA", "nan"]).any().any()  # one missing value
    assert (trt.Metadata_control_type == datasets.MISSING).all()
    assert trt.Metadata_target_list.str.contains("|", regex=False).any()  # the list is kept
    assert (trt.Metadata_target == trt.Metadata_target_list).all()  # only a list in this version
    order = ix[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]]
    assert order.equals(order.sort_values(list(order.columns)))  # deterministic order


def test_txt_plate_map_and_another_name_from_the_barcode_file(real_meta):
    meta = real_meta / "metadata"
    (meta / "platemap" / f"{MAP}.tsv").rename(meta / "platemap" / "JUMP-compound-v2.txt")
    bc = pd.read_csv(meta / "barcode_platemap.csv")
    bc.loc[bc.Plate_Map_Name == MAP, "Plate_Map_Name"] = "JUMP-compound-v2"
    bc.to_csv(meta / "barcode_platemap.csv", index=False)
    shutil.copy(meta / "external" / f"{META}.tsv", meta / "external" / "JUMP-compound-v2.tsv")
    with pytest.raises(datasets.DatasetError, match="2 candidate files for 'JUMP-compound-v2'"):
        datasets.read_cpjump1(real_meta)  # the .tsv copy and the .txt map share a name
    (meta / "external" / "JUMP-compound-v2.tsv").unlink()
    ix = datasets.read_cpjump1(
        real_meta, errors="raise", compound_metadata=meta / "external" / f"{META}.tsv"
    )
    assert (ix.Metadata_pert_iname.to_numpy() == _expected(ix.Metadata_Well).to_numpy()).all()
    pm = pd.read_csv(meta / "platemap" / "JUMP-compound-v2.txt", sep="\t")
    pm.assign(plate_map_name="JUMP-compound-v2", mg_per_ml=1.0).to_csv(
        meta / "platemap" / "JUMP-compound-v2.txt", sep="\t", index=False
    )  # extra columns
    again = datasets.read_cpjump1(real_meta, compound_metadata=meta / "external" / f"{META}.tsv")
    assert again.Metadata_pert_iname.equals(ix.Metadata_pert_iname)


def test_a_plate_map_that_is_not_there_is_named(real_meta):
    bc = real_meta / "metadata" / "barcode_platemap.csv"
    bc.write_text(bc.read_text().replace(f"BR00116991,{MAP}", "BR00116991,JUMP-missing"))
    with pytest.raises(datasets.DatasetError, match="plate map 'JUMP-missing' not found"):
        datasets.read_cpjump1(real_meta)
    bc.write_text("Assay_Plate_Barcode,Plate_Map_Name\nBR00116992," + MAP + "\n")
    with pytest.raises(datasets.DatasetError, match=r"plates \['BR00116991'\] are not in"):
        datasets.read_cpjump1(real_meta)


@pytest.mark.parametrize("variant", ["gene", "target+target_list", "target"])
def test_every_target_column_version(real_meta, variant):
    path = real_meta / "metadata" / "external" / f"{META}.tsv"
    cm = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    first = cm.target_list.str.split("|").str[0]
    if variant == "gene":  # the CPJUMP1 paper's file: one gene per compound
        cm = cm.drop(columns="target_list").assign(gene=first)
    elif variant == "target":  # older JUMP-Target
        cm = cm.drop(columns="target_list").assign(target=first)
    else:  # the paper's ..._metadata_targets.tsv: both
        cm = cm.assign(target=first)
    cm.to_csv(path, sep="\t", index=False)
    ix = datasets.read_cpjump1(real_meta, errors="raise")
    trt = ix[ix.Metadata_pert_iname != "DMSO"]
    assert (trt.Metadata_target != datasets.MISSING).all()
    assert not trt.Metadata_target.str.contains("|", regex=False).any()
    if variant == "target+target_list":
        assert trt.Metadata_target_list.str.contains("|", regex=False).any()


def test_load_data_gz_with_url_columns(real_meta):
    (csv,) = sorted(real_meta.rglob("load_data.csv"))[:1]
    others = sorted(real_meta.rglob("load_data.csv"))[1:]
    for other in others:
        other.unlink()
    ld = pd.read_csv(csv)
    for col in [c for c in ld if c.startswith("FileName_Orig")]:
        stain = col.removeprefix("FileName_Orig")
        ld[f"URL_Orig{stain}"] = "s3://cellpainting-gallery/cpg0000/images/" + ld[col]
        ld = ld.drop(columns=[col, f"PathName_Orig{stain}"])
    csv.unlink()
    with gzip.open(csv.with_suffix(".csv.gz"), "wt") as f:
        ld.to_csv(f, index=False)
    ix = datasets.read_cpjump1(real_meta, plates=[str(ld.Metadata_Plate.iloc[0])])
    assert len(ix) == len(ld) and ix.path_DNA.map(lambda p: Path(p).exists()).all()
    (csv.parent / "load_data.csv").write_text("x")
    with pytest.raises(datasets.DatasetError, match="keep one"):
        datasets.read_cpjump1(real_meta)


def test_a_label_less_index_raises_unless_asked_for(real_meta):
    shutil.rmtree(real_meta / "metadata" / "external")
    with pytest.raises(datasets.DatasetError, match="compound metadata"):
        datasets.read_cpjump1(real_meta)
    with pytest.warns(UserWarning, match="labels=False"):
        ix = datasets.read_cpjump1(real_meta, labels=False)
    assert len(ix) == 28 and (ix.Metadata_pert_iname == datasets.MISSING).all()


def test_subset_copy_in_a_subfolder_is_reported_not_chosen(copy_of):
    root = copy_of("cpjump1_subset")
    first = sorted((root / "images").glob("*.tif*"))[0]
    (root / "masks").mkdir()
    shutil.copy(first, root / "masks" / first.name.lower())
    with pytest.warns(UserWarning, match="ambiguous_file"):
        ix = datasets.read_cpjump1_subset(root)
    assert first.name.lower()[:9] not in set(ix.core)  # left out, with the report
    assert "ambiguous_file" in set(datasets.problems(ix).problem)
    with pytest.raises(datasets.DatasetError):
        datasets.read_cpjump1_subset(root, errors="raise")


def test_subset_na_and_label_less_metadata(copy_of):
    root = copy_of("cpjump1_subset")
    (csv,) = root.glob("metadata_*.csv")
    md = pd.read_csv(csv, index_col=0, keep_default_na=False)
    md.to_csv(csv)
    assert not datasets.read_cpjump1_subset(root).isin(["NA"]).any().any()
    md.assign(Metadata_pert_iname="NA").to_csv(csv)
    with pytest.raises(datasets.DatasetError, match="no row has a 'Metadata_pert_iname'"):
        datasets.read_cpjump1_subset(root)
    assert len(datasets.read_cpjump1_subset(root, labels=False))


def test_cell_line_challenge_layout(tmp_path, tiny):
    src = tiny["cell_lines"]
    root = tmp_path / "challenge"
    (root / "images_train").mkdir(parents=True)
    labels = pd.read_csv(src / "train.csv", dtype=str)[:12]
    rows = []
    for i, r in enumerate(labels.itertuples(), start=26):
        for colour in ("blue", "red", "yellow"):  # no _green in the challenge
            shutil.copy(
                src / "train" / f"{r.filename}_{colour}.png",
                root / "images_train" / f"{i:05d}_{colour}.png",
            )
        rows.append({"file_id": str(i), "cell_line": r.cell_line})  # zeros stripped
    with pytest.raises(datasets.DatasetError, match="y_train.csv"):
        datasets.read_cell_lines(root)
    pd.DataFrame(rows).to_csv(root / "y_train.csv", index=False)
    ix = datasets.read_cell_lines(root, errors="raise")
    assert len(ix) == 12 and list(ix.cell_line) == list(labels.cell_line)
    assert ix.filename.iloc[0] == "00026" and datasets.load_site(ix.iloc[0]).shape[0] == 3
    shutil.copy(root / "images_train" / "00026_blue.png", root / "images_train" / "26_blue.png")
    with pytest.warns(UserWarning, match="ambiguous_file"):
        datasets.read_cell_lines(root)


def test_rxrx1_hidden_labels_are_missing_not_nan(tmp_path):
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
    ix = datasets.read_rxrx1(root)
    hidden = ix[(ix.dataset == "test") & (ix.well_type == "treatment")]
    assert len(hidden) and (hidden.sirna == datasets.MISSING).all()
    assert hidden.sirna_id.isna().all() and not ix.sirna.isna().any()


def test_rxrx1_wilds_layout(tmp_path, tiny):
    src = datasets.read_rxrx1(tiny["rxrx1"])
    root = tmp_path / "rxrx1_v1.0"
    md = src.drop(columns=datasets.path_columns(src)).copy()
    md["dataset"] = np.where(
        md.experiment == "HUVEC-02", "val", np.where(md.dataset == "test", "test", "train")
    )
    for r in src.itertuples():
        rgb = np.stack([datasets.load_site(src.loc[r.Index])[c] for c in (0, 1, 2)], -1)
        out = root / "images" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(out, rgb)
    md.to_csv(root / "metadata.csv", index=False)
    ix = datasets.read_rxrx1(root, errors="raise")
    assert ix.attrs["form"] == "wilds" and datasets.path_columns(ix) == ["path_rgb"]
    assert set(ix.dataset) == {"train", "val", "test"} and len(ix) == len(src)
    assert datasets.load_site(ix.iloc[0]).shape == (3, 48, 48)


def test_relative_real_paths_and_fetched_data_are_found(tmp_path, tiny, monkeypatch):
    from cellutils import catalog

    data = tmp_path / "data"
    shutil.copytree(tiny["cell_lines"], data / "cell_lines")
    monkeypatch.chdir(tmp_path / "..")  # a kernel's folder, not the data's
    found = catalog.locate("cell_lines", "cell_lines", data_root=data, verbose=False)
    assert found == (data / "cell_lines").resolve()  # relative to the data root
    assert catalog.locate("cell_lines", None, data_root=data, verbose=False) == data / "cell_lines"
    assert (
        catalog.locate(
            "rxrx1",
            None,
            data_root=data,
            verbose=False,
            overrides={"n_sirnas": 4, "experiments": {"HUVEC": 2}, "size": 32},
        ).parent.name
        == "synthetic"
    )
    with pytest.raises(FileNotFoundError, match="make data NAME=rxrx1"):
        catalog.locate("rxrx1", "nowhere/rxrx1", data_root=data)


def test_reproduce_takes_real_folders_from_yaml(tmp_path, real_meta, tiny):
    from cellutils import notebooks as nbs

    spec = tmp_path / "real.yml"
    spec.write_text(f"cpjump1: {real_meta}\ncell_lines: {tiny['cell_lines']}\n")
    real = nbs.read_real([str(spec), f"cpjump1_subset={tiny['cpjump1_subset']}"])
    assert set(real) == {"cpjump1", "cell_lines", "cpjump1_subset"}
    with pytest.raises(ValueError, match="unknown dataset"):
        nbs.read_real(["rxrx2=/tmp"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nbs.read_real(["rxrx1=/no/such/folder"])
    rec = nbs.run_notebook(
        nbs.notebooks_dir() / "00_data.ipynb",
        "smoke",
        results=tmp_path / "results",
        real=real,
        parameters={"data_root": str(tmp_path / "data")},
    )
    import json

    (folder,) = (tmp_path / "results" / "00_data").iterdir()
    assert rec.ok and json.loads((folder / "metrics.json").read_text())["notebook"] == "00_data"
    executed = (folder / "00_data.ipynb").read_text()
    assert str(real_meta) in executed and "real data at" in executed
