"""Calibration of the course's own statistics on the simulator, where the truth is known.

Each lesson 02-08 reads one *primary* statistic: the difference between the protocol a report
used and the leak-free one, scored on the same evaluation rows, with a 95% cluster-bootstrap
interval over the lesson's unit (``cellutils.stats``). Is that interval right? This module
repeats the statistic on fresh draws of the simulator's nuisance model (``simulate``: class
effects from ``make_perturbations``, experiment/well/image shifts from ``context_shift``) with
cheap stand-in models instead of the lessons' CNNs, and reports per lesson:

- ``coverage``: the share of draws whose 95% interval holds the true value, with the effect
  on. The true value is the statistic's population value, estimated as the mean of its point
  estimate over ``n_truth`` further independent draws of the same design (``truth`` and its
  Monte Carlo standard error ``truth_se`` are in the row); for 04 it is the difference of the
  two chosen models' accuracies on a large fresh test set (what the reported number claims).
- ``null_rate``: the share of draws whose interval excludes 0 when the effect is switched off
  (nuisance off, arms size-matched so that the two protocols are exchangeable: the true
  difference is 0 by construction; 02: no compound effects; 04: no class signal).

Goal: coverage 0.93-0.97 and null rate <= 0.06. Rows say whether they meet it; the stand-ins
are deterministic (one training run per arm), so the intervals hold the trained model fixed,
like a one-seed lesson. Run ``make calibrate`` or ``python -m cellutils.calibrate``; it writes
``results/calibration/<run>/calibration.json`` and ``calibration.png``.
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
    """A lesson's primary statistic on the simulator."""

    lesson: str
    statistic: str
    unit: str
    metric: str
    stand_in: str
    draw: Callable[[int, bool], dict]  # (seed, effect on) -> a draw's statistic and interval


def _paired(targets, a, b, units, metric: str, n_boot: int, seed: int) -> dict:
    d = stats.paired_difference(targets, a, b, units, metric, n_boot, seed)
    return {"diff": d.diff, "ci": (d.ci_low, d.ci_high), "excludes_zero": d.excludes_zero}


