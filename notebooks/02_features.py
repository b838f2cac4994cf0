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
# > **Time** quick profile: about 1 min on 2 CPU cores (the run's timing, data already generated) · full profile: on one GPU, not yet timed  
# > **Needs** notebook 01's masks (made here when missing)  
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
# grouped by well. Then the question JUMP asks of every profiling method: do report 004's 15
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
root = catalog.locate("cpjump1", real_cpjump1, data_root, synthetic or None, seed)
index = catalog.read_index("cpjump1", root)
index["key"] = datasets.cpjump1_site_key(index)
backend = segment.resolve_backend(backend)
client = cluster.get_client(n_workers=workers)  # or the scheduler at DASK_SCHEDULER_ADDRESS
masks_dir = segment.output_dir(root, backend, data_root)
seg_index = segment.segment_index(
    index, masks_dir, "key", cyto_channel, nucleus_channel, backend, client=client, flows=False
)  # reports' settings; no flows: nothing here reads them
meta = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_pert_iname",
    "Metadata_pert_type",
    "Metadata_target",
]
cells = features.measure_dataset(
    index, seg_index, "key", channels, meta, "regionprops",
    features.profiles_dir(masks_dir, "regionprops"), client,
)  # fmt: skip
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
# paired; the bootstrap resamples wells, and three fold assignments (seeds) are averaged. The
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
lesson = Lesson(
    "02_features",
    "004",
    "Per-cell features: DMSO vs compound (sanity check)",
    Claim(
        "accuracy",
        0.79,
        "validation",
        2,
        "logistic regression on cell features, random split of cells",
    ),
    nuisance="well",
    unit="well",
    metric="balanced_accuracy",
)
P = {
    "cells": Protocol(
        "random folds of cells", None, False, "other cells of every evaluated well are in training"
    ),
    "wells": Protocol("folds grouped by well", "well", True, "no evaluated well in training"),
}
preds = {
    k: [
        splits.cross_predict(
            clf, cc[feats].to_numpy(), cc.y.to_numpy(), wells if k == "wells" else None, 5, seed + s
        )
        for s in range(3)
    ]
    for k in P
}
res = {
    k: lesson.record(
        P[k],
        cc.y.to_numpy(),
        p,
        wells,
        2,
        cc.y.to_numpy(),
        model="logistic regression",
        rows=cc.index.to_numpy(),
        split="out of fold",
        selected_on=None,
    )
    for k, p in preds.items()
}
lesson.compare("004: cells of one well on both sides", res["cells"], res["wells"])
lesson.table()

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

# %% [markdown]
# ## 5 · Replicate retrieval (copairs)
# For each compound: how well do its wells on *other plates* retrieve each other against the
# DMSO wells (mean average precision, with a permutation p-value)? On the synthetic data we
# also know which compounds truly change the cells.

