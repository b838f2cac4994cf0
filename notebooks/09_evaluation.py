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
# # 09 · Every model side by side: claimed, reproduced, leak-free
#
# > **Time** a few minutes (quick settings, 2 CPU cores, data already generated) · full settings: on one GPU, not yet timed \
# > **Settings** reads the newest runs of 01-08 made with the same settings; quick and full differ only in what those runs trained \
# > **Needs** the results of notebooks 01-08 (any settings) \
# > **You will learn**
# > - how to read every report's number beside the one to trust, with intervals and baselines
# > - what each paired comparison says
#
# Notebooks 01–08 each wrote a `metrics.json` (the report's claimed numbers, ours under the
# report's protocol and ours leak-free) and the predictions and embeddings of every model they
# trained. This lesson puts them together:
#
# 1. the headline table — one row per report, the number to trust in bold;
# 2. every model on the same metrics (accuracy, balanced accuracy, top-5, macro F1);
# 3. confusion matrices readable at 9 and at 50+ classes;
# 4. t-SNE and UMAP side by side, coloured by label and by batch (experiment), to show batch
#    effects;
# 5. replicate retrieval (copairs mAP): notebook 02's regionprops, CellProfiler-grade and CNN
#    profiles, before and after sphering.
#
# Run it after the others (`make reproduce` does); it reads the newest run of each notebook
# made with the same settings.

# %% tags=["parameters"]
settings = None  # None: "quick" without a GPU, "full" (this cell's values) on one; or set it
results_dir = None  # set by the runner (None: a new folder under results/09_evaluation/)
results_root = None  # where notebooks 01-08 wrote (None: $CELLUTILS_RESULTS, else results/)
data_root = None  # None: $CELLUTILS_DATA, else the repo's data/
seed = 0
real_rxrx1 = None  # the RxRx1 folder (None: the synthetic default)
synthetic_rxrx1 = {}  # generator overrides for the synthetic RxRx1
same_settings = True  # only runs made with these run settings
embed_size = 128  # image size for the CNN embeddings of section 4
map_methods = ["tsne", "umap"]

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils import catalog, display, embeddings, evaluate, summary, torchdata
from cellutils.paths import use_run_dir
from cellutils.runtime import apply_settings, seed_everything

settings = apply_settings(globals(), notebook="09_evaluation")
seed_everything(seed)
run = use_run_dir(results_dir, "09_evaluation")
if (
    results_root is None and results_dir is not None
):  # the runner's layout: <root>/09_evaluation/<id>
    results_root = Path(results_dir).resolve().parents[1]
metrics = summary.load(results_root, settings if same_settings else None)
print("runs found:", {nb: m["run"].rsplit("/", 1)[-1] for nb, m in metrics.items()})

# %% [markdown]
# ## 1 · Claimed vs reproduced vs leak-free

# %%
table = summary.headline_table(metrics)
if len(table):
    fig = summary.plot_headline(table)
    display.save_figure(fig, run, "claimed_vs_reproduced")
    display_cols = [
        "report",
        "metric",
        "claimed",
        "claimed_classes",
        "reported_value",
        "reported_n_classes",
        "trusted_label",
        "trusted_value",
        "trusted_ci_low",
        "trusted_ci_high",
        "trusted_n_classes",
        "trusted_chance",
        "trusted_majority",
    ]
table[display_cols].round(3) if len(table) else table

# %% [markdown]
# ## 1b · Every paired comparison
# Each lesson compares protocols on the same evaluation rows; red intervals exclude zero.

# %%
summary.comparisons_table(metrics)

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** For each report you can now say which number it claimed, which number to
# > trust, and whether their difference is more than chance. The rest of the lesson looks at
# > the predictions and the features behind those numbers.

# %% [markdown]
# ## 2 · Every model on the same metrics

# %%
preds = summary.predictions(metrics)
scores = summary.predictions_table(preds)
scores.round(3) if len(scores) else "no predictions found: run notebooks 03-08 first"

# %% [markdown]
# ## 3 · Confusion matrices
# Row-normalised: each row shows where a class's samples went. Nine cell lines fit on one
# matrix with numbers; for 20-70 compounds we show the most frequent classes, ordered by
# clustering so confused compounds sit together.

