"""Checks for notebook 05 (CPJUMP1 subset, MobileNetV2). Each recomputes the expected value by
another route than the notebook's solution and ends in :func:`cellutils.exercises.check`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellutils import exercises


def _copied(train: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
    """Per evaluation row, whether its index also labels a training row (a pandas merge)."""
    left = pd.DataFrame({"row": evaluation.index, "order": np.arange(len(evaluation))})
    right = pd.DataFrame({"row": train.index.unique()})
    hit = left.merge(right, on="row", how="left", indicator=True).sort_values("order")
    return (hit["_merge"] == "both").to_numpy()


def check_copies(answer, train: pd.DataFrame, evaluation: pd.DataFrame) -> exercises.Outcome:
    """``answer``: how many evaluation rows have an exact copy (the same row id) in ``train``."""
    expected = int(_copied(train, evaluation).sum())
    return exercises.check(
        "copies",
        answer,
        expected,
        "an oversampled copy keeps its row's index: count the evaluation rows whose index is "
        "also an index of the training rows",
        explain=f"{expected} of {len(evaluation)} evaluation images have a copy in training",
    )


def check_grouped_split(
    answer, pool: pd.DataFrame, group: str = "Metadata_Well"
) -> exercises.Outcome:
    """``answer``: ``(train, evaluation)``, two DataFrames that split ``pool`` by ``group``:
    every row on exactly one side, no ``group`` value on both, neither side empty."""
    expected = {"groups on both sides": 0, "rows missing": 0, "rows twice": 0, "empty side": 0}
    if answer is Ellipsis or any(a is Ellipsis for a in answer):
        return exercises.check("grouped split", ..., expected, "")
    tr, ev = answer
    shared = tr[[group]].drop_duplicates().merge(ev[[group]].drop_duplicates(), on=group)
    both = pd.concat([tr, ev])
    got = {
        "groups on both sides": len(shared),
        "rows missing": int((~pool.index.isin(both.index)).sum()),
        "rows twice": int(both.index.duplicated().sum()),
        "empty side": int(len(tr) == 0) + int(len(ev) == 0),
    }
    return exercises.check(
        "grouped split",
        got,
        expected,
        f"draw {group} values (not rows) for evaluation, e.g. sklearn's GroupShuffleSplit with "
        f"groups={group!r}, then take every row of those {group} values; the rest is training "
        f"(what went wrong: {', '.join(k for k, v in got.items() if v)})",
        explain=f"{ev[group].nunique()} {group} values ({len(ev)} rows) for evaluation, "
        f"{tr[group].nunique()} ({len(tr)} rows) for training, none on both sides",
    )


def check_well_vote(
    answer,
    evaluation: pd.DataFrame,
    pred: np.ndarray,
    targets: np.ndarray,
    well: str = "Metadata_Well",
) -> exercises.Outcome:
    """``answer``: the share of evaluation wells whose majority vote over their sites'
    predicted labels (ties: the smallest label) is the well's true label."""
    df = pd.DataFrame({"well": evaluation[well].to_numpy(), "pred": pred, "target": targets})
    votes = df.groupby(["well", "pred"]).size().rename("n").reset_index()
    votes = votes.sort_values(["well", "n", "pred"], ascending=[True, False, True])
    winner = votes.drop_duplicates("well").set_index("well")["pred"]
    truth = df.groupby("well")["target"].first()
    expected = float((winner.reindex(truth.index) == truth).mean())
    return exercises.check(
        "well vote",
        answer,
        expected,
        "per evaluation well: the most frequent predicted label among its sites (np.bincount "
        "then argmax keeps the smallest label on a tie); then the share of wells voted right",
        explain=f"{expected:.3f} of {len(truth)} wells voted right (per image: "
        f"{float(np.mean(pred == targets)):.3f})",
    )


def check_copy_gain(
    answer, train: pd.DataFrame, evaluation: pd.DataFrame, pred: np.ndarray, targets: np.ndarray
) -> exercises.Outcome:
    """``answer``: ``(accuracy on evaluation rows with a copy in training, accuracy on those
    without)``; nan for a side with no rows."""
    copied = pd.Series(_copied(train, evaluation))
    right = pd.Series(np.asarray(pred) == np.asarray(targets))
    means = right.groupby(copied).mean()
    expected = np.array([means.get(True, np.nan), means.get(False, np.nan)], float)
    got = answer if answer is Ellipsis else np.asarray(answer, float)
    return exercises.check(
        "copy gain",
        got,
        expected,
        "mark the evaluation rows whose index is in the training rows' index, then the "
        "accuracy of the predictions on the marked rows and on the others (nan if none)",
        explain=f"accuracy {expected[0]:.3f} on images with a copy in training, "
        f"{expected[1]:.3f} on the others",
    )
