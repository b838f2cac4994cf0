"""Figures of the field: colour composites, plate maps and class balance."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# Controls keep one neutral colour in every figure, so the eye never mistakes them for a class.
CONTROL_COLOUR = "#737373"
OTHER_COLOUR = "#d9d9d9"
CONTROLS = ("DMSO", "EMPTY", "negative_control")
TRUTH_COLOUR = (0.0, 0.9, 0.9)  # cyan: ground-truth outlines
PREDICTION_COLOUR = (1.0, 0.85, 0.0)  # yellow: a backend's outlines


def channel_key(fig, names: Sequence[str], colours: Sequence[Sequence[int]], title="channels"):
    """A legend under the figure: which colour each channel is drawn in."""
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=np.asarray(c, float) / 255, label=n)
        for n, c in zip(names, colours, strict=False)
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        title=title,
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.08),
    )
    return fig


def save_figure(fig, folder, name: str, dpi: int = 120):
    """Save ``fig`` as ``<folder>/<name>.png`` (never over an existing file); return the path."""
    from pathlib import Path

    path = Path(folder) / f"{name}.png"
    if path.exists():
        raise FileExistsError(f"{path} exists; this run folder already has that figure.")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def composite(
    image: np.ndarray,
    colours: Sequence[Sequence[int]],
    percentiles: tuple[float, float] = (1, 99.7),
) -> np.ndarray:
    """Additive colour composite of (C, H, W) with a per-channel percentile stretch."""
    if len(colours) < image.shape[0]:
        raise ValueError(f"{image.shape[0]} channels but only {len(colours)} colours")
    rgb = np.zeros((*image.shape[1:], 3), np.float32)
    for ch, colour in zip(image.astype(np.float32), colours, strict=False):
        lo, hi = np.percentile(ch, percentiles)
        x = np.clip((ch - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb += x[..., None] * (np.asarray(colour, np.float32) / 255)
    return np.clip(rgb, 0, 1)


def show_images(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 3.0,
    suptitle: str | None = None,
):
    """A grid of RGB (or grey) images without axes; returns the figure."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles or [""] * n, strict=False):
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plate_map(
    wells: pd.Series,
    values: pd.Series,
    ax=None,
    n_rows: int = 16,
    n_cols: int = 24,
    title: str = "",
    top: int = 12,
    cmap: str = "tab20",
):
    """A 384-well plate coloured by a categorical value (the ``top`` most common named,
    the rest grey); empty wells white."""
    ax = ax or plt.subplots(figsize=(10, 5.5))[1]
    first = pd.DataFrame(
        {"well": wells.to_numpy(), "value": values.astype(str).to_numpy()}
    ).drop_duplicates("well")
    common = list(first.value.value_counts().index[:top])
    codes = {v: i for i, v in enumerate(common)}
    grid = np.full((n_rows, n_cols), np.nan)
    for well, value in zip(first.well, first.value, strict=False):
        r, c = ord(well[0].upper()) - 65, int(well[1:]) - 1
        grid[r, c] = codes.get(value, len(common))
    palette = iter(plt.get_cmap(cmap).colors)
    colours = [CONTROL_COLOUR if v in CONTROLS else next(palette) for v in common] + [OTHER_COLOUR]
    from matplotlib.colors import ListedColormap

    ax.imshow(grid, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(common) + 0.5)
    ax.set_xticks(range(n_cols), [str(i + 1) for i in range(n_cols)], fontsize=7)
    ax.set_yticks(range(n_rows), [chr(65 + i) for i in range(n_rows)], fontsize=7)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    labels = common + (["other"] if first.value.nunique() > len(common) else [])
    ax.legend(
        handles[: len(labels)],
        labels,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=7,
        frameon=False,
    )
    ax.set_title(title)
    return ax


def plate_heatmap(
    wells: pd.Series,
    values: pd.Series,
    ax=None,
    n_rows: int = 16,
    n_cols: int = 24,
    title: str = "",
    label: str = "cells per well",
    cmap: str = "viridis",
):
    """A 384-well plate coloured by a number per well (the mean over a well's rows), e.g. the
    cell count: edge effects and dispensing gradients show up at a glance. Empty wells white."""
    per_well = pd.Series(values.to_numpy(), index=wells.to_numpy()).groupby(level=0).mean()
    grid = np.full((n_rows, n_cols), np.nan)
    for well, v in per_well.items():
        grid[ord(well[0].upper()) - 65, int(well[1:]) - 1] = v
    ax = ax or plt.subplots(figsize=(10, 5.5))[1]
    im = ax.imshow(grid, cmap=cmap)
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)
    ax.set_xticks(range(n_cols), [str(i + 1) for i in range(n_cols)], fontsize=7)
    ax.set_yticks(range(n_rows), [chr(65 + i) for i in range(n_rows)], fontsize=7)
    ax.set(xlabel="column", ylabel="row", title=title)
    return ax


