"""From a dataset index to tensors: decoding (optionally cached), labels, normalisation fitted
on the training split, and augmentation that treats every channel alike.

>>> images = decode(index, size=64)                      # (N, C, 64, 64), memory-mapped cache
>>> stats = ChannelStats.fit(images, train_rows)          # training rows only
>>> ds = ImageDataset(images, train_rows, labels, stats, augment=augmentation("dihedral"))

``decode`` writes a memory-mapped ``.npy`` under ``<data root>/cache/decoded/`` keyed by the
files, their sizes and modification times, the channels and the output size, so training reads
arrays instead of decoding six PNGs per sample per epoch; ``cache=False`` keeps them in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from cellutils.datasets import load_site, path_columns
from cellutils.paths import data_root as _data_root

# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def resize(image: np.ndarray, size: int | None) -> np.ndarray:
    """Resize a (C, H, W) image to (C, size, size) with anti-aliasing, keeping its dtype."""
    if size is None or image.shape[-2:] == (size, size):
        return image
    t = torch.from_numpy(image.astype(np.float32))[None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[
        0
    ].numpy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def _cache_key(files: list[str], channels, size, dtype: str) -> str:
    h = hashlib.sha1(json.dumps([channels, size, dtype]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def decode(
    index: pd.DataFrame,
    channels: Sequence[str] | None = None,
    size: int | None = None,
    cache: bool = True,
    data_root: str | os.PathLike | None = None,
    jobs: int | None = None,
    verbose: bool = True,
) -> np.ndarray:
    """All images of ``index`` as one (N, C, size, size) array, rows in index order.

    With ``cache`` the array is a memory-mapped file reused while the files are unchanged.
    """
    cols = [f"path_{c}" for c in channels] if channels else path_columns(index)
    first = load_site(index.iloc[0], channels)
    first = resize(first, size)
    shape = (len(index), *first.shape)
    target = None
    if cache:
        files = [str(p) for c in cols for p in index[c]]
        key = _cache_key(files, cols, size, str(first.dtype))
        folder = _data_root(data_root) / "cache" / "decoded"
        target = folder / f"{key}.npy"
        if target.exists():
            arr = np.load(target, mmap_mode="r")
            if arr.shape == shape:
                if verbose:
                    print(f"decoded images: cache hit {target} {arr.shape}")
                return arr
        folder.mkdir(parents=True, exist_ok=True)
        need = int(np.prod(shape)) * first.dtype.itemsize
        free = shutil.disk_usage(folder).free
        if verbose:
            print(
                f"decoded images: writing a {need / 2**30:.2f} GiB cache {shape} to {folder} "
                f"({free / 2**30:.0f} GiB free)"
            )
        if need > free - 2**30:  # keep a GiB for everything else
            raise OSError(
                f"the decoded-image cache needs {need / 2**30:.1f} GiB in {folder} but "
                f"only {free / 2**30:.1f} GiB are free. Free space, set CELLUTILS_DATA "
                "to a larger disk, or decode fewer sites / a smaller image_size."
            )
        partial = target.with_suffix(f".{os.getpid()}.partial")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=first.dtype, shape=shape)
    else:
        out = np.empty(shape, dtype=first.dtype)

    rows = [dict(r) for _, r in index[cols].iterrows()]

    def work(i: int) -> None:
        out[i] = resize(load_site(rows[i], channels), size)

    out[0] = first  # decoded above to learn the shape and dtype
    jobs = jobs or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(jobs) as pool:  # PNG/TIFF decoding releases the GIL
        done = pool.map(work, range(1, len(rows)))
        list(
            tqdm(
                done,
                "decode",
                len(rows) - 1,
                unit="site",
                leave=False,
                disable=not verbose or None,
                mininterval=2.0,
            )
        )
    if target is not None:
        out.flush()
        del out
        os.replace(partial, target)
        if verbose:
            print(f"decoded images: wrote cache {target} {shape}")
        return np.load(target, mmap_mode="r")
    return out


# --------------------------------------------------------------------------------------------
# Labels and normalisation
# --------------------------------------------------------------------------------------------


@dataclass
class Labels:
    """Class names and their integer codes (sorted names, code = position)."""

    classes: list[str]

    @classmethod
    def fit(cls, values: pd.Series) -> Labels:
        return cls(sorted(values.astype(str).unique()))

    def encode(self, values: pd.Series) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        vals = values.astype(str)
        unknown = sorted(set(vals) - set(lookup))
        if unknown:
            raise ValueError(f"labels not seen when fitting: {unknown[:5]}")
        return vals.map(lookup).to_numpy(np.int64)

    def __len__(self) -> int:
        return len(self.classes)


@dataclass
class ChannelStats:
    """Per-channel mean and standard deviation, fitted on the rows you give (training only)."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(
        cls,
        images: np.ndarray,
        rows: Sequence[int] | np.ndarray,
        max_images: int = 2000,
        seed: int = 0,
    ) -> ChannelStats:
        rows = np.unique(np.asarray(rows))
        if len(rows) > max_images:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
        x = np.asarray(images[rows], dtype=np.float64)
        mean = x.mean(axis=(0, 2, 3))
        std = x.std(axis=(0, 2, 3))
        return cls([float(m) for m in mean], [float(max(s, 1e-6)) for s in std])

    def transform(self) -> v2.Normalize:
        return v2.Normalize(self.mean, self.std)

    @classmethod
    def imagenet(
        cls, images: np.ndarray, rows: Sequence[int] | np.ndarray, n_channels: int | None = None
    ) -> ChannelStats:
        """ImageNet normalisation (report 002) for images scaled to [0, 1] by the training
        rows' 99.9th percentile per channel; one grey channel gets the mean of the RGB stats."""
        x = np.asarray(images[np.unique(np.asarray(rows))[:2000]], dtype=np.float32)
        top = np.percentile(x, 99.9, axis=(0, 2, 3))
        n = n_channels or images.shape[1]
        mean, std = (
            ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if n == 3 else ([0.449] * n, [0.226] * n)
        )
        return cls(
            [float(m * t) for m, t in zip(mean, top, strict=False)],
            [float(s * t) for s, t in zip(std, top, strict=False)],
        )


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


