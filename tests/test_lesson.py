"""Intervals, paired differences, baselines, the lesson's bookkeeping and its leak rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellutils import splits, stats
from cellutils.lesson import Claim, Lesson, Protocol
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
