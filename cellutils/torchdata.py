"""From a dataset index to tensors: decoding (optionally cached), labels, normalisation fitted
on the training split, and augmentation that treats every channel alike.

>>> images = decode(index, size=64)                      # (N, C, 64, 64), memory-mapped cache
>>> stats = ChannelStats.fit(images, train_rows)          # training rows only
>>> ds = ImageDataset(images, train_rows, labels, stats, augment=augmentation("dihedral"))

``decode`` writes a memory-mapped ``.npy`` under ``<data root>/cache/decoded/`` keyed by the
files, their sizes and modification times, the channels and the output size, so training reads
arrays instead of decoding six PNGs per sample per epoch; ``cache=False`` keeps them in memory.
Every file's values are kept (the array's dtype holds every file exactly, see
``cellutils.images``); the first unreadable file stops the run, naming it, and leaves no
partial file; an interrupted run continues where it stopped. ``ChannelStats.fit`` streams
batches, so its memory does not grow with the number of images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
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
from cellutils.images import ImageError, common_dtype, note_mixed_dtypes, probe
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


_CACHE_VERSION = "v2"  # v2: one dtype for all files (images.common_dtype); v1 caches may wrap


def _cache_key(files: list[str], channels, size) -> str:
    h = hashlib.sha1(json.dumps([_CACHE_VERSION, channels, size]).encode())
    for f in files:
        try:
            st = os.stat(f)
        except FileNotFoundError:
            raise ImageError(
                f"missing image file: {f}. Check the data root (CELLUTILS_DATA) and that the "
                "download finished, or read the index again."
            ) from None
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _plan(rows: list[dict], channels, size, jobs: int) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and (C, H, W) shape of every decoded site, from the files' headers: one
    dtype that holds every file exactly (``images.common_dtype``), one shape for all sites."""
    cols = [f"path_{c}" for c in channels] if channels else list(rows[0])
    files = [r[c] for r in rows for c in cols]
    with ThreadPoolExecutor(jobs) as pool:
        probed = list(pool.map(probe, files))
    examples: dict[np.dtype, str] = {}
    for f, (d, _) in zip(files, probed, strict=True):
        examples.setdefault(d, str(f))
    dtype = common_dtype(examples)
    if len(examples) > 1:
        note_mixed_dtypes(examples, dtype)
    n_channels = 3 if cols == ["path_rgb"] else len(cols)
    hw = {shape[:2] for _, shape in probed}
    if size is None and len(hw) > 1:
        odd, shape = next(
            (f, s) for f, (_, s) in zip(files, probed, strict=True) if s[:2] != probed[0][1][:2]
        )
        raise ImageError(
            f"sites differ in size: {odd} is {shape[:2]}, {files[0]} is "
            f"{probed[0][1][:2]}. Pass size=... to resize every site to one size."
        )
    h, w = (size, size) if size is not None else probed[0][1][:2]
    return dtype, (n_channels, h, w)


def _fill(
    out: np.ndarray,
    rows: list[dict],
    todo: np.ndarray,
    channels,
    size,
    jobs: int,
    done: np.ndarray | None = None,
    verbose: bool = True,
) -> None:
    """Decode the sites ``todo`` into ``out`` in chunks; the first failure stops the run (no
    further sites are started). With ``done`` (flags on disk), each finished chunk is flushed
    and then flagged, so an interrupted run continues where it stopped."""

    def work(i: int) -> None:
        site = resize(load_site(rows[i], channels), size)
        if site.shape != out.shape[1:] or not np.can_cast(site.dtype, out.dtype, "safe"):
            raise ImageError(
                f"{next(iter(rows[i].values()))} and siblings decode to {site.shape} "
                f"{site.dtype}, not the {out.shape[1:]} {out.dtype} their headers promised. "
                "Re-export the site's files."
            )
        out[i] = site

    chunk = max(64, 16 * jobs)
    bar = tqdm(
        total=len(todo),
        desc="decode",
        unit="site",
        leave=False,
        disable=not verbose or None,
        mininterval=2.0,
    )
    try:
        with ThreadPoolExecutor(jobs) as pool:  # PNG/TIFF decoding releases the GIL
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                futures = [pool.submit(work, int(i)) for i in part]
                try:
                    for f in as_completed(futures):
                        f.result()  # raises the first failure
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
                if done is not None:
                    out.flush()
                    done[part] = 1
                    done.flush()
                bar.update(len(part))
    finally:
        bar.close()


