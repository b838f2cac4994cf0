"""One entry point per dataset: use the real data when given, else the synthetic default.

>>> root = locate("rxrx1")              # data/synthetic/rxrx1, generated on first use
>>> index = read_index("rxrx1", root)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from cellutils import datasets, synthetic
from cellutils.paths import data_root as _data_root
from cellutils.paths import repo_root

READERS = {
    "rxrx1": datasets.read_rxrx1,
    "cpjump1": datasets.read_cpjump1,
    "cpjump1_subset": datasets.read_cpjump1_subset,
    "cell_lines": datasets.read_cell_lines,
}
LABELS = {  # the column each report predicts
    "rxrx1": "sirna_id",
    "cpjump1": "Metadata_pert_iname",
    "cpjump1_subset": "Metadata_pert_iname",
    "cell_lines": "cell_line",
}
# Where `make data NAME=...` (or you) put each real dataset under the data root, and a file
# that tells the layout is there; such a folder is used without any edit.
MARKERS = {
    "rxrx1": ("metadata.csv", "rxrx1/metadata.csv", "train.csv"),
    "cpjump1": ("**/load_data.csv", "**/load_data.csv.gz", "images/*/*__*/Images"),
    "cpjump1_subset": ("metadata_*.csv",),
    "cell_lines": ("train.csv", "y_train.csv"),
}
GET_REAL = {
    "rxrx1": "`make data NAME=rxrx1` (46 GB), then real_rxrx1='data/rxrx1'",
    "cpjump1": "`make data NAME=cpjump1`, then real_cpjump1='data/cpjump1'",
    "cpjump1_subset": "the course's metadata_BR00116991.csv + median-aggregated TIFFs folder",
    "cell_lines": "the HPA challenge folder with train/ and train.csv",
}


def locate(name: str, real: str | os.PathLike | None = None,
           data_root: str | os.PathLike | None = None, overrides: dict | None = None,
           seed: int = 0, verbose: bool = True) -> Path:
    """The folder to read dataset ``name`` from.

    ``real`` (a path) wins and must exist; a relative path is tried against the working
    folder, then the repository, then the data root (so ``"data/rxrx1"`` works from a notebook
    whose kernel runs in ``notebooks/``). Without ``real``, a real dataset where
    ``make data NAME=<name>`` puts it (``<data root>/<name>``, holding one of ``MARKERS``) is
    used, and the code says so. Otherwise the synthetic default, generated once under
    ``<data root>/synthetic/<name>``; generator ``overrides`` get their own folder
    (``<name>-<hash>``), so a small test set never collides with the default one.
    """
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(READERS)}")
    if real:
        root = resolve_real(real, data_root)
        if root is None:
            raise FileNotFoundError(f"real {name} data not found at {real} (looked in the working "
                                    f"folder, {repo_root()} and {_data_root(data_root, create=False)})."
                                    f" Get it with: {GET_REAL[name]}; or pass None to use the "
                                    "synthetic default.")
        if verbose:
            print(f"{name}: real data at {root}")
        return root
    fetched = _data_root(data_root, create=False) / name
    if not overrides and any(any(fetched.glob(m)) for m in MARKERS[name]):
        if verbose:
            print(f"{name}: real data found at {fetched} (from `make data NAME={name}`); pass "
                  "synthetic overrides or move it to use the synthetic default")
        return fetched
    folder = name
    if overrides:
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
        folder = f"{name}-{digest}"
    base = _data_root(data_root) / "synthetic" / folder
    existed = (base / synthetic.MANIFEST).exists()
    root = synthetic.DEFAULTS[name](base, seed=seed, **(overrides or {}))
    if verbose:
        how = "found" if existed else "generated"
        print(f"{name}: synthetic data ({how}) at {root} -- for the real data: {GET_REAL[name]}")
    return root


def resolve_real(path: str | os.PathLike, data_root: str | os.PathLike | None = None
                 ) -> Path | None:
    """An existing folder for a user's ``real_*`` path: as given, else relative to the
    repository, else to the data root; None when none exists."""
    p = Path(path).expanduser()
    tries = [p] if p.is_absolute() else [p, repo_root() / p, _data_root(data_root, False) / p]
    return next((t.resolve() for t in tries if t.exists()), None)


def read_index(name: str, root: str | os.PathLike, **kw) -> pd.DataFrame:
    """The tidy index of dataset ``name`` at ``root`` (see ``cellutils.datasets``)."""
    return READERS[name](root, **kw)


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
