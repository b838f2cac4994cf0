"""Checks of notebook 07 (frozen embeddings + classical classifiers): each recomputes the answer
with scikit-learn where the student writes numpy, or the other way round."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellutils.exercises import Outcome, check


def check_nearest_centroid(
    answer: float, x_train: np.ndarray, y_train, x_eval: np.ndarray, y_eval
) -> Outcome:
    """``answer``: the accuracy on the evaluation rows of a nearest-centroid classifier (each
    class's mean training embedding; Euclidean distance) fitted on the training rows."""
    import warnings

    from sklearn.neighbors import NearestCentroid

    with warnings.catch_warnings():  # tiny classes: sklearn warns about its own statistics
        warnings.simplefilter("ignore")
        clf = NearestCentroid().fit(x_train, np.asarray(y_train))
    expected = float(np.mean(clf.predict(x_eval) == np.asarray(y_eval)))
    return check(
        "07.2",
        answer,
        expected,
        "one centroid per class: the mean of that class's training rows; predict for each "
        "evaluation row the class of the nearest centroid (Euclidean), then the share right",
        explain=f"nearest-centroid accuracy {expected:.3f}",
    )


def check_neighbour_in_same_well(
    answer: float,
    x_train: np.ndarray,
    train: pd.DataFrame,
    x_eval: np.ndarray,
    evaluation: pd.DataFrame,
    group: str = "Metadata_Well",
) -> Outcome:
    """``answer``: the share of evaluation images whose nearest training image (Euclidean, in
    the embedding) comes from the same well."""
    from sklearn.neighbors import NearestNeighbors

    nn_ = NearestNeighbors(n_neighbors=1).fit(x_train)
    idx = nn_.kneighbors(x_eval, return_distance=False)[:, 0]
    same = train[group].to_numpy()[idx] == evaluation[group].to_numpy()
    expected = float(same.mean())
    return check(
        "07.3",
        answer,
        expected,
        "for each evaluation row, the training row at the smallest Euclidean distance; compare "
        "its well with the evaluation row's well; take the share of matches",
        explain=f"{expected:.0%} of the evaluation images find a sibling site as nearest neighbour",
    )
