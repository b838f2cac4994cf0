"""Run the course notebooks headlessly with papermill, under named run settings.

Run settings (``notebooks/settings.yml``) hold the parameters each notebook overrides:
``full`` is the notebook's own ``parameters`` cell (the report's settings), ``quick`` is
``make reproduce`` on two CPU cores, ``smoke`` is what the tests execute. Each notebook applies
them itself (``runtime.apply_settings``), so a notebook run in JupyterLab on a laptop gets the
quick settings without any flag; the runner passes ``settings`` explicitly.

Every run writes its executed notebook into a fresh folder ``results/<notebook>/<run id>/``
and passes that folder to the notebook as ``results_dir``; nothing earlier is overwritten.

Command line::

    python -m cellutils.notebooks run --settings quick          # every notebook, in order
    python -m cellutils.notebooks run --settings smoke --only 00_data
    python -m cellutils.notebooks check                          # conventions, no execution
    python -m cellutils.notebooks strip notebooks/*.ipynb        # nbstripout + jupytext twins
    python -m cellutils.notebooks student                        # notebooks without solutions
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import yaml

from cellutils.paths import atomic_write_text, new_run_dir, repo_root, results_root
from cellutils.runtime import SETTINGS

KERNEL_NAME = "cellpaint"
PROFILES = SETTINGS  # the run settings' names
INJECTED = ("settings", "results_dir")  # parameters every notebook must declare


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def list_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The numbered lesson notebooks (``NN_name.ipynb``) in order."""
    folder = Path(folder) if folder else notebooks_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def load_settings(settings: str, notebook: str, path: str | Path | None = None) -> dict:
    """Parameters that the run ``settings`` set for ``notebook`` (its stem, e.g. ``00_data``)."""
    if settings not in SETTINGS:
        raise ValueError(f"unknown settings {settings!r}; choose one of {', '.join(SETTINGS)}")
    if settings == "full":
        return {}
    path = Path(path) if path else notebooks_dir() / "settings.yml"
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh) or {}
    section = table.get(settings) or {}
    params = dict(section.get("_all") or {})
    params.update(section.get(notebook) or {})
    return params


load_profile = load_settings  # the old name


