"""Read image files into arrays, failing with an error that names the file and the fix.

Pixel values are kept exactly as stored. The one rule for mixed bit depths: files of
different dtypes that end up in one array (the channels of a site in ``stack_channels``, the
sites of ``torchdata.decode``) are held in the smallest dtype that holds every one of them
exactly (``common_dtype``: numpy's promotion, so uint8 + uint16 -> uint16, uint16 + float32 ->
float32), with a note naming a file of each kind. Nothing is rescaled and nothing wraps.

A single channel saved as RGB (H, W, 3 or 4) is read as grey when its colour planes are equal
(with a one-time note); planes that differ are an error. 16-bit colour PNGs (which Pillow would
cut to 8 bits) and float images holding NaN or infinity are refused.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cellutils.runtime import say_once


class ImageError(ValueError):
    """An image file is missing, unreadable, or does not match its siblings."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF = (".tif", ".tiff")
_REDOWNLOAD = "delete it and download or generate it again"


def _missing(path: Path) -> ImageError:
    return ImageError(
        f"missing image file: {path}. Check the data root (CELLUTILS_DATA) and that the "
        "download or extraction finished; `make data` regenerates the synthetic default."
    )


def _unreadable(path: Path, exc: Exception) -> ImageError:
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return ImageError(
        f"cannot read image {path} ({type(exc).__name__}: {detail}). The file is probably "
        f"truncated or not an image: {_REDOWNLOAD}."
    )


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(height, width, bit depth, colour type) from a PNG's IHDR, None for other files."""
    with open(path, "rb") as f:
        head = f.read(29)
    if not head.startswith(_PNG_SIGNATURE):
        return None
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise ImageError(f"cannot read image {path}: its PNG header is cut short; {_REDOWNLOAD}.")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if colour in (2, 6) and depth == 16:
        raise ImageError(
            f"{path} is a 16-bit colour PNG, which Pillow reads as 8 bits per plane (values "
            "would be lost). Save each channel as its own 16-bit grey PNG or TIFF."
        )
    return height, width, depth, colour


_PNG_KINDS = {  # (bit depth, colour type) -> (dtype, planes) as Pillow/imageio decode them
    (1, 0): (np.bool_, 0),
    (2, 0): (np.uint8, 0),
    (4, 0): (np.uint8, 0),
    (8, 0): (np.uint8, 0),
    (16, 0): (np.uint16, 0),
    (8, 2): (np.uint8, 3),
    (8, 6): (np.uint8, 4),
}


def probe(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape ``read_image`` decodes ``path`` to (before grey detection), read
    from the header only where the format allows (PNG, TIFF); other files are decoded."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return np.dtype(series.dtype), tuple(series.shape)
        png = _png_header(path)
        if png is not None and (png[2], png[3]) in _PNG_KINDS:
            dtype, planes = _PNG_KINDS[png[2], png[3]]
            return np.dtype(dtype), png[:2] + ((planes,) if planes else ())
    except ImageError:
        raise
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    arr = _decode(path)
    return arr.dtype, arr.shape


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() not in _TIFF:
        _png_header(path)  # refuses 16-bit colour PNGs before Pillow cuts them
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path, plugin="pillow")
    except Exception as exc:  # decoder errors come in many types
        raise _unreadable(path, exc) from exc
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageError(
            f"{path} holds NaN or infinite values ({arr.dtype}); they would poison every mean "
            "and normalisation. Replace them (e.g. with 0) and save the file again."
        )
    return arr


def read_image(path: str | os.PathLike, rgb: bool = False) -> np.ndarray:
    """Read one single-channel image (PNG via imageio, TIFF via tifffile) as a 2-D array, or,
    with ``rgb``, an RGB composite (e.g. WILDS' RxRx1) as a (3, H, W) array."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    arr = _decode(path)
    if rgb:
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageError(f"{path} has shape {arr.shape}; expected an RGB image.")
        return np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        planes = arr[..., :3]
        if not (
            (planes[..., 1] == planes[..., 0]).all() and (planes[..., 2] == planes[..., 0]).all()
        ):
            raise ImageError(
                f"{path} is a colour image (shape {arr.shape}) whose planes differ, but this "
                "column holds one grey channel per file. Save the channel as a grey image, or "
                "split the colours into one file per channel."
            )
        say_once(
            f"note: single-channel images saved as RGB with equal planes (first: {path}) are "
            "read as grey."
        )
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ImageError(f"{path} has shape {arr.shape}; expected one 2-D channel per file.")
    return arr


def common_dtype(dtypes: Iterable[np.dtype]) -> np.dtype:
    """The smallest dtype that holds every value of every one of ``dtypes`` exactly."""
    return np.dtype(np.result_type(*[np.dtype(d) for d in dtypes]))


def note_mixed_dtypes(examples: dict[np.dtype, str], into: np.dtype) -> None:
    """Say once that files of several dtypes ({dtype: one file}) are held ``into`` one dtype."""
    kinds = ", ".join(f"{d} (e.g. {p})" for d, p in examples.items())
    say_once(
        f"note: mixed bit depths: {kinds}. Values are kept as stored, in {into} "
        "(cellutils.images: no rescaling, nothing wraps)."
    )


def stack_channels(
    paths: Sequence[str | os.PathLike], dtype: np.dtype | str | None = None
) -> np.ndarray:
    """Read one file per channel into a (C, H, W) array of their ``common_dtype`` (or
    ``dtype``, which must hold every file's values exactly); all must share one shape."""
    arrays = [read_image(p) for p in paths]
    first = arrays[0]
    for p, a in zip(paths[1:], arrays[1:], strict=False):
        if a.shape != first.shape:
            raise ImageError(
                f"channel size mismatch: {p} is {a.shape}, {paths[0]} is {first.shape}. All "
                "channels of a site must come from the same field; re-export or re-download it."
            )
    examples = {a.dtype: str(p) for p, a in zip(paths, arrays, strict=True)}
    into = common_dtype(examples) if dtype is None else np.dtype(dtype)
    for d, p in examples.items():
        if not np.can_cast(d, into, "safe"):
            raise ImageError(
                f"{p} is {d}, which {into} cannot hold exactly (this dataset expects {into}). "
                "Re-export the file in the dataset's bit depth."
            )
    if len(examples) > 1:
        note_mixed_dtypes(examples, into)
    return np.stack([a.astype(into, copy=False) for a in arrays])