def _lock(path: Path):
    """An exclusive lock on ``path`` (blocking) where the OS has ``fcntl``; None elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, two processes on one cache are your call
        return None
    fh = open(path, "a")  # noqa: SIM115 - released in decode's finally
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


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

    Every file's values are kept: the array's dtype holds every file exactly
    (``cellutils.images``' rule for mixed bit depths, from the headers before decoding). The
    first unreadable file stops the run with an error naming it. With ``cache`` the array is
    a memory-mapped file reused while the files are unchanged; it is filled in place
    (``<key>.npy.partial``, finished sites flagged in ``<key>.done.partial``), so an
    interrupted decode continues where it stopped, and a failed one leaves nothing behind.
    """
    cols = [f"path_{c}" for c in channels] if channels else path_columns(index)
    rows = [dict(r) for _, r in index[cols].iterrows()]
    jobs = jobs or min(4, os.cpu_count() or 1)
    if not cache:
        dtype, site = _plan(rows, channels, size, jobs)
        out = np.empty((len(rows), *site), dtype=dtype)
        _fill(out, rows, np.arange(len(rows)), channels, size, jobs, verbose=verbose)
        return out

    files = [str(p) for c in cols for p in index[c]]
    key = _cache_key(files, cols, size)
    folder = _data_root(data_root) / "cache" / "decoded"
    target = folder / f"{key}.npy"
    if target.exists():
        arr = np.load(target, mmap_mode="r")
        if len(arr) == len(rows):
            if verbose:
                print(f"decoded images: cache hit {target} {arr.shape}")
            return arr
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{key}.npy.partial"
    flags = folder / f"{key}.done.partial"
    lock = _lock(folder / f"{key}.lock")
    try:
        if target.exists():  # another process finished it while we waited for the lock
            return np.load(target, mmap_mode="r")
        dtype, site = _plan(rows, channels, size, jobs)
        shape = (len(rows), *site)
        out = done = None
        if partial.exists() and flags.exists():
            try:
                out = np.lib.format.open_memmap(partial, mode="r+")
                done = np.lib.format.open_memmap(flags, mode="r+")
            except (ValueError, OSError):
                out = done = None
            if out is not None and (
                out.shape != shape or out.dtype != dtype or len(done) != len(rows)
            ):
                out = done = None
        todo = np.arange(len(rows)) if done is None else np.flatnonzero(done[:] == 0)
        need = len(todo) * int(np.prod(site)) * dtype.itemsize
        free = shutil.disk_usage(folder).free
        if verbose:
            resumed = (
                f", continuing: {len(rows) - len(todo)} sites done" if done is not None else ""
            )
            print(
                f"decoded images: writing a {need / 2**30:.2f} GiB cache {shape} {dtype} to "
                f"{folder} ({free / 2**30:.0f} GiB free{resumed})"
            )
        if need > free - 2**30:  # keep a GiB for everything else
            raise OSError(
                f"the decoded-image cache needs {need / 2**30:.1f} GiB in {folder} but "
                f"only {free / 2**30:.1f} GiB are free. Free space, set CELLUTILS_DATA "
                "to a larger disk, or decode fewer sites / a smaller image_size."
            )
        if out is None:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
            done = np.lib.format.open_memmap(flags, mode="w+", dtype=np.uint8, shape=(len(rows),))
        try:
            _fill(out, rows, todo, channels, size, jobs, done, verbose)
        except Exception:
            del out, done
            partial.unlink(missing_ok=True)
            flags.unlink(missing_ok=True)
            raise
        except BaseException:  # interrupted: keep what is done for the next call
            out.flush()
            if verbose:
                print(
                    f"decoded images: interrupted with {int(done[:].sum())} of {len(rows)} "
                    "sites done; the next call continues from there"
                )
            raise
        out.flush()
        del out, done
        os.replace(partial, target)
        flags.unlink()
    finally:
        if lock is not None:  # a process waiting on it re-checks the target when it gets it
            (folder / f"{key}.lock").unlink(missing_ok=True)
            lock.close()
    if verbose:
        print(f"decoded images: wrote cache {target} {shape}")
    return np.load(target, mmap_mode="r")


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


def channel_moments(
    images: np.ndarray, rows: Sequence[int] | np.ndarray, batch_bytes: int = 2**26
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of ``images[rows]`` (N, C, H, W),
    streamed: batches of about ``batch_bytes`` as float64, combined with Chan's parallel
    update, so memory stays at one batch whatever the number of rows (a memory-mapped cache
    is read batch by batch)."""
    rows = np.asarray(rows)
    per_image = int(np.prod(images.shape[1:])) * 8
    step = max(1, batch_bytes // per_image)
    n = 0
    mean = np.zeros(images.shape[1])
    m2 = np.zeros(images.shape[1])
    for start in range(0, len(rows), step):
        x = np.asarray(images[rows[start : start + step]], dtype=np.float64)
        k = x.shape[0] * x.shape[2] * x.shape[3]
        b_mean = x.mean(axis=(0, 2, 3))
        b_m2 = ((x - b_mean[:, None, None]) ** 2).sum(axis=(0, 2, 3))
        delta = b_mean - mean
        total = n + k
        mean = mean + delta * (k / total)
        m2 = m2 + b_m2 + delta**2 * (n * k / total)
        n = total
    if n == 0:
        raise ValueError("no rows to compute channel statistics on")
    return mean, np.sqrt(m2 / n)


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
        mean, std = channel_moments(images, rows)
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
            mean, std = channel_moments(images, np.sort(ctrl))
            self.mean[g] = mean
            self.std[g] = np.maximum(std, 1e-6)

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
