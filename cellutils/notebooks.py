"""Run the course notebooks headlessly with papermill, under named run settings.

Run settings (``notebooks/settings.yml``) hold the parameters each notebook overrides:
``full`` is the notebook's own ``parameters`` cell (the report's settings), ``quick`` is
``make reproduce`` on two CPU cores, ``smoke`` is what the tests execute. Each notebook applies
them itself (``runtime.apply_settings``), so a notebook run in JupyterLab on a laptop gets the
quick settings without any flag; the runner passes ``settings`` explicitly.

Every run writes its executed notebook into a fresh folder ``results/<notebook>/<run id>/``
and passes that folder to the notebook as ``results_dir``; nothing earlier is overwritten.
``run`` continues an interrupted run (``results/reproduce-<settings>.state.json``): completed
notebooks are kept, a stopped one reruns in its own folder, where its checkpoints are.

Command line::

    python -m cellutils.notebooks run --settings quick          # every notebook, in order
    python -m cellutils.notebooks run --settings smoke --only 00_data
    python -m cellutils.notebooks run --settings quick --fresh  # start over, not continue
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
    for line in intro.splitlines():
        if line.startswith("> **") and "**You will learn**" not in line and not line.endswith("\\"):
            problems.append(
                f"{path.name}: the box line {line[:30]!r}... must end with a backslash (a line "
                "break that formatters keep; without it the box's lines run together)"
            )
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


def _bound_names(target) -> list[str]:
    """The names an assignment target binds: ``x``, ``x, y``, ``*rest``; not the names used
    inside ``a[i] = ...`` or ``a.b = ...`` (those change an object, they bind nothing)."""
    import ast

    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for e in target.elts for n in _bound_names(e)]
    if isinstance(target, ast.Starred):
        return _bound_names(target.value)
    return []


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
            for name in [n for t in targets for n in _bound_names(t)]:
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
    run_dir: str | Path | None = None,
) -> RunRecord:
    """Execute one notebook under ``profile``; raise :class:`NotebookFailed` on an error
    (:class:`KernelDied` when the kernel died, e.g. killed for memory).
    ``real`` ({dataset: folder}) sets the ``real_<dataset>`` parameters the notebook has;
    ``progress``: papermill's per-cell bar; ``run_dir``: the folder to run in (``run_all``
    passes a stopped run's folder to resume it), else a new one."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

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
    run_dir = Path(run_dir) if run_dir else new_notebook_dir(stem, profile, results)
    params.update(settings=profile, results_dir=str(run_dir))
    save_environment(run_dir)
    executed = run_dir / path.name
    rss_before = _children_peak_rss()
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
    except DeadKernelError as exc:
        seconds = time.perf_counter() - start
        raise KernelDied(_dead_kernel_message(path, executed, seconds, rss_before)) from exc
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


def new_notebook_dir(stem: str, profile: str, results: str | Path | None = None) -> Path:
    """A new run folder for a notebook: ``<results>/<stem>/<timestamp>-<profile>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return new_run_dir(stem, results, run_id=f"{stamp}-{profile}")


class KernelDied(NotebookFailed):
    """The kernel died (nbclient's ``DeadKernelError``): most often the OOM killer."""


def _children_peak_rss() -> int:
    """Peak resident memory (bytes) of the largest finished child process (0 if unknown)."""
    try:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    except (ImportError, OSError):
        return 0


def _last_cell(source: Path, executed: Path) -> str:
    """The cell that was running when execution stopped, by its position in the *source*
    notebook and its first line (papermill stamps ``start_time`` on each cell it starts)."""
    try:
        cells = nbformat.read(executed, as_version=4).cells
        started = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("start_time")]
        cell = max(started, key=lambda c: c.metadata.papermill.start_time)
        ids = [c.get("id") for c in nbformat.read(source, as_version=4).cells]
        first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
        if cell.get("id") not in ids:  # papermill's injected-parameters cell
            return f"the injected parameters cell (`{first}`)"
        return f"cell {ids.index(cell.get('id'))} (`{first}`)"
    except (ValueError, IndexError, OSError, AttributeError):
        return "an unknown cell (the executed copy could not be read)"


