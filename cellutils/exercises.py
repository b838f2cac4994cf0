"""Checks for the notebooks' exercises. Each recomputes the answer its own way from the
notebook's objects and says whether the student's answer is right, with a hint when it is not.
Students run them after their own code; the tests run them after the solutions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


class NotYet(AssertionError):
    """The answer is not right yet; the message says what to look at."""


def _ok(message: str) -> None:
    print(f"correct: {message}")


def check_shared_groups(
    answer: Iterable, train: pd.DataFrame, evaluation: pd.DataFrame, column: str
) -> None:
    """``answer``: the values of ``column`` (experiments, wells, ...) that have rows both in
    ``train`` and in ``evaluation`` -- the leak of a split that does not group by them."""
    truth = set(train[column]) & set(evaluation[column])
    got = set(answer)
    if got != truth:
        raise NotYet(
            f"{len(got)} given, {len(truth)} expected: compare set(train[{column!r}]) with "
            f"set(evaluation[{column!r}]); missing {sorted(truth - got)[:3]}, extra "
            f"{sorted(got - truth)[:3]}"
        )
    share = evaluation[column].isin(truth).mean()
    _ok(
        f"{len(truth)} of {evaluation[column].nunique()} evaluation {column} values are also in "
        f"training ({share:.0%} of the evaluation rows)"
        + ("; this split leaks" if truth else "; nothing shared: grouped as it should be")
    )


def check_copies(answer: int, train: pd.DataFrame, evaluation: pd.DataFrame) -> None:
    """``answer``: how many evaluation rows have an exact copy (the same row id) in ``train``."""
    truth = int(evaluation.index.isin(train.index).sum())
    if int(answer) != truth:
        raise NotYet(
            f"{answer} given, {truth} expected: an oversampled copy keeps its row's index; "
            "count evaluation.index.isin(train.index)"
        )
    _ok(f"{truth} of {len(evaluation)} evaluation images have a copy in training")


def check_baselines(
    chance: float, majority: float, train: pd.DataFrame, evaluation: pd.DataFrame, label: str
) -> None:
    """``chance``: 1 / number of classes a model trained on ``train`` can predict;
    ``majority``: the accuracy on ``evaluation`` of always predicting ``train``'s most common
    class."""
    want_chance = 1 / train[label].nunique()
    top = train[label].value_counts().index[0]
    want_majority = float((evaluation[label] == top).mean())
    if not np.isclose(chance, want_chance):
        raise NotYet(f"chance {chance:.4f}, expected {want_chance:.4f}: count training classes")
    if not np.isclose(majority, want_majority):
        raise NotYet(
            f"majority {majority:.4f}, expected {want_majority:.4f}: take the most common "
            "class of the *training* rows and score it on the evaluation rows"
        )
    _ok(f"chance {want_chance:.3f}, majority ({top}) {want_majority:.3f}")


def check_balanced_accuracy(answer: float, targets: np.ndarray, pred: np.ndarray) -> None:
    """``answer``: the mean over true classes of the share of that class predicted right."""
    from sklearn.metrics import balanced_accuracy_score

    truth = balanced_accuracy_score(targets, pred)
    if not np.isclose(answer, truth):
        raise NotYet(
            f"{answer:.4f} given, {truth:.4f} expected: per true class, the share predicted "
            "right (the confusion matrix's diagonal over its row sums), then their mean"
        )
    _ok(f"balanced accuracy {truth:.3f} (plain accuracy {np.mean(targets == pred):.3f})")


def check_average_precision(
    answer: float, image: np.ndarray, truth: np.ndarray, backend: str, **settings
) -> None:
    """``answer``: AP@0.5 of ``backend`` with ``settings`` on ``image`` against ``truth``."""
    from cellutils import segment

    masks = segment.segment(image, 0, 1, backend, **settings).masks
    want = segment.average_precision(truth, masks)["AP@0.5"]
    if not np.isclose(answer, want, atol=1e-6):
        raise NotYet(
            f"{answer:.3f} given, {want:.3f} expected: segment.average_precision(truth, masks)"
            "['AP@0.5'] with the masks of segment.segment(image, 0, 1, backend, ...)"
        )
    _ok(f"AP@0.5 {want:.3f} with {backend} {settings}")


def check_missed(answer: Iterable[str], maps: pd.DataFrame) -> None:
    """``answer``: compounds that are truly active (ground truth) but not significant."""
    if "truly active" not in maps:
        print("no ground truth here (real data): nothing to check")
        return
    active = maps["truly active"].astype(bool)
    truth = set(maps.Metadata_pert_iname[active & ~maps.below_corrected_p])
    if set(answer) != truth:
        raise NotYet(
            f"expected {sorted(truth)[:5]}: truly active (column 'truly active') and "
            "not below_corrected_p"
        )
    _ok(f"{len(truth)} of {int(active.sum())} truly active compounds are missed by mAP")
