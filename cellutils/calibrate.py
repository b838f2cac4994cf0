"""Calibration of the course's own statistics on the simulator, where the truth is known.

Each lesson 02-08 reads one *primary* statistic, the comparison its notebook declares with
``Lesson.declare_primary`` before any result: the difference between the protocol a report
used and the leak-free one (05: unmatched, as the report trained; 06-08: at equal training
size), scored on the same evaluation rows, with a 95% interval over the lesson's unit
(``cellutils.stats``). Is that interval right? This module repeats the statistic on fresh draws
of the simulator's nuisance model (``simulate``: class effects from ``make_perturbations``,
experiment/well shifts from ``context_shift``) with cheap stand-in models instead of the
lessons' CNNs, and reports per lesson:

- ``coverage``: the share of draws whose 95% interval holds the true value, with the effect
  on. The true value is the statistic's population value, estimated as the mean of its point
  estimate over ``n_truth`` further independent draws of the same design (``truth`` and its
  Monte Carlo standard error ``truth_se`` are in the row); for 04 it is the difference on a
  large fresh validation set.
- ``null_rate``: the share of draws whose interval excludes 0 when the effect is switched off
  (the row's ``null`` says how: nuisance off and arms exchangeable, so the true difference is
  0 by construction).

Both for the engine's interval (``stats.INTERVAL``, the cluster-jackknife t) and, on the same
draws, for the cluster percentile bootstrap it replaced (``coverage_percentile``,
``null_rate_percentile``). Goal: coverage 0.93-0.97 and null rate <= 0.06; rows say whether
they meet it. The stand-ins are deterministic (one training run per arm), so the intervals
hold the trained model fixed, like a one-seed lesson; the truth averages over draws of the
training rows too.

For the leak lessons (03, 05-08) ``decompose`` splits the leaky - leak-free difference into
"more rows" (unmatched - size-matched) and "sharing the nuisance" (size-matched with the
simulator's nuisance on - off), with intervals over the draws. Run ``make calibrate`` or
``python -m cellutils.calibrate``; it writes ``results/calibration/<run>/calibration.json``
(``rows`` and ``decomposition``) and ``calibration.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils import simulate as sim
from cellutils import stats

TARGET_COVERAGE = (0.93, 0.97)
TARGET_NULL_RATE = 0.06


# --------------------------------------------------------------------------------------------
# Draws: per-image (or per-cell) features from the simulator's latent model
# --------------------------------------------------------------------------------------------


def _rows(
    seed: int,
    n_classes: int,
    groups_per_class: list[int],
    rows_per_group: int,
    group_sd: float,
    noise: float,
    signal: float = 1.0,
    group_level: str = "well",
    library: int | None = None,
) -> pd.DataFrame:
    """Rows (images, or cells) of ``n_classes`` perturbations, ``groups_per_class[c]`` groups
    (wells, experiments, images) each with ``rows_per_group`` rows. Features: the class's latent
    effect (``simulate.make_perturbations``, all active, scaled by ``signal``) plus the group's
    context shift (``simulate.context_shift`` with ``group_sd``), in units of ``EFFECT_SD``,
    plus row noise ``noise`` (cell-to-cell and imaging spread of a row's mean). ``library``:
    the seed of the perturbation library (default ``seed``), shared by draws that must see the
    same perturbations (the experiments of one screen)."""
    rng = np.random.default_rng(seed)
    perts = sim.make_perturbations(
        n_classes, seed=seed if library is None else library, frac_inactive=0.0,
        negative_control=None,
    )  # fmt: skip
    scale = sim.EFFECT_SD
    rows, feats = [], []
    for c in range(n_classes):
        for g in range(groups_per_class[c]):
            group = f"c{c}-{group_level}{g}"
            sd = (
                {"experiment_sd": group_sd}
                if group_level == "experiment"
                else {"well_sd": group_sd}
            )
            shift = sim.context_shift(seed, group, "plate", group, **sd) / scale
            x = signal * perts.effects[c] / scale + shift
            for r in range(rows_per_group):
                rows.append((c, group, f"{group}-{r}"))
                feats.append(x + rng.normal(0, noise, len(x)))
    df = pd.DataFrame(rows, columns=["label", "group", "row"])
    return df.join(pd.DataFrame(np.array(feats), columns=[f"f{i}" for i in range(len(scale))]))


def _x(df: pd.DataFrame) -> np.ndarray:
    return df[[c for c in df.columns if c.startswith("f")]].to_numpy()


class _KNN:
    """k-nearest neighbours on standardised features (Euclidean, majority vote), in numpy:
    sklearn's ``KNeighborsClassifier`` rule except that ties go to the nearer neighbours (not
    the lowest label), without its per-call thread pool, which dominates on a few hundred
    rows on a busy machine."""

    def __init__(self, k: int = 3):
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray) -> _KNN:
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-9
        self.x, self.y = (x - self.mu) / self.sd, np.asarray(y)
        self.classes, self.codes = np.unique(self.y, return_inverse=True)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mu) / self.sd
        d = (z**2).sum(1)[:, None] + (self.x**2).sum(1)[None] - 2 * z @ self.x.T
        k = min(self.k, len(self.x))
        near = np.argsort(d, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(x), len(self.classes)))
        for j in range(k):  # nearer neighbours weigh a little more: ties go to the nearest
            np.add.at(votes, (np.arange(len(x)), self.codes[near[:, j]]), 1 + 1e-6 * (k - j))
        return self.classes[votes.argmax(1)]


def _knn(k: int = 3) -> _KNN:
    return _KNN(k)


def _ridge():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeClassifier(1.0))


def _fit_predict(model, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return model.fit(_x(train), train.label.to_numpy()).predict(_x(test))


def _matched(pool: pd.DataFrame, like: pd.DataFrame, rng) -> pd.DataFrame:
    """``pool`` subsampled to the class counts of ``like``: the leaky arm trains on as many
    rows of each class as the leak-free one (no size difference left in the comparison)."""
    parts = []
    for c, n in like.label.value_counts().items():
        rows = pool[pool.label == c]
        parts.append(rows.iloc[rng.choice(len(rows), min(n, len(rows)), replace=False)])
    return pd.concat(parts)


# --------------------------------------------------------------------------------------------
# One draw per lesson: (targets, prediction of the reported arm, of the leak-free arm, units)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """A lesson's primary statistic on the simulator (``draw(seed, on)``), and for the leak
    lessons its decomposition (``parts(seed, nuisance, matched)``: the point difference with
    the nuisance on or off, the leaky arm size-matched or not)."""

    lesson: str
    statistic: str
    unit: str
    metric: str
    stand_in: str
    draw: Callable[..., dict]  # (seed, effect on[, intervals]) -> its statistic and intervals
    null: str = "nuisance off, arms size-matched: the true difference is 0"
    parts: Callable[[int, bool, bool], float] | None = None


def _paired(targets, a, b, units, metric: str, n_boot: int, seed: int, intervals=True) -> dict:
    """The paired difference with the engine's interval (``stats.INTERVAL``) and, to compare,
    the cluster percentile bootstrap's, on the same draw; only the point with ``intervals``
    off (the decomposition needs no interval per draw)."""
    if not intervals:
        return {"diff": stats.metric_fn(metric)(targets, a) - stats.metric_fn(metric)(targets, b)}
    out = {}
    for method in stats.METHODS:
        d = stats.paired_difference(targets, a, b, units, metric, n_boot, seed, method=method)
        key = "" if method == stats.INTERVAL else f"_{method}"
        out |= {f"ci{key}": (d.ci_low, d.ci_high), f"excludes_zero{key}": d.excludes_zero}
        out["diff"] = d.diff
    return out


def _siblings(
    seed: int,
    nuisance: bool,
    matched: bool,
    *,
    model,
    metric: str,
    n_boot: int,
    group_sd: float,
    copies: bool = False,
    rows_per_group: int = 4,
    n_classes: int = 8,
    groups: int = 5,
    intervals: bool = True,
) -> dict:
    """05-08: rows of one well on both sides of the split vs a split by well. One well per
    class is the evaluation set (half of its rows scored); the leaky arm trains on every other
    row (the scored rows' siblings included; with ``copies`` also two copies of each scored
    row, as oversampling before the split puts there), subsampled to the leak-free arm's class
    counts when ``matched``; the leak-free arm trains on the other wells only. ``nuisance``:
    the wells' context shift on (``group_sd``) or off. The same ``seed`` draws the same
    classes, rows and noise either way (the shift is keyed by name), so on/off are paired."""
    rng = np.random.default_rng(seed + 7)
    counts = [groups * 2] + [groups] * (n_classes - 1)  # one majority class, as in 05
    df = _rows(seed, n_classes, counts, rows_per_group, group_sd if nuisance else 0.0, 1.0)
    eval_groups = df.groupby("label").group.first()
    in_eval = df.group.isin(eval_groups)
    scored = df[in_eval].groupby("group").head(rows_per_group // 2)
    free = df[~in_eval]
    pool = df.drop(scored.index)
    if copies:
        pool = pd.concat([pool, scored, scored])  # oversampled copies of scored rows
    leaky = _matched(pool, free, rng) if matched else pool
    a = _fit_predict(model(), leaky, scored)
    b = _fit_predict(model(), free, scored)
    return _paired(scored.label.to_numpy(), a, b, scored.group.to_numpy(), metric, n_boot, seed,
                   intervals)  # fmt: skip


def _experiments(
    seed: int,
    nuisance: bool,
    matched: bool = True,
    *,
    n_boot: int,
    n_experiments: int = 8,
    intervals: bool = True,
) -> dict:
    """03: random image folds vs leave-one-experiment-out, each image predicted once by a
    model of the other folds, the interval over experiments. Every class in every experiment
    (wells of a class within an experiment share its shift). ``matched``: as many random folds
    as experiments (the same training size); else twice as many (the random arm trains on
    15/16 of the images, the grouped one on 7/8). ``nuisance``: the experiment shift on/off."""
    from sklearn.model_selection import GroupKFold, KFold

    rng = np.random.default_rng(seed)
    n_classes, per = 10, 3
    parts = []
    feats = [f"f{i}" for i in range(len(sim.LATENT))]
    for e in range(n_experiments):  # one library, seen in every experiment
        part = _rows(seed * 100 + e, n_classes, [1] * n_classes, per, 0.0, 1.0, library=seed)
        sd = 0.8 if nuisance else 0.0
        part[feats] += sim.context_shift(seed, f"exp{e}", "p", "w", experiment_sd=sd) / (
            sim.EFFECT_SD
        )
        parts.append(part.assign(experiment=f"exp{e}"))
    df = pd.concat(parts, ignore_index=True)
    x, y, g = _x(df), df.label.to_numpy(), df.experiment.to_numpy()
    a = np.empty(len(df), int)
    b = np.empty(len(df), int)
    folds = n_experiments if matched else 2 * n_experiments
    for tr, te in KFold(folds, shuffle=True, random_state=int(rng.integers(1e6))).split(x):
        a[te] = _knn(1).fit(x[tr], y[tr]).predict(x[te])
    for tr, te in GroupKFold(n_experiments).split(x, y, g):
        b[te] = _knn(1).fit(x[tr], y[tr]).predict(x[te])
    return _paired(y, a, b, g, "accuracy", n_boot, seed, intervals)


def _normalisation(seed: int, on: bool, *, n_boot: int, truth: bool = False) -> dict:
    """04: features standardised with statistics of all samples (training, validation and
    test) vs of the training samples only, the same kNN (k=5) fitted on the training samples,
    both scored on the validation samples (balanced accuracy, samples as units). Effect on:
    the validation and test samples come from another acquisition (an experiment shift of
    0.8), which statistics from all data partly centre away; the truth is the difference on a
    large fresh validation set of the same acquisition. Null: no class signal and no shift,
    so every model's population balanced accuracy is 1/K and the true difference is 0."""
    n_classes = 9
    df = _rows(seed, n_classes, [1] * n_classes, 40, 0.0, 1.6, signal=1.0 if on else 0.0)
    rng = np.random.default_rng(seed + 1)
    held = df.groupby("label").sample(frac=0.4, random_state=int(rng.integers(1e6)))
    train = df.drop(held.index)
    shift = sim.context_shift(seed, "other", "p", "w", experiment_sd=0.8 if on else 0.0)
    x_train, y_train, x_held = _x(train), train.label.to_numpy(), _x(held) + shift / sim.EFFECT_SD
    val = held.iloc[::2]  # the other half is the test set: in the statistics, never scored
    if truth:  # many fresh validation samples of the same acquisition
        val = _rows(seed + 10**6, n_classes, [1] * n_classes, 400, 0.0, 1.6, signal=1.0)
    x_val = _x(val) + (shift / sim.EFFECT_SD if truth else 0.0)
    if not truth:
        x_val = x_held[::2]
    preds = []
    for data in (np.vstack([x_train, x_held]), x_train):  # all data, then training only
        mu, sd = data.mean(0), data.std(0) + 1e-9
        model = _KNN(5).fit((x_train - mu) / sd, y_train)
        model.mu, model.sd = np.zeros_like(mu), np.ones_like(sd)  # already standardised
        preds.append(model.predict((x_val - mu) / sd))
    return _paired(val.label.to_numpy(), preds[0], preds[1], val.row.to_numpy(),
                   "balanced_accuracy", n_boot, seed, not truth)  # fmt: skip