def parameter_defaults(notebook: str) -> dict | None:
    """The values a notebook's saved ``parameters`` cell assigns (literals only), or None when
    the notebook is not in ``notebooks/``: what ``apply_settings`` compares with to tell a
    parameter set explicitly from the cell's default."""
    import ast

    path = notebooks_dir() / f"{notebook}.ipynb"
    if not path.exists():
        return None
    cells = nbformat.read(path, as_version=4).cells
    cell = next((c for c in cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return None
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                with contextlib.suppress(ValueError):
                    out[target.id] = ast.literal_eval(node.value)
    return out


def check_notebook(path: str | Path) -> list[str]:
    """Problems with a notebook's conventions: outputs stored, no ``parameters`` cell, the
    wrong kernel, or a parameters cell without the injected names. Empty list when fine."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        problems.append(f"{path.name}: kernelspec name is {kernel!r}, expected {KERNEL_NAME!r}")
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(
            f"{path.name}: needs exactly one cell tagged 'parameters', has {len(tagged)}"
        )
    else:
        source = tagged[0].source
        for name in INJECTED:
            if f"{name} =" not in source and f"{name}=" not in source:
                problems.append(f"{path.name}: parameters cell does not define {name!r}")
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        problems.append(f"{path.name}: should open with a markdown cell (the lesson's intro)")
    elif not nb.cells[0].source.startswith("# "):
        problems.append(f"{path.name}: the intro should start with one '# ' title line")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and any(
            line.startswith("# #") for line in cell.source.splitlines()
        ):
            problems.append(
                f"{path.name}: markdown cell {i} has '# #' lines (comment prefixes "
                "left in; they render as headings)"
            )
    for i, cell in enumerate(nb.cells):
        n_lines = len(cell.source.splitlines())
        if cell.cell_type == "code" and n_lines > MAX_CELL_LINES:
            problems.append(
                f"{path.name}: code cell {i} has {n_lines} lines (at most {MAX_CELL_LINES}: "
                "move bookkeeping into cellutils)"
            )
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"{path.name}: cell {i} has stored outputs (run `make strip`)")
    intro = nb.cells[0].source if nb.cells else ""
    for part in BOX:
        if part not in intro:
            problems.append(f"{path.name}: the opening box lacks {part} (time, needs, learn)")
    tags = [t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])]
    if path.stem[:2] in LESSONS and not {"exercise", "solution"} <= set(tags):
        problems.append(f"{path.name}: a lesson needs cells tagged 'exercise' and 'solution'")
    twin = path.with_suffix(".py")
    if not twin.exists():
        problems.append(f"{path.name}: no jupytext twin {twin.name} (run `make strip`)")
    elif twin.read_text() != twin_text(nb):
        problems.append(f"{path.name}: {twin.name} is out of sync (run `make strip`)")
    return problems


MAX_CELL_LINES = 40  # a lesson's code cell fits on one screen
BOX = ("**Time**", "**Needs**", "**You will learn**")
LESSONS = {"01", "02", "03", "04", "05", "06", "07", "08"}  # notebooks with exercises


def twin_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as its committed ``py:percent`` twin (jupytext), outputs aside."""
    import jupytext

    return jupytext.writes(nb, fmt="py:percent")


def strip(path: str | Path) -> bool:
    """Strip outputs with nbstripout and write the jupytext twin; True if anything changed."""
    path = Path(path)
    before = path.read_bytes()
    twin = path.with_suffix(".py")
    old_twin = twin.read_text() if twin.exists() else None
    subprocess.run([sys.executable, "-m", "nbstripout", str(path)], check=True)
    text = twin_text(nbformat.read(path, as_version=4))
    if text != old_twin:
        atomic_write_text(twin, text, overwrite=True)
    return path.read_bytes() != before or text != old_twin


STUB_NOTE = "# TODO: your solution (the exercise above says what to compute)"
ANSWER_STUB = "*Your answer:* ..."


def stub(source: str) -> str:
    """The student's stub of a solution code cell: its imports, then ``name = ...  # TODO`` for
    each top-level name it assigns and ``def f(args): ...`` for each function it defines, so
    that the check below it runs ("not answered yet") until the student writes the code."""
    import ast

    lines = [STUB_NOTE]
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.append(ast.unparse(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = ast.unparse(node.args)
            doc = ast.get_docstring(node)
            body = f'    """{doc}"""\n' if doc else ""
            lines.append(f"def {node.name}({args}):\n{body}    ...  # TODO")
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for name in [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]:
                    line = f"{name} = ...  # TODO"
                    if line not in lines:
                        lines.append(line)
    return "\n".join(lines)


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with every cell tagged ``solution`` replaced by its stub (code: :func:`stub`;
    markdown model answers: "*Your answer:* ..."), tagged ``task`` instead."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" not in tags:
            continue
        cell.metadata["tags"] = [t if t != "solution" else "task" for t in tags]
        cell.source = stub(cell.source) if cell.cell_type == "code" else ANSWER_STUB
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def build_student(out: str | Path | None = None) -> list[Path]:
    """The student version of every notebook (:func:`student_version`: each solution replaced
    by a stub the student fills in), written to ``out`` (default ``build/student/``)."""
    out = Path(out) if out else notebooks_dir().parent / "build" / "student"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_notebooks():
        nb = student_version(nbformat.read(path, as_version=4))
        target = out / path.name
        atomic_write_text(target, nbformat.writes(nb) + "\n", overwrite=True)
        written.append(target)
    print(f"{len(written)} student notebooks (solutions replaced by stubs) in {out}")
    return written


class NotebookFailed(RuntimeError):
    """A notebook raised; names the notebook, the cell and the executed copy to open."""


@dataclass
class RunRecord:
    notebook: str
    profile: str
    seconds: float
    run_dir: str
    executed: str
    ok: bool
    error: str = ""


def run_notebook(
    path: str | Path,
    profile: str = "smoke",
    results: str | Path | None = None,
    parameters: dict | None = None,
    log_output: bool = False,
    real: dict[str, str] | None = None,
    progress: bool = False,
) -> RunRecord:
    """Execute one notebook under ``profile``; raise :class:`NotebookFailed` on an error.
    ``real`` ({dataset: folder}) sets the ``real_<dataset>`` parameters the notebook has;
    ``progress``: papermill's per-cell bar."""
    import papermill as pm

    path = Path(path).resolve()
    stem = path.stem
    params = load_settings(profile, stem)  # also applied by the notebook; passed for the record
    params.update(parameters or {})
    declared = set(pm.inspect_notebook(str(path)).keys())
    params.update({f"real_{k}": str(v) for k, v in (real or {}).items() if f"real_{k}" in declared})
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ValueError(
            f"settings {profile!r} set {unknown} for {path.name}, which its parameters cell "
            "does not define; fix notebooks/settings.yml or the notebook."
        )
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = new_run_dir(stem, results, run_id=f"{stamp}-{profile}")
    params.update(settings=profile, results_dir=str(run_dir))
    save_environment(run_dir)
    executed = run_dir / path.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(executed),
            parameters=params,
            kernel_name=KERNEL_NAME,
            cwd=str(path.parent),
            progress_bar=progress,
            log_output=log_output,
        )
    except pm.PapermillExecutionError as exc:
        seconds = time.perf_counter() - start
        where = _source_cell(path, executed, exc.cell_index, exc.exec_count)
        message = (
            f"{path.name} failed in {where} after {seconds:.0f} s: {exc.ename}: {exc.evalue}\n"
            f"Open the executed copy to see the traceback: {executed}"
        )
        raise NotebookFailed(message) from exc
    seconds = time.perf_counter() - start
    return RunRecord(stem, profile, round(seconds, 2), str(run_dir), str(executed), True)


def save_environment(run_dir: str | Path) -> Path:
    """Write ``environment.txt`` into a run folder: Python, platform, torch and its CUDA/cuDNN,
    the device a run picks, and ``pip freeze``, so a result can be traced to its environment."""
    import platform

    import torch

    from cellutils.runtime import pick_device

    cuda = torch.cuda.is_available()
    lines = [
        f"python: {sys.version.split()[0]} ({sys.executable})",
        f"platform: {platform.platform()}",
        f"torch: {torch.__version__}",
        f"torch CUDA: {torch.version.cuda} (cuDNN {torch.backends.cudnn.version()})",
        f"CUDA available: {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""),
        f"device: {pick_device(verbose=False)}",
    ]
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=False
    )
    lines += ["", "pip freeze:", freeze.stdout.strip() or f"(pip freeze failed: {freeze.stderr})"]
    target = Path(run_dir) / "environment.txt"
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def _source_cell(source: Path, executed: Path, index: int, count) -> str:
    """Name the failing cell by its position in the *source* notebook (papermill inserts an
    injected-parameters cell, so executed positions are shifted) and its first line."""
    try:
        cells = nbformat.read(executed, as_version=4).cells
        failed = [
            c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))
        ]
        cell = failed[0] if failed else cells[index]
        ids = [c.get("id") for c in nbformat.read(source, as_version=4).cells]
        pos = ids.index(cell.get("id"))
        first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
        return f"cell {pos} (execution count {count}: `{first}`)"
    except (ValueError, IndexError, OSError):
        return f"cell {index} of the executed copy (execution count {count})"