def _siblings(
    seed: int,
    on: bool,
    *,
    model,
    metric: str,
    n_boot: int,
    group_sd: float,
    copies: bool = False,
    rows_per_group: int = 4,
    group_level: str = "well",
    n_classes: int = 8,
    groups: int = 5,
) -> dict:
    """05-08: rows of one group (well, or image for cells) on both sides of the split vs a
    grouped split. One group per class is the evaluation set (half of its rows scored); the
    leaky arm trains on every other row (the scored rows' siblings included; with ``copies``
    also copies of scored rows, as oversampling before the split puts there), subsampled to
    the leak-free arm's class counts; the leak-free arm trains on the other groups only.
    Effect off: no group shift and no copies, so the arms are exchangeable."""
    rng = np.random.default_rng(seed + 7)
    counts = [groups * 2] + [groups] * (n_classes - 1)  # one majority class, as in 05
    df = _rows(seed, n_classes, counts, rows_per_group, group_sd if on else 0.0, 1.0,
               group_level=group_level)  # fmt: skip
    eval_groups = df.groupby("label").group.first()
    in_eval = df.group.isin(eval_groups)
    scored = df[in_eval].groupby("group").head(rows_per_group // 2)
    free = df[~in_eval]
    pool = df.drop(scored.index)
    if copies and on:
        pool = pd.concat([pool, scored, scored])  # oversampled copies of scored rows
    leaky = _matched(pool, free, rng)
    a = _fit_predict(model(), leaky, scored)
    b = _fit_predict(model(), free, scored)
    return _paired(scored.label.to_numpy(), a, b, scored.group.to_numpy(), metric, n_boot, seed)


def _experiments(seed: int, on: bool, *, n_boot: int, n_experiments: int = 8) -> dict:
    """03: random image folds vs leave-one-experiment-out, each image predicted once by a
    model of the other folds, the bootstrap over experiments. Every class in every
    experiment (wells of a class within an experiment share its shift); same fold count, so
    the same training size. Effect off: no experiment shift."""
    from sklearn.model_selection import GroupKFold, KFold

    rng = np.random.default_rng(seed)
    n_classes, per = 10, 3
    parts = []
    feats = [f"f{i}" for i in range(len(sim.LATENT))]
    for e in range(n_experiments):  # one library, seen in every experiment
        part = _rows(seed * 100 + e, n_classes, [1] * n_classes, per, 0.0, 1.0, library=seed)
        shift = sim.context_shift(seed, f"exp{e}", "p", "w", experiment_sd=0.8 if on else 0.0)
        part[feats] += shift / sim.EFFECT_SD
        parts.append(part.assign(experiment=f"exp{e}"))
    df = pd.concat(parts, ignore_index=True)
    x, y, g = _x(df), df.label.to_numpy(), df.experiment.to_numpy()
    a = np.empty(len(df), int)
    b = np.empty(len(df), int)
    for tr, te in KFold(n_experiments, shuffle=True, random_state=int(rng.integers(1e6))).split(x):
        a[te] = _knn(1).fit(x[tr], y[tr]).predict(x[te])
    for tr, te in GroupKFold(n_experiments).split(x, y, g):
        b[te] = _knn(1).fit(x[tr], y[tr]).predict(x[te])
    return _paired(y, a, b, g, "accuracy", n_boot, seed)


def _selection(seed: int, on: bool, *, n_boot: int, truth: bool = False) -> dict:
    """04: the "epoch" (here: k of a kNN, 12 candidates) chosen on the test set vs on a
    validation set carved from training, both scored on the test set (balanced accuracy,
    images resampled). Effect off: no class signal at all, so every candidate's population
    balanced accuracy is 1/K and the true difference is 0. The truth with the effect on: the
    two chosen models' balanced accuracies on a large fresh test set."""
    n_classes = 9
    signal = 1.0 if on else 0.0
    df = _rows(seed, n_classes, [1] * n_classes, 40, 0.0, 1.6, signal=signal)
    rng = np.random.default_rng(seed + 1)
    test = df.groupby("label").sample(frac=0.25, random_state=int(rng.integers(1e6)))
    train = df.drop(test.index)
    val = train.groupby("label").sample(frac=0.2, random_state=int(rng.integers(1e6)))
    fit_on = train.drop(val.index)
    ks = [1, 2, 3, 5, 7, 9, 11, 15, 19, 25, 31, 41]
    models = [_knn(k).fit(_x(fit_on), fit_on.label.to_numpy()) for k in ks]
    y_test, y_val = test.label.to_numpy(), val.label.to_numpy()
    on_test = [m.predict(_x(test)) for m in models]
    on_val = [stats.balanced_accuracy(y_val, m.predict(_x(val))) for m in models]
    peek = int(np.argmax([stats.balanced_accuracy(y_test, p) for p in on_test]))
    carved = int(np.argmax(on_val))
    if truth:
        fresh = _rows(seed + 10**6, n_classes, [1] * n_classes, 400, 0.0, 1.6, signal=signal)
        yf = fresh.label.to_numpy()
        acc = [stats.balanced_accuracy(yf, models[i].predict(_x(fresh))) for i in (peek, carved)]
        return {"diff": acc[0] - acc[1]}
    return _paired(y_test, on_test[peek], on_test[carved], test.row.to_numpy(),
                   "balanced_accuracy", n_boot, seed)  # fmt: skip


def _profiles(seed: int, on: bool, *, n_boot: int) -> dict:
    """02: mean replicate mAP of the compounds minus the no-signal line (the same layout's
    features replaced by noise, sent through the same normalisation and copairs scoring),
    compounds resampled (``stats.bootstrap_mean``, paired). The quick cpjump1 shape: 2 plates
    sharing one plate map, 26 compounds and 8 DMSO wells each. Well profiles: the compound's
    effect (a quarter inactive) plus plate, well and position shifts plus the sampling noise
    of a well's mean. Effect off: every compound inactive, no position effect."""
    from cellutils import features

    perts = sim.make_perturbations(26, seed=seed, frac_inactive=0.25 if on else 1.0)
    rng = np.random.default_rng(seed)
    names = list(perts.names[:26]) + ["DMSO"] * 8
    effects = np.vstack([perts.effects[:26], np.zeros((8, len(sim.LATENT)))])
    wells = [f"{'BCDEFGHIJKLMNO'[i % 14]}{i // 14 + 2:02d}" for i in range(len(names))]
    rows = []
    for plate in ("P1", "P2"):
        for w, n, eff in zip(wells, names, effects, strict=True):
            shift = sim.context_shift(seed, "e", plate, w, 0.0, 0.2, 0.3, 0.4 if on else 0.0)
            x = (eff + shift) / sim.EFFECT_SD + rng.normal(0, 0.5, len(eff))
            rows.append({"Metadata_Plate": plate, "Metadata_Well": w, "Metadata_pert_iname": n}
                        | {f"Cells_F{i}": v for i, v in enumerate(x)})  # fmt: skip
    table = pd.DataFrame(rows)
    dmso = "Metadata_pert_iname == 'DMSO'"
    maps = {}
    for kind, t in (("noise", features.noise_like(table, seed)), ("data", table)):
        m = features.replicate_map(
            features.normalize(t, dmso), "Metadata_pert_iname", "Metadata_Plate", "DMSO", 20, seed
        )
        maps[kind] = m.set_index("Metadata_pert_iname").mean_average_precision
    common = sorted(set(maps["noise"].index) & set(maps["data"].index))
    t = stats.bootstrap_mean({k: v.loc[common].to_numpy() for k, v in maps.items()}, n_boot, seed)
    lo, hi = t.loc["data", ["diff_low", "diff_high"]]
    return {"diff": float(t.loc["data", "diff_vs_first"]), "ci": (lo, hi),
            "excludes_zero": bool(lo > 0 or hi < 0)}  # fmt: skip


def designs(n_boot: int = 1000) -> list[Design]:
    """The primary statistic of each lesson 02-08 and its stand-in."""

    def sib(model, metric="accuracy", **kw):
        return lambda seed, on: _siblings(seed, on, model=model, metric=metric, n_boot=n_boot, **kw)

    return [
        Design("02_features", "replicate mAP of compounds - no-signal line (noise, same "
               "pipeline)", "compound", "mAP", "well profiles from the simulator's latent "
               "model, no images; copairs as in 02",
               lambda s, on: _profiles(s, on, n_boot=n_boot)),
        Design("03_rxrx1_efficientnet", "random image folds - leave-one-experiment-out",
               "experiment", "accuracy", "1-NN on per-image latent features, not "
               "EfficientNet", lambda s, on: _experiments(s, on, n_boot=n_boot)),
        Design("04_cell_lines_densenet", "epoch chosen on test - on a validation set carved "
               "from training", "image", "balanced_accuracy", "kNN with 12 values of k as "
               "the 12 epochs, not DenseNet", lambda s, on: _selection(s, on, n_boot=n_boot)),
        Design("05_cpjump1_mobilenet", "oversample before split - split, then no copies",
               "well", "accuracy", "kNN (k=3), not MobileNetV2", sib(_knn, group_sd=0.8,
               copies=True)),
        Design("06_mask_attention", "images of a well on both sides - split by well", "well",
               "accuracy", "kNN (k=3), not the mask-attention CNN", sib(_knn, group_sd=0.8)),
        Design("07_embeddings", "images of a well on both sides - split by well", "well",
               "accuracy", "ridge classifier on features (as on frozen embeddings)",
               sib(_ridge, group_sd=0.8)),
        Design("08_multi_input_cells", "images of a well on both sides (cells) - split by "
               "well", "well", "accuracy", "kNN (k=3) on per-cell features, not the "
               "two-branch CNN", sib(_knn, group_sd=0.8, rows_per_group=8)),
    ]  # fmt: skip


def _truth(design: Design, n_truth: int, seed0: int) -> tuple[float, float]:
    """Population value with the effect on: mean over independent draws (and its SE)."""
    if design.lesson.startswith("04"):
        vals = [_selection(seed0 + i, True, n_boot=1, truth=True)["diff"] for i in range(n_truth)]
    else:
        vals = [design.draw(seed0 + i, True)["diff"] for i in range(n_truth)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1) / np.sqrt(len(vals)))


