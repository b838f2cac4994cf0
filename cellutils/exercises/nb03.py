"""Checks for notebook 03 (RxRx1, EfficientNet-B3). Each recomputes the expected value by
another route than the notebook's solution and ends in :func:`cellutils.exercises.check`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import torch

from cellutils import exercises
from cellutils.torchdata import ControlNormalised


def check_seen_images(
    answer, train: pd.DataFrame, evaluation: pd.DataFrame, column: str = "experiment"
) -> exercises.Outcome:
    """``answer``: for each ``column`` value of the evaluation rows, how many training rows
    share it (a Series or dict; 0 where none) -- the leak of a split, read from its metadata."""
    counts = Counter(train[column].tolist())
    expected = {str(v): int(counts.get(v, 0)) for v in evaluation[column].unique()}
    got = answer if answer is Ellipsis else _as_counts(answer)
    seen = sum(n > 0 for n in expected.values())
    return exercises.check(
        "seen images",
        got,
        expected,
        f"one entry per {column} of the evaluation rows: the number of training rows with that "
        f"{column} (value_counts of the training rows, reindexed, missing ones 0)",
        explain=f"{seen} of {len(expected)} evaluation {column}s have images in training "
        f"({sum(expected.values())} training images in all)",
    )


def _as_counts(answer) -> dict[str, int] | None:
    try:
        return {str(k): int(v) for k, v in pd.Series(answer).items()}
    except (TypeError, ValueError):
        return None


def check_cross_entropy(answer, logits: torch.Tensor, targets: torch.Tensor) -> exercises.Outcome:
    """``answer``: the mean cross-entropy of ``logits`` (N, K) for the true ``targets`` (N,),
    written by hand; compared with ``torch.nn.functional.cross_entropy``."""
    expected = float(torch.nn.functional.cross_entropy(logits.detach().float(), targets))
    got = answer if answer is Ellipsis else float(torch.as_tensor(answer).detach())
    return exercises.check(
        "cross-entropy",
        got,
        expected,
        "log-softmax of each row (logit minus logsumexp of the row), the entry of the true "
        "class, negated, averaged over the batch",
        tol=1e-4,
        explain=f"chance level would be log(K) = {np.log(logits.shape[1]):.3f}",
    )


def check_control_normalised(
    answer, images: np.ndarray, index: pd.DataFrame, controls, i: int
) -> exercises.Outcome:
    """``answer``: image ``i`` (C, H, W) minus its plate's control images' per-channel mean,
    divided by their per-channel std; compared with ``torchdata.ControlNormalised``."""
    expected = ControlNormalised(images, index, controls)[i]
    got = answer if answer is Ellipsis else np.asarray(answer, np.float32)
    return exercises.check(
        "control normalisation",
        got,
        expected,
        "the controls of image i's own experiment and plate only; mean and std per channel "
        "over all their pixels (axes 0, 2, 3)",
        tol=1e-3,
        explain=f"image {i} now has per-channel means "
        + ", ".join(f"{m:.2f}" for m in expected.mean(axis=(1, 2)))
        + " (its plate's controls: 0 on average)",
    )


def check_group_accuracy(
    answer, logits: np.ndarray, targets: np.ndarray, allowed
) -> exercises.Outcome:
    """``answer``: accuracy when each row's prediction is the highest logit among its
    ``allowed`` classes (a boolean (N, K) mask; a row with none allowed predicts class 0, as
    ``argmax`` of all ``-inf`` does); recomputed row by row."""
    allowed = np.asarray(allowed, bool)
    hits = []
    for row, ok, t in zip(logits, allowed, targets, strict=True):
        candidates = np.flatnonzero(ok)
        best = candidates[np.argmax(row[candidates])] if len(candidates) else 0  # as argmax
        hits.append(best == t)
    expected = float(np.mean(hits))
    plain = float(np.mean(logits.argmax(1) == targets))
    return exercises.check(
        "plate-group accuracy",
        answer,
        expected,
        "set the logits of the classes outside the plate's group to -inf, then argmax per row "
        "and compare with the targets",
        explain=f"accuracy {plain:.3f} over all classes, {expected:.3f} within the plate's group",
    )
