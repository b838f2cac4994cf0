"""results/SUMMARY.md from metrics.json files."""

from __future__ import annotations

import json

from cellutils import evaluate, summary


def _write(root, nb, run_id, results, claimed, profile="quick"):
    run = root / nb / run_id
    run.mkdir(parents=True)
    evaluate.write_metrics(run, nb, "x", "t", claimed, results, "leak-free", "synthetic", profile)
    return run


def test_headline_picks_the_report_protocol_and_the_leak_free_row(tmp_path):
    rows = [evaluate.result_row("reported: random split", {"val_accuracy": 0.9}, False),
            evaluate.result_row("leak-free: by experiment", {"val_accuracy": 0.4,
                                                             "test_accuracy": 0.35}, True)]
    _write(tmp_path, "03_rxrx1_efficientnet", "20260101-000000-quick",
           [{**r, "val_accuracy": 0.1} for r in rows], {"val_accuracy": 0.5})  # older run
    newest = _write(tmp_path, "03_rxrx1_efficientnet", "20260102-000000-quick", rows,
                    {"val_accuracy": 0.49})
    _write(tmp_path, "07_embeddings", "20260101-000000-smoke", rows, {}, profile="smoke")
    metrics = summary.load(tmp_path, "quick")
    assert set(metrics) == {"03_rxrx1_efficientnet"}
    assert metrics["03_rxrx1_efficientnet"]["run"] == str(newest)
    row = summary.headline_table(metrics).iloc[0]
    assert row["claimed"] == 0.49 and row["reproduced (report's protocol)"] == 0.9
    assert row["leak-free (trust this)"] == 0.4 and row["held-out test"] == 0.35
    path = summary.write_summary(tmp_path, "quick", {"03_rxrx1_efficientnet": 12.0})
    text = path.read_text()
    assert "| 0.490 | 0.900 | **0.400** |" in text and "**12**" in text
    summary.write_summary(tmp_path, "quick")  # derived file: rebuilt, not refused
    assert json.loads((newest / "metrics.json").read_text())["claimed"]["val_accuracy"] == 0.49