# %%
maps = features.replicate_map(
    selected,
    "Metadata_pert_iname",
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

# %% [markdown]
# ## 6 · Three kinds of profile, one question
# The same wells (`compare_sites_per_well` sites each), three ways to describe them:
#
# - **regionprops**: report 004's 15 shape and intensity features per cell (above);
# - **CellProfiler-grade**: cp-measure's size/shape, intensity, Haralick texture, granularity,
#   radial distribution per channel and Pearson correlation per channel pair (about 600 per
#   cell, named as CellProfiler names them), measured on dask, a Parquet file per plate;
# - **CNN**: the frozen ImageNet EfficientNet-Lite0 on all five stains, one vector per site.
#
# Each goes through the same recipe (median per well, robust z-score against the plate's DMSO
# wells, pycytominer feature selection) and is scored the same way: replicate mAP against
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
        sites, seg_index, "key", channels, meta, "cellprofiler",
        features.profiles_dir(masks_dir, "cellprofiler"), client,
    ),
    "CNN (ImageNet Lite0)": embeddings.site_embeddings(
        torchdata.decode(sites, channels, 128, data_root=data_root), sites, meta
    ),
}  # fmt: skip
cluster.close(client)
profile_sets = {k: features.make_profiles(v) for k, v in per_site.items()}
maps_by_kind = {
    k: features.replicate_map(v, "Metadata_pert_iname", "Metadata_Plate", "DMSO", null_size, seed)
    for k, v in profile_sets.items()
}
no_signal = features.replicate_map(
    features.noise_like(profile_sets["regionprops"], seed),
    "Metadata_pert_iname", "Metadata_Plate", "DMSO", null_size, seed,
).mean_average_precision.mean()  # fmt: skip
kinds = features.compare_maps(maps_by_kind)
kinds.round(3)
# %% [markdown]
# ## 7 · Batch correction: sphering on the DMSO wells
# Per-plate normalisation centres and scales each feature by the plate's DMSO wells; what is
# left is *correlated* nuisance: directions in feature space along which DMSO wells themselves
# vary (plate, well position, staining). **Sphering** (pycytominer `normalize(method=
# "spherize")`, ZCA on the DMSO wells of all plates) whitens those directions, so a compound's
# wells are compared on what DMSO wells do *not* vary in. The simulator's per-plate and
# per-well shifts (`plate_sd`, `well_sd`) are exactly such directions.
# %%
sphered = {
    k: features.replicate_map(
        features.spherize(v, "Metadata_pert_iname == 'DMSO'"),
        "Metadata_pert_iname", "Metadata_Plate", "DMSO", null_size, seed,
    )
    for k, v in profile_sets.items()
}  # fmt: skip
after = features.compare_maps(sphered)
gain = pd.concat(
    {
        k: features.compare_maps({"before": maps_by_kind[k], "after": sphered[k]}).loc["after"]
        for k in profile_sets
    },
    axis=1,
).T[["diff_vs_first", "diff_low", "diff_high", "significant"]]
fig, ax = plt.subplots(figsize=(8, 3.2))
display.interval_plot(
    {"per-plate robust z": kinds, "+ sphering on DMSO": after},
    ax,
    f"replicate mAP vs DMSO ({kinds.n_units.iloc[0]} compounds; 95% interval over compounds)",
    chance=no_signal,
    title="Which profile finds a compound's replicates?",
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
# one mean is higher. And read every mean against the dashed line, not against 0: with one
# or two replicate wells per compound and a handful of DMSO wells, features of pure noise
# already score about 0.25. On the quick synthetic data the CellProfiler-grade set finds
# somewhat more replicates than regionprops (the paired interval still touches 0), and
# sphering helps it most: its 200-odd features carry more of the per-plate and per-well
# nuisance for the DMSO wells to whiten. The CNN's ImageNet features, never trained on cells,
# score **below** the no-signal line: they see the plate more than the compound, and since a
# compound's replicate is on the other plate, the DMSO wells of its own plate rank first.
# A batch effect does not just add noise; it can invert a retrieval. With few DMSO wells
# the sphering matrix is estimated from fewer wells than features (regularised by
# `epsilon`): on a real plate (dozens of DMSO wells per plate, many plates) it is far better
# determined.
# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 3.2), gridspec_kw={"width_ratios": [1.1, 1]})
lesson.plot(ax=axes[0], title="Report 004's sanity check: balanced accuracy")
lesson.plot_comparisons(ax=axes[1])
display.save_figure(fig, run, "sanity_check")
agreement = (
    pd.crosstab(maps["truly active"], maps.below_corrected_p) if "truly active" in maps else None
)
lesson.write(
    run,
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
            "no_signal_map": float(no_signal),
            "per_plate": kinds.round(4).reset_index().to_dict("records"),
            "sphered": after.round(4).reset_index().to_dict("records"),
        },
    },
)
agreement

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise is a real analysis on this notebook's objects. Write your answer where the solution cell is (the student version has it removed), then run the check below it.

# %% [markdown] tags=["exercise"]
# **Exercise 1: Which active compounds does replicate mAP miss?.** The simulator knows which compounds truly change the cells (`maps["truly active"]`). List the compounds that are truly active but not significant (`below_corrected_p` is False) as `missed`. What do they have in common (look at their mAP and at how many wells they have)?

# %% tags=["solution"]
missed = (
    sorted(maps.Metadata_pert_iname[maps["truly active"].astype(bool) & ~maps.below_corrected_p])
    if "truly active" in maps
    else []
)

# %% tags=["exercise"]
from cellutils import exercises

exercises.check_missed(missed, maps)
