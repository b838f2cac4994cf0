"""Notebook 09's exercise checks: the right answer passes, a wrong one raises NotYet without
the expected value, the student's stub (``...``) does not raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellutils.exercises import NotYet, nb09


@pytest.fixture
def sites():
    """Embeddings where the experiment shifts every site more than the siRNA does."""
    rng = np.random.default_rng(0)
    experiment = pd.Series(np.repeat(["E1", "E2", "E3"], 12))
    sirna = pd.Series(np.tile(["s1", "s2", "s3", "s4"], 9))
    shift = {"E1": 0.0, "E2": 4.0, "E3": -4.0}
    emb = rng.normal(0, 1, (36, 8)) + 5
    emb[:, 0] += experiment.map(shift).to_numpy()
    emb[:, 1] += sirna.map({"s1": 0.0, "s2": 1.0, "s3": 2.0, "s4": 3.0}).to_numpy()
    return emb.astype(np.float32), experiment, sirna


def _shares(emb, *labels):
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    j = sim.argmax(1)
    return [float(np.mean(np.asarray(y) == np.asarray(y)[j])) for y in labels]


def test_neighbours(sites, capsys):
    emb, experiment, sirna = sites
    same_exp, same_sirna = _shares(emb, experiment, sirna)
    nb09.check_neighbours(same_exp, same_sirna, emb, experiment, sirna)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:  # a site's nearest neighbour is not itself
        nb09.check_neighbours(1.0, 1.0, emb, experiment, sirna)
    assert f"{same_exp:.2f}" not in str(err.value)
    nb09.check_neighbours(..., same_sirna, emb, experiment, sirna)
    assert "not answered yet" in capsys.readouterr().out


def test_centred(sites, capsys):
    emb, experiment, sirna = sites
    centred = emb.astype(float).copy()
    for e in experiment.unique():
        rows = (experiment == e).to_numpy()
        centred[rows] -= centred[rows].mean(axis=0)
    nb09.check_centred(centred, emb, experiment, sirna)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet):  # the overall mean is not each experiment's
        nb09.check_centred(emb - emb.mean(axis=0), emb, experiment, sirna)
    nb09.check_centred(..., emb, experiment, sirna)
    assert "not answered yet" in capsys.readouterr().out
