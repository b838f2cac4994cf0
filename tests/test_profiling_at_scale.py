"""dask over sites (resumable, Parquet per plate), CellProfiler-grade features, sphering and
the comparison of profile kinds -- on small generated data."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from cellutils import cellprofiler, cluster, datasets, features, segment, simulate, stats


@pytest.fixture(scope="module")
def client():
    c = cluster.get_client(n_workers=2, verbose=False)
    yield c
    cluster.close(c)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = datasets.write_cpjump1(
        tmp_path_factory.mktemp("scale") / "c",
        plates=("BR00116991", "BR00116992"),
        n_compounds=2,
        n_positive=0,
        n_dmso_wells=1,
        sites=2,
        size=96,
        seed=3,
    )
    index = datasets.read_cpjump1(root)
    index["key"] = datasets.cpjump1_site_key(index)
    return index


def _site_table(row: pd.Series, fail_on: str | None = None) -> pd.DataFrame:
    if row["key"] == fail_on:
        raise RuntimeError("broken image")
    return pd.DataFrame({"Metadata_Plate": [row["Metadata_Plate"]], "value": [len(row["key"])]})


def test_map_sites_writes_per_plate_and_resumes(sites, client, tmp_path):
    out = tmp_path / "out"
    table = cluster.map_sites(sites, "key", _site_table, out, client=client, progress=False)
    assert len(table) == len(sites)
    assert list(table.value) == [len(k) for k in sites.key]  # the index's order
    plates = sorted(p.name for p in out.glob("*.parquet"))
    assert plates == ["BR00116991.parquet", "BR00116992.parquet"]
    # a second run does nothing: every site is done by the same function and inputs
    parts = sorted((out / "parts").rglob("*.parquet"))
    times = [p.stat().st_mtime_ns for p in parts]
    again = cluster.map_sites(sites, "key", _site_table, out, progress=False)
    pd.testing.assert_frame_equal(again, table)
    assert [p.stat().st_mtime_ns for p in parts] == times
    streamed = cluster.map_sites(sites, "key", _site_table, out, progress=False, stream=True)
    assert len(streamed) == 2 and sum(len(t) for t in streamed) == len(sites)
    pd.testing.assert_frame_equal(streamed.concat(), table)
    # a lost site is redone, and only it
    lost = cluster.site_part(out, sites.Metadata_Plate.iloc[0], sites.key.iloc[0])
    lost.unlink()
    assert len(cluster.map_sites(sites, "key", _site_table, out, client=client)) == len(sites)


def test_a_failing_site_is_named(sites, client, tmp_path):
    bad = sites.key.iloc[1]
    with pytest.raises(cluster.SiteError, match="broken image"):
        cluster.map_sites(sites, "key", partial(_site_table, fail_on=bad), tmp_path, client=client)
    with pytest.raises(ValueError, match="not unique"):
        cluster.map_sites(pd.concat([sites, sites]), "key", _site_table, tmp_path, client=client)


def test_dask_segmentation_and_features_equal_the_serial_ones(sites, client, tmp_path):
    serial = segment.segment_index(sites, tmp_path / "a", "key", "AGP", "DNA", "classical")
    parallel = segment.segment_index(
        sites, tmp_path / "b", "key", "AGP", "DNA", "classical", client=client
    )
    assert list(serial.n_cells) == list(parallel.n_cells) and serial.n_cells.sum() > 0
    meta = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    chans = ["DNA", "ER"]
    here = features.measure_dataset(sites, serial, "key", chans, meta, progress=False)
    there = features.measure_dataset(
        sites, serial, "key", chans, meta, "regionprops", tmp_path / "f", client, progress=False
    )
    pd.testing.assert_frame_equal(here, there[here.columns], check_dtype=False)


def test_cellprofiler_features_are_named_as_cellprofiler_names_them():
    site = simulate.render_site(np.random.default_rng(1), simulate.cell_line("U2OS"), size=128)
    image = (np.stack([site.stains["DNA"], site.stains["MITO"]]) * 1000).astype(np.uint16)
    cells = cellprofiler.measure_cellprofiler(site.cells, image, ["DNA", "Mito"], {"Well": "A01"})
    assert len(cells) == len(np.unique(site.cells)) - 1
    cols = set(cells.columns)
    for name in (
        "Cells_AreaShape_Area",
        "Cells_Intensity_MeanIntensity_DNA",
        "Cells_Texture_Contrast_Mito_3_00_256",
        "Cells_Granularity_1_DNA",
        "Cells_RadialDistribution_FracAtD_Mito_1of4",
        "Cells_Correlation_Correlation_DNA_Mito",
    ):
        assert name in cols, name
    assert not any(features.is_position(c) for c in features.feature_columns(cells))
    # one cell at a time gives the same intensities and textures as the whole image at once
    one = cellprofiler.measure_cellprofiler_per_cell(site.cells, image, ["DNA", "Mito"])
    for col in ("Cells_Intensity_MeanIntensity_DNA", "Cells_Texture_Contrast_Mito_3_00_256"):
        np.testing.assert_allclose(one[col], cells[col], rtol=1e-5)
    # regionprops' area and CellProfiler's agree
    rp = features.measure_cells(site.cells, image, ["DNA", "Mito"])
    np.testing.assert_array_equal(rp.Cells_AreaShape_Area, cells.Cells_AreaShape_Area)


def _plates_with_a_shared_nuisance(seed: int = 0) -> pd.DataFrame:
    """Wells on 2 plates; every well gets a random shift along one direction (position,
    staining), compounds 0-3 a small effect along others."""
    rng = np.random.default_rng(seed)
    nuisance = rng.standard_normal(12)
    rows = []
    for plate in ("P1", "P2"):
        for c in range(8):
            for rep in range(2):
                effect = np.zeros(12)
                if c < 4:
                    effect[c] = 0.8
                x = effect + 3 * rng.standard_normal() * nuisance + 0.3 * rng.standard_normal(12)
                name = "DMSO" if c >= 6 else f"cmp{c}"
                rows.append({"Metadata_Plate": plate, "Metadata_Well": f"{c}{rep}",
                             "Metadata_pert_iname": name,
                             **{f"Cells_F{i}": v for i, v in enumerate(x)}})  # fmt: skip
    return pd.DataFrame(rows)


def test_sphering_removes_a_nuisance_direction_the_controls_show():
    wells = _plates_with_a_shared_nuisance()
    sph = features.spherize(wells, "Metadata_pert_iname == 'DMSO'")
    before = features.replicate_map(wells, "Metadata_pert_iname", "Metadata_Plate", "DMSO", 500)
    after = features.replicate_map(sph, "Metadata_pert_iname", "Metadata_Plate", "DMSO", 500)
    table = features.compare_maps({"before": before, "after": after})
    assert table.loc["after", "mean"] > table.loc["before", "mean"]
    assert table.loc["after", "diff_low"] > 0  # paired interval excludes no gain
    # the fallback for controls pycytominer cannot decompose: the same direction damped
    fallback = features._zca(wells, "Metadata_pert_iname == 'DMSO'", 0.1)
    ctrl = fallback[fallback.Metadata_pert_iname == "DMSO"][features.feature_columns(wells)]
    assert np.linalg.eigvalsh(np.cov(ctrl.to_numpy().T)).max() < 1.5


def test_bootstrap_mean_pairs_the_columns():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 40)
    t = stats.bootstrap_mean({"a": base, "b": base + 0.05})
    assert t.loc["b", "diff_vs_first"] == pytest.approx(0.05)
    assert t.loc["b", "diff_low"] == pytest.approx(0.05)  # the same units drawn for both
    assert t.loc["a", "ci_low"] < base.mean() < t.loc["a", "ci_high"]
    noise = features.noise_like(_plates_with_a_shared_nuisance())
    assert noise.Metadata_Plate.tolist() == _plates_with_a_shared_nuisance().Metadata_Plate.tolist()
