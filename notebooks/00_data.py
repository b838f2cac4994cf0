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
# # 00 · The data: four real layouts, one synthetic stand-in
#
# > **Time** a few minutes (quick settings, 2 CPU cores, data already generated; the first run also generates it) · full settings: the same work, on one GPU \
# > **Settings** quick and full read the same data: nothing here trains \
# > **Needs** nothing (synthetic data; real folders optional) \
# > **You will learn**
# > - the four real on-disk layouts (RxRx1, CPJUMP1, the course subset, the cell lines) and how one index reads them all
# > - what a Cell Painting site looks like, channel by channel, and how its colours are chosen
# > - which nuisance (plate, well position, experiment) each dataset carries before any model is trained
#
# The five reports use three public datasets, each in its own on-disk layout:
#
# | dataset | reports | what a sample is | label |
# |---|---|---|---|
# | **RxRx1** (Recursion) | 000 | a site: 6 PNG channels (Hoechst, ConA, phalloidin, SYTO14, MitoTracker, WGA) | siRNA (1,108 + controls) |
# | **CPJUMP1** (JUMP pilot) | 002-004 (via the course subset) | a site: 8 TIFF channels (5 stains + 3 brightfield planes) | compound |
# | **CPJUMP1 course subset** | 002, 003, 004 | one median-aggregated TIFF per site of plate BR00116991 | compound (`Metadata_pert_iname`) |
# | **the cell-line challenge** | 001 | three 64-px channel images (nucleus, microtubules, ER) | one of nine cell lines |
#
# The real data is yours to download (see the README); by default every notebook runs on a
# **synthetic Cell Painting simulator** that writes exactly these layouts, plus ground truth the
# real data never has: instance masks and the latent morphology of every cell. Perturbations
# change cell and nucleus size and shape, compartment intensity and texture, and cell count;
# about a quarter are inactive; those sharing a target look alike; plates, wells and experiments
# add batch effects. In this lesson we generate (or find) the data, read each layout into a tidy
# index, look at the images the way the field does, and check the class balance that the later
# notebooks must cope with.

# %% tags=["parameters"]
settings = None  # None: "quick" without a GPU, "full" (this cell's values) on one; or set it
results_dir = None  # set by the runner (None: a new folder under results/00_data/)
data_root = None  # None: $CELLUTILS_DATA, else the repo's data/
seed = 0
# Paths to the real datasets, when you have them (None = synthetic default):
real_rxrx1 = None  # folder with metadata.csv + images/ (or the Kaggle train.csv + train/)
real_cpjump1 = None  # folder with images/ + load_data_csv/ + metadata/
real_cpjump1_subset = None  # folder with metadata_BR00116991.csv + *_median_aggregated.tiff
real_cell_lines = None  # folder with train/ + train.csv
synthetic = {}  # generator overrides per dataset, e.g. {"rxrx1": {"size": 64}}

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils import catalog, datasets, display, realdata
from cellutils import synthetic as synth
from cellutils.paths import use_run_dir, write_json
from cellutils.runtime import apply_settings, seed_everything

settings = apply_settings(globals(), notebook="00_data")
seed_everything(seed)
run = use_run_dir(results_dir, "00_data")
real = {
    "rxrx1": real_rxrx1,
    "cpjump1": real_cpjump1,
    "cpjump1_subset": real_cpjump1_subset,
    "cell_lines": real_cell_lines,
}
print("results ->", run)

# %% [markdown]
# ## 1 · Generate or locate, then index
# `catalog.locate` returns the real folder when you give one, else generates the synthetic
# default once (about a minute on two cores) and finds it afterwards. Each reader turns a layout
# into one row per site with a `path_<channel>` column per channel. Problems — missing channel
# files, images that no metadata row names, names that only match after lower-casing (report
# 002 lower-cased every file name) — are reported, never silently dropped.

