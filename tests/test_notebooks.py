"""Notebook conventions, and every notebook executed with papermill in the smoke profile."""

import json

import nbformat
import pytest

from cellutils import notebooks as nbs

BOOKS = nbs.list_notebooks()


def test_there_are_notebooks():
    assert [b.stem for b in BOOKS][:1] == ["00_data"]


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_conventions(book):
    assert nbs.check_notebook(book) == []


def test_check_catches_outputs_and_missing_parameters(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="1")]
    path = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, path)
    problems = " ".join(nbs.check_notebook(path))
    for words in ("kernelspec", "parameters", "stored outputs", "markdown"):
        assert words in problems
    assert nbs.strip_outputs(path) and not nbs.strip_outputs(path)


def test_profiles_only_set_declared_parameters():
    for book in BOOKS:
        for profile in ("smoke", "quick"):
            params = nbs.load_profile(profile, book.stem)
            import papermill as pm

            declared = pm.inspect_notebook(str(book))
            assert set(params) <= set(declared), (book.stem, profile)
    with pytest.raises(ValueError, match="unknown profile"):
        nbs.load_profile("fast", "00_data")


@pytest.mark.notebook
@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(book, tmp_path):
    rec = nbs.run_notebook(book, "smoke", results=tmp_path / "results",
                           parameters={"data_root": str(tmp_path / "data")})
    assert rec.ok
    run = tmp_path / "results" / book.stem
    (folder,) = list(run.iterdir())
    assert (folder / book.name).exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["notebook"] == book.stem and metrics["profile"] == "smoke"
    executed = nbformat.read(folder / book.name, as_version=4)
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))


def test_a_failing_notebook_names_the_cell(tmp_path, monkeypatch):
    src = nbformat.read(BOOKS[0], as_version=4)
    src.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('boom')"))
    path = tmp_path / "nb" / "00_data.ipynb"
    path.parent.mkdir()
    nbformat.write(src, path)
    with pytest.raises(nbs.NotebookFailed, match=r"00_data.ipynb failed in cell 3.*boom"):
        nbs.run_notebook(path, "smoke", results=tmp_path / "results",
                         parameters={"data_root": str(tmp_path / "data")})