def _cells(seed: int, on: bool, *, n_boot: int, intervals: bool = True) -> dict:
    """02: a logistic regression on per-cell features predicting compound vs DMSO, scored out
    of fold (``splits.cross_predict``, 5 folds): random folds of cells vs folds grouped by
    well, balanced accuracy, wells as units. 16 wells per class, 12 cells each. Effect on:
    each well's context shift (0.8); off: none, so a cell's well mates tell nothing more than
    any cell of its class and the two fold schemes are exchangeable."""
    from sklearn.linear_model import LogisticRegression

    from cellutils.splits import cross_predict

    df = _rows(seed, 2, [16, 16], 12, 0.8 if on else 0.0, 2.0, signal=0.5)
    x, y, wells = _x(df), df.label.to_numpy(), df.group.to_numpy()
    clf = LogisticRegression(max_iter=500)
    a = cross_predict(clf, x, y, None, 5, seed)
    b = cross_predict(clf, x, y, wells, 5, seed)
    return _paired(y, a, b, wells, "balanced_accuracy", n_boot, seed, intervals)


def designs(n_boot: int = 1000) -> list[Design]:
    """The primary statistic of each lesson 02-08 (the notebook's ``declare_primary``) and its
    stand-in; the leak lessons 03, 05-08 with their decomposition."""

    def sib(model, matched, copies=False, **kw):
        def draw(seed, on, intervals=True):  # null: no shift, no copies, matched: exchangeable
            return _siblings(seed, on, matched or not on, model=model, metric="accuracy",
                             n_boot=n_boot, group_sd=0.8, copies=copies and on,
                             intervals=intervals, **kw)  # fmt: skip

        def parts(seed, nuisance, matched_):
            return _siblings(seed, nuisance, matched_, model=model, metric="accuracy",
                             n_boot=n_boot, group_sd=0.8, copies=copies, intervals=False,
                             **kw)["diff"]  # fmt: skip

        return {"draw": draw, "parts": parts}

    return [
        Design("02_features", "004: cells of one well on both sides (random folds of cells - "
               "folds grouped by well)", "well", "balanced_accuracy", "logistic regression "
               "on per-cell latent features (as in 02), one fold assignment",
               lambda s, on, intervals=True: _cells(s, on, n_boot=n_boot, intervals=intervals),
               null="no well shift: the fold schemes are exchangeable"),
        Design("03_rxrx1_efficientnet", "000: random split vs held-out experiment (random "
               "image folds - leave-one-experiment-out, same training size)", "experiment",
               "accuracy", "1-NN on per-image latent features, not EfficientNet",
               lambda s, on, intervals=True: _experiments(s, on, True, n_boot=n_boot,
                                                          intervals=intervals),
               null="no experiment shift, same fold count: the true difference is 0",
               parts=lambda s, nu, m: _experiments(s, nu, m, n_boot=n_boot,
                                                   intervals=False)["diff"]),
        Design("04_cell_lines_densenet", "001: normalisation statistics from all data - "
               "from training only (val)", "sample", "balanced_accuracy", "kNN (k=5) on "
               "standardised features, not DenseNet; validation from another acquisition",
               lambda s, on: _normalisation(s, on, n_boot=n_boot),
               null="no class signal and no shift: every model scores 1/K"),
        Design("05_cpjump1_mobilenet", "002: both (the report's protocol - by well: copies "
               "and shared wells, unmatched)", "well", "accuracy", "kNN (k=3), not "
               "MobileNetV2", **sib(_knn, matched=False, copies=True),
               null="nuisance off, no copies, arms size-matched: the true difference is 0"),
        Design("06_mask_attention", "003: sites of one well on both sides, same training size "
               "- split by well", "well", "accuracy", "kNN (k=3), not the mask-attention "
               "CNN", **sib(_knn, matched=True)),
        Design("07_embeddings", "003: sites of one well on both sides, same training size "
               "- split by well (+ ridge)", "well", "accuracy", "ridge classifier on "
               "features (as on frozen embeddings)", **sib(_ridge, matched=True)),
        Design("08_multi_input_cells", "004: images of one well on both sides, same training "
               "size - split by well", "well", "accuracy", "kNN (k=3) on per-image "
               "features (the cells and their majority vote not simulated), not the "
               "two-branch CNN", **sib(_knn, matched=True, rows_per_group=8)),
    ]  # fmt: skip


