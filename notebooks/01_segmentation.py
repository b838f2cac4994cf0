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
# # 01 · Segmentation: cellpose and a classical watershed, checked against ground truth
#
# > **Time** a few minutes (quick settings, 2 CPU cores, data already generated) · full settings: on one GPU, not yet timed \
# > **Settings** quick: the classical backend for the whole dataset, 4 sites scored against the truth · full: the backend the machine supports (cellpose on a GPU), 12 sites scored \
# > **Needs** cellpose weights from `make setup` (else the classical backend only) \
# > **You will learn**
# > - how cellpose and a classical watershed segment cells, with one output (masks + flows)
# > - how to score masks against ground truth with average precision at IoU 0.5
# > - why a segmentation setting is a hyper-parameter of every later result
#
# Reports **003** and **004** segment CPJUMP1 images with **cellpose** — report 004 with flow
# threshold 0.7, cell probability threshold −5 and an automatic diameter, report 003 with
# cellpose's own defaults (flow 0.4, cell probability 0, 30-px diameter) — save masks and flows
# as TIFF, and build on them: report 003 feeds the mask to a CNN, report 004 crops and measures every cell.
# Neither report checks the masks. Here we do: two backends with one output (instance masks +
# cellpose-style flows), scored by average precision (cellpose's metric: TP / (TP + FP + FN)
# at an IoU threshold) against the simulator's ground-truth masks and against a real nuclei
# image with expert masks.
#
# - **cellpose** (3.x): your own `cyto3` when it is in cellpose's model folder; otherwise the
#   original `cyto` model, which `make weights` converts from the registry's cellpose 0.0.1.6
#   wheel (6.6 M parameters, the same network as cellpose 3's), with its size model for the
#   automatic diameter.
# - **classical** (scikit-image): every setting taken from the image itself: background and
#   noise from its median and MAD, the nucleus diameter from its bright objects, smoothing and
#   seed spacing from that diameter; seeds at maxima of log-intensity plus distance to the
#   background; each nucleus outlined where its edge is steepest (a watershed on the gradient);
#   cells grown from the nuclei inside the cytoplasm foreground. No per-image settings, always there, many times faster than
#   cellpose on a CPU (`make bench` measures the ratio), which is why `backend="auto"` picks it
#   on a CPU and cellpose on a GPU. Exercises 01.1-01.3 rebuild three of its pieces by hand:
#   the threshold, the object size and the score.

# %% tags=["parameters"]
settings = None  # None: "quick" without a GPU, "full" (this cell's values) on one; or set it
results_dir = None  # set by the runner (None: a new folder under results/01_segmentation/)
data_root = None  # None: $CELLUTILS_DATA, else the repo's data/
seed = 0
real_cpjump1 = None  # folder with images/ + load_data_csv/ + metadata/ (no ground truth there)
synthetic = {}  # generator overrides for the synthetic CPJUMP1
cyto_channel = "AGP"  # actin, Golgi, plasma membrane: outlines the cells
nucleus_channel = "DNA"
flow_threshold = 0.7  # report 004's settings (report 003: cellpose's defaults 0.4 / 0)
cellprob_threshold = -5.0
n_eval_images = 12  # images scored against ground truth, per backend
dataset_backend = "auto"  # backend for the whole dataset: auto | cellpose | classical
workers = None  # dask workers for the whole dataset (None: every core; classical backend)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils import catalog, datasets, display, evaluate, realdata, segment
from cellutils import synthetic as synth
from cellutils.paths import use_run_dir
from cellutils.runtime import apply_settings, seed_everything

settings = apply_settings(globals(), notebook="01_segmentation")
rng = seed_everything(seed)
run = use_run_dir(results_dir, "01_segmentation")
weights = segment.find_cellpose_weights()
backends = ["classical"] + (["cellpose"] if weights else [])
print(
    "cellpose weights:",
    f"{weights.name} ({weights.model})"
    if weights
    else "none -- run `make weights`; only the classical backend runs",
)

