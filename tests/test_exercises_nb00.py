"""Notebook 00's exercise checks: the right answer passes, a wrong one raises NotYet without
the expected value, the student's stub (``...``) does not raise."""

from __future__ import annotations

import pandas as pd
import pytest

from cellutils.exercises import NotYet, nb00


@pytest.fixture
def index():
    return pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 7,
            "Metadata_Well": ["A01", "A01", "A02", "A03", "A03", "A04", "A05"],
            "Metadata_pert_iname": ["Xylo", "Xylo", "Quorb", "DMSO", "DMSO", "DMSO", "Wumpf"],
        }
    )


def test_one_well(index, capsys):
    nb00.check_one_well({"Xylo", "Quorb", "Wumpf"}, index)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb00.check_one_well(["Xylo"], index)
    assert "Quorb" not in str(err.value) and "Wumpf" not in str(err.value)
    nb00.check_one_well(..., index)
    assert "not answered yet" in capsys.readouterr().out


def test_majority(capsys):
    labels = pd.Series(["a"] * 6 + ["b"] * 3 + ["c"])
    nb00.check_majority(0.6, 1 / 3, labels)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb00.check_majority(0.6, 0.6, labels)  # balanced accuracy is not the accuracy
    assert "0.333" not in str(err.value) and "0.6" not in str(err.value)
    nb00.check_majority(..., ..., labels)
    assert "not answered yet" in capsys.readouterr().out