# %%
roots = {
    name: catalog.locate(
        name, real=real[name], data_root=data_root, overrides=synthetic.get(name), seed=seed
    )
    for name in catalog.LAYOUTS
}
index = {name: catalog.read_index(name, root) for name, root in roots.items()}
pd.DataFrame(
    {
        "sites / samples": {n: len(ix) for n, ix in index.items()},
        "classes": {n: ix[catalog.LAYOUTS[n].label].nunique() for n, ix in index.items()},
        "channels": {n: len(datasets.path_columns(ix)) for n, ix in index.items()},
        "problems reported": {n: len(datasets.problems(ix)) for n, ix in index.items()},
        "source": {n: "real" if real[n] else "synthetic" for n in index},
    }
)

# %%
problems = datasets.problems(index["cpjump1_subset"])
problems.problem.value_counts().to_frame("files") if len(problems) else "no problems"

# %% [markdown]
# ## 2 · Looking at Cell Painting images
# Six or eight grey channels are shown as one colour composite. For RxRx1 we use the
# dataset's own colour map (`rxrx1-utils`: each channel a colour and a display range); for the
# others a percentile stretch per channel. One row per perturbation: the differences you can
# see here are what the CNNs must learn.

# %%
rx = index["rxrx1"]
picks = rx[(rx.site == 1) & (rx.well_type == "treatment")].drop_duplicates("sirna_id").head(4)
picks = pd.concat(
    [
        picks,
        rx[rx.well_type == "negative_control"].head(1),
        rx[rx.well_type == "positive_control"].head(1),
    ]
)
fig = display.show_images(
    [datasets.rxrx1_rgb(datasets.load_site(r)) for _, r in picks.iterrows()],
    [f"{r.experiment} {r.well}\n{r.well_type} {r.sirna}" for r in picks.itertuples()],
    ncols=6,
    suptitle="RxRx1 sites in the rxrx1-utils colour map",
)
display.channel_key(fig, list(datasets.rxrx1.CHANNELS.values()), datasets.rxrx1.COLOURS)
display.save_figure(fig, run, "rxrx1_composites")

# %%
names = list(datasets.rxrx1.CHANNELS.values())
site = datasets.load_site(picks.iloc[0])
fig = display.show_images(
    list(site),
    [f"w{i + 1} {n}" for i, n in enumerate(names)],
    ncols=6,
    size=2.4,
    suptitle="The six channels of one RxRx1 site",
)

# %%
cp = index["cpjump1"]
row = cp[cp.Metadata_pert_iname != "DMSO"].iloc[0]
img = datasets.load_site(row)
stains = list(datasets.cpjump1.CHANNELS.values())
fig = display.show_images(
    [display.composite(img[:5], datasets.cpjump1.COLOURS)] + list(img),
    ["composite (ch1-5)"] + [f"ch{i + 1} {s}" for i, s in enumerate(stains)],
    ncols=9,
    size=2.2,
    suptitle=f"CPJUMP1 {row.Metadata_Plate} {row.Metadata_Well} site {row.Metadata_Site}: "
    f"{row.Metadata_pert_iname}",
)
display.channel_key(fig, stains[:5], datasets.cpjump1.COLOURS, title="composite channels")
display.save_figure(fig, run, "cpjump1_channels")

# %%
sub = index["cpjump1_subset"]
hpa = index["cell_lines"]
subset_rows = sub.drop_duplicates("Metadata_pert_iname").head(4)
hpa_rows = hpa.drop_duplicates("cell_line").head(4)
fig = display.show_images(
    [datasets.load_site(r)[0] for _, r in subset_rows.iterrows()]
    + [
        display.composite(datasets.load_site(r), datasets.cell_lines.COLOURS)
        for _, r in hpa_rows.iterrows()
    ],
    [f"subset {r.Metadata_Well}: {r.Metadata_pert_iname}" for r in subset_rows.itertuples()]
    + [f"cell-line challenge: {r.cell_line}" for r in hpa_rows.itertuples()],
    ncols=4,
    size=2.8,
    suptitle="Course subset (median of ch1-ch3: Mito, AGP, RNA) and cell-line challenge samples",
)
display.channel_key(
    fig,
    list(datasets.cell_lines.CHANNELS.values())[:3],
    datasets.cell_lines.COLOURS,
    title="cell-line challenge channels (named as the Human Protein Atlas does)",
)
display.save_figure(fig, run, "subset_and_cell_lines")

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You can now read each of the four layouts into one table of sites and show
# > a site channel by channel. Before going on: in each index, which column is the label, and
# > which columns name a batch (plate, well, experiment) that a model could learn instead?

