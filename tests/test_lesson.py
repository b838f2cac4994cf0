"""Intervals, paired differences, baselines, the lesson's bookkeeping and its leak rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellutils import splits, stats
from cellutils.lesson import Claim, Lesson, Protocol, rows_hash
from cellutils.splits import LeakError


def _clustered(n_units=30, per=10, seed=0):
    """Targets whose correctness is shared within a unit (a well that is easy or hard)."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_units), per)
    t = rng.integers(0, 4, len(units))
    easy = rng.random(n_units)[units] < 0.6
    pred = np.where(easy, t, (t + 1) % 4)
    return t, pred, units


def test_cluster_bootstrap_is_wider_than_a_row_bootstrap_when_units_cluster():
    t, pred, units = _clustered()
    by_unit = stats.estimate(t, pred, units)
    by_row = stats.estimate(t, pred, np.arange(len(t)))
    assert by_unit.n_units == 30 and by_row.n_units == len(t) == by_unit.n_eval
    assert by_unit.ci_low < by_unit.value < by_unit.ci_high
    assert (by_unit.ci_high - by_unit.ci_low) > 1.5 * (by_row.ci_high - by_row.ci_low)


def test_paired_difference_cancels_shared_difficulty():
    t, pred, units = _clustered()
    hard = np.unique(units[pred != t])[:6]
    better = np.where(np.isin(units, hard), t, pred)  # a fix that rescues six hard wells
    d = stats.paired_difference(t, better, pred, units)
    assert d.diff == pytest.approx((better == t).mean() - (pred == t).mean())
    assert d.ci_low >= 0 and d.excludes_zero
    same = stats.paired_difference(t, pred, pred, units)
    assert same.diff == 0 and same.ci_low == same.ci_high == 0 and not same.excludes_zero


def test_balanced_accuracy_and_baselines_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    t, pred, _ = _clustered(seed=2)
    assert stats.balanced_accuracy(t, pred) == pytest.approx(balanced_accuracy_score(t, pred))
    b = stats.baselines(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]), 4)
    assert b == {"chance": 0.25, "majority": 0.25}
    assert (
        stats.baselines(np.array([0, 0, 1]), np.array([0, 1]), 2, "balanced_accuracy")["majority"]
        == 0.5
    )


def test_seeds_are_averaged_and_listed():
    t, pred, units = _clustered()
    other = np.where(np.arange(len(t)) % 2 == 0, t, pred)
    e = stats.estimate(t, np.stack([pred, other]), units)
    assert e.seed_values == ((pred == t).mean(), (other == t).mean())
    assert e.value == pytest.approx(np.mean(e.seed_values))


def _lesson():
    return Lesson(
        "05_x",
        "002",
        "t",
        Claim("accuracy", 0.97, "validation", 50, "random"),
        nuisance="well",
        unit="well",
    )


def test_lesson_writes_rows_comparisons_and_headline(tmp_path):
    t, pred, units = _clustered()
    lesson = _lesson()
    leaky = Protocol("split images — shares wells", None, False, "siblings in training")
    free = Protocol("split by well", "well", True, "no well on both sides")
    a = lesson.record(leaky, t, np.where(units < 25, t, pred), units, 4, t)
    b = lesson.record(free, t, pred, units, 4, t, selected_on="val")
    comp = lesson.compare("the well leak", a, b)
    with pytest.raises(ValueError, match="no primary comparison"):
        lesson.write(tmp_path, reported=a, trusted=b, trust="", data="", settings="")
    lesson.declare_primary("the well leak")
    assert comp["diff"] > 0 and comp["ci"][0] > 0 and comp["excludes_zero"]
    path = lesson.write(
        tmp_path, reported=a, trusted=b, trust="by well", data="synthetic", settings="quick"
    )
    m = json.loads(path.read_text())
    row = m["results"][1]
    for key in ("value", "ci_low", "ci_high", "n_eval", "unit", "n_classes", "chance", "majority"):
        assert key in row
    assert row["headline"] == "trusted" and m["results"][0]["headline"] == "reported"
    assert set(m["comparisons"][0]) >= {"lesson", "a", "b", "metric", "diff", "ci", "unit"}
    assert sum(c["primary"] is True for c in m["comparisons"]) == 1
    for key in ("seeds", "unit", "n_units", "p_holm"):
        assert key in m["comparisons"][0] and key in row or key == "p_holm"
    assert m["claim"]["value"] == 0.97 and m["claim"]["n_classes"] == 50
    with pytest.raises(FileExistsError):
        lesson.write(tmp_path, reported=a, trusted=b, trust="", data="", settings="")