def run_all(
    profile: str = "quick",
    only: list[str] | None = None,
    results: str | Path | None = None,
    log_output: bool = False,
    real: dict[str, str] | None = None,
) -> list[RunRecord]:
    """Run every notebook in order, stop at the first failure, and write a timing log.
    ``real`` ({dataset: folder}, see ``read_real``) points the notebooks at real data."""
    books = list_notebooks()
    if only:
        books = [b for b in books if b.stem in only or b.stem.split("_")[0] in only]
        if not books:
            raise ValueError(
                f"no notebook matches {only}; have {[b.stem for b in list_notebooks()]}"
            )
    records: list[RunRecord] = []
    failure: NotebookFailed | None = None
    for i, book in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {book.stem} ({profile}) ...", flush=True)
        try:
            rec = run_notebook(
                book,
                profile,
                results,
                log_output=log_output,
                real=real,
                progress=sys.stderr.isatty(),  # a cell-by-cell bar in a terminal, not in logs
            )
        except NotebookFailed as exc:
            failure = exc
            records.append(RunRecord(book.stem, profile, 0.0, "", "", False, str(exc)))
            print(f"    FAILED: {exc}", flush=True)
            break
        records.append(rec)
        print(f"    done in {rec.seconds:.1f} s -> {rec.executed}", flush=True)
    root = results_root(results)
    root.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = root / f"reproduce-{stamp}-{profile}.json"
    if log.exists():
        log = root / f"reproduce-{stamp}-{profile}-{time.time_ns()}.json"
    atomic_write_text(log, json.dumps([asdict(r) for r in records], indent=2))
    total = sum(r.seconds for r in records)
    print(f"{sum(r.ok for r in records)}/{len(books)} notebooks ran in {total:.0f} s; log: {log}")
    if failure:
        raise failure
    from cellutils.summary import write_summary

    summary = write_summary(results, profile, {r.notebook: r.seconds for r in records})
    print(f"summary: {summary}")
    return records


