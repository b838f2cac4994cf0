"""Checks of notebook 09's exercises (evaluation). Each recomputes the expected answer another
way than the solution does (scikit-learn's neighbours, pandas' group means) and ends in
:func:`cellutils.exercises.check`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellutils.exercises import check


def _neighbour_shares(emb: np.ndarray, *labels: pd.Series) -> tuple[float, ...]:
    """Share of rows whose nearest other row (cosine) has the same value, per label."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1, metric="cosine").fit(emb)
    j = nn.kneighbors(return_distance=False)[:, 0]  # X=None: a row is not its own neighbour
    return tuple(float(np.mean(np.asarray(y) == np.asarray(y)[j])) for y in labels)


def _chance(labels: pd.Series) -> float:
    """Share expected if the nearest neighbour were any other row at random."""
    n = np.asarray(pd.Series(labels).value_counts(), float)
    return float((n * (n - 1)).sum() / (n.sum() * (n.sum() - 1)))


def check_neighbours(
    same_experiment, same_sirna, embeddings: np.ndarray, experiment: pd.Series, sirna: pd.Series
) -> None:
    """``same_experiment`` / ``same_sirna``: the share of sites whose nearest other site by
    cosine similarity of ``embeddings`` is from the same experiment / has the same siRNA.
    Expected: scikit-learn's ``NearestNeighbors`` (cosine)."""
    expected = _neighbour_shares(embeddings, experiment, sirna)
    answer = ... if same_experiment is ... or same_sirna is ... else (same_experiment, same_sirna)
    check(
        "09.1 nearest neighbours",
        answer,
        expected,
        tol=1e-6,
        hint="normalise each row to length 1, similarity = e @ e.T, set the diagonal to "
        "-inf (a site is not its own neighbour), argmax per row, then compare labels",
        explain=f"same experiment {expected[0]:.2f} (chance {_chance(experiment):.2f}), same "
        f"siRNA {expected[1]:.2f} (chance {_chance(sirna):.2f})",
    )


def check_centred(answer, embeddings: np.ndarray, experiment: pd.Series, sirna: pd.Series) -> None:
    """``answer``: ``embeddings`` with each experiment's mean embedding subtracted from its
    sites. Expected: pandas' group means; the explanation recomputes the neighbour shares."""
    frame = pd.DataFrame(np.asarray(embeddings, float))
    groups = np.asarray(experiment)
    expected = (frame - frame.groupby(groups).transform("mean")).to_numpy()
    after = _neighbour_shares(expected, experiment, sirna)
    check(
        "09.2 centred per experiment",
        ... if answer is ... else np.asarray(answer, float),
        expected,
        tol=1e-4,
        hint="for each experiment: rows = experiment == e; centred[rows] = emb[rows] - "
        "emb[rows].mean(axis=0)",
        explain=f"after centring: same experiment {after[0]:.2f} (chance "
        f"{_chance(experiment):.2f}), same siRNA {after[1]:.2f} (chance {_chance(sirna):.2f})",
    )
