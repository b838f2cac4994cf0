"""Checks of notebook 00's exercises (the data). Each recomputes the expected answer another
way than the solution does and ends in :func:`cellutils.exercises.check`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cellutils.exercises import check


def check_one_well(
    answer,
    index: pd.DataFrame,
    label: str = "Metadata_pert_iname",
    by: Sequence[str] = ("Metadata_Plate", "Metadata_Well"),
) -> None:
    """``answer``: the set of ``label`` values whose images all come from one well (``by``).
    Expected: the distinct (label, well) pairs, counted per label."""
    by = [c for c in by if c in index]
    pairs = index[[label, *by]].drop_duplicates()
    counts = pairs[label].value_counts()
    expected = set(counts.index[counts == 1])
    share = float(index[label].isin(expected).mean())
    check(
        "00.1 one-well compounds",
        answer,
        expected,
        hint=f"count the distinct wells of each {label} (groupby + nunique) and keep those "
        "with exactly one; answer with a set of names",
        explain=f"{len(expected)} of {counts.size} compounds have one well only: "
        f"{share:.0%} of the images belong to them",
    )


def check_majority(accuracy, balanced, labels: pd.Series) -> None:
    """``accuracy`` and ``balanced``: the accuracy and the balanced accuracy of always
    predicting the most common of ``labels``. Expected: sklearn's metrics on that prediction."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    constant = np.full(len(y), classes[np.argmax(counts)])
    expected = (accuracy_score(y, constant), balanced_accuracy_score(y, constant))
    answer = ... if accuracy is ... or balanced is ... else (accuracy, balanced)
    check(
        "00.3 majority baseline",
        answer,
        expected,
        hint="accuracy: the commonest label's share of all samples; balanced accuracy: the "
        "mean over classes of the share of that class predicted right (1 for one class, "
        "0 for every other)",
        explain=f"always {classes[np.argmax(counts)]}: accuracy {expected[0]:.3f}, balanced "
        f"accuracy {expected[1]:.3f} = 1/{len(classes)} classes",
    )