# %%
picks = [k for k in preds if k[0] == "04_cell_lines_densenet" and k[2] == "test"][:1] + [
    k for k in preds if k[0] == "05_cpjump1_mobilenet" and k[1] == "reported"
][:1]
if picks:
    fig, axes = plt.subplots(1, len(picks), figsize=(8.5 * len(picks), 7.5))
    for ax, key in zip(np.atleast_1d(axes), picks, strict=True):
        p = preds[key]
        evaluate.plot_confusion(
            p["targets"],
            p["logits"].argmax(1),
            list(p["classes"]),
            ax=ax,
            top_n=25,
            title=f"{key[0]}: {key[1]} ({key[2]})",
        )
    fig.tight_layout()
    display.save_figure(fig, run, "confusion_matrices")

# %% [markdown]
# ## 4 · Embeddings and batch effects
# Frozen ImageNet features (EfficientNet-Lite0) of every RxRx1 site, mapped with t-SNE and
# UMAP, coloured by siRNA and by experiment. When points group by experiment rather than by
# siRNA, the strongest signal in the images is the batch — which a random split of images
# lets a model exploit, and which a split by experiment exposes.

# %%
rx_root = catalog.locate(
    "rxrx1", real=real_rxrx1, data_root=data_root, overrides=synthetic_rxrx1 or None, seed=seed
)
rx = catalog.read_index("rxrx1", rx_root)
rx = rx[(rx.site == 1) & rx.sirna.ne("")].reset_index(drop=True)
rx_images = torchdata.decode(rx, size=embed_size // 2, data_root=data_root)
rx_stats = torchdata.ChannelStats.fit(rx_images, np.arange(len(rx)))
arch, imagenet = next(
    iter(embeddings.available_backbones(["efficientnet_lite0"], verbose=False).values())
)
rx_emb = embeddings.extract(images=rx_images, stats=rx_stats, arch=arch, pretrained=imagenet)
print(f"{len(rx)} sites -> embeddings {rx_emb.shape} ({arch}, ImageNet: {imagenet})")

# %%
fig, axes = plt.subplots(2, 2, figsize=(14, 11))
for row, method in enumerate(map_methods):
    xy = evaluate.embed_2d(rx_emb, method=method, seed=seed)
    evaluate.plot_embedding(
        xy, rx.sirna, ax=axes[row, 0], title=f"{method.upper()}: siRNA (top 10)", top=10,
        highlight=None,
    )  # fmt: skip
    evaluate.plot_embedding(
        xy, rx.experiment, ax=axes[row, 1], title=f"{method.upper()}: experiment", top=20,
        highlight=None,
    )  # fmt: skip
fig.suptitle(f"RxRx1 sites, frozen {arch} features")
fig.tight_layout()
display.save_figure(fig, run, "embeddings_batch")

# %% [markdown] tags=["exercise"]
# **Exercise 09.1 · Who is a site's nearest neighbour?** A map's clusters are easy to
# over-read; count instead. For every site, find its nearest *other* site by cosine similarity
# of `rx_emb`, and compute the share of sites whose neighbour is from the same experiment
# (`same_experiment`) and the share whose neighbour has the same siRNA (`same_sirna`). Use
# numpy only: rows scaled to length 1, a similarity matrix, the diagonal excluded.

# %% tags=["solution"]
unit = rx_emb.astype(float) / np.linalg.norm(rx_emb.astype(float), axis=1, keepdims=True)
similarity = unit @ unit.T
np.fill_diagonal(similarity, -np.inf)  # a site is not its own neighbour
nearest = similarity.argmax(axis=1)
same_experiment = float(np.mean(rx.experiment.to_numpy() == rx.experiment.to_numpy()[nearest]))
same_sirna = float(np.mean(rx.sirna.to_numpy() == rx.sirna.to_numpy()[nearest]))

# %% tags=["exercise"]
from cellutils.exercises import nb09

nb09.check_neighbours(
    same_experiment, same_sirna, embeddings=rx_emb, experiment=rx.experiment, sirna=rx.sirna
)

# %% [markdown] tags=["exercise"]
# **Exercise 09.2 · The simplest batch correction.** Subtract from every site's embedding the
# mean embedding of its experiment: `centred`, an array shaped like `rx_emb`. The check then
# recounts the neighbours of exercise 09.1 on `centred`.

# %% tags=["solution"]
centred = rx_emb.astype(float).copy()
for experiment in rx.experiment.unique():
    rows = (rx.experiment == experiment).to_numpy()
    centred[rows] -= centred[rows].mean(axis=0)

# %% tags=["exercise"]
nb09.check_centred(centred, embeddings=rx_emb, experiment=rx.experiment, sirna=rx.sirna)

# %% [markdown] tags=["exercise"]
# **Question 09.3 · Is centring a cure?** Centring moved the neighbour shares (the check
# printed them). Why is per-experiment centring still not enough to make a random split of
# images trustworthy, and when would it remove real signal?

# %% [markdown] tags=["solution"]
# **Model answer.** Centring removes only each experiment's *mean* shift. Experiments also
# differ in spread, in which features vary together, and in how a perturbation shows (an
# siRNA can look stronger in one batch of cells than in another); none of that is removed,
# so neighbours can still be found through the experiment. And a model evaluated on images
# from experiments it trained on can still learn those residual batch traits, so the honest
# test stays a split by experiment. Centring removes real signal when perturbations are not
# spread evenly over experiments: if one experiment holds more of a strongly acting siRNA, its
# mean carries that siRNA's phenotype, and subtracting it weakens the very effect being
# measured. That is why the field centres on controls (each plate's negative-control wells),
# which carry the batch but not the treatments.

# %% [markdown] tags=["checkpoint"]
# > **Checkpoint.** You have measured a batch effect by counting neighbours, corrected it
# > in the simplest way and said what that leaves. The last section does the same comparison
# > for the profiles of notebook 02.

# %% [markdown]
# ## 5 · Replicate retrieval: which profile finds a compound's replicates?
# Notebook 02 scored three kinds of CPJUMP1 well profile (report 004's regionprops features,
# CellProfiler-grade cp-measure features, frozen ImageNet CNN embeddings) the same way:
# copairs replicate mAP across plates against DMSO, before and after sphering. Each dot is a
# compound; the box is the spread over compounds.

# %%
maps = {}
if "02_features" in metrics:
    per_compound = pd.read_csv(f"{metrics['02_features']['run']}/profile_maps.csv")
    maps = {k: g for k, g in per_compound.groupby("profiles", sort=False)}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(maps) + 1.5))
    ax.boxplot(
        [m.mean_average_precision for m in maps.values()],
        vert=False,
        tick_labels=list(maps),
        widths=0.5,
    )
    for i, m in enumerate(maps.values(), start=1):
        ax.scatter(
            m.mean_average_precision,
            np.full(len(m), i) + np.random.default_rng(i).uniform(-0.12, 0.12, len(m)),
            c=np.where(m.below_corrected_p, "#1b7837", "#bdbdbd"),
            s=18,
            zorder=3,
        )
    kinds = metrics["02_features"]["extra"]["profile_kinds"]
    lines = {**kinds["no_signal_map"]}  # each panel's no-signal line (noise, same pipeline)
    lines |= {f"{k} + sphering": v for k, v in kinds.get("no_signal_map_sphered", {}).items()}
    for i, name in enumerate(maps, start=1):
        ax.plot(
            [lines.get(name, np.nan)] * 2,
            [i - 0.35, i + 0.35],
            lw=2,
            color=display.CONTROL_COLOUR,
            label="noise, same pipeline" if i == 1 else None,
        )
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    ax.set(
        xlabel="mean average precision per compound (green: significant)",
        xlim=(0, 1),
        title="Replicate retrieval across plates, against DMSO",
    )
    fig.tight_layout()
    display.save_figure(fig, run, "replicate_map")

# %%
pd.DataFrame(
    {
        n: {
            "compounds": len(m),
            "mean mAP": m.mean_average_precision.mean(),
            "significant": m.below_corrected_p.mean(),
        }
        for n, m in maps.items()
    }
).T.round(3)

# %%
rows = [
    evaluate.result_row(
        protocol=f"replicate retrieval: {n}",
        metrics={
            "mean_map": float(m.mean_average_precision.mean()),
            "fraction_significant": float(m.below_corrected_p.mean()),
        },
        leak_free=True,
    )
    for n, m in maps.items()
]
evaluate.write_metrics(
    run=run,
    notebook="09_evaluation",
    report="all",
    title="Cross-model comparison",
    claimed={},
    results=rows,
    trust="leak-free rows of each notebook",
    settings=settings,
    data=", ".join(sorted({str(m.get("data")) for m in metrics.values()})),
    extra={"headline": table.to_dict("records"), "models": scores.to_dict("records")},
)