# %% [markdown]
# ## 1 · Three sites, both backends
# One row per site: the image (the cytoplasm channel green, the nucleus channel magenta), the
# ground truth, then each backend with its average precision at IoU 0.5 (AP@0.5) against that
# truth in the panel's title (section 2 explains the score). Cyan: the truth's outlines;
# yellow: the backend's. Below the grid: the flows of the first site, what cellpose predicts
# (and what report 004 feeds its second branch): each pixel's direction to its cell's centre,
# as a colour wheel (the key in the corner). The classical backend gets the same flows from
# its masks.

# %%
root = catalog.locate(
    "cpjump1", real=real_cpjump1, data_root=data_root, overrides=synthetic or None, seed=seed
)
index = catalog.read_index("cpjump1", root)
index["key"] = datasets.cpjump1_site_key(index)
has_truth = catalog.is_synthetic(root)
site = index[index.Metadata_pert_iname != "DMSO"].iloc[0]
image = datasets.load_site(site, [cyto_channel, nucleus_channel])  # (2, H, W): cyto, nucleus
truth, truth_nuclei = synth.read_truth_masks(root, site.key) if has_truth else (None, None)
cp_settings = dict(flow_threshold=flow_threshold, cellprob_threshold=cellprob_threshold)
segs = {
    b: segment.segment(
        image, cyto=0, nucleus=1, backend=b, **(cp_settings if b == "cellpose" else {})
    )
    for b in backends
}

# %%
more = index[(index.Metadata_pert_iname != "DMSO") & (index.Metadata_Well != site.Metadata_Well)]
shown = [site, *(r for _, r in more.drop_duplicates("Metadata_Well").iloc[:2].iterrows())]
images = [image] + [datasets.load_site(r, [cyto_channel, nucleus_channel]) for r in shown[1:]]
grid = {
    b: [s.masks]
    + [
        segment.segment(
            im, cyto=0, nucleus=1, backend=b, **(cp_settings if b == "cellpose" else {})
        ).masks
        for im in images[1:]
    ]
    for b, s in segs.items()
}
grid.setdefault("cellpose", "not run:\nno weights (make weights)")
fig = display.segmentation_grid(
    images=images,
    channels=[cyto_channel, nucleus_channel],
    truth=[synth.read_truth_masks(root, r.key)[0] for r in shown] if has_truth else None,
    masks=grid,
    row_labels=[f"{r.Metadata_pert_iname}, well {r.Metadata_Well}" for r in shown],
)
display.save_figure(fig, run, "segmentation_grid")

# %%
fig, axes = plt.subplots(1, len(segs), figsize=(3.6 * len(segs), 3.8), squeeze=False)
for ax, (b, s) in zip(axes[0], segs.items(), strict=True):
    ax.imshow(display.flow_rgb(s.flows))
    ax.set_title(f"{b}: flows, first site ({s.n_cells} cells, {s.seconds:.1f} s)", fontsize=9)
    ax.axis("off")
display.flow_key(axes[0, -1])
display.save_figure(fig, run, "flows")

# %% [markdown]
# ### Where a threshold comes from
# Every classical segmentation starts by splitting pixels into background and object. Below:
# the histogram of the nucleus channel of this site. The background is the tall peak of dim
# pixels; nuclei are the long tail of bright ones. A good threshold sits in the valley between.

# %%
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.hist(image[1].ravel(), bins=256, log=True, color="grey")
ax.set(xlabel=f"{nucleus_channel} intensity", ylabel="pixels (log scale)", title="One site")
display.save_figure(fig, run, "nucleus_histogram")

