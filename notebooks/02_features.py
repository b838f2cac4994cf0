# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (cellpaint)
#     language: python
#     name: cellpaint
# ---

# %% [markdown]
# # 02 · Per-cell features, well profiles, and what they can tell apart
#
# > **Time** a few minutes (quick settings, 2 CPU cores, data already generated) · full settings: on one GPU, not yet timed \
# > **Settings** quick: classical masks, one site per well for the three-profile comparison · full: the machine's backend (cellpose on a GPU) and every site; both: the frozen ImageNet EfficientNet-Lite0 as the CNN profile, nothing trained but a logistic regression \
# > **Needs** notebook 01's masks (made here when missing) \
# > **You will learn**
# > - per-cell features, well profiles and per-plate normalisation to DMSO (pycytominer)
# > - replicate mAP (copairs): which compounds have a phenotype at all
# > - why a cell-level classifier needs a well-level split
# > - regionprops vs CellProfiler-grade (cp-measure) vs CNN profiles, and sphering, by replicate mAP with intervals
#
# Report **004** measures every segmented cell with scikit-image's `regionprops` (area, convex
# area, perimeter, eccentricity, mean/min/max intensity, axis lengths, orientation, solidity,
# extent, centroid, bounding box), drops cells whose perimeter is 0, and checks that a logistic
# regression can tell DMSO from compound-treated cells before it trains its network.
#
# Here: the same table for every channel, the cleaning made explicit, then what the field does
# next with **pycytominer** (median well profiles, per-plate normalisation against DMSO,
# feature selection) and **copairs** (replicate retrieval: can a well find the other wells of
# its own compound among the DMSO wells?). And the sanity check done twice: with cells of one
# well on both sides of the split (a leak: wells differ in more than the compound), and
# grouped by well. Then the question JUMP asks of every profiling method: do report 004's
# regionprops features, CellProfiler's measurements (texture, granularity, radial
# distribution, channel correlation, via **cp-measure**) or a CNN's embeddings find a
# compound's replicate wells better, and does a batch correction (sphering) help? Sites are
# segmented and measured on **dask** (your cores, or a cluster), one Parquet file per plate.

# %% tags=["parameters"]
settings = None  # None: "quick" without a GPU, "full" (this cell's values) on one; or set it
results_dir = None  # set by the runner (None: a new folder under results/02_features/)
data_root = None  # None: $CELLUTILS_DATA, else the repo's data/
seed = 0
real_cpjump1 = None  # folder with images/ + load_data_csv/ + metadata/
synthetic = {}  # generator overrides for the synthetic CPJUMP1
channels = ["DNA", "ER", "RNA", "AGP", "Mito"]  # the five Cell Painting stains
cyto_channel = "AGP"
nucleus_channel = "DNA"
backend = "auto"  # auto | cellpose | classical (reuses notebook 01's masks when present)
max_cells_per_class = 20000  # cells used by the sanity-check classifier
workers = None  # dask workers on this machine (None: every core); a cluster: DASK_SCHEDULER_ADDRESS
compare_sites_per_well = None  # sites per well measured for the comparison (None: all)
null_size = 5000  # copairs permutations per compound

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from cellutils import (
    catalog,
    cluster,
    datasets,
    display,
    embeddings,
    features,
    segment,
    splits,
    torchdata,
)
from cellutils import synthetic as synth
from cellutils.lesson import Claim, Lesson, Protocol
from cellutils.paths import atomic_write_text, use_run_dir
from cellutils.runtime import apply_settings, seed_everything

settings = apply_settings(globals(), notebook="02_features")
rng = seed_everything(seed)
run = use_run_dir(results_dir, "02_features")

# %% [markdown]
# ## 1 · Segment (or reuse) and measure every cell

# %%
root = catalog.locate(
    "cpjump1", real=real_cpjump1, data_root=data_root, overrides=synthetic or None, seed=seed
)
index = catalog.read_index("cpjump1", root)
index["key"] = datasets.cpjump1_site_key(index)
backend = segment.resolve_backend(backend)
client = cluster.get_client(n_workers=workers)  # or the scheduler at DASK_SCHEDULER_ADDRESS
masks_dir = segment.output_dir(root, backend=backend, data_root=data_root)
seg_index = segment.segment_index(
    index=index,
    out_dir=masks_dir,
    key="key",
    cyto=cyto_channel,
    nucleus=nucleus_channel,
    backend=backend,
    client=client,
    flows=False,  # the reports' settings; no flows: nothing here reads them
)

