"""``make calibrate``: each lesson's primary statistic on fresh simulator draws (tiny here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellutils import calibrate


def test_calibrate_writes_one_row_per_lesson_with_coverage_and_null_rate(tmp_path):
    path = calibrate.run(n_sims=2, n_truth=2, n_boot=50, out=tmp_path / "run")
    m = json.loads(path.read_text())
    lessons = [r["lesson"][:2] for r in m["rows"]]
    assert lessons == ["02", "03", "04", "05", "06", "07", "08"]
    for r in m["rows"]:
        assert {"lesson", "statistic", "n_sims", "coverage", "null_rate", "stand_in"} <= set(r)
        assert 0 <= r["coverage"] <= 1 and 0 <= r["null_rate"] <= 1 and r["n_sims"] == 2
        assert r["coverage_ci"][0] <= r["coverage"] <= r["coverage_ci"][1]
        assert r["interval"] == "jackknife-t" and 0 <= r["coverage_percentile"] <= 1
    assert [d["lesson"][:2] for d in m["decomposition"]] == ["03", "05", "06", "07", "08"]
    for d in m["decomposition"]:
        parts = d["more_rows"], d["sharing_nuisance"], d["rest"]
        assert all(p["ci"][0] <= p["mean"] <= p["ci"][1] for p in parts)
        total = d["unmatched_nuisance_on"]["mean"]
        assert sum(p["mean"] for p in parts) == pytest.approx(total, abs=2e-4)
    assert (tmp_path / "run" / "calibration.png").stat().st_size > 0
    text = calibrate.note("06_mask_attention", results=tmp_path / "results")
    assert "no calibration run found" in text
    (tmp_path / "results" / "calibration").mkdir(parents=True)
    (tmp_path / "run").rename(tmp_path / "results" / "calibration" / "20260101-000000")
    text = calibrate.note("06_mask_attention", results=tmp_path / "results")
    assert "jackknife-t" in text and "sharing the nuisance" in text and "more rows" in text
    assert "sharing the nuisance" not in calibrate.note("04_x", results=tmp_path / "results")


def test_the_leaks_show_with_the_effect_on_and_vanish_with_it_off():
    d = {x.lesson[:2]: x for x in calibrate.designs(n_boot=200)}
    on = np.mean([d["06"].draw(s, True)["diff"] for s in range(6)])
    off = np.mean([d["06"].draw(s, False)["diff"] for s in range(6)])
    assert on > 0.1 and abs(off) < 0.1  # siblings of a shifted well help; unshifted, not
    assert d["05"].draw(0, True)["diff"] > 0.3  # copies of the scored rows in training


def test_decomposition_puts_the_well_leak_in_the_nuisance_and_05s_copies_in_the_rest():
    d = {x.lesson[:2]: x for x in calibrate.designs(n_boot=50)}
    six, five = calibrate.decompose(d["06"], 6), calibrate.decompose(d["05"], 6)
    assert six["sharing_nuisance"]["mean"] > 0.1 and abs(six["rest"]["mean"]) < 0.1
    assert five["rest"]["mean"] > 0.3  # copies of scored rows help with no nuisance at all
    assert calibrate.decompose(d["04"], 2) is None  # not a leak of shared units


def test_knn_stand_in_finds_the_nearest_class():
    x = np.array([[0.0, 0], [0, 1], [10, 10], [10, 11]])
    knn = calibrate._KNN(1).fit(x, np.array([0, 0, 1, 1]))
    assert knn.predict(np.array([[9.0, 9], [0.0, 0.5]])).tolist() == [1, 0]