class ChannelJitter(torch.nn.Module):
    """Per-channel random gain and offset on normalised images (stain intensity varies per
    channel and per batch); ColorJitter only knows 1 or 3 channels."""

    def __init__(self, gain: float = 0.2, offset: float = 0.2):
        super().__init__()
        self.gain, self.offset = gain, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-3]
        g = 1 + (torch.rand(c, 1, 1) * 2 - 1) * self.gain
        b = (torch.rand(c, 1, 1) * 2 - 1) * self.offset
        return x * g + b


class RandomRot90(torch.nn.Module):
    """Rotation by a random multiple of 90 degrees (microscopy has no 'up')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, int(torch.randint(4, ())), dims=(-2, -1))


def augmentation(kind: str = "none", size: int | None = None) -> v2.Compose | None:
    """Training augmentation; every transform treats all channels alike.

    - ``none``: the reports 000/001 trained without augmentation
    - ``dihedral``: flips and 90-degree rotations (lossless, the field's default)
    - ``flips_rotation_jitter``: report 002's flips, rotation (+-15 degrees) and jitter
    - ``strong``: dihedral + random resized crop + per-channel intensity jitter
    """
    if kind == "none":
        return None
    dihedral = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90()]
    if kind == "dihedral":
        return v2.Compose(dihedral)
    if kind == "flips_rotation_jitter":
        return v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomRotation(15),
                ChannelJitter(0.1, 0.1),
            ]
        )
    if kind == "strong":
        if size is None:
            raise ValueError("augmentation('strong') needs the image size")
        return v2.Compose(
            [
                *dihedral,
                v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
                ChannelJitter(0.2, 0.2),
            ]
        )
    raise ValueError(f"unknown augmentation {kind!r}")


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class ImageDataset(Dataset):
    """Rows ``rows`` of a decoded (N, C, H, W) array with integer ``targets`` (one per row)."""

    def __init__(
        self,
        images: np.ndarray,
        rows: Sequence[int] | np.ndarray,
        targets: np.ndarray | None,
        stats: ChannelStats | None = None,
        augment: torch.nn.Module | None = None,
    ):
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.int64)
        if self.targets is not None and len(self.targets) != len(self.rows):
            raise ValueError(f"{len(self.rows)} rows but {len(self.targets)} targets")
        self.normalize = stats.transform() if stats is not None else None
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        x = torch.from_numpy(np.asarray(self.images[self.rows[i]], dtype=np.float32))
        if self.normalize is not None:
            x = self.normalize(x)
        if self.augment is not None:
            x = self.augment(x)
        y = -1 if self.targets is None else int(self.targets[i])
        return x, y


class FileDataset(ImageDataset):
    """Like ``ImageDataset`` but decodes the files of ``index`` on every access (the baseline
    the decoded cache is benchmarked against; also fine for small data)."""

    def __init__(
        self,
        index: pd.DataFrame,
        targets: np.ndarray | None,
        channels: Sequence[str] | None = None,
        size: int | None = None,
        stats: ChannelStats | None = None,
        augment: torch.nn.Module | None = None,
    ):
        super().__init__(
            _FileArray(index, channels, size), np.arange(len(index)), targets, stats, augment
        )


class _FileArray:
    def __init__(self, index: pd.DataFrame, channels, size):
        cols = [f"path_{c}" for c in channels] if channels else path_columns(index)
        self.rows = [dict(r) for _, r in index[cols].iterrows()]
        self.channels, self.size = channels, size

    def __getitem__(self, i: int) -> np.ndarray:
        return resize(load_site(self.rows[int(i)], self.channels), self.size)


def decode_masks(paths: Sequence[str | os.PathLike], size: int | None) -> np.ndarray:
    """Binary cell masks (any cell = 1) as an (N, 1, size, size) uint8 array (nearest resize)."""
    import tifffile

    out = []
    for p in paths:
        m = (tifffile.imread(p) > 0).astype(np.float32)[None, None]
        if size is not None and m.shape[-1] != size:
            m = F.interpolate(torch.from_numpy(m), size=(size, size), mode="nearest").numpy()
        out.append(m[0].astype(np.uint8))
    return np.stack(out)


class ControlNormalised:
    """Decoded images normalised per plate to that plate's control wells, lazily (no copy).

    Each image has its plate's control images' per-channel mean subtracted and is divided by
    their standard deviation: what the plate's gain and staining add, the controls carry too,
    so it cancels on plates no model has seen. Uses only the controls (known by design, never
    the treatment labels). Indexes like the array it wraps.
    """

    def __init__(
        self,
        images: np.ndarray,
        index: pd.DataFrame,
        controls: Sequence[bool],
        by: Sequence[str] = ("experiment", "plate"),
    ):
        self.images, self.shape, self.dtype = images, images.shape, np.dtype(np.float32)
        self.mean = np.zeros(images.shape[:2], np.float32)
        self.std = np.ones(images.shape[:2], np.float32)
        controls = np.asarray(controls, bool)
        for key, g in index.groupby(list(by)).indices.items():
            ctrl = g[controls[g]]
            if not len(ctrl):
                raise ValueError(
                    f"plate {key} has no control images to normalise to; keep the "
                    "control wells in the index passed to ControlNormalised"
                )
            x = np.asarray(images[np.sort(ctrl)], np.float64)
            self.mean[g] = x.mean(axis=(0, 2, 3))
            self.std[g] = np.maximum(x.std(axis=(0, 2, 3)), 1e-6)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        x = np.asarray(self.images[i], np.float32)
        return (x - self.mean[i][..., None, None]) / self.std[i][..., None, None]


def positions(index: pd.DataFrame, part: pd.DataFrame) -> np.ndarray:
    """Row positions in ``index`` of the rows of ``part`` (a split; duplicates allowed)."""
    pos = index.index.get_indexer(part.index)
    if (pos < 0).any():
        raise KeyError("some rows of the split are not in the index")
    return pos


def split_datasets(
    images: np.ndarray,
    index: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    label: str,
    augment: torch.nn.Module | None = None,
    stats_from: pd.DataFrame | None = None,
    stats: ChannelStats | None = None,
) -> tuple[ImageDataset, ImageDataset, Labels, ChannelStats]:
    """Training and validation datasets for one split, labels fitted on both sides' classes.

    Normalisation is fitted on ``stats_from`` (default: the training rows). Passing the whole
    index reproduces the reports that normalised before splitting. ``stats`` overrides both.
    """
    labels = Labels.fit(pd.concat([train[label], val[label]]))
    if stats is None:
        stats_rows = positions(index, train if stats_from is None else stats_from)
        stats = ChannelStats.fit(images, stats_rows)
    tr = subset(images, index, train, label, labels, stats, augment)
    return tr, subset(images, index, val, label, labels, stats), labels, stats


def subset(
    images: np.ndarray,
    index: pd.DataFrame,
    part: pd.DataFrame,
    label: str,
    labels: Labels,
    stats: ChannelStats,
    augment: torch.nn.Module | None = None,
) -> ImageDataset:
    """The dataset of rows ``part`` of ``index`` (e.g. a test set) with fitted labels/stats."""
    return ImageDataset(images, positions(index, part), labels.encode(part[label]), stats, augment)


def describe_array(images: np.ndarray) -> str:
    size = images.size * images.dtype.itemsize / 2**20
    where = (
        f"memory-mapped {Path(images.filename).name}"
        if isinstance(images, np.memmap)
        else "in memory"
    )
    return f"{images.shape} {images.dtype}, {size:.0f} MiB, {where}"


def _class_name(ds: Dataset, target: int) -> str:
    classes = getattr(ds, "classes", None)
    return f"{target} ({classes[target]})" if classes is not None and target >= 0 else str(target)


def describe_item(ds: Dataset, i: int = 0, channels: Sequence[str] | None = None) -> dict:
    """Print one item of ``ds`` as the model receives it: each input's shape and dtype, each
    channel's name and value range (after normalisation and augmentation), and the label;
    return the same as a dict."""
    x, y = ds[i]
    inputs = x if isinstance(x, (tuple, list)) else (x,)
    out = {"index": i, "target": int(y), "inputs": []}
    print(f"item {i} of {len(ds)}: label {_class_name(ds, int(y))}")
    for k, t in enumerate(inputs):
        t = torch.as_tensor(t)
        part = {"shape": tuple(t.shape), "dtype": str(t.dtype), "channels": {}}
        print(f"  input {k}: shape {part['shape']} {part['dtype']}")
        if t.ndim == 3:  # (C, H, W): one line per channel
            names = list(channels) if channels and len(inputs) == 1 else []
            for c in range(t.shape[0]):
                name = names[c] if c < len(names) else f"channel {c}"
                lo, hi, mean = float(t[c].min()), float(t[c].max()), float(t[c].mean())
                part["channels"][name] = (lo, hi)
                print(f"    {name:>12}: min {lo:+.2f}  mean {mean:+.2f}  max {hi:+.2f}")
        out["inputs"].append(part)
    return out


def describe_batch(ds: Dataset, batch_size: int = 8, channels: Sequence[str] | None = None):
    """Print the shapes of one (unshuffled) batch of ``ds``, as a ``DataLoader`` stacks it:
    inputs (batch, channels, height, width), targets (batch,); return ``(inputs, targets)``."""
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)))
    inputs = x if isinstance(x, (tuple, list)) else (x,)
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    print(f"one batch: inputs {shapes} (batch, channels, height, width); targets {tuple(y.shape)}")
    if channels:
        print(f"  channels: {', '.join(channels)}")
    print(f"  targets: {y.tolist()}")
    return x, y