# %% [markdown]
# ## 3 · Plate maps: where the controls sit
# A plate map shows the design. On CPJUMP1, DMSO wells are spread over the plate; in the course
# subset every compound but a few sits in **one well**, with 9 sites each. So a random split of
# *images* puts sites of the same well on both sides: the model can recognise the well (its
# local cell density, its staining) instead of the compound. Later notebooks split by well.

# %%
fig, axes = plt.subplots(1, 3, figsize=(27, 5))
display.plate_map(
    cp.Metadata_Well,
    cp.Metadata_pert_iname,
    ax=axes[0],
    top=10,
    title="CPJUMP1 platemap (JUMP-Target-1 layout)",
)
display.plate_map(
    sub.Metadata_Well,
    sub.Metadata_pert_iname,
    ax=axes[1],
    top=10,
    title="Course subset BR00116991: wells used",
)
if catalog.is_synthetic(roots["cpjump1_subset"]):  # cell counts: the generator's ground truth
    counts = synth.read_truth(roots["cpjump1_subset"])["sites"]
    display.plate_heatmap(
        counts.well, counts.n_cells, ax=axes[2], title="Course subset: cells per site, well mean"
    )
else:
    axes[2].set_axis_off()
    axes[2].set_title("cell counts need masks: run notebook 01 on the real subset")
fig.tight_layout()
display.save_figure(fig, run, "plate_maps")

# %% [markdown] tags=["exercise"]
# **Exercise 00.1 · Compounds with one well.** Read the course subset's metadata (`sub`): which
# compounds have all their images in **one well**? Answer with a set of names, `one_well`.
# (Count the distinct wells per compound.)

# %% tags=["solution"]
wells_per_compound = sub.groupby("Metadata_pert_iname")["Metadata_Well"].nunique()
one_well = set(wells_per_compound.index[wells_per_compound == 1])

# %% tags=["exercise"]
from cellutils.exercises import nb00

nb00.check_one_well(one_well, index=sub)

# %% [markdown] tags=["exercise"]
# **Question 00.2 · What a split by well costs.** A split that keeps every well on one side is
# leak-free. What happens under it to the compounds you found above, and what could a lesson do
# about them?

# %% [markdown] tags=["solution"]
# **Model answer.** All images of a one-well compound fall on the same side of the split: on
# the training side the model learns a class it is never scored on; on the evaluation side it
# must name a class it never saw, which it cannot. So a split by well cannot score these
# compounds at all, and a random split of images scores them only by letting the model
# recognise the well (its position, density and staining). Honest options: score only the
# compounds with two or more wells; use replicate plates (CPJUMP1 has them) and split by
# plate, so each compound is trained on one plate and evaluated on another; or change the
# question to one that needs no unseen class, such as "does this well differ from DMSO?"

# %% [markdown]
# ## 4 · Class balance: what "accuracy" means here
# The majority-class share is the accuracy of a model that always predicts the commonest
# label; any reported accuracy must be read against it. The course subset is DMSO-heavy
# (real: 509 of 2,867 images = 17.8 %), the cell lines are imbalanced (HeLa and U-2 OS rare),
# which is why report 001 uses balanced accuracy.

# %%
fig, axes = plt.subplots(1, 4, figsize=(20, 6.5))
display.class_balance(
    rx[rx.well_type == "treatment"].sirna.where(rx.cell_type == "HUVEC").dropna(),
    ax=axes[0],
    top=25,
    title="RxRx1 HUVEC siRNAs (sites)",
)
display.class_balance(cp.Metadata_pert_iname, ax=axes[1], top=25, title="CPJUMP1 compounds (sites)")
display.class_balance(sub.Metadata_pert_iname, ax=axes[2], top=25, title="Course subset (images)")
display.class_balance(
    hpa.cell_line, ax=axes[3], top=None, title="Cell lines (samples)", highlight=("HeLa", "U-2 OS")
)
fig.tight_layout()
display.save_figure(fig, run, "class_balance")

