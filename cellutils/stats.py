"""Intervals and baselines for every number a lesson reports.

A test set of images is not a sample of independent images: sites of one well share the well's
cells, staining and position, cells of one image share the image. So the bootstrap resamples
the *unit that carries the nuisance* (wells, images, experiments) and keeps each unit's rows
together (a cluster bootstrap). With several training seeds' predictions on the same rows the
bootstrap has two stages: each replicate draws the seeds with replacement (training variance:
another run would have given another model), then the units, and averages the drawn seeds'
metrics; with one seed the interval holds the trained model fixed, and a table says so ("one
training run"). The seeds' own metrics are reported beside it (``seed_values``).

``paired_difference`` compares two protocols scored on the *same* rows: each replicate draws
one set of units and computes both metrics on it, so what the two have in common (hard wells,
easy wells) cancels and only the protocol's effect is left. Seeds are drawn paired too (seed
``s`` of both protocols starts from the same weights). Its two-sided bootstrap p-value,
``2 min(P(d <= 0), P(d >= 0))`` bounded below by ``1 / (B + 1)``, is what ``holm`` adjusts for
the comparisons of one notebook. ``cell_count_baseline`` is what the number of cells alone
predicts, scored and resampled like the model it sits beside.
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
    resample_seeds: bool = False,
) -> np.ndarray:
    """(n_boot, len(preds)) seed-averaged metric of each prediction set on resampled units.
    With ``resample_seeds`` each replicate first draws the seeds with replacement (one draw
    shared by prediction sets with as many seeds: seed ``s`` of each is paired), then units."""
    clusters = _cluster_rows(units)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(preds)))
    for b in range(n_boot):
        draws = {}
        if resample_seeds:
            for k in sorted({len(p) for p in preds}):
                draws[k] = rng.integers(0, k, k)
        rows = np.concatenate([clusters[i] for i in rng.integers(0, len(clusters), len(clusters))])
        t = targets[rows]
        for j, p in enumerate(preds):
            chosen = p[draws[len(p)]] if resample_seeds else p
            out[b, j] = np.mean([metric(t, s[rows]) for s in chosen])
    return out


def _two_stage(two_stage: bool | None, *preds: np.ndarray) -> bool:
    """Resample seeds when asked, or (``None``) whenever there is more than one."""
    return max(len(p) for p in preds) > 1 if two_stage is None else bool(two_stage)


@dataclass(frozen=True)
class Estimate:
    """A metric with its 95% interval over resampled units."""

    value: float
    ci_low: float
    ci_high: float
    n_eval: int  # rows scored (images, cells)
    n_units: int  # independent units resampled (wells, images, experiments)
    seed_values: tuple[float, ...]  # the metric of each training seed
    two_stage: bool = False  # seeds resampled before units (training variance included)

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_eval": self.n_eval,
            "n_units": self.n_units,
            "seed_values": [round(v, 4) for v in self.seed_values],
            "two_stage": self.two_stage,
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
    two_stage: bool | None = None,
) -> Estimate:
    """``metric`` of ``pred`` (labels; (seeds, n) for several training seeds) with a percentile
    interval from a cluster bootstrap over ``units``; two-stage (seeds, then units) when there
    are several seeds, unless ``two_stage=False``."""
    fn, targets, pred = metric_fn(metric), np.asarray(targets), _as_seeds(pred)
    _check(targets, pred, units)
    per_seed = tuple(fn(targets, p) for p in pred)
    both = _two_stage(two_stage, pred)
    reps = _replicates(targets, [pred], units, fn, n_boot, seed, both)[:, 0]
    lo, hi = np.nanpercentile(reps, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(
        float(np.mean(per_seed)),
        float(lo),
        float(hi),
        len(targets),
        len(_cluster_rows(units)),
        per_seed,
        both,
    )


@dataclass(frozen=True)
class Difference:
    """``a - b`` on the same rows, with its 95% interval over resampled units."""

    diff: float
    ci_low: float
    ci_high: float
    n_eval: int
    n_units: int
    p_value: float = 1.0  # two-sided bootstrap p, at least 1 / (n_boot + 1)
    seeds: int = 1  # training runs behind each side (the fewer of the two)
    two_stage: bool = False
    identical: bool = False  # the same predictions on every row: no difference to estimate

    @property
    def excludes_zero(self) -> bool:
        return not self.identical and (self.ci_low > 0 or self.ci_high < 0)


def bootstrap_p(reps: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from bootstrap replicates of a difference:
    ``2 min(share <= 0, share >= 0)``, at most 1 and at least ``1 / (B + 1)`` (B replicates
    cannot show a smaller one)."""
    reps = np.asarray(reps, float)
    reps = reps[~np.isnan(reps)]
    if not len(reps):
        return float("nan")
    p = 2 * min(np.mean(reps <= 0), np.mean(reps >= 0))
    return float(min(1.0, max(p, 1 / (len(reps) + 1))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``
    with ``method="holm"`` gives the same): the i-th smallest of m is multiplied by m - i,
    made monotone and capped at 1. Controls the chance of any false "excludes 0" in the family
    at the nominal level; NaNs stay NaN and do not count."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def paired_difference(
    targets: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    units: Sequence,
    metric: str | Metric = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    two_stage: bool | None = None,
) -> Difference:
    """Metric of ``pred_a`` minus that of ``pred_b``, both scored on the same rows; the interval
    resamples units once per replicate for both, so shared difficulty cancels, and with several
    seeds first resamples the seeds (paired by seed when both have as many). Identical
    predictions are flagged (``identical``) rather than reported as a finding."""
    fn, targets = metric_fn(metric), np.asarray(targets)
    a, b = _as_seeds(pred_a), _as_seeds(pred_b)
    _check(targets, a, units)
    _check(targets, b, units)
    n_units = len(_cluster_rows(units))
    seeds = min(len(a), len(b))
    if a.shape == b.shape and np.array_equal(a, b):
        return Difference(0.0, 0.0, 0.0, len(targets), n_units, 1.0, seeds, False, True)
    diff = np.mean([fn(targets, p) for p in a]) - np.mean([fn(targets, p) for p in b])
    both = _two_stage(two_stage, a, b)
    reps = _replicates(targets, [a, b], units, fn, n_boot, seed, both)
    d = reps[:, 0] - reps[:, 1]
    lo, hi = np.nanpercentile(d, [50 * (1 - level), 50 * (1 + level)])
    return Difference(
        float(diff), float(lo), float(hi), len(targets), n_units, bootstrap_p(d), seeds, both
    )


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


