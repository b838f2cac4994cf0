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