def class_balance(
    labels: pd.Series,
    ax=None,
    top: int | None = 30,
    title: str = "",
    highlight: Sequence[str] = ("DMSO",),
    xlabel: str = "images",
):
    """Horizontal bar chart of class counts (largest first), with the majority-class share."""
    counts = labels.value_counts()
    shown = counts.head(top) if top else counts
    ax = ax or plt.subplots(figsize=(6, 0.22 * len(shown) + 1))[1]
    colours = [CONTROL_COLOUR if k in highlight else "tab:blue" for k in shown.index]
    ax.barh(shown.index.astype(str)[::-1], shown.to_numpy()[::-1], color=colours[::-1])
    ax.set_xlabel(xlabel)
    share = counts.iloc[0] / counts.sum()
    more = f", top {top} of {len(counts)} shown" if top and len(counts) > top else ""
    ax.set_title(
        f"{title}\n{len(counts)} classes, majority {counts.index[0]} = {share:.1%}{more}",
        fontsize=10,
    )
    ax.tick_params(axis="y", labelsize=7)
    return ax


def outlines(
    image: np.ndarray,
    masks: np.ndarray,
    ax=None,
    title: str = "",
    colour: tuple[float, float, float] = PREDICTION_COLOUR,
    truth: np.ndarray | None = None,
):
    """A grey image (percentile-stretched) with the outlines of ``masks`` drawn on it (yellow),
    and optionally the ground truth's outlines (cyan) under them."""
    from skimage.segmentation import find_boundaries

    lo, hi = np.percentile(image, (1, 99.5))
    grey = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if truth is not None:
        rgb[find_boundaries(truth, mode="inner")] = TRUTH_COLOUR
    rgb[find_boundaries(masks, mode="inner")] = colour
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    ax.imshow(rgb)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax


def flow_rgb(flows: np.ndarray) -> np.ndarray:
    """cellpose's flow field (2, H, W) as colour: hue = direction, brightness = magnitude."""
    from cellpose import plot

    return plot.dx_to_circ(flows)


