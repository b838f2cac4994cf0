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
# # 04 · Which cell line? DenseNet-161 on three stains (report 001)
#
# > **Time** quick profile: about 1 min on 2 CPU cores (the run's timing, data already generated) · full profile: about 50 min on one GPU (an estimate: no GPU run recorded yet)  
# > **Needs** full profile: a GPU, the challenge's images and ImageNet weights for DenseNet-161  
# > **You will learn**
# > - report 001's DenseNet-161 and balanced accuracy on nine imbalanced cell lines
# > - what choosing the epoch on the scored set adds to a number
# > - what class weights and oversampling do for rare classes
#
# **The report.** Nine often-misidentified cell lines; each sample is three 64 × 64 images
# (nucleus, microtubules, ER) stacked like RGB. Per-channel mean and standard deviation are
# computed **on all the data, before the split**; 1,000 samples are held out for validation.
# DenseNet-161 pretrained on ImageNet, its last layer replaced by dropout 0.5 + linear;
# cross-entropy, Adam (lr 1e-3), batch 64, 7 epochs; the epoch with the best **balanced
# accuracy** on validation is kept (the 6th). Claimed balanced accuracy: 86 % train, 83 %
# validation, ~75 % on the hidden test set. The report blames the validation-test gap on the
# normalisation leak, and notes that rare lines (HeLa, U-2 OS) do badly.
#
# **What we check.** Does normalising on all data inflate validation? (Per-channel statistics
# are two numbers per channel; we measure how much they move.) Then what the report suggests
# for the rare lines: a class-weighted loss and oversampling of the training split.

# %% tags=["parameters"]
settings = None  # None: "quick" without a GPU, "full" (this cell's values) on one; or set it
results_dir = None  # set by the runner (None: a new folder under results/04_cell_lines_densenet/)
data_root = None  # None: $CELLUTILS_DATA, else the repo's data/
seed = 0
real_cell_lines = None  # folder with train/ + train.csv (and test/, test.csv if you have labels)
synthetic = {}  # generator overrides for the synthetic cell lines
# the report's settings
channels = ["blue", "red", "yellow"]  # nucleus, microtubules, ER
image_size = 64
arch = "densenet161"
pretrained = True  # ImageNet weights must be in the torch hub cache (the fix is printed)
epochs = 7
batch_size = 64
lr = 1e-3
val_size = 1000  # samples, at most a third of the data
seeds = 3  # training seeds per variant (the same seeds for every variant)
frozen_backbone = False  # True: train the head on the frozen pretrained backbone (quick)
max_batches = None  # cap batches per epoch (smoke tests only)
# what the report suggests for the rare lines
try_class_weights = True
try_oversampling = True

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils import catalog, display, evaluate, models, splits, torchdata, train
from cellutils.lesson import Claim, Lesson, Protocol
from cellutils.paths import use_run_dir
from cellutils.runtime import apply_settings, pick_device, seed_everything
from cellutils.torchdata import Labels

device = pick_device()
settings = apply_settings(
    globals(), notebook="04_cell_lines_densenet", gpu_minutes=50, device=device
)
seed_everything(seed)
run = use_run_dir(results_dir, "04_cell_lines_densenet")
print("results ->", run)

# %% [markdown]
# ## 1 · Data: samples, classes, and a test set no choice has seen

# %%
root = catalog.locate("cell_lines", real_cell_lines, data_root, synthetic or None, seed)
index = catalog.read_index("cell_lines", root, channels=channels)
test = catalog.cell_lines_test(root)
label = "cell_line"
both = pd.concat([index.assign(part="train"), test.assign(part="test")], ignore_index=True)
images = torchdata.decode(both, channels, image_size, data_root=data_root)
pool, test = both[both.part == "train"], both[both.part == "test"]
ax = display.class_balance(pool[label], title="training samples per cell line", top=None)
display.save_figure(ax.figure, run, "class_balance")
print(f"{len(pool)} labelled samples, {len(test)} labelled test samples, {images.shape}")

# %% [markdown]
# ## 2 · The normalisation leak, measured
# The report fitted per-channel mean/std on every sample before holding out validation. Here
# are both sets of statistics: the leak is the difference between them.

