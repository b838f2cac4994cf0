"""Every run saves its environment next to its results (notebooks.save_environment)."""

import torch

from cellutils.notebooks import save_environment


def test_environment_txt_names_torch_cuda_device_and_the_packages(tmp_path):
    path = save_environment(tmp_path)
    assert path == tmp_path / "environment.txt"
    text = path.read_text()
    assert f"torch: {torch.__version__}" in text
    assert "torch CUDA:" in text and "device: " in text
    frozen = text.split("pip freeze:", 1)[1]
    assert "numpy==" in frozen  # a real freeze, not an empty section
