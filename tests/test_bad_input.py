"""Bad input, one table-driven test per fault: each case asserts a loud error that names the
file (and the line or well), or a correct result. One section per area."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

# ---- resume ----
# results keyed by what made them (cellutils.keys: parts, masks, crop stores) and runs that
# resume (notebooks.run_all): stale parts are recomputed, failed tasks retried or named, a dead
# kernel logged with the notebook, its cell and the likely cause.


def _resume_label(row: pd.Series, scale: int = 1) -> pd.DataFrame:
    """A site's 'table': its label and a number that depends on a setting."""
    return pd.DataFrame(
        {"Metadata_pert_iname": [row["Metadata_pert_iname"]], "value": [scale * len(row["key"])]}
    )


def _resume_flaky(row: pd.Series, marks: str) -> pd.DataFrame:
    """Fails the first time for every site (a flaky network disk), then works."""
    mark = Path(marks) / f"{row['key']}.tried"
    if not mark.exists():
        mark.write_text("")
        raise OSError(f"transient: {row['key']}")
    return _resume_label(row)


def _resume_broken(row: pd.Series, bad: str) -> pd.DataFrame:
    if row["key"] == bad:
        raise RuntimeError("unreadable image")
    return _resume_label(row)


def _resume_index(root: Path) -> pd.DataFrame:
    from cellutils import datasets

    index = datasets.read_cpjump1(root)
    index["key"] = datasets.cpjump1_site_key(index)
    return index


@pytest.fixture(scope="module")
def resume_client():
    from cellutils import cluster

    client = cluster.get_client(n_workers=1, verbose=False)
    yield client
    cluster.close(client)


def resume_plate_map_fixed(copy_of, tmp_path, client, capsys):
    """A plate map fixed after a run: the parts of the relabelled sites are recomputed."""
    from cellutils import cluster

    root = copy_of("cpjump1")
    out, index = tmp_path / "parts", _resume_index(root)
    before = cluster.map_sites(index, "key", _resume_label, out, client=client)
    # the fix: every well of one compound really held another one
    treated = index[index.Metadata_pert_type == "trt"].drop_duplicates("Metadata_pert_iname")
    names = treated[["Metadata_pert_iname", "Metadata_broad_sample"]].to_numpy()
    (old, old_id), (new, new_id) = names[:2]
    (plate_map,) = root.glob("metadata/platemaps/*/platemap/*.tsv")
    plate_map.write_text(plate_map.read_text().replace(old_id, new_id))
    capsys.readouterr()
    after = cluster.map_sites(_resume_index(root), "key", _resume_label, out, client=client)
    assert old in set(before.Metadata_pert_iname) and old not in set(after.Metadata_pert_iname)
    moved = before.Metadata_pert_iname == old
    assert (after.Metadata_pert_iname[moved] == new).all()  # no stale label left
    said = capsys.readouterr().out
    assert f"recomputing {moved.sum()} result(s)" in said and "the inputs changed" in said


def resume_settings_changed(tiny, tmp_path, client, capsys):
    """The same function with other settings: recomputed, and said once with the reason."""
    from cellutils import cluster

    index, out = _resume_index(tiny["cpjump1"]), tmp_path / "parts"
    cluster.map_sites(index, "key", _resume_label, out, client=client)
    capsys.readouterr()
    doubled = cluster.map_sites(index, "key", partial(_resume_label, scale=2), out, client=client)
    assert list(doubled.value) == [2 * len(k) for k in index.key]
    said = capsys.readouterr().out
    assert said.count("recomputing") == 1 and "the settings changed" in said


def resume_function_changed(tiny, tmp_path, client, capsys):
    """An edited (and reloaded) function's module: its parts are recomputed."""
    import importlib
    import sys

    from cellutils import cluster

    mod = tmp_path / "resume_sitefn.py"
    code = "import pandas as pd\ndef fn(row):\n    return pd.DataFrame({{'v': [{}]}})\n"
    mod.write_text(code.format(1))
    sys.path.insert(0, str(tmp_path))
    try:
        import resume_sitefn

        index, out = _resume_index(tiny["cpjump1"]).iloc[:2], tmp_path / "parts"
        # no shared client: new workers import the module as it is on disk at each run
        assert list(cluster.map_sites(index, "key", resume_sitefn.fn, out, n_workers=1).v) == [1, 1]
        mod.write_text(code.format(22))  # other size: a new source file even within 1 ns
        importlib.reload(resume_sitefn)
        capsys.readouterr()
        again = cluster.map_sites(index, "key", resume_sitefn.fn, out, n_workers=1)
        assert list(again.v) == [22, 22]
        assert "the function changed" in capsys.readouterr().out
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("resume_sitefn", None)


