"""Notebook conventions, and every notebook executed with papermill in the smoke settings."""

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
        assert {"lesson", "a", "b", "metric", "diff", "ci", "unit", "n_units", "seeds"} <= set(c)
        assert "p_holm" in c or "ci_holm" in c, c["lesson"]
        assert c["ci"][0] <= c["diff"] <= c["ci"][1]
    assert sum(bool(c.get("primary")) for c in metrics["comparisons"]) == 1
    assert any("cell_count" in r or "cell count" in r["label"] for r in metrics["results"]), (
        "a cell-count baseline beside the lesson's results"
    )


def test_there_are_notebooks():
    assert [b.stem for b in BOOKS][:1] == ["00_data"]


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_conventions(book):
    assert nbs.check_notebook(book) == []


def test_check_wants_box_lines_that_keep_their_line_breaks(tmp_path):
    box = "> **Time** a few minutes{end}\n> **Needs** nothing{end}\n> **You will learn**\n> - x"
    for end, bad in (("  ", True), ("", True), (" \\", False)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(box.format(end=end))])
        path = tmp_path / "99_box.ipynb"
        nbformat.write(nb, path)
        problems = [p for p in nbs.check_notebook(path) if "must end with a backslash" in p]
        assert len(problems) == (2 if bad else 0), (end, problems)


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


def test_student_build_has_a_stub_for_every_solution(tmp_path):
    """Every solution cell becomes a stub (``...`` with a TODO) in the student build; nothing
    else changes; at least 3 code exercises in each of 01-08 and 1 in 00 and 09, and at least 30
    exercises in all (code tasks and "why" questions with model answers)."""
    import ast

    written = nbs.build_student(tmp_path)
    total = 0
    for book, path in zip(BOOKS, written, strict=True):
        full, student = nbformat.read(book, 4), nbformat.read(path, 4)
        assert len(student.cells) == len(full.cells)
        n_tasks = n_questions = 0
        for a, b in zip(full.cells, student.cells, strict=True):
            tags = a.metadata.get("tags", [])
            if "solution" not in tags:
                assert a.source == b.source
                continue
            assert "solution" not in b.metadata["tags"] and "task" in b.metadata["tags"]
            if a.cell_type == "markdown":
                assert a.source.startswith("**Model answer.**") and b.source == nbs.ANSWER_STUB
                n_questions += 1
                continue
            n_tasks += 1
            assert "TODO" in b.source and "..." in b.source
            solved = {
                n.id
                for node in ast.parse(a.source).body
                if isinstance(node, ast.Assign)
                for t in node.targets
                for n in ast.walk(t)
                if isinstance(n, ast.Name)
            }
            stubbed = {
                n.id
                for node in ast.parse(b.source).body
                if isinstance(node, ast.Assign)
                for t in node.targets
                for n in ast.walk(t)
                if isinstance(n, ast.Name)
            }
            assert solved <= stubbed, (book.stem, solved - stubbed)
        total += n_tasks + n_questions
        if book.stem[:2] in nbs.LESSONS:
            assert n_tasks >= 3, (book.stem, n_tasks)
        else:
            assert n_tasks >= 1, (book.stem, n_tasks)
    assert total >= 30


def test_stub_keeps_imports_names_and_signatures():
    src = (
        "import numpy as np\nx, y = 1, 2\nx += 1\nt = [0]\nt[len(y)] += 1\n"
        "def vote(labels, groups):\n    return 1\n"
    )
    out = nbs.stub(src)
    ns: dict = {}
    exec(out, ns)  # the stub runs
    assert ns["x"] is ... and ns["y"] is ... and ns["vote"](1, 2) is None
    assert "import numpy as np" in out and out.count("x = ...") == 1
    assert "len = ..." not in out and "t = ..." in out  # a[i] += ... binds nothing


