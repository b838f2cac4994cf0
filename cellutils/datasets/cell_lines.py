"""The cell-line images of report 001 (a university course challenge, most likely JKU Linz's
"Cell Lines Classifier"): nine cell lines, one 64-px greyscale PNG per colour channel named
as the Human Protein Atlas names its channels; its reader and the synthetic writer of the same
layout. The images come from the course, so there is no download manifest.

Layout facts: ``docs/datasets.md``. Terms: the challenge published no licence; use the images
as the course that handed them out allows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils import simulate as sim
from cellutils.datasets._base import (
    MISSING,
    DatasetError,
    Layout,
    _DiskFiles,
    _finish,
    _unclaimed,
    lines,
    read_table,
    require_labels,
    unique_rows,
)
from cellutils.paths import safe_key
from cellutils.synthetic import Imaging, SiteJob, Staging, render_all, write_truth

# File-name colour -> what it stains (HPA convention). The challenge ships blue, red, yellow.
CHANNELS = {"blue": "nucleus", "red": "microtubules", "yellow": "ER", "green": "protein"}
COLOURS = ((0, 0, 255), (255, 0, 0), (255, 255, 0), (0, 255, 0))  # drawn as named
SIM = {"blue": "DNA", "red": "TUBULIN", "yellow": "ER", "green": "PROTEIN"}  # simulator's
# Relative frequency of each line in the synthetic default (HeLa and U-2 OS rare, as in 001).
WEIGHTS = {
    "U-251 MG": 1.0,
    "HeLa": 0.22,
    "PC-3": 0.9,
    "A549": 0.8,
    "MCF7": 0.75,
    "U-2 OS": 0.2,
    "HEK 293": 0.95,
    "CACO-2": 0.6,
    "RT4": 0.5,
}


def read_cell_lines(
    root: str | os.PathLike,
    split: str = "train",
    channels: Sequence[str] = ("blue", "red", "yellow"),
    errors: str = "report",
    labels: bool | None = None,
) -> pd.DataFrame:
    """Index the cell-line samples: ``{split}/`` or ``images_{split}/`` holding
    ``{id}_{colour}.png``; labels from ``{split}.csv`` or ``y_{split}.csv`` (an id column
    ``filename``, ``file_id`` or ``id``, and ``cell_line``). The challenge's zero-padded ids
    (``00026_blue.png``) and unpadded ids (``26``) match each other; two files for one id are
    reported, never chosen. Columns: filename, cell_line, path_<colour>.

    ``labels``: raise when no sample has a label (default: for the training split; the
    challenge kept its test labels).
    """
    root = Path(root).expanduser()
    labels = split == "train" if labels is None else labels
    folder = next((root / f for f in (split, f"images_{split}") if (root / f).is_dir()), None)
    if folder is None:
        raise DatasetError(
            f"{split}/ (or images_{split}/) folder not found in {root}. Pass the folder "
            f"that holds the extracted images_{split}.tar and y_{split}.csv."
        )
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    problems: list = []
    by_key: dict[str, set[str]] = {}
    for p in files:
        sid = p.name.rsplit("_", 1)[0]
        by_key.setdefault(_sample_key(sid), set()).add(sid)
    for key, ids in list(by_key.items()):
        if len(ids) > 1:
            problems.append(
                (
                    "ambiguous_file",
                    str(folder / sorted(ids)[0]),
                    f"sample ids {sorted(ids)} are one sample",
                    "keep one set of files",
                )
            )
            del by_key[key]
    table = next(
        (root / n for n in (f"{split}.csv", f"y_{split}.csv") if (root / n).exists()), None
    )
    if table is not None:
        md = lines(read_table(table), table)
        idcol = next((c for c in ("filename", "file_id", "id", "ID") if c in md), None)
        if idcol is None or "cell_line" not in md:
            raise DatasetError(
                f"{table} needs an id column (filename, file_id or id) and "
                f"cell_line; has {list(md.columns)}"
            )
        md = md.rename(columns={idcol: "filename"})
        for i, sid in md.filename.items():  # ids name files: refuse '../x' and the like
            safe_key(sid, "sample id", f"{table}, line {md.at[i, '_line']}")
        # ``00026`` and ``26`` are one sample: repeats collapse, two labels are an error
        md = md.assign(_key=md.filename.map(_sample_key))
        md = unique_rows(md, ["_key"], str(table), ignore=["filename"])
        md = md.drop(columns=["_key", "_file", "_line"])
    elif labels:
        raise DatasetError(
            f"no {split}.csv or y_{split}.csv in {root}: the {split} samples "
            "have no labels. Put the challenge's y_train.csv beside the images "
            "(or pass labels=False for an unlabelled index)."
        )
    else:
        md = pd.DataFrame(
            {"filename": sorted(i for ids in by_key.values() for i in ids), "cell_line": MISSING}
        )
    md["filename"] = [next(iter(by_key.get(_sample_key(i), {i}))) for i in md.filename]
    if labels:
        require_labels(md, "cell_line", str(table), "Check the label file's cell_line column.")
    cols = [f"path_{c}" for c in channels]
    found = _DiskFiles(files)
    claimed = []
    for c in channels:
        md[f"path_{c}"] = found.resolve(
            [folder / f"{i}_{c}.png" for i in md.filename],
            problems,
            "the sample needs all its channel files",
        )
        claimed += list(md[f"path_{c}"])
    if table is not None:
        mine = [p for p in files if p.stem.rsplit("_", 1)[-1].lower() in channels]
        _unclaimed(mine, claimed, problems, f"add the sample to {table.name} or move it away")
    return _finish(md, problems, errors, f"cell lines ({split})", cols, sort=["filename"])


def _sample_key(sample_id: str) -> str:
    """``00026`` and ``26`` are one sample (the challenge told users to strip the zeros)."""
    return sample_id.lstrip("0") or "0"


def write_cell_lines(
    root: str | os.PathLike,
    n_train: int = 900,
    n_test: int = 600,
    size: int = 64,
    weights: dict[str, float] | None = None,
    n_batches: int = 6,
    seed: int = 0,
    n_jobs: int | None = None,
) -> Path:
    """Nine cell lines as HPA-style samples: ``{id}_{blue,red,yellow,green}.png`` per sample.

    Classes are imbalanced by ``weights`` (HeLa and U-2 OS rare, as in report 001). ``train.csv``
    holds ``filename,cell_line``; the test labels are kept in ``ground_truth/sites.csv``.
    Samples come from ``n_batches`` acquisition batches (hidden nuisance).
    """
    weights = weights or dict(WEIGHTS)
    params = dict(
        layout="cell_lines",
        n_train=n_train,
        n_test=n_test,
        size=size,
        weights=weights,
        n_batches=n_batches,
        seed=seed,
    )
    stage = Staging(root, params)
    if stage.existing():
        return stage.root
    lines = list(weights)
    prob = np.array([weights[k] for k in lines], float)
    prob /= prob.sum()
    perts = sim.make_perturbations(0, seed, negative_control="none")  # no perturbation
    rng = sim.key_rng(seed, "hpa-samples")
    jobs, labels = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(n):
            line = lines[int(rng.choice(len(lines), p=prob))]
            sid = f"{int(rng.integers(16**7, 16**8)):08x}-{split[:2]}{k:05d}"
            batch = f"batch{int(rng.integers(1, n_batches + 1))}"
            paths = tuple(f"{split}/{sid}_{c}.png" for c in SIM)
            jobs.append(SiteJob(sid, line, 0, batch, "1", "C03", 1, tuple(SIM.values()), paths))
            labels.append((split, sid, line))
    imaging = Imaging(size=size, scale=0.35 * size / 64, dtype="uint8", counts=170.0, photons=200.0)
    with stage as tmp:
        sites_df, cells = render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "cell lines")
        lab = pd.DataFrame(labels, columns=["split", "filename", "cell_line"])
        lab[lab.split == "train"][["filename", "cell_line"]].to_csv(tmp / "train.csv", index=False)
        sites_df["split"] = lab.split.to_numpy()
        sites_df = sites_df.drop(columns=["plate", "well", "site", "edge_well"]).rename(
            columns={"experiment": "batch"}
        )
        write_truth(tmp, sites_df, cells, perts)
    return stage.root


LAYOUT = Layout(
    name="cell_lines",
    label="cell_line",
    channels=CHANNELS,
    colours=COLOURS,
    read=read_cell_lines,
    write=write_cell_lines,
    markers=("train.csv", "y_train.csv"),
    get_real="the challenge's folder with images_train/ (or train/) and y_train.csv",
    licence="no published licence: as the course challenge that handed them out allows",
)
