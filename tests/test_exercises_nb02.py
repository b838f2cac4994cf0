"""Notebook 02's exercise checks: the right answer passes, a wrong one raises NotYet without
the expected value, the student's stub (``...``) does not raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, KFold

from cellutils import features
from cellutils.exercises import NotYet, nb02


@pytest.fixture(scope="module")
def cells():
    """Cells of 2 plates x (3 DMSO + 2 compounds) wells, 5 cells each, two features."""
    rng = np.random.default_rng(1)
    rows = []
    for plate in ("P1", "P2"):
        for w, name in enumerate(["DMSO", "DMSO", "DMSO", "Xylo", "Quorb"]):
            shift = {"Xylo": 3.0, "Quorb": 0.5}.get(name, 0.0)
            for cell in range(5):
                rows.append(
                    {
                        "Metadata_Plate": plate,
                        "Metadata_Well": f"A{w:02d}",
                        "Metadata_pert_iname": name,
                        "Metadata_ObjectNumber": cell + 1,
                        "Cells_AreaShape_Area": rng.normal(100 + 10 * shift, 5),
                        "Cells_Intensity_MeanIntensity_DNA": rng.normal(1 + shift, 0.2),
                    }
                )
    return pd.DataFrame(rows)


def test_grouped_folds(cells, capsys):
    wells = (cells.Metadata_Plate + "/" + cells.Metadata_Well).to_numpy()
    fold = np.zeros(len(cells), int)
    for k, (_, test) in enumerate(GroupKFold(n_splits=5).split(cells, groups=wells)):
        fold[test] = k
    nb02.check_grouped_folds(fold, wells)
    assert "correct" in capsys.readouterr().out
    random = np.zeros(len(cells), int)
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(cells)):
        random[test] = k
    with pytest.raises(NotYet):
        nb02.check_grouped_folds(random, wells)
    with pytest.raises(NotYet):
        nb02.check_grouped_folds(fold[:-1], wells)
    nb02.check_grouped_folds(..., wells)
    assert "not answered yet" in capsys.readouterr().out


def _robust_z(cells: pd.DataFrame, feature: str) -> pd.Series:
    """The notebook's solution: medians per well, then per plate against its DMSO wells."""
    wells = cells.groupby(["Metadata_Plate", "Metadata_Well"]).agg(
        value=(feature, "median"), name=("Metadata_pert_iname", "first")
    )
    out = []
    for _, plate in wells.groupby(level="Metadata_Plate"):
        dmso = plate.value[plate.name == "DMSO"]
        mad = np.median(np.abs(dmso - dmso.median()))
        out.append((plate.value - dmso.median()) / (1.4826 * mad))
    return pd.concat(out)


def test_well_z(cells, capsys):
    normalised = features.normalize(
        features.profiles(cells, ["Metadata_Plate", "Metadata_Well"]),
        "Metadata_pert_iname == 'DMSO'",
    )
    feature = "Cells_AreaShape_Area"
    right = _robust_z(cells, feature)
    nb02.check_well_z(right, normalised, feature)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:  # the standard deviation is not the MAD
        nb02.check_well_z(right * 1.4826, normalised, feature)
    assert f"{right.iloc[-1]:.3f}" not in str(err.value)
    with pytest.raises(NotYet):  # indexed by row number, not by well
        nb02.check_well_z(right.reset_index(drop=True), normalised, feature)
    nb02.check_well_z(..., normalised, feature)
    assert "not answered yet" in capsys.readouterr().out


def _map_by_hand(profiles: pd.DataFrame, compound: str) -> float:
    """The notebook's solution: cosine ranks, replicates on the other plate vs DMSO wells."""
    cols = features.feature_columns(profiles)
    x = profiles[cols].to_numpy(float)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    is_c = (profiles.Metadata_pert_iname == compound).to_numpy()
    is_dmso = (profiles.Metadata_pert_iname == "DMSO").to_numpy()
    plate = profiles.Metadata_Plate.to_numpy()
    aps = []
    for i in np.flatnonzero(is_c):
        pos = is_c & (plate != plate[i])
        candidates = pos | is_dmso
        hits = pos[candidates][np.argsort(-(x[candidates] @ x[i]), kind="stable")]
        ranks = np.flatnonzero(hits) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))


def test_compound_map(cells, capsys):
    profiles = features.normalize(
        features.profiles(cells, ["Metadata_Plate", "Metadata_Well"]),
        "Metadata_pert_iname == 'DMSO'",
    )
    maps = features.replicate_map(
        profiles, "Metadata_pert_iname", "Metadata_Plate", "DMSO", null_size=50
    )
    for compound in ("Xylo", "Quorb"):
        nb02.check_compound_map(_map_by_hand(profiles, compound), compound, maps)
        assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb02.check_compound_map(1.5, "Quorb", maps)
    assert "Quorb: mAP" not in str(err.value)
    nb02.check_compound_map(..., "Quorb", maps)
    assert "not answered yet" in capsys.readouterr().out


def test_missed(monkeypatch, tmp_path, capsys):
    from cellutils import catalog
    from cellutils import synthetic as synth

    truth = pd.DataFrame(
        {"perturbation": ["DMSO", "Xylo", "Quorb", "Wumpf"], "active": [0, 1, 1, 0]}
    )
    monkeypatch.setattr(catalog, "is_synthetic", lambda root: True)
    monkeypatch.setattr(synth, "read_truth", lambda root: {"perturbations": truth})
    maps = pd.DataFrame(
        {
            "Metadata_pert_iname": ["Xylo", "Quorb", "Wumpf"],
            "below_corrected_p": [True, False, False],
        }
    )
    nb02.check_missed(["Quorb"], maps, tmp_path)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb02.check_missed(["Quorb", "Wumpf"], maps, tmp_path)
    assert "['Quorb']" not in str(err.value)
    nb02.check_missed(..., maps, tmp_path)
    assert "not answered yet" in capsys.readouterr().out
    monkeypatch.setattr(catalog, "is_synthetic", lambda root: False)
    nb02.check_missed(["Quorb"], maps, tmp_path)  # real data: nothing to check
    assert "nothing to check" in capsys.readouterr().out