def _truth(design: Design, n_truth: int, seed0: int) -> tuple[float, float]:
    """Population value with the effect on: mean over independent draws (and its SE)."""
    if design.lesson.startswith("04"):
        vals = [_normalisation(seed0 + i, True, n_boot=1, truth=True)["diff"]
                for i in range(n_truth)]  # fmt: skip
    else:
        vals = [design.draw(seed0 + i, True, intervals=False)["diff"] for i in range(n_truth)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1) / np.sqrt(len(vals)))


def calibrate_one(design: Design, n_sims: int, n_truth: int, seed: int = 0) -> dict:
    # one thread per process: the machine's cores are shared, and the arrays are small
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _calibrate_one(design, n_sims, n_truth, seed)


def _calibrate_one(design: Design, n_sims: int, n_truth: int, seed: int = 0) -> dict:
    """Coverage with the effect on and the rate of "excludes 0" with it off, for one lesson:
    for the engine's interval (``stats.INTERVAL``) and, on the same draws, for the cluster
    percentile bootstrap it replaced (``*_percentile``)."""
    t0 = time.perf_counter()
    truth, truth_se = _truth(design, n_truth, seed + 50_000)
    on = [design.draw(seed + i, True) for i in range(n_sims)]
    off = [design.draw(seed + 10_000 + i, False) for i in range(n_sims)]
    lo, hi = TARGET_COVERAGE
    row = {
        "lesson": design.lesson,
        "statistic": design.statistic,
        "unit": design.unit,
        "metric": design.metric,
        "stand_in": design.stand_in,
        "null": design.null,
        "interval": stats.INTERVAL,
        "n_sims": n_sims,
    }
    for method in stats.METHODS:
        key = "" if method == stats.INTERVAL else f"_{method}"
        covered = sum(bool(d[f"ci{key}"][0] <= truth <= d[f"ci{key}"][1]) for d in on)
        fired = sum(bool(d[f"excludes_zero{key}"]) for d in off)
        row |= {
            f"coverage{key}": round(covered / n_sims, 3),
            f"coverage{key}_ci": _binomial_ci(covered, n_sims),
            f"null_rate{key}": round(fired / n_sims, 3),
            f"null_rate{key}_ci": _binomial_ci(fired, n_sims),
            f"mean_width{key}": round(float(np.mean([np.diff(d[f"ci{key}"]) for d in on])), 4),
        }
    return row | {
        "truth": round(truth, 4),
        "truth_se": round(truth_se, 4),
        "n_truth": n_truth,
        "mean_diff_on": round(float(np.mean([d["diff"] for d in on])), 4),
        "mean_diff_null": round(float(np.mean([d["diff"] for d in off])), 4),
        "meets_coverage": bool(lo <= row["coverage"] <= hi),
        "meets_null_rate": bool(row["null_rate"] <= TARGET_NULL_RATE),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def decompose(design: Design, n_sims: int, seed: int = 0) -> dict | None:
    """Split a leak into "more rows" and "sharing the nuisance" (issue: every leaky arm also
    trains on more rows). Per draw (one seed: the same classes, rows and noise throughout) the
    leaky - leak-free difference four ways: unmatched or size-matched, with the simulator's
    nuisance (well or experiment shift) on or off. Then ``more_rows`` = unmatched - matched
    (nuisance on), ``sharing_nuisance`` = matched on - matched off, and ``rest`` = matched off
    (what is left with equal sizes and no nuisance: copies of scored rows in 05, else ~0).
    Each as its mean over the draws with a 95% t interval over the draws."""
    if design.parts is None:
        return None
    from scipy import stats as st

    t0 = time.perf_counter()
    cells = {(nu, m): [] for nu in (True, False) for m in (False, True)}
    for i in range(n_sims):
        for nu, m in cells:
            cells[nu, m].append(design.parts(seed + 20_000 + i, nu, m))
    v = {k: np.array(x) for k, x in cells.items()}
    named = {
        "unmatched_nuisance_on": v[True, False],
        "matched_nuisance_on": v[True, True],
        "unmatched_nuisance_off": v[False, False],
        "matched_nuisance_off": v[False, True],
        "more_rows": v[True, False] - v[True, True],
        "sharing_nuisance": v[True, True] - v[False, True],
        "rest": v[False, True],
    }
    q = float(st.t.ppf(0.975, n_sims - 1)) if n_sims > 1 else float("nan")
    out = {"lesson": design.lesson, "unit": design.unit, "n_sims": n_sims}
    for k, x in named.items():
        m, half = float(x.mean()), q * float(x.std(ddof=1)) / np.sqrt(n_sims) if n_sims > 1 else 0
        out[k] = {"mean": round(m, 4), "ci": [round(m - half, 4), round(m + half, 4)]}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _binomial_ci(k: int, n: int) -> list[float]:
    """Clopper-Pearson 95% interval of a share ``k / n`` (scipy): how far 30 draws can tell
    0.83 from 0.95."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95)
    return [round(ci.low, 3), round(ci.high, 3)]


PARTS = {"more_rows": "more rows", "sharing_nuisance": "sharing the nuisance", "rest": "rest"}


def plot(rows: list[dict], decomposition: list[dict] | None = None):
    """Coverage and null rate per lesson (the engine's interval in black, the percentile
    bootstrap it replaced in grey), the target band and limit drawn; with ``decomposition``
    a third panel: each leak split into more rows, sharing the nuisance and the rest."""
    import matplotlib.pyplot as plt

    n = 3 if decomposition else 2
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 0.5 * len(rows) + 1.9), sharey=True)
    y = np.arange(len(rows))
    names = [r["lesson"] for r in rows]
    axes[0].axvspan(*TARGET_COVERAGE, color="#a6dba0", alpha=0.6, label="target 0.93-0.97")
    axes[1].axvspan(0, TARGET_NULL_RATE, color="#a6dba0", alpha=0.6, label="target <= 0.06")
    for ax, key in ((axes[0], "coverage"), (axes[1], "null_rate")):
        for dy, suffix, colour, name in (
            (-0.12, "", "black", rows[0].get("interval", "")),
            (0.12, "_percentile", "#999999", "percentile"),
        ):
            if f"{key}{suffix}" not in rows[0]:
                continue
            lo_hi = np.array([r[f"{key}{suffix}_ci"] for r in rows])
            ax.hlines(y + dy, lo_hi[:, 0], lo_hi[:, 1], color=colour, lw=1)
            ax.plot([r[f"{key}{suffix}"] for r in rows], y + dy, "o", color=colour, label=name)
        ax.set_xlim(0, 1.02)
        ax.legend(loc="lower left" if key == "coverage" else "lower right", fontsize=7)
    axes[0].set_xlabel("coverage of the 95% interval (effect on)")
    axes[1].set_xlabel('"excludes 0" under the null')
    if decomposition:
        pos = {r["lesson"]: i for i, r in enumerate(rows)}
        for j, (key, colour) in enumerate(
            zip(PARTS, ("#2166ac", "#b2182b", "#999999"), strict=True)
        ):
            for i, d in enumerate(x for x in decomposition if x["lesson"] in pos):
                yy, part = pos[d["lesson"]] + (j - 1) * 0.2, d[key]
                axes[2].hlines(yy, *part["ci"], color=colour, lw=1.5)
                axes[2].plot(part["mean"], yy, "o", color=colour,
                             label=PARTS[key] if i == 0 else None)  # fmt: skip
        axes[2].axvline(0, color="black", lw=0.8)
        axes[2].set_xlabel("leaky - leak-free, split (mean over draws, 95% CI)")
        axes[2].legend(loc="lower right", fontsize=7)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"Calibration on the simulator ({rows[0]['n_sims']} draws per row; lines: 95% "
        "Clopper-Pearson intervals of the shares)"
    )
    fig.tight_layout()
    return fig


def run(
    n_sims: int = 100,
    n_truth: int = 200,
    n_boot: int = 1000,
    lessons: list[str] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Calibrate every lesson (or those whose name starts with one of ``lessons``), decompose
    each leak, and write ``calibration.json`` and ``calibration.png`` in a new run folder."""
    from threadpoolctl import threadpool_limits

    from cellutils.paths import new_run_dir, write_json

    t0 = time.perf_counter()
    chosen = [d for d in designs(n_boot) if not lessons or d.lesson.startswith(tuple(lessons))]
    rows, parts = [], []
    for d in chosen:
        rows.append(calibrate_one(d, n_sims, n_truth, seed))
        r = rows[-1]
        print(f"{r['lesson']}: coverage {r['coverage']:.2f} ({r['coverage_percentile']:.2f} "
              f"percentile), null rate {r['null_rate']:.2f} ({r['null_rate_percentile']:.2f}) "
              f"(truth {r['truth']:+.3f}, {r['seconds']:.0f} s)", flush=True)  # fmt: skip
        with threadpool_limits(1):
            part = decompose(d, n_sims, seed)
        if part:
            parts.append(part)
            print("  decomposition: " + ", ".join(
                f"{PARTS[k]} {part[k]['mean']:+.3f}" for k in PARTS), flush=True)  # fmt: skip
    run_dir = Path(out) if out else new_run_dir("calibration")
    run_dir.mkdir(parents=True, exist_ok=True)
    fig = plot(rows, parts)
    fig.savefig(run_dir / "calibration.png", dpi=120)
    path = write_json(
        run_dir / "calibration.json",
        {
            "rows": rows,
            "decomposition": parts,
            "interval": stats.INTERVAL,
            "target": {"coverage": list(TARGET_COVERAGE), "null_rate": TARGET_NULL_RATE},
            "n_boot": n_boot,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    cols = ["lesson", "n_sims", "coverage", "coverage_percentile", "null_rate",
            "null_rate_percentile", "truth", "seconds"]  # fmt: skip
    print(pd.DataFrame(rows)[cols].to_string())
    return path


def note(notebook: str, results: str | Path | None = None) -> str:
    """What the newest ``make calibrate`` says of a lesson's primary statistic, as sentences
    for its notebook: coverage and null rate against their goals, and which one it misses (or
    how to run the calibration when none is found); for a leak lesson, how much of the leak
    is more rows and how much is sharing the nuisance."""
    from cellutils.paths import results_root

    runs = sorted((results_root(results) / "calibration").glob("*/calibration.json"))
    if not runs:
        return (
            f"{notebook}: no calibration run found. `make calibrate` repeats this lesson's "
            "primary statistic on fresh simulator draws and measures its intervals' coverage."
        )
    found = json.loads(runs[-1].read_text())
    row = next((r for r in found["rows"] if r["lesson"].startswith(notebook[:2])), None)
    if row is None:
        return f"{notebook}: the newest calibration ({runs[-1].parent.name}) has no row for it."
    lo, hi = TARGET_COVERAGE
    misses = [f"coverage {row['coverage']:.2f} (goal {lo}-{hi})"] * (not row["meets_coverage"])
    misses += [f"null rate {row['null_rate']:.2f} (goal <= {TARGET_NULL_RATE})"] * (
        not row["meets_null_rate"]
    )
    too = "too narrow" if row["coverage"] < lo else "too wide"
    verdict = (
        "it meets both goals"
        if not misses
        else "it misses " + " and ".join(misses) + f": read its interval as {too}"
        if row["coverage"] < lo or row["coverage"] > hi
        else "it misses " + " and ".join(misses)
    )
    text = (
        f"Calibration ({runs[-1].parent.name}, {row['n_sims']} simulator draws, stand-in: "
        f"{row['stand_in']}): the 95% interval ({row.get('interval', 'percentile')}) of "
        f"'{row['statistic']}' covered the truth in {row['coverage']:.0%} of draws with the "
        f"effect on, and excluded 0 in {row['null_rate']:.0%} with it off; {verdict}."
    )
    part = next(
        (p for p in found.get("decomposition", []) if p["lesson"].startswith(notebook[:2])), None
    )
    if part:
        text += (
            f" On the simulator this leak (leaky - leak-free, {part['n_sims']} draws) is "
            + ", ".join(
                f"{PARTS[k]} {part[k]['mean']:+.3f} [{part[k]['ci'][0]:+.3f}, "
                f"{part[k]['ci'][1]:+.3f}]"
                for k in PARTS
            )
            + " (more rows: unmatched - size-matched; sharing the nuisance: size-matched with "
            "the nuisance on - off)."
        )
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sims", type=int, default=100)
    p.add_argument("--n-truth", type=int, default=200)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--lessons", nargs="*", default=None, help="e.g. 03 06")
    p.add_argument("--out", default=None, help="folder to write into (default: a new run)")
    a = p.parse_args(argv)
    print(run(a.n_sims, a.n_truth, a.n_boot, a.lessons, a.out))


if __name__ == "__main__":
    main()