def cell_count_baseline(
    train_counts: Sequence[float],
    train_targets: Sequence,
    eval_counts: Sequence[float],
    eval_targets: Sequence,
    units: Sequence,
    metric: str | Metric = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """What the number of cells alone predicts: a logistic regression on log(1 + count) fitted
    on the training rows (per image or per well), scored on the evaluation rows with the
    lesson's ``metric`` and a cluster-bootstrap interval over the same ``units``. Toxic
    perturbations kill cells, so a count can beat chance without any morphology; a model
    that does not beat this baseline has not shown it sees more than density."""
    from sklearn.linear_model import LogisticRegression

    x_train = np.log1p(np.asarray(train_counts, float)).reshape(-1, 1)
    x_eval = np.log1p(np.asarray(eval_counts, float)).reshape(-1, 1)
    y_train, y_eval = np.asarray(train_targets), np.asarray(eval_targets)
    if len(x_train) != len(y_train) or len(x_eval) != len(y_eval):
        raise ValueError(
            f"cell counts ({len(x_train)} training, {len(x_eval)} evaluated) and targets "
            f"({len(y_train)}, {len(y_eval)}) must have one entry per row"
        )
    if np.isnan(x_train).any() or np.isnan(x_eval).any():
        raise ValueError("cell counts have missing values; count every row (0 is a count)")
    if len(np.unique(y_train)) < 2:
        pred = np.full(len(y_eval), y_train[0])
    else:
        mu, sd = x_train.mean(), x_train.std() or 1.0
        model = LogisticRegression(max_iter=1000).fit((x_train - mu) / sd, y_train)
        pred = model.predict((x_eval - mu) / sd)
    return estimate(y_eval, pred, units, metric, n_boot, seed)


def count_cells(masks: np.ndarray) -> int:
    """Cells in one label image (instance masks: 0 background, one label per cell)."""
    labels = np.unique(np.asarray(masks))
    return int((labels > 0).sum())


def cell_counts(
    index: pd.DataFrame,
    truth_sites: pd.DataFrame | None = None,
    key: str = "key",
    masks_column: str = "path_masks",
) -> np.ndarray:
    """Cells per row of ``index``: from the simulator's ground truth (``truth_sites``: the
    ``sites`` table of ``synthetic.read_truth``, its ``n_cells`` column matched on ``key``)
    when given, else counted in each row's label image (``masks_column``, a TIFF path)."""
    if truth_sites is not None:
        counts = truth_sites.set_index(key)["n_cells"]
        missing = ~index[key].isin(counts.index)
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} rows (first: {index[key][missing].iloc[0]!r}) have no "
                "n_cells in the ground truth's sites table; the truth belongs to another "
                "dataset, or count from masks instead"
            )
        return counts.loc[index[key]].to_numpy(float)
    if masks_column not in index:
        raise ValueError(
            f"no {masks_column!r} column to count cells from; segment first "
            "(segment.run_dataset) or pass the ground truth's sites table"
        )
    import tifffile

    return np.array([count_cells(tifffile.imread(p)) for p in index[masks_column]], float)


def cells_per_row(
    index: pd.DataFrame, keys: pd.Series, root, masks: pd.DataFrame | None = None
) -> pd.Series:
    """Cells per row of ``index`` (a Series on its index), for the cell-count baseline: the
    simulator's true count when ``root`` is synthetic data (``keys``: each row's site key in
    the ground truth), else the masks' count (``masks``: a ``segment_index`` table with one row
    per row of ``index``, in its order)."""
    from pathlib import Path

    truth = Path(root) / "ground_truth" / "sites.csv"
    if truth.exists():
        sites = pd.read_csv(truth, keep_default_na=False).assign(key=lambda d: d.key.astype(str))
        counts = cell_counts(pd.DataFrame({"key": keys.astype(str).to_numpy()}), sites)
    elif masks is not None:
        counts = masks.n_cells.to_numpy(float)
    else:
        raise ValueError(
            f"{root} is not synthetic and no masks were given: segment the images first "
            "(segment.segment_index) to count cells"
        )
    return pd.Series(counts, index=index.index, name="n_cells")
