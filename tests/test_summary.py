"""results/SUMMARY.md from the lessons' metrics.json files."""

from __future__ import annotations

import json

import numpy as np

from cellutils import summary
from cellutils.lesson import Claim, Lesson, Protocol


def _write(root, nb, run_id, acc_free, profile="quick"):
    run = root / nb / run_id
    run.mkdir(parents=True)
    units = np.repeat(np.arange(20), 5)
    t = np.arange(100) % 4
    lesson = Lesson(
        nb,
        "002",
        "t",
        Claim("accuracy", 0.978, "validation", 50, "random"),
        nuisance="well",
        unit="well",
    )
    rep = lesson.record(
        Protocol("oversample all, then split", None, False, "copies"), t, t, units, 4, t
    )
    free_pred = np.where(np.arange(100) < acc_free * 100, t, (t + 1) % 4)
    free = lesson.record(
        Protocol("split by well", "well", True, "no shared well"), t, free_pred, units, 4, t
    )
    lesson.compare("the leak", rep, free, primary=True)
    lesson.write(
        run, reported=rep, trusted=free, trust="by well", data="synthetic", settings=profile
    )
    return run


def test_headline_shows_intervals_classes_and_baselines(tmp_path):
    _write(tmp_path, "05_cpjump1_mobilenet", "20260101-000000-quick", 0.1)  # older run
    newest = _write(tmp_path, "05_cpjump1_mobilenet", "20260102-000000-quick", 0.4)
    _write(tmp_path, "07_embeddings", "20260101-000000-smoke", 0.5, profile="smoke")
    metrics = summary.load(tmp_path, "quick")
    assert set(metrics) == {"05_cpjump1_mobilenet"}
    assert metrics["05_cpjump1_mobilenet"]["run"] == str(newest)
    row = summary.headline_table(metrics).iloc[0]
    assert row.claimed == 0.978 and row.claimed_classes == 50
    assert row.reported_value == 1.0 and row.trusted_value == 0.4
    assert row.trusted_ci_low < 0.4 < row.trusted_ci_high
    assert row.trusted_n_classes == 4 and row.trusted_chance == 0.25
    path = summary.write_summary(tmp_path, "quick", {"05_cpjump1_mobilenet": 12.0})
    text = path.read_text()
    assert "| 0.978 (50; –) | 1.000 [1.000, 1.000] | 4 / 0.250 / " in text
    assert "**0.400 [" in text and "**12**" in text and "data: synthetic." in text
    assert "the leak" in text and "(excludes 0)" in text
    summary.write_summary(tmp_path, "quick")  # derived file: rebuilt, not refused
    assert json.loads((newest / "metrics.json").read_text())["claim"]["value"] == 0.978
    fig = summary.plot_headline(summary.headline_table(metrics))
    assert len(fig.axes) == 1
