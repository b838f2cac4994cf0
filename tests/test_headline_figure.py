"""summary.plot_headline: the report's claim on its own task, with that task's chance line."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils.summary import plot_headline


def test_claim_row_has_the_chance_of_the_reports_own_class_count():
    row = {"notebook": "05_cpjump1_mobilenet", "report": "002", "metric": "accuracy"}
    row |= {"claimed": 0.98, "claimed_metric": "accuracy", "claimed_classes": 50}
    for prefix, v in (("reported", 0.9), ("trusted", 0.3)):
        row |= {f"{prefix}_value": v, f"{prefix}_ci_low": v - 0.1, f"{prefix}_ci_high": v + 0.1}
        row |= {f"{prefix}_n_classes": 21, f"{prefix}_chance": 1 / 21, f"{prefix}_majority": 0.13}
    fig = plot_headline(pd.DataFrame([row]))
    ticks = [
        (line.get_xdata()[0], np.mean(line.get_ydata()))
        for line in fig.axes[0].lines
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    ]
    assert (1 / 50, 0) in ticks  # the claim's row: 50 classes on real data
    assert (1 / 21, 1) in ticks and (1 / 21, 2) in ticks  # ours: 21 synthetic classes
    plt.close(fig)
