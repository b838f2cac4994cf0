"""Issue 23: sphering that does not inflate replicate mAP, the no-signal line sent through the
same pipeline, and the simulator's well-position effect (CPJUMP1's confound)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellutils import features
from cellutils import simulate as sim

DMSO = "Metadata_pert_iname == 'DMSO'"


def _quick_layout(seed: int, n_features: int = 24, n_compounds: int = 26, n_dmso: int = 8):
    """The quick cpjump1 layout's shape: 2 plates sharing one plate map, 26 compounds (one
    well per plate) and 8 DMSO wells per plate (16 in all); per-well features of pure noise
    (24: the regionprops set's size)."""
    rng = np.random.default_rng(seed)
    names = [f"cmp{i:02d}" for i in range(n_compounds)] + ["DMSO"] * n_dmso
    meta = pd.DataFrame(
        [
            {"Metadata_Plate": p, "Metadata_Well": f"W{i:02d}", "Metadata_pert_iname": n}
            for p in ("P1", "P2")
            for i, n in enumerate(names)
        ]
    )
    x = rng.standard_normal((len(meta), n_features))
    return pd.concat(
        [meta, pd.DataFrame(x, columns=[f"Cells_F{j}" for j in range(n_features)])], axis=1
    )


def _identity(table):
    """The profile recipe's normalise + select on per-well rows (no aggregation needed)."""
    return features.select_features(features.normalize(table, DMSO))


def _summary(maps):
    return maps.mean_average_precision.mean(), maps.below_corrected_p.mean()


def test_sphered_noise_stays_at_the_noise_line_and_in_sample_sphering_does_not():
    got = {k: [] for k in ("unsphered", "same wells", "held out", "in-sample")}
    for seed in range(4):
        table = _quick_layout(seed)
        kw = {"null_size": 500, "seed": seed, "make": _identity, "noise_seed": seed}
        got["unsphered"].append(_summary(features.noise_maps(table, None, **kw)))
        got["same wells"].append(_summary(features.noise_maps(table, None, spend=True, **kw)))
        got["held out"].append(_summary(features.noise_maps(table, "held_out", **kw)))
        got["in-sample"].append(_summary(features.noise_maps(table, "all", **kw)))
    m = {k: np.mean(v, axis=0) for k, v in got.items()}  # (mean mAP, share significant)
    # the fix: sphering fitted on control wells that are not negatives stays at the line of
    # unsphered noise on the same wells
    assert abs(m["held out"][0] - m["same wells"][0]) <= 0.05
    assert m["held out"][1] <= 0.10
    # the old recipe (fitted on the negatives themselves) fails the same check: it lifts
    # noise above its line, or makes noise "compounds" significant
    assert m["in-sample"][0] - m["unsphered"][0] > 0.05 or m["in-sample"][1] > 0.10


def test_held_out_sphering_spends_the_fitting_wells_on_every_plate():
    table = _identity(_quick_layout(0))
    spent = features.sphering_wells(table, DMSO, seed=3)
    assert spent.sum() == 8 and not (spent & (table.Metadata_pert_iname != "DMSO")).any()
    by_pos = table[spent].groupby("Metadata_Well").Metadata_Plate.nunique()
    assert (by_pos == 2).all()  # a position is spent on both plates or on none
    out = features.spherize(table, DMSO, fit="held_out", fit_wells=spent)
    assert len(out) == len(table) - 8 and out.attrs["sphering_wells"] == 8
    assert (out.Metadata_pert_iname == "DMSO").sum() == 8
    with pytest.raises(ValueError, match="choose one of"):
        features.spherize(table, DMSO, fit="held-out")
    with pytest.raises(ValueError, match="cannot be split"):
        features.sphering_wells(table[table.Metadata_Well.isin(["W26", "W27", "W00"])], DMSO)
    # cross-fit by plate and leave-one-out keep every well
    for fit in ("other_plates", "leave_one_out"):
        assert len(features.spherize(table, DMSO, fit=fit)) == len(table)


def _latent_wells(position_sd: float, seed: int = 0, n_dmso: int = 12, plates: int = 3):
    """Well profiles from the simulator's nuisance model, without rendering: each well's
    profile is its context shift (``simulate.context_shift``: plate, own well, and the
    position effect shared by a position on every plate) plus the sampling noise of the
    mean of ~60 cells (``CELL_SD``) and a small measurement noise. DMSO wells only."""
    rng = np.random.default_rng(seed)
    sd = np.r_[sim.CELL_SD[:-1], 0.1] / np.sqrt(60) + 0.02
    rows = []
    for p in range(plates):
        for i in range(n_dmso):
            well = f"B{i + 2:02d}"
            shift = sim.context_shift(seed, "exp", f"P{p}", well, 0.0, 0.2, 0.3, position_sd)
            x = shift + rng.normal(0, 1, len(sim.LATENT)) * sd
            feats = {f"Cells_{n}": v for n, v in zip(sim.LATENT, x, strict=True)}
            rows.append(
                {"Metadata_Plate": f"P{p}", "Metadata_Well": well, "Metadata_pert_iname": "DMSO"}
                | feats
            )
    return pd.DataFrame(rows)


def test_the_position_effect_makes_same_position_dmso_wells_find_each_other():
    def score(df, seed):
        prof = features.select_features(features.normalize(df, DMSO))
        return features.position_map(prof, null_size=300, seed=seed).mean_average_precision.mean()

    on, off, line = [], [], []
    for seed in range(3):
        on.append(score(_latent_wells(0.4, seed), seed))
        off.append(score(_latent_wells(0.0, seed), seed))
        line.append(score(features.noise_like(_latent_wells(0.4, seed), seed), seed))
    line_ = np.mean(line)
    assert np.mean(on) > line_ + 0.2  # same position, other plate: retrieved far above noise
    assert abs(np.mean(off) - line_) < 0.08  # without the position effect: at the line
    # keyed by position: the same on every plate and in every experiment, unlike well_sd
    a = sim.context_shift(0, "e1", "P1", "C05", position_sd=0.4)
    assert np.allclose(a, sim.context_shift(0, "e2", "P7", "C05", position_sd=0.4))
    assert not np.allclose(a, sim.context_shift(0, "e1", "P1", "C06", position_sd=0.4))


def test_position_aware_pairing_removes_what_same_position_replicates_add():
    # DMSO wells (the label whose replicates lie at several positions) beside inactive
    # compounds at their own positions, the position effect on, one plate map for all plates
    df = _latent_wells(0.4, 0, n_dmso=24)
    df.loc[df.Metadata_Well > "B13", "Metadata_pert_iname"] = "inactive"
    df.loc[df.Metadata_pert_iname == "inactive", "Metadata_pert_iname"] += df.Metadata_Well
    prof = features.select_features(features.normalize(df, "Metadata_Well <= 'B05'"))

    def dmso(frame, **kw):
        m = features.replicate_map(frame, "Metadata_pert_iname", "Metadata_Plate", None, 300, **kw)
        return float(m.set_index("Metadata_pert_iname").loc["DMSO", "mean_average_precision"])

    naive = dmso(prof)
    aware = dmso(prof, position="Metadata_Well")
    noise = features.noise_like(prof, 1)
    line = dmso(noise, position="Metadata_Well")
    assert naive > aware + 0.03  # the same-position DMSO pairs lifted it
    assert aware <= line + 0.05  # without them, no longer above the no-signal line
    # one plate map for every plate: a compound's replicates all share a position
    table = _identity(_quick_layout(0))
    with pytest.raises(ValueError, match="nothing is left to retrieve"):
        features.replicate_map(
            table, "Metadata_pert_iname", "Metadata_Plate", "DMSO", 100, position="Metadata_Well"
        )
