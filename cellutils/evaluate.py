"""Metrics, the field's figures, and the plain ``metrics.json`` of the notebooks that make no
claim to weigh (00, 01, 09); the report notebooks write theirs through ``cellutils.lesson``,
with intervals, baselines and comparisons.

Plain ``metrics.json``::

    {"notebook": "01_segmentation", "report": "003, 004", "title": ...,
     "data": "synthetic" | "real", "settings": "quick", "claimed": {...},
     "results": [{"protocol": ..., "leak_free": true, "AP@0.5": ..., ...}, ...],
     "trust": "...", "extra": {...}}
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from cellutils.paths import write_json


def classification_metrics(targets: np.ndarray, scores: np.ndarray, k: int = 5) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes present), macro F1 and top-k
    accuracy. ``scores`` are logits/probabilities (N, K) or predicted labels (N,)."""
    targets = np.asarray(targets)
    scores = np.asarray(scores)
    pred = scores.argmax(1) if scores.ndim == 2 else scores
    out = {"accuracy": float((pred == targets).mean()) if len(targets) else float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(balanced_accuracy_score(targets, pred))
        out["macro_f1"] = float(f1_score(targets, pred, average="macro", labels=np.unique(targets)))
    if scores.ndim == 2 and scores.shape[1] > k:
        topk = np.argsort(-scores, axis=1)[:, :k]
        out[f"top{k}_accuracy"] = float((topk == targets[:, None]).any(1).mean())
    return out


def per_class_recall(targets: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> pd.Series:
    targets, pred = np.asarray(targets), np.asarray(pred)
    rec = {classes[c]: float((pred[targets == c] == c).mean()) for c in np.unique(targets)}
    return pd.Series(rec, name="recall").sort_values()


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def plot_history(
    histories: dict[str, pd.DataFrame],
    metric: str = "accuracy",
    best: dict[str, int] | None = None,
    title: str = "",
):
    """Learning curves: loss (left) and ``metric`` (right), train dashed, validation solid,
    one colour per run; the kept (best) epoch marked."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8))
    colours = plt.get_cmap("tab10")
    for i, (name, h) in enumerate(histories.items()):
        c = colours(i)
        axes[0].plot(h.epoch, h.train_loss, "--", color=c)
        axes[0].plot(h.epoch, h.val_loss, "-", color=c)
        if f"train_{metric}" in h:
            axes[1].plot(h.epoch, h[f"train_{metric}"], "--", color=c)
        axes[1].plot(h.epoch, h[f"val_{metric}"], "-", color=c, label=name)
        if best and name in best:
            row = h[h.epoch == best[name]]
            axes[1].plot(row.epoch, row[f"val_{metric}"], "o", color=c, ms=9, mfc="none")
    axes[0].set_yscale("log")  # epoch 1's loss would otherwise flatten the rest
    axes[0].set(xlabel="epoch", ylabel="cross-entropy loss (log scale)", title="loss")
    axes[1].set(
        xlabel="epoch",
        ylabel=metric.replace("_", " "),
        title=f"{metric.replace('_', ' ')} (circle: kept epoch)",
    )
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    styles = [
        plt.Line2D([], [], color="black", ls="--", label="training"),
        plt.Line2D([], [], color="black", ls="-", label="validation / watched"),
    ]
    handles, _ = axes[1].get_legend_handles_labels()
    axes[1].legend(
        handles=handles + styles,
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        frameon=False,
    )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(
    targets: np.ndarray,
    pred: np.ndarray,
    classes: Sequence[str],
    ax=None,
    top_n: int | None = 30,
    title: str = "",
    annotate: bool | None = None,
):
    """Row-normalised confusion matrix (each row: where that class's samples went).

    With more than ``top_n`` classes, the ``top_n`` most frequent true classes are shown,
    ordered by hierarchical clustering of their rows so that confused classes sit together.
    """
    targets, pred = np.asarray(targets), np.asarray(pred)
    labels = np.arange(len(classes))
    cm = confusion_matrix(targets, pred, labels=labels).astype(float)
    rows = cm.sum(1) > 0
    keep = labels[rows]
    if top_n is not None and len(keep) > top_n:
        keep = keep[np.argsort(-cm[keep].sum(1), kind="stable")[:top_n]]
        from scipy.cluster.hierarchy import leaves_list, linkage

        sub = cm[np.ix_(keep, keep)] / np.maximum(cm[keep].sum(1, keepdims=True), 1)
        keep = keep[leaves_list(linkage(sub, "average"))]
    norm = cm[np.ix_(keep, keep)] / np.maximum(cm[keep].sum(1, keepdims=True), 1)
    n = len(keep)
    if ax is None:
        side = min(max(4.0, 0.32 * n + 2), 14)
        _, ax = plt.subplots(figsize=(side + 1, side))
    import seaborn as sns

    annotate = n <= 12 if annotate is None else annotate
    names = [str(classes[i]) for i in keep]
    sns.heatmap(
        norm,
        ax=ax,
        cmap="Blues",
        vmin=0,
        vmax=1,
        square=True,
        annot=annotate,
        fmt=".2f",
        xticklabels=names,
        yticklabels=names,
        cbar_kws={"label": "fraction of the true class", "shrink": 0.7},
    )
    shown = f"{n} of {len(classes)} classes" + (", clustered" if n < rows.sum() else "")
    head = title or "confusion matrix (row-normalised)"
    ax.set(xlabel="predicted", ylabel="true", title=f"{head}\n({shown})")
    ax.tick_params(axis="x", labelrotation=90, labelsize=8 if n > 15 else 9)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8 if n > 15 else 9)
    return ax.figure


def embed_2d(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D map of embeddings: t-SNE (after PCA to 50 dimensions) or UMAP, standardised first."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.asarray(x, dtype=np.float32))
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        return umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed).fit_transform(x)
    raise ValueError(f"method must be 'tsne' or 'umap', not {method!r}")


def plot_embedding(
    xy: np.ndarray,
    labels: Sequence,
    ax=None,
    title: str = "",
    top: int = 12,
    highlight: str | None = "DMSO",
):
    """Scatter of a 2-D map coloured by label: the ``top`` most frequent labels in distinct
    colours (``highlight``, e.g. DMSO, in grey), the rest as small grey points."""
    labels = pd.Series(np.asarray(labels).astype(str))
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = [c for c in labels.value_counts().index if c != highlight][:top]
    rest = ~labels.isin([*shown, highlight])
    ax.scatter(*xy[rest.to_numpy()].T, s=6, c="#d9d9d9", label="other")
    if highlight is not None and (labels == highlight).any():
        m = (labels == highlight).to_numpy()
        ax.scatter(*xy[m].T, s=10, c="#737373", label=highlight)  # display.CONTROL_COLOUR
    colours = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    for i, c in enumerate(shown):
        m = (labels == c).to_numpy()
        ax.scatter(*xy[m].T, s=16, color=colours(i), label=c, edgecolor="white", linewidth=0.3)
    ax.set(xticks=[], yticks=[], title=title, xlabel="dimension 1", ylabel="dimension 2")
    ax.legend(
        fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False
    )
    return ax.figure


# --------------------------------------------------------------------------------------------
# metrics.json
# --------------------------------------------------------------------------------------------


def result_row(protocol: str, metrics: dict, leak_free: bool, **extra) -> dict:
    """One line of a notebook's results table."""
    return {
        "protocol": protocol,
        "leak_free": bool(leak_free),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()},
        **extra,
    }


def write_metrics(
    run: str | Path,
    notebook: str,
    report: str,
    title: str,
    claimed: dict,
    results: list[dict],
    trust: str,
    data: str,
    settings: str,
    extra: dict | None = None,
) -> Path:
    """Write ``metrics.json`` (never over an existing one) and return its path."""
    return write_json(
        Path(run) / "metrics.json",
        {
            "notebook": notebook,
            "report": report,
            "title": title,
            "data": data,
            "settings": settings,
            "claimed": claimed,
            "results": results,
            "trust": trust,
            "extra": extra or {},
        },
    )
