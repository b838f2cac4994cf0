"""Notebook conventions, and every notebook executed with papermill in the smoke profile."""

import json

import nbformat
import pytest

from cellutils import notebooks as nbs

BOOKS = nbs.list_notebooks()
LESSONS = {"02", "03", "04", "05", "06", "07", "08"}  # the report notebooks: claims to weigh
ROW_KEYS = {"value", "ci_low", "ci_high", "n_eval", "unit", "n_classes", "chance", "majority"}


def _check_lesson(metrics: dict) -> None:
    """Every number carries its interval, class count and baselines; every comparison is
    paired; nothing trusted was selected on a test split."""
    assert metrics["claim"]["value"] and metrics["claim"]["n_classes"]
    for row in metrics["results"]:
        assert set(row) >= ROW_KEYS, (row["label"], ROW_KEYS - set(row))
        assert row["ci_low"] <= row["value"] <= row["ci_high"], row["label"]
        if "test" in str(row.get("selected_on")).lower():
            assert not row["leak_free"], f"{row['label']} is selected on a test split"
    heads = {r["headline"]: r for r in metrics["results"] if r["headline"]}
    assert set(heads) == {"reported", "trusted"} and heads["trusted"]["leak_free"]
    assert metrics["comparisons"]
    for c in metrics["comparisons"]:
        assert {"lesson", "a", "b", "metric", "diff", "ci", "unit"} <= set(c)
        assert c["ci"][0] <= c["diff"] <= c["ci"][1]


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
    for words in (
        "kernelspec",
        "parameters",
        "stored outputs",
        "markdown",
        "opening box",
        "jupytext twin",
    ):
        assert words in problems
    assert nbs.strip(path) and not nbs.strip(path)  # nbstripout, then the twin; idempotent
    assert "stored outputs" not in " ".join(nbs.check_notebook(path))
    assert path.with_suffix(".py").read_text().startswith("# ---")


def test_twins_are_in_sync_and_a_stale_twin_is_caught(tmp_path):
    import shutil

    book = BOOKS[1]
    shutil.copy(book, tmp_path / book.name)
    (tmp_path / book.with_suffix(".py").name).write_text(
        book.with_suffix(".py").read_text().replace("import", "import  ", 1)
    )
    assert "out of sync" in " ".join(nbs.check_notebook(tmp_path / book.name))


def test_student_build_removes_the_solutions_only(tmp_path):
    written = nbs.build_student(tmp_path)
    assert len(written) == len(BOOKS)
    for path, book in zip(written, BOOKS, strict=True):
        full, student = nbformat.read(book, 4), nbformat.read(path, 4)
        tags = [c.metadata.get("tags", []) for c in student.cells]
        n_solutions = sum("solution" in c.metadata.get("tags", []) for c in full.cells)
        assert not any("solution" in t for t in tags)
        assert len(student.cells) == len(full.cells) - n_solutions
        if book.stem[:2] in nbs.LESSONS:
            assert n_solutions >= 1 and any("exercise" in t for t in tags)


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
    rec = nbs.run_notebook(
        book,
        "smoke",
        results=tmp_path / "results",
        parameters={"data_root": str(tmp_path / "data")},
    )
    assert rec.ok
    run = tmp_path / "results" / book.stem
    (folder,) = list(run.iterdir())
    assert (folder / book.name).exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["notebook"] == book.stem and metrics["profile"] == "smoke"
    if book.stem[:2] in LESSONS:
        _check_lesson(metrics)
    executed = nbformat.read(folder / book.name, as_version=4)
    assert not any(
        o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", [])
    )


def test_a_failing_notebook_names_the_cell(tmp_path, monkeypatch):
    src = nbformat.read(BOOKS[0], as_version=4)
    src.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('boom')"))
    path = tmp_path / "nb" / "00_data.ipynb"
    path.parent.mkdir()
    nbformat.write(src, path)
    with pytest.raises(nbs.NotebookFailed, match=r"00_data.ipynb failed in cell 3.*boom"):
        nbs.run_notebook(
            path,
            "smoke",
            results=tmp_path / "results",
            parameters={"data_root": str(tmp_path / "data")},
        )
