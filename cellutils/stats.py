"""Intervals and baselines for every number a lesson reports.

A test set of images is not a sample of independent images: sites of one well share the well's
cells, staining and position, cells of one image share the image. So the bootstrap resamples
the *unit that carries the nuisance* (wells, images, experiments) and keeps each unit's rows
together (a cluster bootstrap). Predictions of several training seeds on the same rows are
averaged per replicate, so the interval is that of the seed-averaged metric; the seeds' own
spread is reported beside it (``seed_values``).

``paired_difference`` compares two protocols scored on the *same* rows: each replicate draws
one set of units and computes both metrics on it, so what the two have in common (hard wells,
easy wells) cancels and only the protocol's effect is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy(targets: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of rows predicted right."""
    return float((targets == pred).mean()) if len(targets) else float("nan")


def balanced_accuracy(targets: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``targets`` (sklearn's definition)."""
    if not len(targets):
        return float("nan")
    classes, inv = np.unique(targets, return_inverse=True)
    hits = np.bincount(inv, weights=(targets == pred).astype(float), minlength=len(classes))
    return float((hits / np.bincount(inv, minlength=len(classes))).mean())


METRICS: dict[str, Metric] = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy}


def metric_fn(metric: str | Metric) -> Metric:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    return METRICS[metric]


def _as_seeds(pred: np.ndarray) -> np.ndarray:
    """(n,) or (seeds, n) predicted labels -> (seeds, n)."""
    pred = np.asarray(pred)
    return pred[None] if pred.ndim == 1 else pred


def _cluster_rows(units: Sequence) -> list[np.ndarray]:
    """Row positions of each unit, in order of first appearance."""
    _, inv = np.unique(np.asarray(units).astype(str), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inv[order])) + 1)


def _replicates(
    targets: np.ndarray,
    preds: list[np.ndarray],
    units: Sequence,
    metric: Metric,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """(n_boot, len(preds)) seed-averaged metric of each prediction set on resampled units."""
    clusters = _cluster_rows(units)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(preds)))
    for b in range(n_boot):
        rows = np.concatenate([clusters[i] for i in rng.integers(0, len(clusters), len(clusters))])
        t = targets[rows]
        for j, p in enumerate(preds):
            out[b, j] = np.mean([metric(t, s[rows]) for s in p])
    return out


@dataclass(frozen=True)
class Estimate:
    """A metric with its 95% interval over resampled units."""

    value: float
    ci_low: float
    ci_high: float
    n_eval: int  # rows scored (images, cells)
    n_units: int  # independent units resampled (wells, images, experiments)
    seed_values: tuple[float, ...]  # the metric of each training seed

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_eval": self.n_eval,
            "n_units": self.n_units,
            "seed_values": [round(v, 4) for v in self.seed_values],
        }


def _check(targets: np.ndarray, preds: np.ndarray, units: Sequence) -> None:
    if preds.shape[-1] != len(targets) or len(units) != len(targets):
        raise ValueError(
            f"targets ({len(targets)}), predictions ({preds.shape[-1]}) and units "
            f"({len(units)}) must have one entry per evaluated row"
        )


def estimate(
    targets: np.ndarray,
    pred: np.ndarray,
    units: Sequence,
    metric: str | Metric = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """``metric`` of ``pred`` (labels; (seeds, n) for several training seeds) with a percentile
    interval from a cluster bootstrap over ``units``."""
    fn, targets, pred = metric_fn(metric), np.asarray(targets), _as_seeds(pred)
    _check(targets, pred, units)
    per_seed = tuple(fn(targets, p) for p in pred)
    reps = _replicates(targets, [pred], units, fn, n_boot, seed)[:, 0]
    lo, hi = np.nanpercentile(reps, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(
        float(np.mean(per_seed)),
        float(lo),
        float(hi),
        len(targets),
        len(_cluster_rows(units)),
        per_seed,
    )


@dataclass(frozen=True)
class Difference:
    """``a - b`` on the same rows, with its 95% interval over resampled units."""

    diff: float
    ci_low: float
    ci_high: float
    n_eval: int
    n_units: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_difference(
    targets: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    units: Sequence,
    metric: str | Metric = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Difference:
    """Metric of ``pred_a`` minus that of ``pred_b``, both scored on the same rows; the interval
    resamples units once per replicate for both, so shared difficulty cancels."""
    fn, targets = metric_fn(metric), np.asarray(targets)
    a, b = _as_seeds(pred_a), _as_seeds(pred_b)
    _check(targets, a, units)
    _check(targets, b, units)
    diff = np.mean([fn(targets, p) for p in a]) - np.mean([fn(targets, p) for p in b])
    reps = _replicates(targets, [a, b], units, fn, n_boot, seed)
    lo, hi = np.nanpercentile(reps[:, 0] - reps[:, 1], [50 * (1 - level), 50 * (1 + level)])
    return Difference(float(diff), float(lo), float(hi), len(targets), len(_cluster_rows(units)))


def baselines(
    train_targets: np.ndarray,
    eval_targets: np.ndarray,
    n_classes: int,
    metric: str | Metric = "accuracy",
) -> dict[str, float]:
    """What guessing scores on the evaluation rows: ``chance`` (uniform over the ``n_classes``
    the model chooses among; its expected value) and ``majority`` (always the most frequent
    training class)."""
    fn = metric_fn(metric)
    classes, counts = np.unique(np.asarray(train_targets), return_counts=True)
    majority = np.full(len(eval_targets), classes[counts.argmax()])
    return {"chance": 1.0 / n_classes, "majority": float(fn(np.asarray(eval_targets), majority))}


def bootstrap_mean(
    values: dict[str, np.ndarray] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean of each column of paired per-unit ``values`` (e.g. mAP per compound for several
    kinds of profile, the same compounds in every column) with its bootstrap interval, plus
    each column's paired difference to the first column: every replicate draws one set of
    units for all columns. One row per column: mean, ci_low, ci_high, diff_vs_first,
    diff_low, diff_high, n_units."""
    table = pd.DataFrame(values)
    data = table.to_numpy(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(data), (n_boot, len(data)))
    reps = np.nanmean(data[draws], axis=1)  # (n_boot, columns)
    q = [50 * (1 - level), 50 * (1 + level)]
    lo, hi = np.nanpercentile(reps, q, axis=0)
    dlo, dhi = np.nanpercentile(reps - reps[:, :1], q, axis=0)
    means = np.nanmean(data, axis=0)
    return pd.DataFrame(
        {
            "mean": means,
            "ci_low": lo,
            "ci_high": hi,
            "diff_vs_first": means - means[0],
            "diff_low": dlo,
            "diff_high": dhi,
            "n_units": len(data),
        },
        index=table.columns,
    )