def test_lesson_refuses_new_leaks_and_unpaired_comparisons():
    t, pred, units = _clustered()
    lesson = _lesson()
    with pytest.raises(LeakError, match="splits by image, not by well"):
        lesson.record(Protocol("split by image", "image", True, "?"), t, pred, units, 4, t)
    with pytest.raises(LeakError, match="selected on"):
        lesson.record(
            Protocol("by well", "well", True, "ok"), t, pred, units, 4, t, selected_on="test"
        )
    peek = lesson.record(
        Protocol("by well, epoch chosen on test", "well", False, "peeks"),
        t,
        pred,
        units,
        4,
        t,
        selected_on="test",
    )
    half = lesson.record(
        Protocol("by well", "well", True, "ok"), t[:100], pred[:100], units[:100], 4, t
    )
    with pytest.raises(ValueError, match="different rows"):
        lesson.compare("x", peek, half)
    with pytest.raises(LeakError, match="not leak-free"):
        lesson.write("unused", reported=half, trusted=peek, trust="", data="", settings="")


def test_holdout_scores_every_protocol_on_the_same_rows_with_siblings_outside():
    wells = [f"w{i:02d}" for i in range(24)]
    df = pd.DataFrame(
        {
            "well": np.repeat(wells, 4),
            "site": np.tile(range(4), 24),
            "label": np.repeat(np.arange(24) % 6, 4),
        }
    )
    h = splits.holdout(df, "label", ["well"], groups_frac=0.25, keep=0.5, seed=1)
    ev_wells = set(h.eval.well)
    assert len(ev_wells) == 6 and len(h.eval) == 12  # one of 4 wells per class, 2 of 4 sites
    by_row, by_well = h.train(None), h.train("well")
    assert not set(by_row.index) & set(h.eval.index)
    assert set(by_row.well) & ev_wells == ev_wells  # siblings: the leak
    splits.check_disjoint(by_well, h.eval, "well")
    assert set(by_well.label) == set(df.label)  # every class keeps training wells
    over = splits.oversample_with_copies_of(df[df.label < 2].iloc[:-3], h.eval.iloc[:2], "label")
    assert len(over) > 0


def test_cross_predict_grouped_never_trains_on_the_wells_it_predicts():
    rng = np.random.default_rng(0)
    wells = np.repeat(np.arange(20), 10)
    y = (np.arange(20) % 2)[wells]
    x = rng.normal(size=(200, 3)) + rng.normal(0, 3, (20, 3))[wells]  # wells, not labels
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(1)
    random_folds = (splits.cross_predict(knn, x, y, None, 5, 0) == y).mean()
    grouped = (splits.cross_predict(knn, x, y, wells, 5, 0) == y).mean()
    assert random_folds > 0.8 and grouped < random_folds - 0.2  # well identity helps only
    # when the well is shared


def test_nothing_to_score_is_an_error_not_a_nan():
    with pytest.raises(ValueError, match="no evaluated rows"):
        _lesson().record(
            Protocol("by well", "well", True, "ok"),
            np.array([], int),
            np.array([], int),
            np.array([]),
            4,
            np.array([0, 1]),
        )


# ---- issue 23: seeds, units, the guard by row identity, multiplicity, baselines ----


