import os

import numpy as np
import pytest
import torch

from cellutils import paths, runtime


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLUTILS_DATA", str(tmp_path / "env"))
    assert paths.data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert paths.data_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("CELLUTILS_DATA")
    assert paths.data_root(create=False) == paths.repo_root() / "data"


def test_data_root_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="CELLUTILS_DATA"):
        paths.data_root(f)


def test_run_dirs_are_never_reused(tmp_path):
    a = paths.new_run_dir("03_rxrx1", tmp_path, run_id="same")
    (a / "metrics.json").write_text("{}")
    b = paths.new_run_dir("03_rxrx1", tmp_path, run_id="same")
    assert a != b and b.name == "same-2" and (a / "metrics.json").read_text() == "{}"
    assert paths.new_run_dir("03_rxrx1", tmp_path).parent == a.parent
    with pytest.raises(ValueError):
        paths.new_run_dir("../escape", tmp_path)


def test_use_run_dir_refuses_an_earlier_runs_results(tmp_path):
    d = tmp_path / "run"
    assert paths.use_run_dir(d, "x") == d.resolve()
    paths.write_json(d / "metrics.json", {"acc": np.float32(0.5)})
    with pytest.raises(FileExistsError, match="earlier run"):
        paths.use_run_dir(d, "x")


def test_atomic_write_never_overwrites_silently(tmp_path):
    p = paths.atomic_write_text(tmp_path / "a.txt", "one")
    with pytest.raises(FileExistsError):
        paths.atomic_write_text(p, "two")
    assert p.read_text() == "one"
    paths.atomic_write_text(p, "two", overwrite=True)
    assert p.read_text() == "two"
    assert not list(tmp_path.glob(".*tmp"))


def test_pick_device_order(monkeypatch):
    monkeypatch.delenv("CELLUTILS_DEVICE", raising=False)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert runtime.pick_device(verbose=False).type == expected
    assert runtime.pick_device("cpu", verbose=False).type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("CELLUTILS_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.pick_device(verbose=False)


def test_seed_everything_repeats_numbers():
    g1 = runtime.seed_everything(7)
    a = (torch.rand(3), np.random.rand(2), g1.random())  # noqa: NPY002
    g2 = runtime.seed_everything(7)
    b = (torch.rand(3), np.random.rand(2), g2.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert os.environ["PYTHONHASHSEED"] == "7"


def test_settings_rule_explicit_then_environment_then_device(monkeypatch):
    from cellutils.runtime import resolve_settings

    monkeypatch.delenv("CELLPAINT_SETTINGS", raising=False)
    assert resolve_settings(None, torch.device("cpu"))[0] == "quick"
    assert resolve_settings(None, torch.device("cuda"))[0] == "full"
    monkeypatch.setenv("CELLPAINT_SETTINGS", "full")
    assert resolve_settings(None, torch.device("cpu")) == ("full", "from $CELLPAINT_SETTINGS")
    assert resolve_settings("smoke", torch.device("cpu"))[0] == "smoke"
    with pytest.raises(ValueError, match="choose one of"):
        resolve_settings("fast", torch.device("cpu"))


def test_full_settings_on_a_cpu_warn_and_say_how_to_switch(capsys):
    from cellutils.runtime import warn_full_cost

    warn_full_cost(torch.device("cpu"), 30, "05_cpjump1_mobilenet")
    out = capsys.readouterr().out
    assert "WARNING" in out and 'settings = "quick"' in out and "--only 05" in out


def test_conda_route_installs_what_make_setup_installs():
    """environment.yml: the same constraints and editable install as `make setup`, a Python the
    package accepts, and the three set-up steps the README lists for conda users."""
    import re

    import yaml

    from cellutils.paths import repo_root

    root = repo_root()
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-c constraints.txt", "-e .[dev,site]"]
    make = (root / "Makefile").read_text()
    assert '-c constraints.txt -e ".[dev,site]"' in make
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minor = int(py.split(".")[1])
    spec = re.search(
        r'requires-python = ">=3\.(\d+),<3\.(\d+)"', (root / "pyproject.toml").read_text()
    )
    assert int(spec[1]) <= minor < int(spec[2])
    readme = (root / "docs" / "running.md").read_text()  # the conda steps, linked from README
    for step in (
        "ipykernel install --user --name cellpaint",
        "cellutils.realdata",
        "cellutils.cellpose_weights weights",
    ):
        assert step in readme and step.split()[-1] in (root / "environment.yml").read_text()
