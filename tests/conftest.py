"""Shared fixtures: tiny synthetic datasets in every layout, written once per session."""

from __future__ import annotations

import os

import matplotlib
import pytest

# Agg in this process only: an MPLBACKEND variable would reach the notebooks' kernels too and
# keep their figures out of the executed notebooks (which the site tests read)
matplotlib.use("Agg")
os.environ.setdefault("CELLUTILS_JOBS", "1")

from cellutils import datasets  # noqa: E402

TINY = {
    "rxrx1": dict(n_sirnas=8, n_positive=1, experiments={"HUVEC": 2, "RPE": 1}, size=48),
    "cpjump1": dict(
        plates=("BR00116991", "BR00116992"),
        n_compounds=4,
        n_positive=1,
        n_dmso_wells=2,
        sites=2,
        size=48,
    ),
    "cpjump1_subset": dict(
        n_single=6, n_double=2, n_dmso_wells=3, sites=3, size=48, upper_case_fraction=0.2
    ),
    "cell_lines": dict(n_train=40, n_test=10, size=32),
}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{layout: root} of tiny synthetic datasets (read-only: copy before damaging one)."""
    base = tmp_path_factory.mktemp("tiny")
    return {
        name: datasets.LAYOUTS[name].write(base / name, seed=3, **kw) for name, kw in TINY.items()
    }


@pytest.fixture
def copy_of(tiny, tmp_path):
    """A private copy of one tiny dataset, safe to damage."""
    import shutil

    def _copy(name):
        dest = tmp_path / name
        shutil.copytree(tiny[name], dest)
        return dest

    return _copy