def _seeded(n_seeds, spread, seed=0):
    """Per-seed predictions of two protocols on the same clustered rows: protocol a rescues
    a seed-dependent share of the rows protocol b gets wrong (``spread`` sets how much the
    seeds disagree)."""
    rng = np.random.default_rng(seed)
    t, base, units = _clustered(seed=seed)
    a, b = [], []
    for _ in range(n_seeds):
        share = 0.15 + spread * rng.normal()
        fix = rng.random(len(t)) < max(share, 0.0)
        a.append(np.where(fix, t, base))
        b.append(base)
    return t, np.stack(a), np.stack(b), units


def test_two_stage_bootstrap_adds_training_variance():
    t, a, b, units = _seeded(5, spread=0.12)
    fixed = stats.paired_difference(t, a, b, units, two_stage=False)
    both = stats.paired_difference(t, a, b, units)  # several seeds: two-stage by default
    assert both.two_stage and not fixed.two_stage and both.seeds == 5
    assert both.diff == pytest.approx(fixed.diff)
    assert (both.ci_high - both.ci_low) > 1.3 * (fixed.ci_high - fixed.ci_low)
    e1, e2 = stats.estimate(t, a, units, two_stage=False), stats.estimate(t, a, units)
    assert (e2.ci_high - e2.ci_low) > (e1.ci_high - e1.ci_low) and e2.two_stage
    one = stats.estimate(t, a[:1], units)
    assert not one.two_stage  # one run: nothing to resample, and the table says so


def test_bootstrap_p_and_holm():
    assert stats.bootstrap_p(np.ones(999)) == pytest.approx(1 / 1000)
    assert stats.bootstrap_p(np.r_[-np.ones(500), np.ones(500)]) == 1.0
    assert stats.bootstrap_p(np.r_[-np.ones(100), np.ones(900)]) == pytest.approx(0.2)
    adj = stats.holm([0.01, 0.04, 0.03, np.nan])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adj[3])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # monotone: never below a smaller p


def test_identical_predictions_are_said_so_not_reported_as_a_finding():
    t, pred, units = _clustered()
    lesson = _lesson()
    p1 = lesson.record(Protocol("by well", "well", True, "ok"), t, pred, units, 4, t)
    p2 = lesson.record(Protocol("by well again", "well", True, "ok"), t, pred, units, 4, t)
    c = lesson.compare("same", p1, p2, primary=True)
    assert c["identical"] and not c["excludes_zero"] and c["p"] == 1.0
    assert "identical predictions" in lesson.conclusion("same")
    assert lesson.comparisons_table().loc["same", "95% interval"] == "identical predictions"


def test_comparisons_carry_unit_seeds_holm_and_a_computed_conclusion(tmp_path):
    t, a, b, units = _seeded(3, spread=0.02)
    lesson = _lesson()
    lesson.declare_primary("the fix")
    leaky = Protocol("split images", None, False, "siblings")
    ra = lesson.record(Protocol("fixed", "well", True, "ok"), t, list(a), units, 4, t)
    rb = lesson.record(Protocol("base", "well", True, "ok"), t, list(b), units, 4, t)
    rc = lesson.record(leaky, t, b[0], units, 4, t)
    rd = lesson.record(Protocol("noisy", "well", True, "ok"), t, a[0], units, 4, t)
    main = lesson.compare("the fix", ra, rb)
    lesson.compare("one run", rd, rc)
    assert main["primary"] and main["seeds"] == 3 and main["two_stage"]
    assert main["unit"] == "well" and main["n_units"] == 30
    text = lesson.conclusion("the fix")
    assert text.startswith("fixed scores higher accuracy than base: +0.")
    assert "primary; Holm p=" in text and "3 seeds, 30 wells" in text
    assert "one training run" in lesson.conclusion("one run")
    assert lesson.comparisons_table().loc["one run", "training runs"] == "one training run"
    with pytest.raises(ValueError, match="already"):
        lesson.declare_primary("one run")
    m = json.loads(
        lesson.write(tmp_path, reported=rc, trusted=rb, trust="", data="", settings="").read_text()
    )
    assert [c["primary"] for c in m["comparisons"]] == [True, False] and m["primary"] == "the fix"
    ps = [c["p"] for c in m["comparisons"]]
    assert [c["p_holm"] for c in m["comparisons"]] == pytest.approx(
        stats.holm(ps).round(4), abs=1e-4
    )
    assert all(c["p_holm"] >= c["p"] for c in m["comparisons"])
    assert {"unit", "n_units", "seeds"} <= set(m["results"][0])