def _dead_kernel_message(source: Path, executed: Path, seconds: float, rss_before: int) -> str:
    """What a dead kernel leaves to say: the notebook, the last cell, the likely cause."""
    import psutil

    total = psutil.virtual_memory().total
    peak = _children_peak_rss()
    if peak > rss_before:  # a child (the kernel) finished during this notebook with this peak
        memory = f"its peak memory was {peak / 2**30:.1f} GiB of {total / 2**30:.1f} GiB here"
    else:
        memory = f"its peak memory is unknown; this machine has {total / 2**30:.1f} GiB"
    return (
        f"{source.name}: the kernel died in {_last_cell(source, executed)} after {seconds:.0f} s. "
        f"Likely cause: out of memory (the OOM killer; {memory}). Run with the quick settings, "
        "fewer dask workers (the notebook's `workers`) or smaller batches, or on a machine "
        f"with more memory. The executed copy so far: {executed}"
    )


def _commit() -> str:
    """The repository's commit (``git describe --always --dirty``), or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _notebook_key(book: Path, profile: str, real: dict[str, str] | None) -> str:
    """What makes a notebook's run: its file's bytes, the profile's parameters and ``--real``."""
    import hashlib

    params = json.dumps([load_profile(profile, book.stem), real or {}], sort_keys=True)
    return hashlib.sha256(book.read_bytes() + params.encode()).hexdigest()[:16]


def state_path(profile: str, only: list[str] | None = None, results: str | Path | None = None):
    """The run-level state file of ``make reproduce``: ``<results>/reproduce-<profile>
    [-only-<names>].state.json``, which notebooks completed, with which key, in which folder."""
    tail = f"-only-{'-'.join(sorted(only))}" if only else ""
    return results_root(results) / f"reproduce-{profile}{tail}.state.json"


def _load_state(path: Path, fresh: bool) -> dict:
    """The unfinished run recorded in ``path`` (to continue), or a new, empty state."""
    new = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "notebooks": {}}
    if fresh or not path.exists():
        return {**new, "finished": False}
    try:
        state = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); pass --fresh to start over (the file is "
            "only the record of an interrupted run: results are kept either way)"
        ) from err
    if state.get("finished"):
        return {**new, "finished": False}
    print(f"continuing the run started {state.get('started')} ({path}); --fresh starts over")
    return state


def _resumable_dir(entry: dict | None, key: str) -> Path | None:
    """A stopped notebook's folder to resume in: same key, still there, no results in it."""
    if not entry or entry.get("status") == "done" or entry.get("key") != key:
        return None
    folder = Path(entry.get("run_dir") or "")
    if not entry.get("run_dir") or not folder.is_dir() or (folder / "metrics.json").exists():
        return None
    return folder


# kept in a stopped run's folder for its rerun: training checkpoints and history (train.fit),
# and folders (keyed caches such as 08's crop store); the rest moves to attempt-<n>/
RESUME_FILES = ("*.pt", "*-history.csv", "*-watched.npy")


def _set_aside(folder: Path) -> Path:
    """Move a stopped attempt's files (its executed copy, tables, figures) into
    ``attempt-<n>/`` in its folder, keeping what the rerun resumes from; nothing is deleted."""
    n = 1 + sum(1 for p in folder.glob("attempt-*") if p.is_dir())
    aside = folder / f"attempt-{n}"
    keep = {p for pattern in RESUME_FILES for p in folder.glob(pattern)}
    moving = [p for p in folder.iterdir() if p.is_file() and p not in keep]
    if moving:
        aside.mkdir()
        for p in moving:
            p.rename(aside / p.name)
    return aside