# %% [markdown] tags=["exercise"]
# **Exercise 01.1 · A threshold read from the histogram (Otsu's method).** Write
# `otsu_by_hand(x, nbins=256)`: histogram `x` into `nbins` bins (`np.histogram`); for each bin
# centre `t`, split the pixels into those at or below `t` (count `w0`, mean `m0`) and above it
# (`w1`, `m1`); return the centre where the between-class variance `w0 * w1 * (m0 - m1) ** 2`
# is largest. Then `threshold = otsu_by_hand(image[1])`. Where does it fall on the histogram?


# %% tags=["solution"]
def otsu_by_hand(x, nbins=256):
    counts, edges = np.histogram(np.asarray(x, float), bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]  # pixels at or below each centre (the last has none above)
    w1 = counts.sum() - w0
    mass = np.cumsum(counts * centres)[:-1]
    m0, m1 = mass / w0, ((counts * centres).sum() - mass) / w1
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


threshold = otsu_by_hand(image[1])

# %% tags=["exercise"]
from cellutils.exercises import nb01

nb01.check_threshold(threshold, image=image[1])

# %% [markdown] tags=["exercise"]
# **Exercise 01.2 · How big is a nucleus?** The classical backend estimated the nucleus
# diameter from the image (`segs["classical"].diameter`). Measure it from the ground truth
# instead: the median, over the true nuclei of `truth_nuclei`, of the diameter of a disc with
# the nucleus's area, `nucleus_diameter` (in pixels). Use `np.bincount` for the areas, not
# `regionprops`. (Synthetic data only: real images have no ground truth.)

# %% tags=["solution"]
areas = np.bincount(truth_nuclei.ravel())[1:]  # pixels per label; label 0 is background
nucleus_diameter = float(np.median(np.sqrt(4 * areas[areas > 0] / np.pi)))

# %% tags=["exercise"]
nb01.check_nucleus_diameter(
    nucleus_diameter, nuclei=truth_nuclei, estimate=segs["classical"].diameter
)

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You have seen both backends' masks and flows on one site, and rebuilt two
# > of the classical backend's steps: the threshold and the object size. Next: how to score
# > masks against the truth.

# %% [markdown]
# ## 2 · Accuracy against the simulator's ground truth
# Cells of `n_eval_images` sites, both backends; cellpose also with the default cell
# probability threshold (0, also report 003's) next to report 004's −5, to see what that setting does.

# %%
rows = []
if has_truth:
    picks = index.iloc[rng.choice(len(index), min(n_eval_images, len(index)), replace=False)]
    variants = {"classical": ("classical", {})}
    if weights:
        variants["cellpose (report 004: cellprob -5)"] = ("cellpose", cp_settings)
        variants["cellpose (cellprob 0)"] = ("cellpose", {**cp_settings, "cellprob_threshold": 0.0})
    for _, r in picks.iterrows():
        img = datasets.load_site(r, [cyto_channel, nucleus_channel])
        cells, nuclei = synth.read_truth_masks(root, r.key)
        for name, (b, kw) in variants.items():
            s = segment.segment(img, cyto=0, nucleus=1, backend=b, **kw)
            rows.append(
                {
                    "backend": name,
                    "image": r.key,
                    "seconds": s.seconds,
                    **segment.average_precision(cells, s.masks),
                }
            )
synthetic_ap = pd.DataFrame(rows)
synthetic_ap.groupby("backend")[
    ["AP@0.5", "AP@0.75", "true objects", "found objects", "seconds"]
].mean().round(3) if rows else "no ground truth for real data"

# %% [markdown] tags=["exercise"]
# **Exercise 01.3 · Average precision by hand.** Write `ap_by_hand(truth, masks)`: AP at IoU
# 0.5, cellpose's TP / (TP + FP + FN). Number the objects of both label images 1..n
# (`skimage.segmentation.relabel_sequential`); count the pixels shared by every (true, found)
# pair in one table (`np.add.at`); IoU = overlap / (true area + found area - overlap); a pair
# with IoU ≥ 0.5 (cellpose's convention) is a true positive: an object can have at most one
# partner that good, so no matching is needed; FP and FN are the found and true objects left
# over. The check calls it on this site's masks and
# compares with `segment.average_precision`.