DATASETS = ("rxrx1", "cpjump1", "cpjump1_subset", "cell_lines")


def read_real(specs: list[str] | None) -> dict[str, str]:
    """``--real`` values: a YAML file (``rxrx1: data/rxrx1`` per line) and/or ``name=folder``
    pairs; every folder must exist (relative ones: working folder, repository, data root)."""
    from cellutils.catalog import resolve_real

    out: dict[str, str] = {}
    for spec in specs or []:
        if "=" in spec:
            name, folder = spec.split("=", 1)
            pairs = {name.strip(): folder.strip()}
        else:
            pairs = yaml.safe_load(Path(spec).read_text()) or {}
            if not isinstance(pairs, dict):
                raise ValueError(
                    f"{spec} must map dataset names to folders, e.g. 'rxrx1: data/rxrx1'"
                )
        for name, folder in pairs.items():
            if name not in DATASETS:
                raise ValueError(f"{spec}: unknown dataset {name!r}; use one of {DATASETS}")
            found = resolve_real(folder)
            if found is None:
                raise FileNotFoundError(
                    f"{spec}: the {name} folder {folder} does not exist "
                    "(relative paths: working folder, repository, data root)"
                )
            out[name] = str(found)
    return out


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cellutils.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute notebooks with papermill")
    run.add_argument(
        "--settings",
        "--profile",
        dest="profile",
        default="quick",
        choices=SETTINGS,
        help="run settings (--profile is the old name)",
    )
    run.add_argument("--only", nargs="*", help="notebook stems or numbers, e.g. 00_data or 03")
    run.add_argument("--results", help="results root (default: $CELLUTILS_RESULTS or results/)")
    run.add_argument("--log-output", action="store_true", help="echo cell output while running")
    run.add_argument(
        "--real",
        action="append",
        metavar="YAML|NAME=FOLDER",
        help="real data: a YAML file mapping datasets (rxrx1, cpjump1, "
        "cpjump1_subset, cell_lines) to folders, or name=folder; repeatable",
    )
    sub.add_parser("check", help="check every notebook's conventions")
    strip_cmd = sub.add_parser("strip", help="nbstripout the notebooks, write their twins")
    strip_cmd.add_argument("paths", nargs="*")
    student = sub.add_parser("student", help="build the notebooks without solutions")
    student.add_argument("--out", help="folder (default build/student/)")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        try:
            run_all(args.profile, args.only, args.results, args.log_output, read_real(args.real))
        except NotebookFailed:
            return 1
        return 0
    if args.cmd == "check":
        problems = [p for b in list_notebooks() for p in check_notebook(b)]
        print("\n".join(problems) or f"{len(list_notebooks())} notebooks follow the conventions")
        return 1 if problems else 0
    if args.cmd == "student":
        build_student(args.out)
        return 0
    paths = [Path(p) for p in args.paths] or list_notebooks()
    for p in paths:
        if strip(p):
            print(f"stripped {p} and wrote {p.with_suffix('.py').name}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
