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
    lesson.compare("same twice", free, free)  # identical predictions: said so
    half = np.where(np.arange(100) < 50, t, free_pred)
    other = lesson.record(Protocol("by well, half fixed", "well", True, "x"), t, half, units, 4, t)
    lesson.compare("a secondary one", other, free)
    lesson.add_cell_count(free, np.arange(100) % 7, t, np.arange(100) % 7)
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
    assert row.trusted_cell_count is not None  # the cell-count baseline beside the number
    primaries = text.split("## Primary comparisons")[1].split("## All paired")[0]
    assert "the leak: oversample all, then split − split by well" in primaries
    assert "one training run" in primaries and "20 wells" in primaries
    assert "excludes 0 after Holm" in primaries  # 1.0 vs 0.4 on 20 wells
    assert "| <0.001 | excludes 0 after Holm |" in primaries
    assert "same twice" not in primaries and "a secondary one" not in primaries
    everything = text.split("## All paired comparisons")[1]
    assert "the leak **primary**" in everything
    assert "| same twice | split by well − split by well | identical predictions |" in everything
    assert "a secondary one" in everything and "Holm p" in everything
    summary.write_summary(tmp_path, "quick")  # derived file: rebuilt, not refused
    assert json.loads((newest / "metrics.json").read_text())["claim"]["value"] == 0.978
    fig = summary.plot_headline(summary.headline_table(metrics))
    assert len(fig.axes) == 1
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summary.README_START}\nold\n{summary.README_END}\n")
    path = summary.write_summary(tmp_path, "quick", {"05_cpjump1_mobilenet": 12.0})
    block = summary.update_readme(path, readme).read_text()
    assert "### Primary comparisons" in block and "### Claimed vs reproduced" in block
    assert "the leak" in block and "excludes 0 after Holm" in block
    assert "a secondary one" not in block and "same twice" not in block  # primaries only
    assert "All paired comparisons" not in block and "**12**" in block


def test_verdict_is_computed_from_holm_and_identical_predictions():
    assert summary.verdict({"identical": True, "p_holm": 0.0}) == "identical predictions"
    assert summary.verdict({"p_holm": 0.01, "excludes_zero": True}) == "excludes 0 after Holm"
    # excludes 0 alone but not after Holm: the family's correction decides
    assert summary.verdict({"p_holm": 0.12, "excludes_zero": True}) == "cannot be told from 0"
    assert summary.verdict({"excludes_zero": True}) == "excludes 0 (no Holm)"