# %% tags=["solution"]
def ap_by_hand(truth, masks):
    from skimage.segmentation import relabel_sequential

    truth, masks = relabel_sequential(truth)[0], relabel_sequential(masks)[0]
    overlap = np.zeros((truth.max() + 1, masks.max() + 1))
    np.add.at(overlap, (truth.ravel(), masks.ravel()), 1)
    union = overlap.sum(axis=1, keepdims=True) + overlap.sum(axis=0, keepdims=True) - overlap
    tp = int((overlap[1:, 1:] / union[1:, 1:] >= 0.5).sum())
    return tp / (truth.max() + masks.max() - tp)


# %% tags=["exercise"]
if has_truth:
    nb01.check_ap_by_hand(ap_by_hand, pairs=[(truth, s.masks) for s in segs.values()])
else:
    print("real data: no ground truth to score against (run on the synthetic data)")

# %% [markdown]
# ## 3 · A real image: nuclei with expert masks
# stardist's 2018 Data Science Bowl sample (512 × 512, 125 nuclei, BSD-3), fetched by
# `make setup` from the registry. Nuclei only, so both backends segment one channel.

# %%
real_rows = []
if realdata.available()["stardist"]:
    img, gt = realdata.stardist_nuclei()
    variants = {"classical": ("classical", {})}
    if weights:
        variants["cellpose (report 004: cellprob -5)"] = ("cellpose", cp_settings)
        variants["cellpose (cellprob 0)"] = ("cellpose", {**cp_settings, "cellprob_threshold": 0.0})
    fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 5))
    for ax, (name, (b, kw)) in zip(np.atleast_1d(axes), variants.items(), strict=True):
        s = segment.segment(img[None], cyto=None, nucleus=0, backend=b, **kw)
        ap = segment.average_precision(gt, s.masks)
        real_rows.append({"backend": name, "seconds": s.seconds, **ap})
        display.outlines(img, s.masks, ax, f"{name}: AP@0.5 {ap['AP@0.5']:.2f}", truth=gt)
    display.save_figure(fig, run, "real_nuclei")
else:
    print("real nuclei image missing: run `make setup` once with access to the package registry")
pd.DataFrame(real_rows).round(3)

# %% [markdown]
# **What to take away** (the tables above hold this run's numbers). On the real nuclei the
# classical backend, with nothing set by hand, scores close to cellpose with its default cell
# probability threshold, in a small fraction of its CPU time. On the synthetic cells
# cellpose's flows split touching cells best. A setting of the segmentation is a
# hyper-parameter of every later result: check your masks before you build on them.
#
# What you ask for is a setting too. The course subset (notebooks 05-08) has one channel, the
# median of ch1-ch3 (Mito, AGP and RNA), in which whole cells show with their texture. Asked for nuclei in
# it (`segment(image, cyto=None, nucleus=0)`), the classical backend seeds one object per
# bright speckle and finds almost none of the true cells; asked for cells of that channel
# (`segment(image, cyto=0, nucleus=0)`: the same channel as cytoplasm and nucleus) it smooths
# the texture away at the cell's scale and finds most of them (06 and 08 print the AP).
#
# One correction to how AP is usually computed here: cellpose's metric counts `max(label)` as
# the number of true objects, so a ground truth numbered with gaps (stardist's sample has
# them) counts phantom misses. `segment.average_precision` renumbers both masks first, as
# your `ap_by_hand` does.

# %% [markdown] tags=["exercise"]
# **Question 01.4 · What the cell probability threshold decides.** Report 004 runs cellpose
# with a cell probability threshold of −5 instead of its default 0. What does that threshold
# decide, and why should −5 cost more AP on sparse nuclei than on densely packed cells?
# (Without cellpose weights here, answer from how the threshold works.)