def resume_truncated_part(tiny, tmp_path, client, capsys):
    """A part cut short (a full disk, a killed copy) is recomputed, not read."""
    from cellutils import cluster

    index, out = _resume_index(tiny["cpjump1"]), tmp_path / "parts"
    first = cluster.map_sites(index, "key", _resume_label, out, client=client)
    part = cluster.site_part(out, index.Metadata_Plate.iloc[0], index.key.iloc[0])
    part.write_bytes(part.read_bytes()[:20])
    again = cluster.map_sites(index, "key", _resume_label, out, client=client)
    pd.testing.assert_frame_equal(again, first)
    assert "no key stored" in capsys.readouterr().out


def resume_transient_failure(tiny, tmp_path, client, capsys):
    """Every task fails once: dask retries it and the run completes."""
    from cellutils import cluster

    index = _resume_index(tiny["cpjump1"])
    fn = partial(_resume_flaky, marks=str(tmp_path))
    table = cluster.map_sites(index, "key", fn, tmp_path / "parts", client=client)
    assert list(table.value) == [len(k) for k in index.key]
    assert len(list(tmp_path.glob("*.tried"))) == len(index)


def resume_task_always_fails(tiny, tmp_path, client, capsys):
    """A site that fails on every try is named (site and plate), with its cause."""
    from cellutils import cluster

    index = _resume_index(tiny["cpjump1"])
    bad = index.key.iloc[1]
    fn = partial(_resume_broken, bad=bad)
    with pytest.raises(cluster.SiteError, match=rf"site {bad} .*failed 3 time.*unreadable image"):
        cluster.map_sites(index, "key", fn, tmp_path / "parts", client=client, retries=2)


def resume_image_replaced(copy_of, tmp_path, client, capsys):
    """An input image replaced after segmentation: its masks are recomputed."""
    import numpy as np
    import tifffile

    from cellutils import segment

    index = _resume_index(copy_of("cpjump1")).iloc[:2]
    out = tmp_path / "masks"
    first = segment.segment_index(index, out, "key", "AGP", "DNA", "classical", progress=False)
    path = index.path_DNA.iloc[0]
    tifffile.imwrite(path, np.zeros_like(tifffile.imread(path)))  # nothing left to segment
    capsys.readouterr()
    again = segment.segment_index(index, out, "key", "AGP", "DNA", "classical", progress=False)
    assert first.n_cells.iloc[0] > 0 and again.n_cells.iloc[0] == 0
    assert again.n_cells.iloc[1] == first.n_cells.iloc[1]
    assert "1 result(s)" in capsys.readouterr().out


def resume_dead_kernel(tiny, tmp_path, client, capsys):
    """A kernel killed (as by the OOM killer) is named with its notebook, cell and likely
    cause, and the run log is still written."""
    import nbformat

    from cellutils import notebooks as nbs

    books = tmp_path / "nb"
    books.mkdir()
    params = nbformat.v4.new_code_cell('profile = "full"\nresults_dir = None')
    params.metadata["tags"] = ["parameters"]
    cells = [
        nbformat.v4.new_markdown_cell("# dies"),
        params,
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": nbs.KERNEL_NAME, "display_name": "k", "language": "python"}
    nbformat.write(nb, books / "01_dies.ipynb")
    results = tmp_path / "results"
    with pytest.raises(nbs.KernelDied) as err:
        nbs.run_all("full", results=results, folder=books)
    message = str(err.value)
    for words in ("01_dies.ipynb", "kernel died in cell 3", "import os, signal", "out of memory"):
        assert words in message, (words, message)
    (log,) = results.glob("reproduce-*-full.json")
    assert "kernel died" in json.loads(log.read_text())[0]["error"]


RESUME_CASES = [
    resume_plate_map_fixed,
    resume_settings_changed,
    resume_function_changed,
    resume_truncated_part,
    resume_transient_failure,
    resume_task_always_fails,
    resume_image_replaced,
    resume_dead_kernel,
]


@pytest.mark.parametrize("case", RESUME_CASES, ids=lambda f: f.__name__)
def test_resume_bad_input(case, request, tmp_path, resume_client, capsys):
    fixtures = {"tiny": request.getfixturevalue("tiny")}
    fixtures["copy_of"] = request.getfixturevalue("copy_of")
    names = case.__code__.co_varnames[: case.__code__.co_argcount]
    given = {"tmp_path": tmp_path, "client": resume_client, "capsys": capsys, **fixtures}
    case(**{n: given[n] for n in names})
