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

    ``real`` (a path) wins and must exist. Otherwise the synthetic default is used, generated
    once under ``<data root>/synthetic/<name>``; generator ``overrides`` get their own folder
    (``<name>-<hash>``), so a small test set never collides with the default one.
    """
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(READERS)}")
    if real:
        root = Path(real).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"real {name} data not found at {root}. Get it with: "
                                    f"{GET_REAL[name]}; or pass None to use the synthetic default.")
        if verbose:
            print(f"{name}: real data at {root}")
        return root
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


def read_index(name: str, root: str | os.PathLike, **kw) -> pd.DataFrame:
    """The tidy index of dataset ``name`` at ``root`` (see ``cellutils.datasets``)."""
    return READERS[name](root, **kw)


def is_synthetic(root: str | os.PathLike) -> bool:
    return (Path(root) / synthetic.MANIFEST).exists()


def cell_lines_test(root: str | os.PathLike) -> pd.DataFrame:
    """The cell-line test split with labels: from ``test.csv`` when the folder has one, else,
    for the synthetic data, from its ground truth (the challenge kept them on its server).
    Rows without a label are dropped; an empty frame means no labelled test set exists."""
    test = datasets.read_cell_lines(root, split="test")
    if test.cell_line.isna().all() and is_synthetic(root):
        truth = synthetic.read_truth(root)["sites"].set_index("key")["cell_line"]
        test["cell_line"] = test.filename.map(truth)
    return test[test.cell_line.notna()].reset_index(drop=True)