def test_settings_only_set_declared_parameters():
    import papermill as pm

    for book in BOOKS:
        declared = pm.inspect_notebook(str(book))
        assert "settings" in declared and declared["settings"]["default"] == "None"
        for name in ("smoke", "quick"):
            params = nbs.load_settings(name, book.stem)
            assert set(params) <= set(declared), (book.stem, name)
    with pytest.raises(ValueError, match="unknown settings"):
        nbs.load_settings("fast", "00_data")


def test_no_parameters_on_a_cpu_runs_the_quick_settings(tmp_path, monkeypatch):
    """papermill with no parameters (as JupyterLab's Run All): on a machine without a GPU the
    notebook runs the quick settings and says so, with the way to switch. Executed on the
    notebook's own parameters and settings cells (the rest would run the whole lesson)."""
    import papermill as pm
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the rule gives the full settings")
    monkeypatch.delenv("CELLPAINT_SETTINGS", raising=False)
    book = nbs.notebooks_dir() / "05_cpjump1_mobilenet.ipynb"
    nb = nbformat.read(book, 4)
    first = next(i for i, c in enumerate(nb.cells) if "apply_settings(" in c.source)
    nb.cells = nb.cells[: first + 1] + [
        nbformat.v4.new_code_cell(
            "import json; print('VALUES', json.dumps(dict(settings="
            "settings, epochs=epochs, arch=arch, image_size=image_size)))"
        )
    ]
    monkeypatch.setenv("CELLUTILS_RESULTS", str(tmp_path / "results"))  # the cell's run folder
    small = tmp_path / "05_cpjump1_mobilenet.ipynb"
    nbformat.write(nb, small)
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(small), str(out), kernel_name=nbs.KERNEL_NAME, cwd=str(tmp_path))
    text = "".join(
        o.get("text", "") for c in nbformat.read(out, 4).cells for o in c.get("outputs", [])
    )
    assert "settings: quick (no GPU" in text and 'settings = "full"' in text
    values = json.loads(text.split("VALUES ")[1].splitlines()[0])
    quick = nbs.load_settings("quick", "05_cpjump1_mobilenet")
    assert values["settings"] == "quick"
    assert values["epochs"] == quick["epochs"] and values["arch"] == quick["arch"]


def test_explicit_values_win_over_the_settings_file(monkeypatch, capsys):
    from cellutils.runtime import apply_settings

    monkeypatch.setenv("CELLPAINT_SETTINGS", "quick")
    defaults = nbs.parameter_defaults("05_cpjump1_mobilenet")
    ns = dict(defaults, epochs=3)  # edited in the cell, or passed by papermill
    assert apply_settings(ns, notebook="05_cpjump1_mobilenet") == "quick"
    quick = nbs.load_settings("quick", "05_cpjump1_mobilenet")
    assert ns["epochs"] == 3 and ns["arch"] == quick["arch"]
    assert "kept as set: epochs=3" in capsys.readouterr().out
    ns = dict(defaults, settings="full")
    assert apply_settings(ns, notebook="05_cpjump1_mobilenet") == "full"
    assert ns["epochs"] == defaults["epochs"]


@pytest.mark.notebook
@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_settings(book, tmp_path):
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
    assert metrics["notebook"] == book.stem and metrics["settings"] == "smoke"
    if book.stem[:2] in LESSONS:
        _check_lesson(metrics)
    if book.stem[:2] in {"06", "07", "08"}:  # the primary: several runs, a two-stage interval
        (primary,) = [c for c in metrics["comparisons"] if c["primary"]]
        seeds = nbs.load_settings("smoke", book.stem)["seeds"]
        rows = {r["label"]: r for r in metrics["results"]}
        assert all(rows[primary[s]]["seeds"] == seeds > 1 for s in "ab"), primary
        assert all(rows[primary[s]]["two_stage"] for s in "ab"), primary
        assert primary["seeds"] == seeds and (primary["two_stage"] or primary["identical"])
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