# %%
n_val = min(val_size, len(pool) // 3)
train_rows, val_rows = splits.random_split(pool, n_val, stratify=label, seed=seed)
stats_all = torchdata.ChannelStats.fit(images, torchdata.positions(both, pool))
stats_train = torchdata.ChannelStats.fit(images, torchdata.positions(both, train_rows))
pd.DataFrame(
    {
        "mean (all data)": stats_all.mean,
        "mean (train only)": stats_train.mean,
        "std (all data)": stats_all.std,
        "std (train only)": stats_train.std,
    },
    index=channels,
).round(3)

# %% [markdown]
# ## 3 · The report's model, reported and leak-free, over seeds
# `models.cell_lines_densenet161`: DenseNet-161, dropout 0.5 + linear. `train.fit` keeps the
# epoch with the best **validation** balanced accuracy, as the report did; the test set is
# never looked at before the end. Each variant is trained with the same `seeds`, and a seed
# fixes the initial weights too (set just before the model is built), so two variants of one
# seed differ only in what the variant changes. The quick profile uses the offline ImageNet
# EfficientNet-Lite0 instead of DenseNet-161 so that three seeds fit in CPU minutes.

# %%
cfg = train.TrainConfig(
    epochs=epochs,
    batch_size=batch_size,
    lr=lr,
    optimizer="adam",
    scheduler=None,
    monitor="balanced_accuracy",
    max_batches=max_batches,
)
lesson = Lesson(
    "04_cell_lines_densenet",
    "001",
    "Nine cell lines, DenseNet-161, balanced accuracy",
    Claim(
        "balanced_accuracy",
        0.83,
        "validation",
        9,
        "normalised on all data; 1,000 validation samples; best epoch on validation",
        {"train_balanced_accuracy": 0.86, "test_balanced_accuracy": 0.75},
    ),
    nuisance="sample",
    unit="sample",
)
P = {
    "all": Protocol(
        "normalised on all data",
        "sample",
        False,
        "normalisation statistics include the validation and test samples",
    ),
    "train": Protocol(
        "normalised on train only", "sample", True, "statistics from the training samples only"
    ),
    "weights": Protocol(
        "normalised on train only + class-weighted loss",
        "sample",
        True,
        "statistics from the training samples only",
    ),
    "over": Protocol(
        "normalised on train only + oversampled train",
        "sample",
        True,
        "copies of training samples only",
    ),
}
variants = {"all": dict(stats_from=pool), "train": {}}
if try_class_weights:
    variants["weights"] = dict(class_weights="balanced")
if try_oversampling:
    variants["over"] = dict(oversample=True)
encode = Labels.fit(pool[label]).encode


def run_variant(k, v):
    """One model per seed (the pretrained backbone runs once when frozen_backbone)."""
    tr = splits.oversample(train_rows, label, seed) if v.get("oversample") else train_rows
    tr_ds, va_ds, labels, stats = torchdata.split_datasets(
        images, both, tr, val_rows, label, stats_from=v.get("stats_from")
    )
    sets = {"val": va_ds}
    if len(test):
        sets["test"] = torchdata.subset(images, both, test, label, labels, stats)
    return train.run_seeds(
        k,
        lambda: models.cell_lines_densenet161(len(labels), len(channels), pretrained, arch),
        tr_ds,
        sets,
        replace(cfg, class_weights=v.get("class_weights")),
        run,
        labels.classes,
        range(seed, seed + seeds),
        frozen_backbone,
    )


experiments, res = {}, {}
for k, v in variants.items():
    experiments[k] = run_variant(k, v)
    for split, rows in [("val", val_rows), ("test", test)][: 2 if len(test) else 1]:
        res[k, split] = lesson.record_experiment(
            P[k], experiments[k], rows, "filename", encode(train_rows[label]), split=split
        )
final = "test" if len(test) else "val"
lesson.compare(
    "001: normalisation statistics from all data", res["all", "val"], res["train", "val"]
)
lesson.compare(
    "001: normalisation statistics from all data", res["all", final], res["train", final]
)
if try_class_weights:
    lesson.compare("001: class-weighted loss", res["weights", final], res["train", final])
    # the report's worry: the rare lines. The same comparison on their samples only
    rare = pool[label].value_counts().index[-2:]
    rows = test if len(test) else val_rows
    if rows[label].isin(rare).any():
        for k in ("train", "weights"):
            res[k, "rare"] = lesson.record_experiment(
                P[k],
                experiments[k],
                rows,
                "filename",
                encode(train_rows[label]),
                split=final,
                where=rows[label].isin(rare),
                label=f"{P[k].name} ({final}, rare lines only)",
            )
        lesson.compare(
            f"001: class-weighted loss, rare lines ({', '.join(rare)})",
            res["weights", "rare"],
            res["train", "rare"],
        )
if try_oversampling:
    lesson.compare("001: oversampled training split", res["over", final], res["train", final])
lesson.table()

# %% [markdown]
# ## 4 · Learning curves, confusion, rare classes

# %%
fig = evaluate.plot_history(
    {P[k].name: e[0].fit.history for k, e in experiments.items()},
    "balanced_accuracy",
    {P[k].name: e[0].fit.best_epoch for k, e in experiments.items()},
    title="Report 001 on nine cell lines (seed 0)",
)
display.save_figure(fig, run, "learning_curves")

# %%
last = list(experiments)[-1]
fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
for ax, k in zip(axes, ["train", last], strict=True):
    e = experiments[k][0]
    p = e.predictions[final]
    evaluate.plot_confusion(
        p["targets"],
        p["logits"].argmax(1),
        e.classes,
        ax=ax,
        title=f"{P[k].name}\n({final}, row-normalised, seed {seed})",
    )
fig.tight_layout()
display.save_figure(fig, run, "confusion")

# %%
recall = pd.DataFrame(
    {
        P[k].name: evaluate.per_class_recall(
            e[0].predictions[final]["targets"], e[0].labels(final), e[0].classes
        )
        for k, e in experiments.items()
    }
)
recall.insert(0, "training samples", pool[label].value_counts())
recall.sort_values("training samples").round(2)

# %% [markdown]
# ## 5 · Which number to trust
# The normalisation "leak" shifts two numbers per channel (section 2): read its paired
# difference and interval over seeds below before calling it material — on this data it is
# not, and a validation-to-test gap like the report's (83 % vs 75 %) has likelier causes: the
# best of 7 epochs chosen on the validation set (an optimistic pick), a small validation set,
# and a test set drawn differently (here: the simulator's hidden acquisition batches). Trust the
# **leak-free** run's balanced accuracy on the **test set**, which no choice has seen. The
# class-weight comparisons say what weighting buys: overall, and on the two rarest lines alone
# (the simulator draws the lines with the challenge's imbalance, `WEIGHTS` in `cellutils.datasets.cell_lines`;
# a rare line's few training samples pull the unweighted loss little).

# %%
fig, axes = plt.subplots(1, 2, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.1, 1]})
lesson.plot(ax=axes[0], title="Report 001: balanced accuracy by variant")
lesson.plot_comparisons(ax=axes[1])
display.save_figure(fig, run, "protocols")
shift = float(np.abs(np.subtract(stats_all.mean, stats_train.mean)).max())
lesson.write(
    run,
    reported=res["all", "val"],
    trusted=res["train", final],
    trust=f"{P['train'].name}, {final} balanced accuracy (epoch chosen on validation)",
    data="synthetic" if catalog.is_synthetic(root) else "real",
    settings=settings,
    extra={"stats_shift": shift, "device": str(device), "epochs": epochs},
)
print(
    f"largest shift of a channel mean from the leak: {shift:.3f} "
    f"(channel std ~{np.mean(stats_train.std):.1f})"
)
lesson.comparisons_table()

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise is a real analysis on this notebook's objects. Write your answer where the solution cell is (the student version has it removed), then run the check below it.

# %% [markdown] tags=["exercise"]
# **Exercise 1: Balanced accuracy by hand.** Take the last protocol's result (`r = list(res.values())[-1]`; `r.targets`, and `r.pred[0]` for the first seed). Compute balanced accuracy yourself as the mean over true classes of the share predicted right, as `my_balanced_accuracy`. How far is it from plain accuracy, and why?

# %% tags=["solution"]
r = list(res.values())[-1]
t, p = r.targets, r.pred[0]
my_balanced_accuracy = float(np.mean([np.mean(p[t == k] == k) for k in np.unique(t)]))

# %% tags=["exercise"]
from cellutils import exercises

exercises.check_balanced_accuracy(my_balanced_accuracy, r.targets, r.pred[0])