def run_all(
    profile: str = "quick",
    only: list[str] | None = None,
    results: str | Path | None = None,
    log_output: bool = False,
    real: dict[str, str] | None = None,
    fresh: bool = False,
    folder: str | Path | None = None,
) -> list[RunRecord]:
    """Run every notebook in order, stop at the first failure, and write a timing log.
    ``real`` ({dataset: folder}, see ``read_real``) points the notebooks at real data.

    An interrupted run continues (``state_path`` records it): notebooks completed with the
    same file and parameters are kept (their earlier folder is reported), a notebook that
    stopped reruns in its own folder (its checkpoints are found; the stopped attempt's other
    files go to ``attempt-<n>/``) unless that folder holds results; ``fresh`` starts over.
    A completed run folder is never written again. ``folder``: the notebooks' folder."""
    books = list_notebooks(folder)
    if only:
        books = [b for b in books if b.stem in only or b.stem.split("_")[0] in only]
        if not books:
            raise ValueError(
                f"no notebook matches {only}; have {[b.stem for b in list_notebooks(folder)]}"
            )
    root = results_root(results)
    root.mkdir(parents=True, exist_ok=True)
    spath = state_path(profile, only, results)
    state = _load_state(spath, fresh)
    state.update(profile=profile, commit=_commit())
    done = state["notebooks"]

    def save() -> None:
        atomic_write_text(spath, json.dumps(state, indent=2), overwrite=True)

    records: list[RunRecord] = []
    failure: NotebookFailed | None = None
    for i, book in enumerate(books, 1):
        key, entry = _notebook_key(book, profile, real), done.get(book.stem)
        if (
            entry
            and entry.get("status") == "done"
            and entry.get("key") == key
            and Path(entry.get("executed", "")).exists()
        ):
            print(f"[{i}/{len(books)}] {book.stem}: kept, completed in {entry['run_dir']}")
            if entry.get("commit") != state["commit"]:
                print(f"    (run at commit {entry.get('commit')}, now {state['commit']})")
            records.append(RunRecord(**{k: entry[k] for k in RunRecord.__dataclass_fields__}))
            continue
        run_dir = _resumable_dir(entry, key)
        if run_dir is not None:
            aside = _set_aside(run_dir)
            print(f"[{i}/{len(books)}] {book.stem} ({profile}): resuming in {run_dir}", flush=True)
            print(f"    (the stopped attempt's files: {aside})", flush=True)
        else:
            print(f"[{i}/{len(books)}] {book.stem} ({profile}) ...", flush=True)
            run_dir = new_notebook_dir(book.stem, profile, results)
        entry = {
            "status": "running",
            "key": key,
            "run_dir": str(run_dir),
            "commit": state["commit"],
        }
        done[book.stem] = entry
        save()
        try:
            rec = run_notebook(
                book,
                profile,
                results,
                log_output=log_output,
                real=real,
                progress=sys.stderr.isatty(),  # a cell-by-cell bar in a terminal, not in logs
                run_dir=run_dir,
            )
        except NotebookFailed as exc:
            failure = exc
            rec = RunRecord(book.stem, profile, 0.0, str(run_dir), "", False, str(exc))
            records.append(rec)
            entry.update(status="failed", error=str(exc))
            save()
            print(f"    FAILED: {exc}", flush=True)
            break
        records.append(rec)
        entry.update(asdict(rec), status="done")
        save()
        print(f"    done in {rec.seconds:.1f} s -> {rec.executed}", flush=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = root / f"reproduce-{stamp}-{profile}.json"
    if log.exists():
        log = root / f"reproduce-{stamp}-{profile}-{time.time_ns()}.json"
    atomic_write_text(log, json.dumps([asdict(r) for r in records], indent=2))
    total = sum(r.seconds for r in records)
    print(f"{sum(r.ok for r in records)}/{len(books)} notebooks ran in {total:.0f} s; log: {log}")
    if failure:
        print(f"rerun the same command to continue this run ({spath}); --fresh starts over")
        raise failure
    state["finished"] = True
    save()
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
        "--fresh", action="store_true", help="start over instead of continuing a stopped run"
    )
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
            real = read_real(args.real)
            run_all(args.profile, args.only, args.results, args.log_output, real, args.fresh)
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