# %% [markdown] tags=["exercise"]
# **Exercise 00.3 · The majority baseline, by hand.** A model that always predicts the most
# common cell line of `hpa.cell_line`: what is its accuracy (`majority_accuracy`) and its
# balanced accuracy (`majority_balanced`: the mean over cell lines of the share of that line
# predicted right)? Compute both with pandas or numpy, without scikit-learn.

# %% tags=["solution"]
shares = hpa.cell_line.value_counts(normalize=True)
majority_accuracy = float(shares.iloc[0])
majority_balanced = 1 / len(shares)  # 1 for the majority line, 0 for every other: mean = 1/k

# %% tags=["exercise"]
nb00.check_majority(majority_accuracy, majority_balanced, labels=hpa.cell_line)

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You know the layouts, the batches each dataset carries, the compounds a
# > split by well cannot score, and the baseline every accuracy must beat. The last section
# > shows what only the simulator has: the true masks that notebook 01 scores against.

# %% [markdown]
# ## 5 · Ground truth (synthetic only) and real cells
# The simulator writes the instance masks of cells and nuclei for every site: segmentation
# (notebook 01) is scored against them. Real fluorescence images with masks ship in two
# registry packages (stardist's nuclei with masks, CellProfiler's ExampleFly fields); `make
# setup` extracts them into `data/real/` with attribution.

# %%
from skimage.segmentation import find_boundaries

panels, titles = [], []
if catalog.is_synthetic(roots["rxrx1"]):
    r0 = picks.iloc[0]
    cells, nuclei = synth.read_truth_masks(roots["rxrx1"], r0.site_id)
    rgb = datasets.rxrx1_rgb(datasets.load_site(r0)).copy()
    rgb[find_boundaries(cells)] = (255, 255, 255)
    rgb[find_boundaries(nuclei)] = (255, 200, 0)
    panels.append(rgb)
    titles.append(f"synthetic truth: {cells.max()} cells (white), nuclei (yellow)")
if realdata.available()["stardist"]:
    img, mask = realdata.stardist_nuclei()
    grey = display.composite(img[None], [(255, 255, 255)])
    grey[find_boundaries(mask)] = (1, 0.2, 0.2)
    panels.append(grey)
    titles.append(f"real nuclei (stardist sample): {len(np.unique(mask)) - 1} annotated")
if realdata.available()["cellprofiler"]:
    fly = realdata.example_fly()["POS002"]
    panels.append(display.composite(fly, [(0, 0, 255), (0, 255, 0), (255, 0, 0)]))
    titles.append("real cells: CellProfiler ExampleFly (DAPI/FITC/rhodamine)")
missing = [k for k, ok in realdata.available().items() if not ok]
if missing:
    print(f"real sample images {missing} are not extracted: run `make setup` once online.")
if panels:
    fig = display.show_images(panels, titles, ncols=len(panels), size=4.5)
    names, colours = [], []
    if catalog.is_synthetic(roots["rxrx1"]):  # the RxRx1 panel's colours
        names += [f"RxRx1 {n}" for n in datasets.rxrx1.CHANNELS.values()]
        colours += list(datasets.rxrx1.COLOURS)
    if realdata.available()["cellprofiler"]:  # the fly panel's colours
        names += ["fly DAPI", "fly FITC", "fly rhodamine"]
        colours += [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    if names:
        display.channel_key(fig, names, colours)
    display.save_figure(fig, run, "ground_truth_and_real")

# %%
summary = {
    name: {
        "root": str(roots[name]),
        "synthetic": catalog.is_synthetic(roots[name]),
        "n": len(ix),
        "n_classes": int(ix[catalog.LAYOUTS[name].label].nunique()),
        "majority_share": float(
            ix[catalog.LAYOUTS[name].label].value_counts(normalize=True).iloc[0]
        ),
        "problems": datasets.problems(ix).problem.value_counts().to_dict(),
    }
    for name, ix in index.items()
}
write_json(run / "metrics.json", {"notebook": "00_data", "settings": settings, "datasets": summary})
pd.DataFrame(summary).T[["n", "n_classes", "majority_share", "synthetic"]]