def flow_key(ax, size: int = 41):
    """The colour key of ``flow_rgb``, inset in the corner of ``ax``: one round cell whose every
    pixel flows to its centre, drawn in the same colours (hue = the direction of the flow)."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    inside = yy**2 + xx**2 <= 1
    rgb = flow_rgb(np.stack([-yy, -xx]) * inside)
    key = ax.inset_axes((0.72, 0.72, 0.27, 0.27))
    key.imshow(np.where(inside[..., None], rgb, 255).astype(np.uint8))
    key.set_title("key: flow to centre", fontsize=6, color="white", pad=1)
    key.axis("off")
    return key


def interval_plot(
    tables: dict[str, pd.DataFrame],
    ax,
    xlabel: str,
    chance: float | dict | None = None,
    title: str = "",
) -> None:
    """Means with 95% intervals (``mean``, ``ci_low``, ``ci_high`` per row) for one or more
    tables of the same rows (e.g. before / after a correction), offset so they do not overlap;
    ``chance`` draws the no-signal level: one dashed line (a number), or one grey tick per
    panel (``{table name: {row: level}}``: each panel's own no-signal line)."""
    rows = list(next(iter(tables.values())).index)
    colours = ["#1f78b4", "#e6550d", "#31a354", "#756bb1"]
    for j, (name, t) in enumerate(tables.items()):
        y = np.arange(len(rows)) + (j - (len(tables) - 1) / 2) * 0.22
        t = t.loc[rows]
        ax.errorbar(
            t["mean"],
            y,
            xerr=[t["mean"] - t["ci_low"], t["ci_high"] - t["mean"]],
            fmt="o",
            color=colours[j % len(colours)],
            capsize=3,
            label=name,
        )
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.invert_yaxis()
    if isinstance(chance, dict):
        for j, name in enumerate(tables):
            y = np.arange(len(rows)) + (j - (len(tables) - 1) / 2) * 0.22
            levels = [chance.get(name, {}).get(r, np.nan) for r in rows]
            ax.plot(levels, y, "|", color=CONTROL_COLOUR, ms=14, mew=2,
                    label="no signal (noise, same pipeline)" if j == 0 else None)  # fmt: skip
    elif chance is not None:
        ax.axvline(chance, color=CONTROL_COLOUR, ls="--", lw=1)
        ax.text(
            chance, 0.01, " no signal", color=CONTROL_COLOUR, fontsize=8, va="bottom",
            transform=ax.get_xaxis_transform(),
        )  # fmt: skip
    ax.set(xlabel=xlabel, title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def scale_bar(ax, width_px: int, um_per_px: float | None = None) -> None:
    """A white bar in the lower right of an image panel, about a fifth of its width, labelled in
    µm when the pixel size is known, else in pixels."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    unit, per_px = ("µm", um_per_px) if um_per_px else ("px", 1.0)
    target = width_px * per_px / 5
    length = max(v for v in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if v <= max(target, 1))
    bar = AnchoredSizeBar(
        ax.transData, length / per_px, f"{length} {unit}", "lower right", pad=0.3, color="white",
        frameon=False, size_vertical=max(width_px / 100, 1), fontproperties={"size": 7},
    )  # fmt: skip
    ax.add_artist(bar)


def segmentation_grid(
    images: Sequence[np.ndarray],
    channels: Sequence[str],
    truth: Sequence[np.ndarray] | None,
    masks: dict[str, Sequence[np.ndarray] | str],
    row_labels: Sequence[str] | None = None,
    um_per_px: float | None = None,
):
    """Segmentations at a glance: one row per image, columns image | truth | one per backend.

    ``images``: per row a (C, H, W) array of the ``channels`` (the first is drawn grey under the
    outlines: the channel the cells are outlined in); ``truth``: per row the ground-truth cell
    masks, or None (real data); ``masks``: {backend: per row its masks, or a string saying why
    it did not run, e.g. ``"not run: no weights"``}. Each backend panel's title carries its
    AP@0.5 against the truth (``segment.average_precision``); every image panel has a scale
    bar (µm when ``um_per_px`` is known, else pixels) and a key under the figure says which
    colour is which."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from cellutils.segment import average_precision

    if any(len(image) != len(channels) for image in images) or len(channels) > 3:
        raise ValueError(
            f"each image needs one plane per channel named ({len(channels)}: {list(channels)}), "
            f"at most 3; got {[len(image) for image in images]}: pass images as (C, H, W)"
        )
    colours = [(0, 255, 0), (255, 0, 255), (255, 255, 255)][: len(channels)]
    n, ncols = len(images), 2 + len(masks)
    fig, axes = plt.subplots(n, ncols, figsize=(2.5 * ncols, 2.5 * n + 0.7), squeeze=False)
    for i, image in enumerate(images):
        row = axes[i]
        label = f"{row_labels[i]}\n" if row_labels else ""
        row[0].imshow(composite(image, colours))
        row[0].set_title(f"{label}image: " + " + ".join(channels), fontsize=8)
        row[0].axis("off")
        true = truth[i] if truth is not None else None
        if true is None:
            outlines(image[0], np.zeros(image.shape[1:], int), row[1], "truth: none (real data)")
        else:
            n_true = len(np.unique(true)) - (true.min() == 0)
            outlines(image[0], true, row[1], f"truth: {n_true} cells", colour=TRUTH_COLOUR)
        for ax, (backend, found) in zip(row[2:], masks.items(), strict=True):
            if isinstance(found, str):
                ax.text(0.5, 0.5, f"{backend}:\n{found}", ha="center", va="center", fontsize=9,
                        transform=ax.transAxes, color=CONTROL_COLOUR)  # fmt: skip
                ax.set_xticks([]), ax.set_yticks([])
                continue
            m = found[i]
            n_found = len(np.unique(m)) - (m.min() == 0)
            score = (
                f"AP@0.5 {average_precision(true, m)['AP@0.5']:.2f}"
                if true is not None
                else "no truth"
            )
            outlines(image[0], m, ax, f"{backend}: {score}\n{n_found} cells", truth=true)
        for ax in row:
            if ax.images:
                scale_bar(ax, image.shape[-1], um_per_px)
    handles = [
        Patch(color=np.asarray(c, float) / 255, label=f"{name} (image)")
        for name, c in zip(channels, colours, strict=False)
    ] + [
        Line2D([], [], color=TRUTH_COLOUR, lw=2, label="truth outline"),
        Line2D([], [], color=PREDICTION_COLOUR, lw=2, label="backend's outline"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig
