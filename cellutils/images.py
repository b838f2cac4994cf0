"""Read image files into arrays, failing with an error that names the file and the fix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """An image file is missing, unreadable, or does not match its siblings."""


def read_image(path: str | os.PathLike, rgb: bool = False) -> np.ndarray:
    """Read one single-channel image (PNG via imageio, TIFF via tifffile) as a 2-D array, or,
    with ``rgb``, an RGB composite (e.g. WILDS' RxRx1) as a (3, H, W) array."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(
            f"missing image file: {path}. Check the data root (CELLUTILS_DATA) and that the "
            "download or extraction finished; `make data` regenerates the synthetic default."
        )
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path, plugin="pillow")
    except Exception as exc:  # decoder errors come in many types
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ImageError(
            f"cannot read image {path} ({type(exc).__name__}: {detail}). The file is probably "
            "truncated or not an image: delete it and download or generate it again."
        ) from exc
    arr = np.asarray(arr)
    if rgb:
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageError(f"{path} has shape {arr.shape}; expected an RGB image.")
        return np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and path.suffix.lower() == ".png":
        arr = arr[..., 0]  # an RGB-saved grey PNG: the channels are equal
    if arr.ndim != 2:
        raise ImageError(f"{path} has shape {arr.shape}; expected one 2-D channel per file.")
    return arr


def stack_channels(
    paths: Sequence[str | os.PathLike], dtype: np.dtype | str | None = None
) -> np.ndarray:
    """Read one file per channel into a (C, H, W) array; all must share shape and dtype."""
    arrays = [read_image(p) for p in paths]
    first = arrays[0]
    for p, a in zip(paths[1:], arrays[1:], strict=False):
        if a.shape != first.shape:
            raise ImageError(
                f"channel size mismatch: {p} is {a.shape}, {paths[0]} is {first.shape}. All "
                "channels of a site must come from the same field; re-export or re-download it."
            )
        if a.dtype != first.dtype:
            raise ImageError(
                f"channel dtype mismatch: {p} is {a.dtype}, {paths[0]} is {first.dtype}. "
                "Mixed bit depths in one site usually mean a file was re-saved by another tool."
            )
    out = np.stack(arrays)
    if dtype is not None and out.dtype != np.dtype(dtype):
        raise ImageError(f"{paths[0]} and siblings are {out.dtype}; this dataset expects {dtype}.")
    return out