def test_a_declared_primary_that_is_never_made_is_an_error(tmp_path):
    t, pred, units = _clustered()
    lesson = _lesson()
    lesson.declare_primary("planned")
    r = lesson.record(Protocol("by well", "well", True, "ok"), t, pred, units, 4, t)
    lesson.compare("other", r, r)
    with pytest.raises(ValueError, match="'planned' was declared but never made"):
        lesson.write(tmp_path, reported=r, trusted=r, trust="", data="", settings="")


def test_guard_compares_row_sets_not_names():
    t, pred, units = _clustered()
    rows = np.arange(len(t)) + 1000
    free = Protocol("by well", "well", True, "ok")
    lesson = _lesson()
    # a set named "eval" that is the evaluation set: refused by its rows
    with pytest.raises(LeakError, match="holds 300 of the 300 rows it is scored on"):
        lesson.record(free, t, pred, units, 4, t, rows=rows, selected_on="eval", selected_rows=rows)
    # the same through a registered set, partly overlapping
    lesson.register_set("holdout-ish", np.r_[rows[:5], np.arange(50)])
    with pytest.raises(LeakError, match="holds 5 of the 300"):
        lesson.record(free, t, pred, units, 4, t, rows=rows, selected_on="holdout-ish")
    # carved from the training rows: accepted, with the set's fingerprint kept
    carved = np.arange(200)
    lesson.register_set("carved", carved)
    r = lesson.record(free, t, pred, units, 4, t, rows=rows, selected_on="carved")
    assert r.row["selection_checked"] and r.row["selected_rows_hash"] == rows_hash(carved[::-1])
    # a leaky protocol may be selected on anything (it is shown as leaky)
    peek = Protocol("peek", "well", False, "chosen on the evaluation set")
    lesson.record(peek, t, pred, units, 4, t, rows=rows, selected_rows=rows)
    # a name-only selection is kept but marked unchecked
    lesson2 = _lesson()
    r2 = lesson2.record(free, t, pred, units, 4, t, selected_on="val")
    assert r2.row["selection_checked"] is False


def test_cell_count_baseline_predicts_from_density_alone():
    rng = np.random.default_rng(0)
    wells = np.repeat(np.arange(40), 4)
    y = (np.arange(40) % 2)[wells]  # class 1 is toxic: fewer cells
    counts = rng.poisson(np.where(y == 1, 30, 60))
    train, ev = wells < 24, wells >= 24
    est = stats.cell_count_baseline(
        counts[train], y[train], counts[ev], y[ev], wells[ev], "balanced_accuracy"
    )
    assert est.value > 0.9 and est.n_units == 16
    flat = stats.cell_count_baseline(
        np.full(train.sum(), 50), y[train], np.full(ev.sum(), 50), y[ev], wells[ev],
        "balanced_accuracy",
    )  # fmt: skip
    assert flat.value == pytest.approx(0.5)
    lesson = _lesson()
    r = lesson.record(
        Protocol("by well", "well", True, "ok"), y[ev], y[ev], wells[ev], 2, y[train],
        cell_counts=(counts[train], counts[ev]),
    )  # fmt: skip
    assert r.row["cell_count"] == pytest.approx(est.value, abs=0.02)
    assert "cell_count" in lesson.table().columns
    with pytest.raises(ValueError, match="one entry per row"):
        stats.cell_count_baseline(counts[:3], y, counts, y, wells)