# %% [markdown] tags=["solution"]
# **Model answer.** cellpose predicts, for every pixel, a cell probability (as a logit) and a
# flow; pixels whose logit is above the threshold are followed along their flows to a centre,
# and the pixels that reach the same centre form one mask. Lowering the threshold from 0 to −5
# admits pixels cellpose itself thinks are probably background, so every mask grows outwards
# into the dim ring around its object. Where nuclei are sparse there is a wide background ring
# to grow into: masks swell until their IoU with the true nucleus drops below 0.5, and each
# such object then counts as both a false positive and a false negative. Where cells touch,
# little background is left: the masks can only grow into each other's borders, which the
# flows already separate, so the AP barely moves. A threshold tuned on one kind of image is
# not a safe default for another.

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You can segment a site, score masks against ground truth by hand, and say
# > what a cellpose setting does. The last section segments the whole dataset for notebook 02.


# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
both = pd.concat(
    [
        synthetic_ap.assign(data="synthetic cells"),
        pd.DataFrame(real_rows).assign(data="real nuclei (stardist)"),
    ]
)
if len(both):
    summary = both.groupby(["data", "backend"])["AP@0.5"].mean().unstack("data")
    summary.plot.barh(ax=ax, color=["#1f78b4", "#b2df8a"][: summary.shape[1]], edgecolor="black")
    ax.set(
        xlabel="average precision at IoU 0.5",
        xlim=(0, 1),
        ylabel="",
        title="Segmentation accuracy against ground truth",
    )
    ax.legend(title="data", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    display.save_figure(fig, run, "ap_summary")

# %% [markdown]
# ## 4 · The whole dataset
# `segment.segment_index` writes `<key>_masks.tif` and `<key>_flows.tif` into
# `<data root>/segmentation/`, never beside the images themselves; a rerun skips what is done
# (so an interrupted run resumes), and images where no cell was found are reported. The
# classical backend runs the sites on dask: a `LocalCluster` of `workers` processes, or the
# cluster at `DASK_SCHEDULER_ADDRESS` (`docs/scaling.md`); cellpose stays in this process,
# on the GPU.

# %%
out = segment.output_dir(root, dataset_backend, data_root)
backend = segment.resolve_backend(dataset_backend)
seg_index = segment.segment_index(
    index=index,
    out_dir=out,
    key="key",
    cyto=cyto_channel,
    nucleus=nucleus_channel,
    backend=backend,
    n_workers=workers,
    flows=backend == "cellpose",  # cellpose's come free; the classical ones cost far more
    **(cp_settings if backend == "cellpose" else {}),
)
print(
    f"{len(seg_index)} images -> {out}; cells per image: median "
    f"{seg_index.n_cells.median():.0f}, no cell found in {len(seg_index.attrs['problems'])}"
)

# %%
results = (
    [
        evaluate.result_row(
            protocol=f"{b} on synthetic cells",
            metrics={"AP@0.5": g["AP@0.5"].mean(), "AP@0.75": g["AP@0.75"].mean()},
            leak_free=True,
            images=len(g),
        )
        for b, g in synthetic_ap.groupby("backend")
    ]
    if rows
    else []
)
results += [
    evaluate.result_row(
        protocol=f"{r['backend']} on real nuclei",
        metrics={"AP@0.5": r["AP@0.5"], "AP@0.75": r["AP@0.75"]},
        leak_free=True,
    )
    for r in real_rows
]
evaluate.write_metrics(
    run=run,
    notebook="01_segmentation",
    report="003/004",
    title="Segmentation accuracy",
    claimed={"note": "the reports do not measure segmentation accuracy"},
    results=results,
    trust="AP against ground truth",
    settings=settings,
    data="synthetic" if has_truth else "real",
    extra={
        "weights": weights.name if weights else None,
        "dataset_backend": str(seg_index.backend.iloc[0]),
        "segmentation_dir": str(out),
    },
)
