"""Checks for notebook 04 (nine cell lines, DenseNet-161). Each recomputes the expected value
by another route than the notebook's solution and ends in :func:`cellutils.exercises.check`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from sklearn.utils.class_weight import compute_class_weight

from cellutils import exercises


def check_majority(
    accuracy, balanced, train: pd.DataFrame, evaluation: pd.DataFrame, label: str
) -> exercises.Outcome:
    """``accuracy`` and ``balanced``: plain and balanced accuracy on ``evaluation`` of always
    predicting the most common class of ``train``; recomputed with sklearn's DummyClassifier."""
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train), 1)), train[label])
    pred = dummy.predict(np.zeros((len(evaluation), 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_balanced = float(balanced_accuracy_score(evaluation[label], pred))
    want_accuracy = float(accuracy_score(evaluation[label], pred))
    ok = exercises.check(
        "majority accuracy",
        accuracy,
        want_accuracy,
        "the most common line of the *training* rows, and the share of evaluation rows that "
        "are that line",
    )
    return ok and exercises.check(
        "majority balanced accuracy",
        balanced,
        want_balanced,
        "balanced accuracy is the mean recall over the lines present in the evaluation rows: "
        "what is the recall of the predicted line, and of every other line?",
        explain=f"always '{pred[0]}': accuracy {want_accuracy:.3f}, balanced accuracy "
        f"{want_balanced:.3f} (1 / the number of lines evaluated)",
    )


def check_class_weights(answer, targets: np.ndarray, n_classes: int) -> exercises.Outcome:
    """``answer``: the "balanced" weight of each class code 0..n_classes-1, n / (k * count)
    over the k classes present in ``targets`` (0 for absent ones); recomputed with sklearn."""
    targets = np.asarray(targets)
    present = np.unique(targets)
    expected = np.zeros(n_classes)
    expected[present] = compute_class_weight("balanced", classes=present, y=targets)
    got = answer if answer is Ellipsis else np.asarray(answer, float).ravel()
    return exercises.check(
        "class weights",
        got,
        expected,
        "count each class (np.bincount with minlength), then n / (k * count) where k is the "
        "number of classes present; 0 where a class has no training rows",
        tol=1e-4,
        explain=f"weights from {expected[present].min():.2f} (the most common line) to "
        f"{expected.max():.2f} (the rarest)",
    )


def check_balanced_accuracy(answer, targets: np.ndarray, pred: np.ndarray) -> exercises.Outcome:
    """``answer``: the mean over true classes of the share predicted right; recomputed from
    sklearn's confusion matrix (diagonal over row sums)."""
    classes = np.unique(targets)
    cm = confusion_matrix(targets, pred, labels=classes)
    expected = float(np.mean(np.diag(cm) / cm.sum(axis=1)))
    return exercises.check(
        "balanced accuracy",
        answer,
        expected,
        "for each true class, the share of its rows predicted as that class; then the mean "
        "of those shares (each class counts once, however many rows it has)",
        explain=f"balanced accuracy {expected:.3f}, plain accuracy "
        f"{float(np.mean(np.asarray(targets) == np.asarray(pred))):.3f}",
    )


def check_epoch_choice(
    answer, history: pd.DataFrame, metric: str = "val_balanced_accuracy"
) -> exercises.Outcome:
    """``answer``: how much the best epoch's ``metric`` exceeds the last epoch's (the gain of
    choosing the epoch on the scored set); recomputed from the history sorted by epoch."""
    values = history.sort_values("epoch")[metric].to_numpy(float)
    expected = float(sorted(values)[-1] - values[-1])
    return exercises.check(
        "epoch choice",
        answer,
        expected,
        f"the largest {metric} over the epochs minus the {metric} of the last epoch run",
        explain=f"choosing the epoch on validation adds {expected:.3f} to the validation "
        f"number over {len(values)} epoch(s); the test set gets no such pick",
    )