# %%
meta = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_pert_iname",
    "Metadata_pert_type",
    "Metadata_target",
]
cells = features.measure_dataset(
    index=index,
    segmented=seg_index,
    key="key",
    channels=channels,
    metadata=meta,
    feature_set="regionprops",
    out_dir=features.profiles_dir(masks_dir, "regionprops"),
    client=client,
)
cells, dropped = features.clean_cells(cells)
print(
    f"{len(cells):,} cells from {len(index)} images ({backend} masks); dropped: {dropped.to_dict()}"
)
cells.head()

# %% [markdown]
# ## 2 · Distributions per perturbation
# Four features for DMSO and the compounds whose median cell differs most from it
# (largest mean absolute z-score over features, in DMSO standard deviations).

# %%
feats = features.feature_columns(cells)
dmso = cells[cells.Metadata_pert_iname == "DMSO"]
z = (
    (
        (cells.groupby("Metadata_pert_iname")[feats].median() - dmso[feats].median())
        / dmso[feats].std()
    )
    .abs()
    .mean(axis=1)
    .sort_values(ascending=False)
)
shown = ["DMSO", *[p for p in z.index if p != "DMSO"][:5]]
sub = cells[cells.Metadata_pert_iname.isin(shown)]
show = [
    "Cells_AreaShape_Area",
    "Cells_AreaShape_Eccentricity",
    f"Cells_Intensity_MeanIntensity_{channels[0]}",
    f"Cells_Intensity_MeanIntensity_{channels[-1]}",
]
fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), sharey=True)
palette = {
    p: ("#bdbdbd" if p == "DMSO" else c)
    for p, c in zip(shown, sns.color_palette("tab10", len(shown)), strict=True)
}
for ax, f in zip(axes, show, strict=True):
    sns.boxplot(
        data=sub,
        y="Metadata_pert_iname",
        x=f,
        hue="Metadata_pert_iname",
        order=shown,
        palette=palette,
        showfliers=False,
        ax=ax,
        legend=False,
    )
    ax.set(xlabel=f.replace("Cells_", "").replace("_", " "), ylabel="")
fig.suptitle("Per-cell features: DMSO (grey) and the five most changed compounds")
fig.tight_layout()
display.save_figure(fig, run, "distributions")

# %% [markdown]
# ## 3 · Report 004's sanity check: DMSO vs compound from single cells
# A logistic regression on standardised cell features, scored out of fold: every cell is
# predicted by a model that did not train on it (`splits.cross_predict`). With folds of random
# cells (the report's kind of split), the other cells of its well are in training; with folds
# grouped by well, none are. Both protocols predict the **same cells**, so their difference is
# paired; the interval treats wells as the unit (each left out in turn: a jackknife t
# interval), and three fold assignments (seeds) are averaged. The
# gap is what well-specific appearance (position, density, staining; the simulator's per-well
# shift `well_sd`) was worth.

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

cc = cells.assign(y=(cells.Metadata_pert_iname != "DMSO").astype(int))
cc = pd.concat(
    [g.sample(min(len(g), max_cells_per_class), random_state=seed) for _, g in cc.groupby("y")]
)
clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
wells = (cc.Metadata_Plate + "/" + cc.Metadata_Well).to_numpy()
print(f"{len(cc):,} cells from {len(set(wells))} wells; compound-treated share {cc.y.mean():.2f}")

# %% [markdown] tags=["exercise"]
# **Exercise 02.1 · A grouped split.** `splits.cross_predict` below makes five folds of the
# cells `cc`, grouped by well when given `groups=wells`. Make those folds yourself: `fold`, one
# fold number (0-4) per row of `cc`, with every well's cells in one fold only. (scikit-learn's
# `GroupKFold(n_splits=5).split(X, y, groups=wells)` yields each fold's test rows.)

# %% tags=["solution"]
from sklearn.model_selection import GroupKFold

