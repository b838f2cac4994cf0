"""Runs that resume (``notebooks.run_all``'s state file) and results keyed by what made them
(``keys``, ``cluster.map_sites``, ``segment.segment_index``, ``cells.build_cells``)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cellutils import notebooks as nbs


def write_notebook(path: Path, body: str) -> Path:
    """A tiny lesson-shaped notebook: a parameters cell (profile, results_dir), then ``body``."""
    params = nbformat.v4.new_code_cell('profile = "full"\nresults_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# tiny"), params, nbformat.v4.new_code_cell(body)]
    )
    nb.metadata["kernelspec"] = {
        "name": nbs.KERNEL_NAME,
        "display_name": "cellpaint",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_an_interrupted_run_resumes(tmp_path):
    books, log, flag = tmp_path / "nb", tmp_path / "executed.txt", tmp_path / "failed-once"
    books.mkdir()
    for name in ("01_a", "03_c"):
        write_notebook(books / f"{name}.ipynb", f"open({str(log)!r}, 'a').write('{name}\\n')")
    write_notebook(
        books / "02_b.ipynb",
        f"""import pathlib
run, log = pathlib.Path(results_dir), open({str(log)!r}, "a")
if not pathlib.Path({str(flag)!r}).exists():
    (run / "model-last.pt").write_text("epoch 3")  # a checkpoint, as train.fit leaves one
    (run / "figure.png").write_text("half a figure")
    pathlib.Path({str(flag)!r}).write_text("")
    log.write("02_b\\n")
    raise RuntimeError("interrupted")
log.write("02_b-resumed\\n" if (run / "model-last.pt").exists() else "02_b\\n")
assert not (run / "figure.png").exists()""",
    )
    results = tmp_path / "results"
    with pytest.raises(nbs.NotebookFailed, match="interrupted"):
        nbs.run_all("full", results=results, folder=books)
    state = json.loads(nbs.state_path("full", results=results).read_text())
    assert [state["notebooks"][k]["status"] for k in ("01_a", "02_b")] == ["done", "failed"]
    first_b = state["notebooks"]["02_b"]["run_dir"]

    records = nbs.run_all("full", results=results, folder=books)
    # the 1st is kept (not executed again), the 2nd reran in its folder, the 3rd ran
    assert log.read_text().split() == ["01_a", "02_b", "02_b-resumed", "03_c"]
    assert [r.ok for r in records] == [True, True, True]
    assert records[0].run_dir == state["notebooks"]["01_a"]["run_dir"]
    assert records[1].run_dir == first_b
    assert len(list((results / "01_a").iterdir())) == 1
    aside = Path(first_b) / "attempt-1"
    assert (aside / "figure.png").exists() and (aside / "02_b.ipynb").exists()
    # a finished run is not continued: the next one starts over, in new folders
    nbs.run_all("full", results=results, folder=books)
    assert log.read_text().split()[4:] == ["01_a", "02_b", "03_c"]
    assert len(list((results / "01_a").iterdir())) == 2
    assert len(list((results / "02_b").iterdir())) == 2


def test_fresh_starts_over_and_an_edited_notebook_is_not_kept(tmp_path):
    books, log = tmp_path / "nb", tmp_path / "executed.txt"
    books.mkdir()
    a = write_notebook(books / "01_a.ipynb", f"open({str(log)!r}, 'a').write('a\\n')")
    write_notebook(books / "02_b.ipynb", "raise RuntimeError('always')")
    results = tmp_path / "results"
    for fresh in (False, True):
        with pytest.raises(nbs.NotebookFailed):
            nbs.run_all("full", results=results, folder=books, fresh=fresh)
    assert log.read_text().split() == ["a", "a"]  # --fresh: the kept 01_a ran again
    key = nbs._notebook_key(a, "full", None)
    assert nbs._notebook_key(a, "full", {"rxrx1": "/data/rxrx1"}) != key  # --real differs
    write_notebook(a, "x = 2")
    assert nbs._notebook_key(a, "full", None) != key  # an edited notebook is another run


@pytest.fixture(scope="module")
def segmented(tiny, tmp_path_factory):
    """The tiny CPJUMP1 plates, their index and classical masks (with flows)."""
    from cellutils import datasets, segment

    index = datasets.read_cpjump1(tiny["cpjump1"])
    index["key"] = datasets.cpjump1_site_key(index)
    out = tmp_path_factory.mktemp("masks")
    seg = segment.segment_index(index, out, "key", "AGP", "DNA", "classical", progress=False)
    return index, seg


def test_profiles_plate_by_plate_equal_the_whole_table(segmented):
    from cellutils import features

    index, seg = segmented
    meta = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_pert_iname"]
    cells = features.measure_dataset(index, seg, "key", ["DNA", "ER"], meta, progress=False)
    cells, _ = features.clean_cells(cells)
    plates = (part for _, part in cells.groupby("Metadata_Plate"))
    whole, streamed = features.make_profiles(cells), features.make_profiles(plates)
    assert whole.Metadata_Plate.nunique() == 2 and len(whole) > 4
    pd.testing.assert_frame_equal(streamed, whole)
    with pytest.raises(ValueError, match="needs 'Metadata_Plate'"):
        features.plate_profiles(iter([cells]), strata=["Metadata_Well"])


def test_the_crop_store_is_reused_when_its_key_matches(segmented, tmp_path, capsys):
    import numpy as np

    from cellutils import cells

    index, seg = segmented
    index = index.iloc[:6]
    build = dict(
        key="key", metadata=["Metadata_pert_iname"], size=16, max_cells_per_image=3,
        channel="DNA", progress=False, store=tmp_path / "crops",
    )  # fmt: skip
    first = cells.build_cells(index, seg, **build)
    assert (tmp_path / "crops" / "key.json").exists()
    again = cells.build_cells(index, seg, **build)
    assert "reusing the crop store" in capsys.readouterr().out
    np.testing.assert_array_equal(again.mask_crops, first.mask_crops)
    pd.testing.assert_frame_equal(again.table, first.table)
    # a relabelled site (a fixed plate map) or another setting rebuilds it
    fixed = index.assign(Metadata_pert_iname=index.Metadata_pert_iname.where(index.index > 0, "x"))
    relabelled = cells.build_cells(fixed, seg, **build)
    assert "rebuilding" in capsys.readouterr().out
    assert "x" in set(relabelled.table.Metadata_pert_iname)
    cells.build_cells(fixed, seg, **{**build, "seed": 1})
    assert "the settings changed" in capsys.readouterr().out
