"""What made a result: the function, its settings and its input files' identity, as one key
stored beside the result, so a cached result is reused only when the same things would make it.

- ``function_id(fn)``: the qualified name, a hash of the source of the function's module (the
  function and the helpers beside it; re-read when the file changes) and of the function's own
  source (one defined in a notebook); ``fn.version`` if set; a ``functools.partial``'s bound
  arguments count as settings. Code the function calls in *other* modules is not hashed.
- ``file_id(path)``: size and ``mtime_ns`` of a file (a hash of its bytes for small metadata
  files, ``hash_small=True``: a plate map rewritten with the same size is still noticed).
- ``make_key(fn, settings, files, values)``: the three parts hashed separately, so a mismatch
  can say *what* changed (the function, the settings, or the inputs).
- ``read_sidecar`` / ``write_sidecar``: the key as ``<file>.key.json`` beside a file or
  ``key.json`` inside a folder; Parquet parts hold it in their schema metadata (``cluster``).

>>> key = make_key(measure_row, {"feature_set": "regionprops"}, [row.path_DNA], dict(row))
>>> reason = mismatch(read_sidecar(masks_file), key)   # None when the stored key matches
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from cellutils.paths import atomic_write_text

PARTS = ("function", "settings", "inputs")  # what a key is made of, in the order reported
SMALL_FILE = 1 << 20  # metadata files up to this size are hashed, not only stat'ed


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(obj):
    """JSON for what ``json`` does not know: numpy scalars, paths, arrays, anything else."""
    if hasattr(obj, "item") and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _module_source_hash(module_name: str) -> str:
    """The hash of a module's source file (re-read when the file changes: an edited and
    reloaded module gets a new hash); "" for built-in or interactive code."""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    return _file_source_hash(path, st.st_size, st.st_mtime_ns) if st else ""


@functools.lru_cache(maxsize=256)
def _own_source_hash(obj) -> str:  # cached per object: a reloaded function is a new one
    try:
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""


@functools.lru_cache(maxsize=256)
def _file_source_hash(path: str, size: int, mtime_ns: int) -> str:
    return _file_hash(Path(path))


def function_id(fn: Callable) -> tuple[dict, dict]:
    """(identity, bound settings) of ``fn``: its module, qualified name, the hash of its
    module's source (the function and the helpers beside it) and ``fn.version`` when set; a
    ``functools.partial``'s arguments are returned as settings."""
    settings: dict = {}
    while isinstance(fn, functools.partial):
        settings = {**{f"arg{i}": a for i, a in enumerate(fn.args)}, **fn.keywords, **settings}
        fn = fn.func
    target = fn if inspect.isfunction(fn) or inspect.isclass(fn) else type(fn)
    if not (inspect.isfunction(fn) or inspect.isclass(fn)):  # a callable object: its state
        settings = {**{k: v for k, v in vars(fn).items()}, **settings}
    module = getattr(target, "__module__", "") or ""
    ident = {
        "name": f"{module}.{getattr(target, '__qualname__', repr(target))}",
        "source": _module_source_hash(module),
        "own_source": _own_source_hash(target),  # a function defined in a notebook cell
        "version": getattr(fn, "version", None),
    }
    return ident, settings


def file_id(path: str | os.PathLike, hash_small: bool = False) -> dict:
    """A file's identity: its path, size and ``mtime_ns``; for files up to ``SMALL_FILE`` with
    ``hash_small`` its content hash instead of the time (a rewrite with the same bytes is the
    same input, an edit that keeps the size is not). A missing file is ``{"missing": path}``."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"missing": str(p)}
    if hash_small and st.st_size <= SMALL_FILE:
        return {"path": str(p), "size": st.st_size, "sha256": _file_hash(p)}
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def make_key(
    fn: Callable | str,
    settings: dict | None = None,
    files: Iterable[str | os.PathLike] = (),
    values: dict | None = None,
    small_files: Iterable[str | os.PathLike] = (),
) -> dict[str, str]:
    """The key of a result: ``{"function": ..., "settings": ..., "inputs": ...}``, each a hash.
    ``fn`` is a callable (see ``function_id``) or a name with a version (e.g. ``"crops-v1"``);
    ``files`` are stat'ed, ``small_files`` hashed (plate maps, labels); ``values`` are input
    values that are not files (a site's metadata row: its labels come from the plate map)."""
    if callable(fn):
        ident, bound = function_id(fn)
    else:
        ident, bound = {"name": str(fn)}, {}
    inputs = {
        "files": [file_id(f) for f in files],
        "small": [file_id(f, hash_small=True) for f in small_files],
        "values": values or {},
    }
    return {
        "function": _digest(ident),
        "settings": _digest({**bound, **(settings or {})}),
        "inputs": _digest(inputs),
    }


def mismatch(stored: dict | None, key: dict) -> str | None:
    """Why a stored key does not match ``key`` ("the function", "the settings and the inputs",
    "no key stored"), or None when it matches."""
    if not stored:
        return "no key stored (made before keys were recorded)"
    changed = [p for p in PARTS if stored.get(p) != key.get(p)]
    return " and ".join(f"the {p}" for p in changed) + " changed" if changed else None


def sidecar(path: str | os.PathLike) -> Path:
    """Where the key of ``path`` is kept: ``key.json`` inside a folder, ``<file>.key.json``
    beside a file."""
    p = Path(path)
    return p / "key.json" if p.is_dir() else p.with_name(p.name + ".key.json")


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The key stored for ``path``, or None (none stored, or unreadable)."""
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return None


def write_sidecar(path: str | os.PathLike, key: dict) -> Path:
    """Store ``key`` for ``path`` (atomically, replacing an older key)."""
    return atomic_write_text(sidecar(path), json.dumps(key, sort_keys=True), overwrite=True)


class Reporter:
    """Says once per run how many results are recomputed and why (the first example)."""

    def __init__(self, what: str):
        self.what, self.n, self.first = what, 0, ""

    def add(self, name: str, reason: str) -> None:
        self.n += 1
        self.first = self.first or f"{name}: {reason}"

    def say(self) -> None:
        if self.n:
            print(
                f"{self.what}: recomputing {self.n} result(s) made from other inputs or code "
                f"(e.g. {self.first})"
            )