fold = np.zeros(len(cc), int)
for k, (_, test_rows) in enumerate(GroupKFold(n_splits=5).split(cc, groups=wells)):
    fold[test_rows] = k

# %% tags=["exercise"]
from cellutils.exercises import nb02

nb02.check_grouped_folds(fold, groups=wells, n_folds=5)

# %% [markdown]
# Now both protocols, three fold assignments (seeds) each, recorded and compared on the same
# cells.

# %%
lesson = Lesson(
    notebook="02_features",
    report="004",
    title="Per-cell features: DMSO vs compound (sanity check)",
    claim=Claim(
        metric="accuracy",
        value=0.79,
        split="validation",
        n_classes=2,
        protocol="logistic regression on cell features, random split of cells",
    ),
    nuisance="well",
    unit="well",
    metric="balanced_accuracy",
)
P = {
    "cells": Protocol(
        name="random folds of cells",
        split_by=None,
        leak_free=False,
        why="other cells of every evaluated well are in training",
    ),
    "wells": Protocol(
        name="folds grouped by well",
        split_by="well",
        leak_free=True,
        why="no evaluated well in training",
    ),
}

# %%
x, y = cc[feats].to_numpy(), cc.y.to_numpy()
preds = {
    k: [
        splits.cross_predict(
            estimator=clf,
            x=x,
            y=y,
            groups=wells if k == "wells" else None,
            n_splits=5,
            seed=seed + s,
        )
        for s in range(3)
    ]
    for k in P
}
res = {
    k: lesson.record(
        protocol=P[k],
        targets=y,
        pred=p,
        units=wells,
        n_classes=2,
        train_targets=y,
        model="logistic regression",
        rows=cc.index.to_numpy(),
        split="out of fold",
        selected_on=None,
    )
    for k, p in preds.items()
}

# %% [markdown]
# Two more things every claim here must face. A **cell-count baseline**: compounds that kill
# or slow cells change how many cells a site has, so a classifier of the site's cell count
# alone (one feature, log count) is the bar the features must clear to show they see more
# than density. And **one primary comparison**, named before reading the numbers: here, the
# report's random folds against the grouped ones.

# %%
from cellutils import calibrate, stats

site_cells = index[meta[:3]].assign(
    n_cells=stats.cells_per_row(index, keys=index.key, root=root, masks=seg_index).to_numpy()
)
cell_counts = cc[meta[:3]].merge(site_cells, on=meta[:3], how="left").n_cells.to_numpy()
for r in res.values():  # one feature, fitted on the same cells it scores: no room to overfit
    lesson.add_cell_count(r, train_counts=cell_counts, train_targets=y, eval_counts=cell_counts)
lesson.compare("004: cells of one well on both sides", res["cells"], res["wells"], primary=True)
print(lesson.conclusion("004: cells of one well on both sides"))
print(calibrate.note("02_features"))
lesson.table()

# %% [markdown] tags=["exercise"]
# **Question 02.2 · Same cells, two scores.** Both protocols predict exactly the same cells
# with the same model. Why can the random folds score higher, and what does the paired
# difference above measure?

# %% [markdown] tags=["solution"]
# **Model answer.** The cells of one well share more than their compound: the well's position
# on the plate, its cell density, its staining and focus (the simulator adds a per-well shift,
# `well_sd`). With random folds, other cells of every evaluated well are in training, so the
# model can score by recognising the well, and a well's label is its compound. Grouped folds
# never show the model an evaluated well, so only what generalises across wells is scored.
# Because both protocols predict the same cells, their difference is paired: it measures what
# recognising wells was worth, and its interval (wells resampled) says whether that is more
# than chance variation. The report's number is the random-folds one.

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You have measured every cell, seen which compounds change them, and
# > checked that a classifier can tell DMSO from compound only when its split respects wells.
# > Next: from cells to well profiles, the unit the field compares.

# %% [markdown]
# ## 4 · Well profiles: aggregate, normalise per plate against DMSO, select features

# %%
wells_df = features.profiles(cells, ["Metadata_Plate", "Metadata_Well"])
normalised = features.normalize(wells_df, "Metadata_pert_iname == 'DMSO'")
selected = features.select_features(normalised)
atomic_write_text(run / "well_profiles.csv", selected.to_csv(index=False))  # for notebook 09
print(
    f"{len(wells_df)} well profiles; {len(features.feature_columns(wells_df))} features -> "
    f"{len(features.feature_columns(selected))} after selection"
)

