"""Single-cell samples for report 004: crops by bounding box from an image, its masks and its
flows, the cell's regionprops features, and the vote that turns cell predictions into image
predictions.

Per cell, two 4-channel crops (square around the bounding box, resized to ``size``). Report
004 feeds its branches a 4-channel *mask image* and a 4-channel *flow image* (the segmentation
outputs, not the raw image); it does not say what the four channels are, so we define them:
- mask branch: this cell's mask, all cells' masks, every cell's outline, other cells' masks
- flow branch: cellpose flow dY, flow dX, flow magnitude, all cells' masks
With ``with_image=True`` (not the report's) the raw image enters both branches instead:
mask branch = image, this cell, image x cell, all cells; flow branch = dY, dX, |flow|, image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cellutils import features, keys
from cellutils.datasets import load_site


def _scale(image: np.ndarray) -> np.ndarray:
    hi = np.percentile(image, 99.9)
    return np.clip(image.astype(np.float32) / max(hi, 1e-6), 0, 1)


def crop_cells(
    image: np.ndarray,
    masks: np.ndarray,
    flows: np.ndarray,
    size: int,
    labels: Sequence[int],
    with_image: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(mask-branch, flow-branch) crops of the cells ``labels``: two (n, 4, size, size) arrays,
    values in [-1, 1] (the report's normalisation, mean 0.5 and std 0.5 per channel)."""
    from skimage.segmentation import find_boundaries

    img = _scale(image)
    mag = np.sqrt((flows**2).sum(0))
    mag = mag / max(mag.max(), 1e-6)
    cells = (masks > 0).astype(np.float32)
    outline = find_boundaries(masks, mode="inner").astype(np.float32)
    zero = np.zeros_like(img)
    first = [img, zero, zero, cells] if with_image else [zero, cells, outline, zero]
    stack = np.stack([*first, flows[0], flows[1], mag, img if with_image else cells])
    objects = {r.label: r.bbox for r in _regions(masks)}
    h, w = masks.shape
    out = np.zeros((len(labels), 8, size, size), np.float32)
    for i, lab in enumerate(labels):
        y0, x0, y1, x1 = objects[lab]
        side = max(y1 - y0, x1 - x0) + 4
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        ys, xs = max(cy - side // 2, 0), max(cx - side // 2, 0)
        ye, xe = min(ys + side, h), min(xs + side, w)
        crop = stack[:, ys:ye, xs:xe].copy()
        cell = (masks[ys:ye, xs:xe] == lab).astype(np.float32)
        if with_image:
            crop[1], crop[2] = cell, crop[0] * cell
        else:
            crop[0], crop[3] = cell, crop[1] - cell
        t = torch.from_numpy(crop)[None]
        out[i] = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[
            0
        ].numpy()
    out[:, [0, 1, 2, 3, 7]] = (out[:, [0, 1, 2, 3, 7]] - 0.5) / 0.5
    return out[:, :4], out[:, 4:]


def _regions(masks):
    from skimage.measure import regionprops

    return regionprops(masks.astype(np.int32))


@dataclass
class CellSet:
    """Every sampled cell: ``table`` (one row per cell: image key, label, metadata, features)
    and its crops, ``(n, 4, S, S)`` float16 for each branch: in memory for small sets, else a
    memory-mapped file on disk (``store``), so memory does not grow with the number of cells.
    Crops are stored at ``store_size`` and resized to ``size`` when read."""

    table: pd.DataFrame
    mask_crops: np.ndarray
    flow_crops: np.ndarray
    size: int

    @property
    def feature_columns(self) -> list[str]:
        return features.feature_columns(self.table)

    def crops(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell ``i``'s (mask branch, flow branch) crops at ``size``, float32."""
        pair = [
            torch.from_numpy(np.asarray(a[i], np.float32))
            for a in (self.mask_crops, self.flow_crops)
        ]
        if pair[0].shape[-1] != self.size:
            pair = [
                F.interpolate(
                    t[None], size=(self.size, self.size), mode="bilinear", align_corners=False
                )[0]
                for t in pair
            ]
        return pair[0], pair[1]


def build_cells(
    index: pd.DataFrame,
    segmented: pd.DataFrame,
    key: str,
    metadata: Sequence[str],
    size: int = 64,
    max_cells_per_image: int | None = 30,
    channel: str = "median",
    seed: int = 0,
    progress: bool = True,
    with_image: bool = False,
    store: str | os.PathLike | None = None,
    store_size: int | None = None,
) -> CellSet:
    """Crops and features of up to ``max_cells_per_image`` random cells of every image, with
    report 004's cleaning (perimeter 0 dropped). The centroid is measured and kept in the
    table as metadata, but not among the features the network sees (a cell's position in the
    field says nothing about the compound).

    ``store``: a folder for the crops as memory-mapped files (the full dataset: 462k cells
    would need ~300 GB of memory at 224 px; stored at ``store_size`` = 64 px they take ~30 GB
    of disk and ~nothing of memory). ``None`` keeps them in memory (small sets). A store is
    reused when its key (``store/key.json``: this module's code, the settings, the sites'
    metadata and the identity of their images, masks and flows) matches; else it is rebuilt."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    seg = segmented.set_index(segmented[key].astype(str))
    crop_at = store_size or size
    if store is not None:
        settings = dict(
            key=key, metadata=list(metadata), max_cells_per_image=max_cells_per_image,
            channel=channel, seed=seed, with_image=with_image, crop_size=crop_at,
        )  # fmt: skip
        want = _store_key(index, seg, key, channel, settings)
        cached = _open_store(Path(store), want, crop_at, size)
        if cached is not None:
            return cached
    tables, mcrops, fcrops, n_done = [], [], [], 0
    writer = _CropWriter(store, crop_at) if store is not None else None
    for _, row in tqdm(
        index.iterrows(), total=len(index), disable=not progress, desc="crop cells", mininterval=2.0
    ):
        k = str(row[key])
        masks = tifffile.imread(seg.loc[k, "path_masks"])
        flows = tifffile.imread(seg.loc[k, "path_flows"]).astype(np.float32)
        image = load_site(row, [channel])
        table = features.measure_cells(
            masks, image, [channel], {key: k, **{m: row[m] for m in metadata}}
        )
        table, _ = features.clean_cells(table)
        if max_cells_per_image and len(table) > max_cells_per_image:
            table = table.iloc[np.sort(rng.choice(len(table), max_cells_per_image, replace=False))]
        if not len(table):
            continue
        m, f = crop_cells(
            image[0], masks, flows, crop_at, table.Metadata_ObjectNumber.tolist(), with_image
        )
        tables.append(table)
        n_done += len(table)
        if writer is not None:
            writer.add(m, f)
        else:
            mcrops.append(m.astype(np.float16))
            fcrops.append(f.astype(np.float16))
    table = pd.concat(tables, ignore_index=True)
    if writer is not None:
        m, f = writer.close()
        table.to_parquet(writer.folder / "cells.parquet", index=False)
        keys.write_sidecar(writer.folder, want)  # last: the key marks the store complete
        return CellSet(table, m, f, size)
    return CellSet(table, np.concatenate(mcrops), np.concatenate(fcrops), size)


def _store_key(
    index: pd.DataFrame, seg: pd.DataFrame, key: str, channel: str, settings: dict
) -> dict:
    """What makes a crop store: this module's code, ``settings``, every site's key and
    metadata, and the identity (size, mtime) of its image, masks and flows."""
    ks = index[key].astype(str)
    files = [*index[f"path_{channel}"], *seg.loc[ks, "path_masks"], *seg.loc[ks, "path_flows"]]
    values = {"sites": index[[key, *settings["metadata"]]].astype(str).to_numpy().tolist()}
    return keys.make_key(build_cells, settings, [str(f) for f in files], values)


def _open_store(store: Path, want: dict, side: int, size: int) -> CellSet | None:
    """The crop store at ``store`` when its key is ``want`` (reused, said so), else None (and
    its old key removed, so a rebuild that stops half-way is never taken for a finished one)."""
    if not (store / "key.json").exists():
        return None
    reason = keys.mismatch(keys.read_sidecar(store), want)
    if reason is None and all((store / f).exists() for f in STORE_FILES):
        table = pd.read_parquet(store / "cells.parquet")
        shape = (len(table), 4, side, side)
        m, f = (np.memmap(store / f"{b}.f16", np.float16, "r", shape=shape) for b in BRANCHES)
        print(f"crop cells: reusing the crop store {store} ({len(table):,} cells, same key)")
        return CellSet(table, m, f, size)
    print(f"crop cells: rebuilding the crop store {store} ({reason or 'files missing'})")
    (store / "key.json").unlink()
    return None


BRANCHES = ("mask", "flow")
STORE_FILES = ("mask.f16", "flow.f16", "cells.parquet")


class _CropWriter:
    """Appends crops to two raw float16 files, then opens them as memory-mapped arrays."""

    def __init__(self, folder: str | os.PathLike, side: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.side, self.n = side, 0
        self.files = [open(self.folder / f"{b}.f16.partial", "wb") for b in ("mask", "flow")]  # noqa: SIM115

    def add(self, m: np.ndarray, f: np.ndarray) -> None:
        for fh, a in zip(self.files, (m, f), strict=True):
            fh.write(np.ascontiguousarray(a, np.float16).tobytes())
        self.n += len(m)

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for fh, b in zip(self.files, ("mask", "flow"), strict=True):
            fh.close()
            final = self.folder / f"{b}.f16"
            os.replace(self.folder / f"{b}.f16.partial", final)
            out.append(np.memmap(final, np.float16, "r", shape=(self.n, 4, self.side, self.side)))
        return out[0], out[1]


class CellDataset(Dataset):
    """((mask crop, flow crop, standardised features), target) for rows of a ``CellSet``."""

    def __init__(
        self,
        cells: CellSet,
        rows: np.ndarray,
        targets: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        augment: bool = False,
    ):
        self.cells, self.rows, self.targets = cells, np.asarray(rows), np.asarray(targets)
        tab = cells.table[cells.feature_columns].to_numpy(np.float32)
        self.tab = (tab - mean) / std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        r = self.rows[i]
        m, f = self.cells.crops(r)
        if self.augment and torch.rand(()) < 0.5:  # a flip: dX changes sign with the image
            m, f = m.flip(-1), f.flip(-1)
            f[1] = -f[1]
        return (m, f, torch.from_numpy(self.tab[r])), int(self.targets[i])


def vote(image_keys: Sequence[str], logits: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    """Cell predictions -> one prediction per image: the majority class of its cells (ties:
    the higher mean probability) and the class of the highest mean probability."""
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    df = pd.DataFrame({"image": list(image_keys), "target": targets, "pred": probs.argmax(1)})
    rows = []
    for image, g in df.groupby("image", sort=False):
        p = probs[g.index]
        counts = np.bincount(g.pred, minlength=probs.shape[1]).astype(float)
        majority = int(np.argmax(counts + p.mean(0) * 1e-3))
        rows.append(
            {
                "image": image,
                "target": int(g.target.iloc[0]),
                "cells": len(g),
                "majority_vote": majority,
                "mean_probability": int(p.mean(0).argmax()),
            }
        )
    return pd.DataFrame(rows)
