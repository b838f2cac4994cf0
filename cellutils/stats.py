"""Intervals and baselines for every number a lesson reports.

A test set of images is not a sample of independent images: sites of one well share the well's
cells, staining and position, cells of one image share the image. So every interval treats the
*unit that carries the nuisance* (wells, images, experiments) as the independent draw and keeps
each unit's rows together.

The interval (``INTERVAL = "jackknife-t"``, the default ``method``) is a cluster-jackknife
t interval: the metric is recomputed with each of the G units left out, the jackknife standard
error is ``sqrt((G - 1) / G * sum((theta_-g - mean)^2))`` (the CV3 cluster-robust variance;
for accuracy it is the ratio estimator's cluster variance with its G/(G-1)-type small-sample
factor built in), and the interval is ``estimate +- t_{df} * SE`` with ``df = G - 1``. With few
clusters (a lesson has 8-60) the cluster percentile bootstrap is too narrow: its replicates
spread like a normal with the plug-in (1/G) variance, and 1.96 stands where t_{G-1} belongs
(MacKinnon, Nielsen & Webb 2023, "Cluster-robust inference: a guide to empirical practice",
recommend CV3 with t(G-1) for few clusters). ``make calibrate`` measures both on the simulator;
``method="percentile"`` keeps the cluster percentile bootstrap for that comparison.

With several training seeds' predictions on the same rows the interval holds training variance
too (``two_stage``): the seeds' spread of the metric, ``var(theta_s) / S``, is added to the
units' jackknife variance of the seed-averaged metric, and the degrees of freedom follow
Welch-Satterthwaite (the percentile method draws the seeds with replacement, then the units).
With one seed the interval holds the trained model fixed, and a table says so ("one training
run"). The seeds' own metrics are reported beside it (``seed_values``).

``paired_difference`` compares two protocols scored on the *same* rows: each replicate draws
one set of units and computes both metrics on it, so what the two have in common (hard wells,
easy wells) cancels and only the protocol's effect is left: the jackknife leaves one unit out
of both sides at once, and the seeds' spread is that of the per-seed differences (seed ``s`` of
both protocols starts from the same weights). Its two-sided p-value, from the same t (or, for
the percentile method, the bootstrap's ``2 min(P(d <= 0), P(d >= 0))``), is what ``holm``
adjusts for the comparisons of one notebook: an interval excludes 0 exactly when p < 0.05.
``cell_count_baseline`` is what the number of cells alone predicts, scored and resampled like
the model it sits beside.
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


INTERVAL = "jackknife-t"  # the method every lesson's interval uses (see the module docstring)
METHODS = ("jackknife-t", "percentile")


def _leave_one_out(
    targets: np.ndarray, preds: list[np.ndarray], units: Sequence, metric: Metric
) -> np.ndarray:
    """(G, len(preds)) seed-averaged metric of each prediction set with one unit left out."""
    clusters = _cluster_rows(units)
    out = np.empty((len(clusters), len(preds)))
    keep = np.ones(len(targets), bool)
    for g, rows in enumerate(clusters):
        keep[rows] = False
        for j, p in enumerate(preds):
            out[g, j] = np.mean([metric(targets[keep], s[keep]) for s in p])
        keep[rows] = True
    return out


def _t_interval(
    value: float,
    loo: np.ndarray,
    seed_values: np.ndarray | None,
    level: float,
    bounds: tuple[float, float],
) -> tuple[float, float, float]:
    """``value +- t_df * SE`` and the two-sided p of "the true value is 0". SE: the cluster
    jackknife's (``loo``: the estimate with each of G units left out), plus ``var(seed_values)
    / S`` when the seeds are resampled; df: G - 1, or Welch-Satterthwaite with the seeds' S - 1.
    Fewer than two units: nothing can be said, the interval is ``bounds``."""
    from scipy import stats as st

    g = len(loo)
    if g < 2 or np.isnan(loo).any():
        return bounds[0], bounds[1], 1.0
    v_units = (g - 1) / g * float(np.sum((loo - loo.mean()) ** 2))
    v_seeds, df = 0.0, g - 1.0
    if seed_values is not None and len(seed_values) > 1:
        k = len(seed_values)
        v_seeds = float(np.var(seed_values, ddof=1)) / k
        if v_units + v_seeds > 0:
            df = (v_units + v_seeds) ** 2 / (v_units**2 / (g - 1) + v_seeds**2 / (k - 1))
    se = float(np.sqrt(v_units + v_seeds))
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    lo, hi = max(bounds[0], value - half), min(bounds[1], value + half)
    if se == 0:
        return lo, hi, 1.0 if value == 0 else 0.0
    return lo, hi, float(2 * st.t.sf(abs(value) / se, df))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; known: {METHODS}")


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
    method: str = INTERVAL  # how the interval was made ("jackknife-t" or "percentile")

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_eval": self.n_eval,
            "n_units": self.n_units,
            "seed_values": [round(v, 4) for v in self.seed_values],
            "two_stage": self.two_stage,
            "interval": self.method,
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
    method: str = INTERVAL,
) -> Estimate:
    """``metric`` of ``pred`` (labels; (seeds, n) for several training seeds) with a 95%
    interval over ``units``: the cluster-jackknife t interval (``method="jackknife-t"``) or a
    cluster bootstrap's percentiles (``"percentile"``, ``n_boot`` replicates); training
    variance included (``two_stage``) when there are several seeds, unless
    ``two_stage=False``."""
    _check_method(method)
    fn, targets, pred = metric_fn(metric), np.asarray(targets), _as_seeds(pred)
    _check(targets, pred, units)
    per_seed = tuple(fn(targets, p) for p in pred)
    both = _two_stage(two_stage, pred)
    value = float(np.mean(per_seed))
    if method == "percentile":
        reps = _replicates(targets, [pred], units, fn, n_boot, seed, both)[:, 0]
        lo, hi = np.nanpercentile(reps, [50 * (1 - level), 50 * (1 + level)])
    else:
        loo = _leave_one_out(targets, [pred], units, fn)[:, 0]
        bounds = (0.0, 1.0) if not callable(metric) else (-np.inf, np.inf)
        lo, hi, _ = _t_interval(value, loo, np.array(per_seed) if both else None, level, bounds)
    return Estimate(
        value,
        float(lo),
        float(hi),
        len(targets),
        len(_cluster_rows(units)),
        per_seed,
        both,
        method,
    )


@dataclass(frozen=True)
class Difference:
    """``a - b`` on the same rows, with its 95% interval over resampled units."""

    diff: float
    ci_low: float
    ci_high: float
    n_eval: int
    n_units: int
    p_value: float = 1.0  # two-sided p of "no difference", from the interval's method
    seeds: int = 1  # training runs behind each side (the fewer of the two)
    two_stage: bool = False
    identical: bool = False  # the same predictions on every row: no difference to estimate
    method: str = INTERVAL  # how the interval and p were made ("jackknife-t" or "percentile")

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
    method: str = INTERVAL,
) -> Difference:
    """Metric of ``pred_a`` minus that of ``pred_b``, both scored on the same rows, with a 95%
    interval and p-value (``method``: the cluster-jackknife t, or the percentile bootstrap).
    Each unit is left out (or drawn) for both sides at once, so shared difficulty cancels;
    with several seeds the seeds' spread of the difference is added (paired by seed when both
    have as many). Identical predictions are flagged (``identical``) rather than reported as a
    finding."""
    _check_method(method)
    fn, targets = metric_fn(metric), np.asarray(targets)
    a, b = _as_seeds(pred_a), _as_seeds(pred_b)
    _check(targets, a, units)
    _check(targets, b, units)
    n_units = len(_cluster_rows(units))
    seeds = min(len(a), len(b))
    if a.shape == b.shape and np.array_equal(a, b):
        return Difference(0.0, 0.0, 0.0, len(targets), n_units, 1.0, seeds, False, True, method)
    va, vb = np.array([fn(targets, p) for p in a]), np.array([fn(targets, p) for p in b])
    diff = float(va.mean() - vb.mean())
    both = _two_stage(two_stage, a, b)
    if method == "percentile":
        reps = _replicates(targets, [a, b], units, fn, n_boot, seed, both)
        d = reps[:, 0] - reps[:, 1]
        lo, hi = np.nanpercentile(d, [50 * (1 - level), 50 * (1 + level)])
        p = bootstrap_p(d)
    else:
        loo = _leave_one_out(targets, [a, b], units, fn)
        spread = None
        if both:  # per-seed differences when paired; else each side's own seed spread
            spread = va - vb if len(va) == len(vb) else _unpaired_spread(va, vb)
        bounds = (-1.0, 1.0) if not callable(metric) else (-np.inf, np.inf)
        lo, hi, p = _t_interval(diff, loo[:, 0] - loo[:, 1], spread, level, bounds)
    return Difference(diff, float(lo), float(hi), len(targets), n_units, p, seeds, both, False,
                      method)  # fmt: skip


def _unpaired_spread(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Pseudo per-seed differences whose ``var / S`` is ``var(va)/Sa + var(vb)/Sb`` (sides
    with different seed counts cannot be paired by seed)."""
    v = sum(float(np.var(x, ddof=1)) / len(x) if len(x) > 1 else 0.0 for x in (va, vb))
    k = max(2, min(len(va), len(vb)))
    return np.sqrt(v * k) * np.r_[1.0, -1.0, np.zeros(k - 2)] * np.sqrt((k - 1) / 2)


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