# %%
cols = features.feature_columns(selected)
names = selected.Metadata_pert_iname
lut = dict(zip(names.unique(), sns.color_palette("husl", names.nunique()), strict=True))
lut.update({c: display.CONTROL_COLOUR for c in display.CONTROLS if c in lut})
grid = sns.clustermap(
    selected[cols]
    .clip(-5, 5)
    .set_axis(names.to_numpy(), axis=0)
    .rename(columns=lambda c: c.replace("Cells_", "").replace("Intensity_", "")),
    cmap="RdBu_r",
    center=0,
    vmin=-5,
    vmax=5,
    row_colors=names.map(lut).to_numpy(),
    yticklabels=len(selected) <= 80,
    figsize=(12, max(6, 0.14 * len(selected))),
    cbar_kws={"label": "robust z-score vs DMSO of the plate"},
)
grid.ax_heatmap.set(ylabel="wells (label: compound; colour strip: compound, DMSO grey)")
grid.figure.suptitle("Normalised well profiles, clustered", y=1.02)
display.save_figure(grid.figure, run, "profiles_heatmap")

# %% [markdown] tags=["exercise"]
# **Exercise 02.3 · A well profile by hand.** Redo pycytominer's two steps for one feature,
# `Cells_AreaShape_Area`: the median over each well's cells (`cells`), then per plate the
# robust z-score against that plate's DMSO wells, (well - m) / (1.4826 × d), with m the median
# and d the median absolute deviation of the DMSO wells' values. `area_z`: a Series indexed by
# (`Metadata_Plate`, `Metadata_Well`). The check compares it with `normalised`.

# %% tags=["solution"]
well_area = cells.groupby(["Metadata_Plate", "Metadata_Well"]).agg(
    area=("Cells_AreaShape_Area", "median"), compound=("Metadata_pert_iname", "first")
)


def robust_z(plate):
    dmso = plate.area[plate.compound == "DMSO"]
    mad = (dmso - dmso.median()).abs().median()
    return (plate.area - dmso.median()) / (1.4826 * mad)


area_z = pd.concat([robust_z(p) for _, p in well_area.groupby(level="Metadata_Plate")])

# %% tags=["exercise"]
nb02.check_well_z(area_z, normalised=normalised, feature="Cells_AreaShape_Area")

# %% [markdown]
# ## 5 · Replicate retrieval (copairs)
# For each compound: how well do its wells on *other plates* retrieve each other against the
# DMSO wells (mean average precision, with a permutation p-value)? On the synthetic data we
# also know which compounds truly change the cells.

# %%
maps = features.replicate_map(
    profiles_df=selected,
    label="Metadata_pert_iname",
    batch="Metadata_Plate",
    control="DMSO",
    null_size=null_size,
    seed=seed,
)
if catalog.is_synthetic(root):
    truth = synth.read_truth(root)["perturbations"].set_index("perturbation")
    maps["truly active"] = maps.Metadata_pert_iname.map(truth.active)
fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(maps))))
colours = np.where(maps.below_corrected_p, "#1b7837", "#bdbdbd")
ax.barh(maps.Metadata_pert_iname, maps.mean_average_precision, color=colours)
ax.invert_yaxis()
ax.set(
    xlabel="mean average precision (replicates across plates vs DMSO)",
    xlim=(0, 1),
    title="Phenotypic activity: green = significant (corrected p < 0.05)",
)
display.save_figure(fig, run, "replicate_map")
fraction_retrieved = float(maps.below_corrected_p.mean())
maps.drop(columns=["indices"], errors="ignore").head(20)

# %% [markdown] tags=["exercise"]
# **Exercise 02.4 · mAP of one compound, by hand.** Take the compound in the middle of the
# table, `maps.Metadata_pert_iname.iloc[len(maps) // 2]` (a compound whose replicate does not
# rank first tests your ranking more than one whose mAP is 1), and compute its replicate mAP
# from the profiles
# `selected` (feature columns `cols`) without copairs: for each of its wells, rank its
# replicate wells **on other plates** and **all DMSO wells** by cosine similarity to it (its
# same-plate replicates take no part); its average precision is the mean, over the
# replicates, of (replicates ranked at or above it) / (its rank); the compound's mAP is the
# mean over its wells. Write `map_by_hand(profiles, compound)` and set `compound_map`.