def test_cell_counts_from_truth_or_masks(tmp_path):
    import tifffile

    masks = np.zeros((8, 8), np.uint16)
    masks[1:3, 1:3], masks[5:7, 5:7] = 1, 7
    tifffile.imwrite(tmp_path / "m.tif", masks)
    index = pd.DataFrame({"key": ["a", "b"], "path_masks": [tmp_path / "m.tif"] * 2})
    assert stats.cell_counts(index).tolist() == [2, 2]
    truth = pd.DataFrame({"key": ["b", "a"], "n_cells": [5, 9]})
    assert stats.cell_counts(index, truth).tolist() == [9, 5]
    with pytest.raises(ValueError, match="first: 'c'"):
        stats.cell_counts(index.assign(key=["a", "c"]), truth)


def test_size_matched_keeps_the_leak_and_removes_the_size_difference():
    import pandas as pd

    from cellutils import splits

    big = pd.DataFrame({"well": list("aabbccdd") * 3, "y": range(24)})
    small = big.iloc[:10]
    matched = splits.size_matched(big, small, seed=1)
    assert len(matched) == len(small) and matched.index.isin(big.index).all()
    assert matched.index.is_monotonic_increasing
    with pytest.raises(ValueError, match="nothing to remove"):
        splits.size_matched(small, big)


def test_jackknife_t_matches_the_cluster_variance_of_accuracy_and_its_p():
    """Accuracy is a ratio over units; its delete-one-unit jackknife SE is the cluster-robust
    one, and the interval is estimate +- t_{G-1} SE; p < 0.05 exactly when it excludes 0."""
    from scipy import stats as st

    t, pred, units = _clustered(n_units=12, per=5, seed=3)
    e = stats.estimate(t, pred, units)
    hits = np.array([(pred[units == u] == t[units == u]).sum() for u in range(12)])
    n = np.full(12, 5)
    loo = (hits.sum() - hits) / (n.sum() - n)
    se = np.sqrt(11 / 12 * ((loo - loo.mean()) ** 2).sum())
    q = st.t.ppf(0.975, 11)
    assert e.method == "jackknife-t" and e.as_dict()["interval"] == "jackknife-t"
    assert e.ci_low == pytest.approx(max(0, e.value - q * se))
    assert e.ci_high == pytest.approx(min(1, e.value + q * se))
    rng = np.random.default_rng(1)
    for k in range(20):  # random pairs: the p and the interval agree
        b = np.where(rng.random(len(t)) < 0.2 + k / 40, t, (t + 1) % 4)
        d = stats.paired_difference(t, pred, b, units)
        assert d.excludes_zero == (d.p_value < 0.05)
    with pytest.raises(ValueError, match="known"):
        stats.estimate(t, pred, units, method="bca")


def test_jackknife_t_covers_better_than_the_percentile_bootstrap_with_few_clusters():
    """Draws of 8 clusters with a shared easy/hard effect: the t interval with G - 1 degrees
    of freedom covers the true accuracy near 95%, the cluster percentile bootstrap less."""
    truth, hits = 0.6, {m: 0 for m in stats.METHODS}
    for s in range(100):
        t, pred, units = _clustered(n_units=8, per=6, seed=100 + s)
        for m in stats.METHODS:
            e = stats.estimate(t, pred, units, n_boot=200, seed=s, method=m)
            hits[m] += e.ci_low <= truth <= e.ci_high
    assert hits["jackknife-t"] / 100 >= 0.9
    assert hits["jackknife-t"] > hits["percentile"]


def test_one_unit_says_nothing():
    t = np.array([0, 1, 0, 1])
    e = stats.estimate(t, np.array([0, 1, 1, 1]), np.zeros(4))
    assert (e.ci_low, e.ci_high) == (0.0, 1.0)
    d = stats.paired_difference(t, t, np.array([0, 1, 1, 1]), np.zeros(4))
    assert (d.ci_low, d.ci_high, d.p_value) == (-1.0, 1.0, 1.0) and not d.excludes_zero
