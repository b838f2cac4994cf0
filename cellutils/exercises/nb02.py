"""Checks of notebook 02's exercises (features and profiles). Each recomputes the expected
answer another way than the solution does (pycytominer, copairs, the simulator's truth file)
and ends in :func:`cellutils.exercises.check`."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cellutils.exercises import check


def check_grouped_folds(answer, groups: np.ndarray, n_folds: int = 5) -> None:
    """``answer``: a fold number per row, with every group (well) in one fold only and
    ``n_folds`` folds. Expected: no group split across folds, counted with pandas."""
    if answer is not ...:
        folds = np.asarray(answer)
        if folds.shape != (len(groups),):
            check(
                "02.1 grouped folds",
                folds.shape,
                (len(groups),),
                hint="one fold number per cell (row of cc), in the rows' order",
            )
        per_group = pd.Series(folds).groupby(np.asarray(groups)).nunique()
        answer = (int(pd.Series(folds).nunique()), set(per_group.index[per_group > 1]))
    check(
        "02.1 grouped folds",
        answer,
        (n_folds, set()),
        hint=f"{n_folds} folds, and all cells of a well in the same fold: "
        "sklearn.model_selection.GroupKFold(n_splits=...).split(X, y, groups=wells) gives "
        "each fold's test rows",
        explain=f"{pd.Series(groups).nunique()} wells in {n_folds} folds, none split",
    )


def check_well_z(
    answer,
    normalised: pd.DataFrame,
    feature: str,
    by: tuple[str, str] = ("Metadata_Plate", "Metadata_Well"),
) -> None:
    """``answer``: one feature's robust z-score per well (a Series indexed by ``by``): the
    median over the well's cells, minus the median of the plate's DMSO wells, over 1.4826 x
    their median absolute deviation. Expected: the same column of pycytominer's ``normalised``
    profiles."""
    expected = normalised.set_index(list(by))[feature].sort_index()
    if answer is not ...:
        got = pd.Series(answer)
        if not got.index.equals(got.index.unique()) or set(got.index) != set(expected.index):
            check(
                "02.3 robust z by hand",
                sorted(map(str, got.index))[:3],
                sorted(map(str, expected.index))[:3],
                hint=f"index the answer by the wells {list(by)} (one row per well), e.g. "
                "the result of cells.groupby([...])[feature].median()",
            )
        answer = got.reindex(expected.index).to_numpy(float)
    check(
        "02.3 robust z by hand",
        answer,
        expected.to_numpy(float),
        tol=1e-6,
        hint="per well: the median of its cells; per plate: the median m and the median "
        "absolute deviation d of its DMSO wells' values; z = (well - m) / (1.4826 * d)",
        explain=f"{feature}: {len(expected)} wells as pycytominer normalises them; "
        f"beyond 3 DMSO deviations: {int((expected.abs() > 3).sum())}",
    )


def check_compound_map(answer, compound: str, maps: pd.DataFrame) -> None:
    """``answer``: the replicate mAP of ``compound`` computed by hand (cosine similarity,
    replicates on other plates against the DMSO wells). Expected: copairs' value in ``maps``."""
    expected = float(maps.set_index("Metadata_pert_iname").loc[compound, "mean_average_precision"])
    check(
        "02.4 mAP of one compound",
        answer,
        expected,
        tol=1e-6,
        hint="for each well of the compound: rank its replicates on the other plate(s) and "
        "all DMSO wells by cosine similarity; AP = mean over the replicates of (replicates "
        "at or above its rank) / (its rank); then the mean over the compound's wells that "
        "have a replicate",
        explain=f"{compound}: mAP {expected:.3f}, as copairs computes it",
    )


def check_missed(answer, maps: pd.DataFrame, root: str | os.PathLike) -> None:
    """``answer``: the compounds that truly change the cells but are not significant.
    Expected: the simulator's truth file (not ``maps``' column) minus the significant ones."""
    from cellutils import catalog
    from cellutils import synthetic as synth

    if not catalog.is_synthetic(root):
        print("exercise 02.5: no ground truth here (real data): nothing to check")
        return
    truth = synth.read_truth(root)["perturbations"]
    active = set(truth.perturbation[truth.active.astype(bool)])
    scored = set(maps.Metadata_pert_iname)
    significant = set(maps.Metadata_pert_iname[maps.below_corrected_p])
    expected = (active & scored) - significant
    check(
        "02.5 missed compounds",
        answer,
        expected,
        hint="truly active (maps['truly active']) and not significant "
        "(~maps.below_corrected_p); answer with a set or list of names",
        explain=f"{len(expected)} of {len(active & scored)} truly active compounds missed",
    )
