"""One entry point per dataset: use the real data when given, else the synthetic default.

>>> root = locate("rxrx1")              # data/synthetic/rxrx1-v2, generated on first use
>>> index = read_index("rxrx1", root)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pandas as pd

from cellutils import datasets, synthetic
from cellutils.paths import data_root as _data_root
from cellutils.paths import repo_root

LAYOUTS = datasets.LAYOUTS  # one module per layout in cellutils.datasets
DatasetError = datasets.DatasetError
build_cpjump1_subset = datasets.cpjump1_subset.build_cpjump1_subset  # make data NAME=cpjump1_subset


def locate(
    name: str,
    real: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> Path:
    """The folder to read dataset ``name`` from.

    ``real`` (a path) wins and must exist; a relative path is tried against the working
    folder, then the repository, then the data root (so ``"data/rxrx1"`` works from a notebook
    whose kernel runs in ``notebooks/``). Without ``real``, a real dataset where
    ``make data NAME=<name>`` puts it (``<data root>/<name>``, holding one of ``MARKERS``) is
    used, and the code says so. Otherwise the synthetic default, generated once under
    ``<data root>/synthetic/<name>-v<simulator version>``; generator ``overrides`` get their own
    folder (``<name>-v<version>-<hash>``), so a small test set never collides with the default
    one and data of an older simulator is never read as this one's.
    """
    layout = _layout(name)
    if real:
        root = resolve_real(real, data_root)
        if root is None:
            raise FileNotFoundError(
                f"real {name} data not found at {real} (looked in the working "
                f"folder, {repo_root()} and {_data_root(data_root, create=False)})."
                f" Get it with: {layout.get_real}; or pass None to use the "
                "synthetic default."
            )
        if verbose:
            print(f"{name}: real data at {root}")
        return root
    fetched = _data_root(data_root, create=False) / name
    if not overrides and any(any(fetched.glob(m)) for m in layout.markers):
        if verbose:
            print(
                f"{name}: real data found at {fetched} (from `make data NAME={name}`); pass "
                "synthetic overrides or move it to use the synthetic default"
            )
        return fetched
    base = _data_root(data_root) / "synthetic" / synthetic_folder(name, overrides)
    existed = (base / synthetic.MANIFEST).exists()
    root = layout.write(base, seed=seed, **(overrides or {}))
    if verbose:
        how = "found" if existed else "generated"
        print(f"{name}: synthetic data ({how}) at {root} -- for the real data: {layout.get_real}")
    return root


def _layout(name: str) -> datasets.Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def fetch(name: str, dest: str | os.PathLike | None = None, **kw) -> Path:
    """Download dataset ``name`` (``make data NAME=...``): its layout's manifest, moved by
    ``cellutils.download.fetch_dataset`` into ``dest`` (default ``<data root>/<name>``)."""
    from cellutils.download import fetch_dataset

    layout = LAYOUTS.get(name)
    if layout is None or layout.manifest is None:
        fetchable = sorted(k for k, v in LAYOUTS.items() if v.manifest)
        raise ValueError(
            f"dataset {name!r} cannot be downloaded; choose from {fetchable} (the "
            "CPJUMP1 course subset and the cell-line images come from their courses)."
        )
    return fetch_dataset(layout, dest, **kw)


def synthetic_folder(name: str, overrides: dict | None = None) -> str:
    """The synthetic dataset's folder name: ``<name>-v<simulator version>``, plus a hash of the
    generator ``overrides`` when there are any (a new simulator version: a new folder)."""
    folder = f"{name}-v{synthetic.VERSION}"
    if overrides:
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
        folder = f"{folder}-{digest}"
    return folder


def make_default_data(
    root: str | os.PathLike | None = None,
    which: tuple[str, ...] | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    **overrides,
) -> dict[str, Path]:
    """Write (or find, when already written) the default synthetic datasets (``make data``).

    They live in ``<data root>/synthetic/<name>-v<version>`` (:func:`synthetic_folder`).
    ``overrides`` maps a dataset name to keyword arguments for its writer, e.g.
    ``rxrx1={"size": 64}``.
    """
    base = _data_root(root) / "synthetic"
    out = {}
    for name in which or tuple(LAYOUTS):
        layout = _layout(name)
        t0 = time.perf_counter()
        folder = base / synthetic_folder(name, overrides.get(name))
        existed = (folder / synthetic.MANIFEST).exists()
        out[name] = layout.write(folder, seed=seed, n_jobs=n_jobs, **overrides.get(name, {}))
        what = "found" if existed else f"written in {time.perf_counter() - t0:.1f} s"
        print(f"synthetic {name}: {what} -> {out[name]}")
    return out


def resolve_real(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> Path | None:
    """An existing folder for a user's ``real_*`` path: as given, else relative to the
    repository, else to the data root; None when none exists."""
    p = Path(path).expanduser()
    tries = [p] if p.is_absolute() else [p, repo_root() / p, _data_root(data_root, False) / p]
    return next((t.resolve() for t in tries if t.exists()), None)


def read_index(name: str, root: str | os.PathLike, **kw) -> pd.DataFrame:
    """The tidy index of dataset ``name`` at ``root`` (see ``cellutils.datasets``)."""
    return LAYOUTS[name].read(root, **kw)


def is_synthetic(root: str | os.PathLike) -> bool:
    return (Path(root) / synthetic.MANIFEST).exists()


def cell_lines_test(root: str | os.PathLike) -> pd.DataFrame:
    """The cell-line test split with labels: from ``test.csv`` when the folder has one, else,
    for the synthetic data, from its ground truth (the challenge kept them on its server).
    Rows without a label are dropped; an empty frame means no labelled test set exists."""
    test = datasets.read_cell_lines(root, split="test", labels=False)
    if (test.cell_line == datasets.MISSING).all() and is_synthetic(root):
        truth = synthetic.read_truth(root)["sites"].set_index("key")["cell_line"]
        test["cell_line"] = test.filename.map(truth).fillna(datasets.MISSING)
    return test[test.cell_line != datasets.MISSING].reset_index(drop=True)
