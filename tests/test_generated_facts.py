"""Facts the repository quotes come from runs: every run saves its environment
(notebooks.save_environment) and the README's results block is SUMMARY.md's tables
(summary.update_readme)."""

import pytest
import torch

from cellutils.notebooks import save_environment
from cellutils.summary import README_END, README_START, update_readme


def test_environment_txt_names_torch_cuda_device_and_the_packages(tmp_path):
    path = save_environment(tmp_path)
    assert path == tmp_path / "environment.txt"
    text = path.read_text()
    assert f"torch: {torch.__version__}" in text
    assert "torch CUDA:" in text and "device: " in text
    frozen = text.split("pip freeze:", 1)[1]
    assert "numpy==" in frozen  # a real freeze, not an empty section


def test_readme_block_is_replaced_from_the_summary_and_nothing_else_changes(tmp_path):
    summary = tmp_path / "SUMMARY.md"
    summary.write_text(
        "# Results summary\n\n## Time per notebook\n\n| `00_data` | 194 |\n"
        "\n## Figures\n\n![f](00_data/x/f.png)\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold 14 min 21 s\n{README_END}\noutro\n")
    update_readme(summary, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{README_END}\noutro\n")
    assert "old 14 min" not in text and "### Time per notebook" in text and "| 194 |" in text
    assert "f.png" not in text and "Results summary" not in text


def test_readme_without_markers_is_refused_and_left_alone(tmp_path):
    summary = tmp_path / "SUMMARY.md"
    summary.write_text("# Results summary\n")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="results:start"):
        update_readme(summary, readme)
    assert readme.read_text() == "no markers\n"


def test_headline_figure_keeps_the_claim_apart_on_its_own_metric_with_a_legend():
    import matplotlib.pyplot as plt
    import pandas as pd

    from cellutils.summary import plot_headline

    row = {"notebook": "02_features", "report": "004", "metric": "balanced_accuracy"}
    row |= {"claimed": 0.79, "claimed_metric": "accuracy", "claimed_classes": 2}
    for prefix, v in (("reported", 0.55), ("trusted", 0.47)):
        row |= {f"{prefix}_value": v, f"{prefix}_ci_low": v - 0.05, f"{prefix}_ci_high": v + 0.05}
        row |= {f"{prefix}_n_classes": 2, f"{prefix}_chance": 0.5, f"{prefix}_majority": 0.5}
    fig = plot_headline(pd.DataFrame([row]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "claim (real data)"
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "accuracy, 2 classes"  # the claim on its own metric
    assert all(t == "balanced accuracy, 2 classes" for t in texts[1:])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "claim: real data" in legend and "synthetic: trust this" in legend
    plt.close(fig)