# %% tags=["solution"]
def map_by_hand(profiles, compound):
    x = profiles[cols].to_numpy(float)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)  # cosine = dot product of unit vectors
    is_c = (profiles.Metadata_pert_iname == compound).to_numpy()
    is_dmso = (profiles.Metadata_pert_iname == "DMSO").to_numpy()
    plate = profiles.Metadata_Plate.to_numpy()
    aps = []
    for i in np.flatnonzero(is_c):
        positive = is_c & (plate != plate[i])
        ranked = positive | is_dmso
        hits = positive[ranked][np.argsort(-(x[ranked] @ x[i]), kind="stable")]
        ranks = np.flatnonzero(hits) + 1  # the ranks of the replicates, 1 = most similar
        if len(ranks):
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))


compound_map = map_by_hand(
    selected.dropna(subset=cols), maps.Metadata_pert_iname.iloc[len(maps) // 2]
)

# %% tags=["exercise"]
nb02.check_compound_map(
    compound_map, compound=maps.Metadata_pert_iname.iloc[len(maps) // 2], maps=maps
)

# %% [markdown] tags=["exercise"]
# **Exercise 02.5 · Which active compounds does replicate mAP miss?** The simulator knows
# which compounds truly change the cells (`maps["truly active"]`). List those that are truly
# active but not significant (`below_corrected_p` is False) as `missed`. What do they have in
# common (look at their mAP, and at how far their cells moved in section 2)?

# %% tags=["solution"]
missed = (
    sorted(maps.Metadata_pert_iname[maps["truly active"].astype(bool) & ~maps.below_corrected_p])
    if "truly active" in maps
    else []
)

# %% tags=["exercise"]
nb02.check_missed(missed, maps=maps, root=root)

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You can build a well profile and score replicate retrieval by hand. The
# > rest of the lesson asks which kind of profile, and which batch correction, retrieves
# > replicates best.

# %% [markdown]
# ## 6 · Three kinds of profile, one question
# The same wells (`compare_sites_per_well` sites each), three ways to describe them:
#
# - **regionprops**: report 004's list per cell (above): shape features once, plus mean, min
#   and max intensity per stain (positions are metadata, not features);
# - **CellProfiler-grade**: cp-measure's size/shape, intensity, Haralick texture, granularity,
#   radial distribution per channel and Pearson correlation per channel pair, named as
#   CellProfiler names them, measured on dask;
# - **CNN**: the frozen ImageNet EfficientNet-Lite0 on all five stains, one vector per site.
#
# Each goes through the same recipe (median per well, robust z-score against the plate's DMSO
# wells, pycytominer feature selection; the table gives each kind's number of features
# before and after selection) and is scored the same way: replicate mAP against
# DMSO, replicates on the other plate. The interval resamples compounds; the difference to
# regionprops is paired (the same compounds drawn for both). The dashed line is what the same
# layout scores with features of pure noise.
# %%
sites = (
    index
    if compare_sites_per_well is None
    else (index.groupby(["Metadata_Plate", "Metadata_Well"]).head(compare_sites_per_well))
)
per_site = {
    "regionprops": cells.merge(sites[meta[:3]], on=meta[:3]),  # cleaned above
    "CellProfiler-grade": features.measure_dataset(
        index=sites,
        segmented=seg_index,
        key="key",
        channels=channels,
        metadata=meta,
        feature_set="cellprofiler",
        out_dir=features.profiles_dir(masks_dir, "cellprofiler"),
        client=client,
    ),
    "CNN (ImageNet Lite0)": embeddings.site_embeddings(
        images=torchdata.decode(sites, channels=channels, size=128, data_root=data_root),
        index=sites,
        metadata=meta,
    ),
}
cluster.close(client)
profile_sets = {k: features.make_profiles(v) for k, v in per_site.items()}

# %%
retrieval = dict(null_size=null_size, seed=seed)  # the same scoring for every kind of profile
# half of the DMSO positions fit the sphering in section 7; they are left out of *every* panel
# (sphered or not), so all panels rank the same wells against the same DMSO negatives
maps_by_kind = {
    k: features.profile_maps(v, sphere=None, spend=True, **retrieval)
    for k, v in profile_sets.items()
}
noise_line = {  # each panel's no-signal line: its own table, features replaced by noise
    k: features.noise_maps(v, sphere=None, spend=True, **retrieval).mean_average_precision.mean()
    for k, v in per_site.items()
}
kinds = features.compare_maps(maps_by_kind)
n_features = {  # per kind: features per cell (or site) measured, and kept by the selection
    "features measured": {k: len(features.feature_columns(v)) for k, v in per_site.items()},
    "after selection": {k: len(features.feature_columns(v)) for k, v in profile_sets.items()},
}
kinds.assign(
    no_signal=pd.Series(noise_line), **{k: pd.Series(v) for k, v in n_features.items()}
).round(3)
# %% [markdown]
# ## 7 · Batch correction: sphering on the DMSO wells
# Per-plate normalisation centres and scales each feature by the plate's DMSO wells; what is
# left is *correlated* nuisance: directions in feature space along which DMSO wells themselves
# vary (plate, well position, staining). **Sphering** (pycytominer `normalize(method=
# "spherize")`, ZCA on the DMSO wells of all plates) whitens those directions, so a compound's
# wells are compared on what DMSO wells do *not* vary in. The simulator's per-plate,
# per-well and per-position shifts (`plate_sd`, `well_sd`, `position_sd`) are exactly such
# directions. The fit uses half of the DMSO positions, which then leave every panel.
# %%
sphered = {  # fitted on the held-out DMSO positions, scored on the others
    k: features.profile_maps(v, sphere="held_out", **retrieval) for k, v in profile_sets.items()
}
sphered_noise_line = {
    k: features.noise_maps(v, sphere="held_out", **retrieval).mean_average_precision.mean()
    for k, v in per_site.items()
}
after = features.compare_maps(sphered)
gain = pd.concat(
    {
        k: features.compare_maps({"before": maps_by_kind[k], "after": sphered[k]}).loc["after"]
        for k in profile_sets
    },
    axis=1,
).T[["diff_vs_first", "diff_low", "diff_high", "significant"]]
gain["noise line gain"] = pd.Series(sphered_noise_line) - pd.Series(noise_line)
fig, ax = plt.subplots(figsize=(8, 3.2))
display.interval_plot(
    {"per-plate robust z": kinds, "+ sphering on DMSO": after},
    ax=ax,
    xlabel=f"replicate mAP vs DMSO ({kinds.n_units.iloc[0]} compounds; 95% interval over "
    "compounds)",
    chance={"per-plate robust z": noise_line, "+ sphering on DMSO": sphered_noise_line},
    title="Which profile finds a compound's replicates? (grey: each panel's no-signal line)",
)
display.save_figure(fig, run, "profile_kinds")
per_compound = pd.concat(
    [m.assign(profiles=k) for k, m in maps_by_kind.items()]
    + [m.assign(profiles=f"{k} + sphering") for k, m in sphered.items()]
)
atomic_write_text(  # for notebook 09
    run / "profile_maps.csv",
    per_compound.drop(columns=["indices"], errors="ignore").to_csv(index=False),
)
gain.round(3).rename(columns={"diff_vs_first": "mAP gain from sphering"})
# %% [markdown]
# **Which number to trust.** Every row above is scored the same way on the same compounds,
# so the differences are paired: trust a difference when its interval excludes 0, not when
# one mean is higher. Read every mean against **its own panel's** no-signal line (grey), not
# against 0: with one or two replicate wells per compound and a handful of DMSO wells,
# features of pure noise already score above 0, and the line differs between panels because
# each panel's pipeline (feature count, selection, sphering) acts on noise too.
#
# Why the sphering is fitted on *held-out* DMSO wells: fitted on the very wells that serve as
# retrieval negatives, with fewer DMSO wells than features, the whitening all but removes the
# directions those wells span, so every treated well ends up far from every negative and
# replicates rank first by construction — sphered pure noise then "finds" replicates. Here
# half of the DMSO positions (the same positions on every plate) fit the transform and are
# left out of every panel; noise sent through exactly these steps stays at its line. What is
# left: the transform is estimated from fewer wells (regularised by `epsilon`), so on this
# small layout it removes less nuisance than it would on a real plate with dozens of DMSO
# wells per plate. The sentences below are computed from this run:

# %%
for k in profile_sets:
    b, a, g = kinds.loc[k], after.loc[k], gain.loc[k]
    print(
        f"{k}: mAP {b['mean']:.2f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] against its "
        f"no-signal line {noise_line[k]:.2f}; sphered {a['mean']:.2f} against "
        f"{sphered_noise_line[k]:.2f}. Gain from sphering {g['diff_vs_first']:+.2f} "
        f"[{g['diff_low']:+.2f}, {g['diff_high']:+.2f}], of which the noise line moved "
        f"{g['noise line gain']:+.2f}"
        + (" (excludes 0)" if g["diff_low"] > 0 or g["diff_high"] < 0 else " (includes 0)")
    )

# %% [markdown]
# ## 8 · The well-position effect
# CPJUMP1 uses one plate map for every plate, so a compound's replicate on another plate sits
# at the **same well position**, and anything a position does to cells (edge evaporation,
# temperature, dispensing order) is shared by the replicates. The JUMP paper measured it on
# DMSO, which has no compound to share: same-position DMSO wells find each other across plates
# far above chance (53.1% percent replicating, 17.2% after sphering; Chandrasekaran et al.
# 2024). The simulator has such a component (`position_sd`: one shift per position, shared
# by every plate). Below: how well a DMSO well finds the DMSO well at its own position on the
# other plate, per kind of profile, against its noise line, before and after sphering.


# %%
def same_position(v, sphere=None):
    """Mean mAP of DMSO wells retrieving their own position on another plate."""
    v = features.spherize(v, "Metadata_pert_iname == 'DMSO'", fit=sphere) if sphere else v
    return features.position_map(v, null_size=null_size, seed=seed).mean_average_precision.mean()


position = pd.DataFrame(
    {
        "same-position DMSO mAP": {k: same_position(v) for k, v in profile_sets.items()},
        "no-signal line": {
            k: same_position(features.make_profiles(features.noise_like(v, seed)))
            for k, v in per_site.items()
        },
        "after sphering (other plates' DMSO)": {
            k: same_position(v, "other_plates") for k, v in profile_sets.items()
        },
    }
)
position.round(3)

# %% [markdown]
# Above its noise line, same-position retrieval is position effect, and it is in every
# compound's replicate mAP too: with one plate map, position-aware pairing (leaving
# same-position pairs out, `replicate_map(position=...)`) has no pairs left to score, so on
# CPJUMP1 the position effect cannot be separated from a compound's effect by pairing; only a
# layout with shuffled plate maps (as later JUMP plates use) or a correction such as sphering
# fitted on other plates' DMSO wells reduces it. Read the replicate mAPs above with that in
# mind.

# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 3.2), gridspec_kw={"width_ratios": [1.1, 1]})
lesson.plot(ax=axes[0], title="Report 004's sanity check: balanced accuracy")
lesson.plot_comparisons(ax=axes[1])
display.save_figure(fig, run, "sanity_check")
agreement = (
    pd.crosstab(maps["truly active"], maps.below_corrected_p) if "truly active" in maps else None
)
lesson.write(
    run=run,
    reported=res["cells"],
    trusted=res["wells"],
    trust=f"{P['wells'].name}: {P['wells'].why}",
    data="synthetic" if catalog.is_synthetic(root) else "real",
    settings=settings,
    extra={
        "cells": len(cells),
        "backend": backend,
        "replicate_map": {
            "mean_map": float(maps.mean_average_precision.mean()),
            "fraction_significant": fraction_retrieved,
        },
        "profile_kinds": {
            "no_signal_map": {k: float(v) for k, v in noise_line.items()},
            "no_signal_map_sphered": {k: float(v) for k, v in sphered_noise_line.items()},
            "per_plate": kinds.round(4).reset_index().to_dict("records"),
            "sphered": after.round(4).reset_index().to_dict("records"),
        },
    },
)
agreement