def calibrate_one(design: Design, n_sims: int, n_truth: int, seed: int = 0) -> dict:
    # one thread per process: the machine's cores are shared, and the arrays are small
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _calibrate_one(design, n_sims, n_truth, seed)


def _calibrate_one(design: Design, n_sims: int, n_truth: int, seed: int = 0) -> dict:
    """Coverage with the effect on and the rate of "excludes 0" with it off, for one lesson."""
    t0 = time.perf_counter()
    truth, truth_se = _truth(design, n_truth, seed + 50_000)
    on = [design.draw(seed + i, True) for i in range(n_sims)]
    off = [design.draw(seed + 10_000 + i, False) for i in range(n_sims)]
    covered = sum(bool(d["ci"][0] <= truth <= d["ci"][1]) for d in on)
    fired = sum(bool(d["excludes_zero"]) for d in off)
    coverage, null_rate = covered / n_sims, fired / n_sims
    lo, hi = TARGET_COVERAGE
    return {
        "lesson": design.lesson,
        "statistic": design.statistic,
        "unit": design.unit,
        "metric": design.metric,
        "stand_in": design.stand_in,
        "n_sims": n_sims,
        "coverage": round(coverage, 3),
        "coverage_ci": _binomial_ci(covered, n_sims),
        "null_rate": round(null_rate, 3),
        "null_rate_ci": _binomial_ci(fired, n_sims),
        "truth": round(truth, 4),
        "truth_se": round(truth_se, 4),
        "n_truth": n_truth,
        "mean_diff_on": round(float(np.mean([d["diff"] for d in on])), 4),
        "mean_width_on": round(float(np.mean([d["ci"][1] - d["ci"][0] for d in on])), 4),
        "mean_diff_null": round(float(np.mean([d["diff"] for d in off])), 4),
        "meets_coverage": bool(lo <= coverage <= hi),
        "meets_null_rate": bool(null_rate <= TARGET_NULL_RATE),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _binomial_ci(k: int, n: int) -> list[float]:
    """Clopper-Pearson 95% interval of a share ``k / n`` (scipy): how far 30 draws can tell
    0.83 from 0.95."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95)
    return [round(ci.low, 3), round(ci.high, 3)]


def plot(rows: list[dict]):
    """Coverage and null rate per lesson, the target band and limit drawn."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.8), sharey=True)
    y = np.arange(len(rows))
    names = [r["lesson"] for r in rows]
    axes[0].axvspan(*TARGET_COVERAGE, color="#a6dba0", alpha=0.6, label="target 0.93-0.97")
    for ax, key, colour in ((axes[0], "coverage", "black"), (axes[1], "null_rate", "#b2182b")):
        lo_hi = np.array([r.get(f"{key}_ci", [r[key]] * 2) for r in rows])
        ax.hlines(y, lo_hi[:, 0], lo_hi[:, 1], color=colour, lw=1)
    axes[0].plot([r["coverage"] for r in rows], y, "o", color="black")
    axes[0].set(xlim=(0, 1.02), xlabel="coverage of the 95% interval (effect on)")
    axes[1].axvspan(0, TARGET_NULL_RATE, color="#a6dba0", alpha=0.6, label="target <= 0.06")
    axes[1].plot([r["null_rate"] for r in rows], y, "o", color="#b2182b")
    axes[1].set(xlim=(0, 1.02), xlabel='"excludes 0" under the null')
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower left", fontsize=8)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"Calibration on the simulator ({rows[0]['n_sims']} draws per row; lines: 95% "
        "Clopper-Pearson intervals of the shares)"
    )
    fig.tight_layout()
    return fig


def run(
    n_sims: int = 30,
    n_truth: int = 80,
    n_boot: int = 1000,
    lessons: list[str] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Calibrate every lesson (or those whose name starts with one of ``lessons``) and write
    ``calibration.json`` and ``calibration.png`` in a new run folder."""
    from cellutils.paths import new_run_dir, write_json

    t0 = time.perf_counter()
    chosen = [d for d in designs(n_boot) if not lessons or d.lesson.startswith(tuple(lessons))]
    rows = []
    for d in chosen:
        rows.append(calibrate_one(d, n_sims, n_truth, seed))
        r = rows[-1]
        print(f"{r['lesson']}: coverage {r['coverage']:.2f}, null rate {r['null_rate']:.2f} "
              f"(truth {r['truth']:+.3f}, {r['seconds']:.0f} s)", flush=True)  # fmt: skip
    run_dir = Path(out) if out else new_run_dir("calibration")
    run_dir.mkdir(parents=True, exist_ok=True)
    fig = plot(rows)
    fig.savefig(run_dir / "calibration.png", dpi=120)
    path = write_json(
        run_dir / "calibration.json",
        {
            "rows": rows,
            "target": {"coverage": list(TARGET_COVERAGE), "null_rate": TARGET_NULL_RATE},
            "n_boot": n_boot,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    print(pd.DataFrame(rows)[["lesson", "coverage", "null_rate", "truth", "n_sims"]].to_string())
    return path


def note(notebook: str, results: str | Path | None = None) -> str:
    """What the newest ``make calibrate`` says of a lesson's primary statistic, as a sentence
    for its notebook: coverage and null rate against their goals, and which one it misses (or
    how to run the calibration when none is found)."""
    from cellutils.paths import results_root

    runs = sorted((results_root(results) / "calibration").glob("*/calibration.json"))
    if not runs:
        return (
            f"{notebook}: no calibration run found. `make calibrate` repeats this lesson's "
            "primary statistic on fresh simulator draws and measures its intervals' coverage."
        )
    rows = json.loads(runs[-1].read_text())["rows"]
    row = next((r for r in rows if r["lesson"].startswith(notebook[:2])), None)
    if row is None:
        return f"{notebook}: the newest calibration ({runs[-1].parent.name}) has no row for it."
    lo, hi = TARGET_COVERAGE
    misses = [
        f"coverage {row['coverage']:.2f} (goal {lo}-{hi})" for _ in [0] if not row["meets_coverage"]
    ] + [
        f"null rate {row['null_rate']:.2f} (goal <= {TARGET_NULL_RATE})"
        for _ in [0]
        if not row["meets_null_rate"]
    ]
    verdict = (
        "it meets both goals"
        if not misses
        else "it misses " + " and ".join(misses) + ": read its interval as too narrow"
    )
    return (
        f"Calibration ({runs[-1].parent.name}, {row['n_sims']} simulator draws, stand-in: "
        f"{row['stand_in']}): the 95% interval of '{row['statistic']}' covered the truth in "
        f"{row['coverage']:.0%} of draws with the effect on, and excluded 0 in "
        f"{row['null_rate']:.0%} with it off; {verdict}."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sims", type=int, default=30)
    p.add_argument("--n-truth", type=int, default=80)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--lessons", nargs="*", default=None, help="e.g. 03 06")
    p.add_argument("--out", default=None, help="folder to write into (default: a new run)")
    a = p.parse_args(argv)
    print(run(a.n_sims, a.n_truth, a.n_boot, a.lessons, a.out))


if __name__ == "__main__":
    main()
