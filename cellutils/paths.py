"""Where data is read from and where results are written.

Data root: an explicit argument, else ``$CELLUTILS_DATA``, else ``<repo>/data``.
Results: ``<results root>/<notebook>/<run id>/``; a run folder is created fresh and an existing
one is never reused, so an earlier run's results are never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The repository checkout holding this package (editable install), else the cwd."""
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def data_root(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """Resolve the data root: ``path``, else ``$CELLUTILS_DATA``, else ``<repo>/data``."""
    chosen = path or os.environ.get("CELLUTILS_DATA") or (repo_root() / "data")
    root = Path(chosen).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"data root {root} is a file, not a folder; pass data_root= or set CELLUTILS_DATA "
            "to a folder."
        )
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def results_root(path: str | os.PathLike | None = None) -> Path:
    """Resolve the results root: ``path``, else ``$CELLUTILS_RESULTS``, else ``<repo>/results``."""
    chosen = path or os.environ.get("CELLUTILS_RESULTS") or (repo_root() / "results")
    return Path(chosen).expanduser().resolve()


def new_run_dir(
    name: str,
    root: str | os.PathLike | None = None,
    run_id: str | None = None,
) -> Path:
    """Create and return a new, empty run folder ``<root>/<name>/<run_id>``.

    ``run_id`` defaults to a timestamp. If that folder exists already a numeric suffix is
    added (``-2``, ``-3`` ...): an earlier run is never reused or overwritten.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"run name must be a plain folder name, got {name!r}")
    base = results_root(root) / name
    base.mkdir(parents=True, exist_ok=True)
    stem = run_id or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        candidate = base / (stem if i == 1 else f"{stem}-{i}")
        try:
            candidate.mkdir()  # atomic: fails if another run took the name
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not find a free run folder under {base}")


def use_run_dir(
    results_dir: str | os.PathLike | None, name: str, root: str | os.PathLike | None = None
) -> Path:
    """The folder a notebook writes to: ``results_dir`` if the runner gave one, else a new one.

    A given ``results_dir`` may exist (the runner creates it to hold the executed notebook) but
    must not already hold a ``metrics.json``: that would be an earlier run's results.
    """
    if results_dir is None:
        return new_run_dir(name, root)
    path = Path(results_dir).expanduser().resolve()
    if (path / "metrics.json").exists():
        raise FileExistsError(
            f"{path} already holds metrics.json from an earlier run; pass results_dir=None "
            "for a fresh run folder, or delete that folder yourself if you mean to redo it."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Refuses to replace an existing file unless ``overwrite``: results are never lost silently.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass overwrite=True).")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj, overwrite: bool = False) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy scalars become numbers)."""
    import json

    def _default(o):
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    text = json.dumps(obj, indent=2, default=_default) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite)


def atomic_write_text(
    path: str | os.PathLike, text: str, overwrite: bool = False, encoding: str = "utf-8"
) -> Path:
    """Text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


# --------------------------------------------------------------------------------------------
# Metadata values as path components
# --------------------------------------------------------------------------------------------


class UnsafePathError(ValueError):
    """A metadata value would leave its folder as a file name, or a write its output folder."""


def safe_key(value: object, what: str, source: str) -> str:
    """``value`` as text that can name one file: no ``/`` or ``\\``, not ``.``/``..``, not
    empty, no control characters, no drive (``C:``). Metadata values become mask and part file
    names, so ``../../x`` must be refused, never followed. ``source`` names the file the value
    came from (with its line when known)."""
    text = str(value)
    why = None
    if not text.strip():
        why = "it is empty"
    elif "/" in text or "\\" in text:
        why = "it holds a path separator"
    elif text in (".", ".."):
        why = "it names a folder"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        why = "it holds a control character"
    elif len(text) > 1 and text[1] == ":" and text[0].isalpha():
        why = "it starts with a drive"
    if why:
        raise UnsafePathError(
            f"{source}: {what} {text!r} cannot name a file ({why}); correct the value in "
            "that file (plate, well, site and sample names are plain names like BR00116991, "
            "A01, 1)."
        )
    return text


def under(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path``, checked to lie under ``root`` once both are resolved (symlinks, ``..``);
    every write built from metadata goes through it."""
    base = Path(root).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if not target.is_relative_to(base):
        raise UnsafePathError(
            f"refusing to write {target}: it lies outside its output folder {base}. A "
            "metadata value in its name leads out of the folder; correct that value."
        )
    return target
