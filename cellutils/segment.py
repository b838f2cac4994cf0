"""Cell segmentation with two backends and one output: instance masks + cellpose-style flows.

- ``cellpose``: cellpose 3.x, by default with report 004's settings (flow threshold 0.7, cell
  probability threshold -5, automatic diameter from cellpose's size model); report 003 ran
  cellpose's own defaults (flow 0.4, cell probability 0, 30-px diameter): ``REPORT_003``.
  Weights: your own ``cyto3``
  (``CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``) when present; else the converted
  ``cyto`` model of cellpose 0.0.1.6, which ``make weights`` (part of ``make setup``) builds from
  the registry's wheel (``cellutils.cellpose_weights``).
- ``classical``: scikit-image thresholding + nuclei-seeded watershed, fast and always there;
  its flows come from ``cellpose.dynamics.masks_to_flows``.

>>> seg = segment(image, cyto=1, nucleus=0, backend="auto")   # image: (C, H, W)
>>> seg.masks, seg.flows                                      # (H, W) int32, (2, H, W) float32
>>> segment_index(index, out, backend="classical")            # a whole dataset, resumable
"""

from __future__ import annotations

import io
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

from cellutils.cellpose_weights import CellposeWeights, find_cellpose_weights, model_dir
from cellutils.paths import atomic_write_bytes
from cellutils.runtime import say_once

# The reports' cellpose settings.
FLOW_THRESHOLD = 0.7  # report 004
CELLPROB_THRESHOLD = -5.0  # report 004
REPORT_003 = {"flow_threshold": 0.4, "cellprob_threshold": 0.0, "diameter": 30.0}
REPORT_004 = {
    "flow_threshold": FLOW_THRESHOLD,
    "cellprob_threshold": CELLPROB_THRESHOLD,
    "diameter": None,
}
CONVERTED_SIZE = "size_cyto0_torch.npy"


class SegmentationError(RuntimeError):
    """Segmentation cannot run as asked (weights missing, bad input); the message has the fix."""


# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Segmenting one image
# --------------------------------------------------------------------------------------------


@dataclass
class Segmentation:
    """Instance ``masks`` (0 = background), ``flows`` (dY, dX), the cell probability map
    (cellpose only), nucleus masks (classical only) and the diameter used."""

    masks: np.ndarray
    flows: np.ndarray
    cellprob: np.ndarray | None
    nuclei: np.ndarray | None
    diameter: float
    backend: str
    seconds: float

    @property
    def n_cells(self) -> int:
        return int(self.masks.max())


def masks_to_flows(masks: np.ndarray) -> np.ndarray:
    """cellpose's flow field (2, H, W) for instance masks (the classical backend's flows)."""
    import torch
    from cellpose import dynamics

    if masks.max() == 0:
        return np.zeros((2, *masks.shape), np.float32)
    return dynamics.masks_to_flows(masks, device=torch.device("cpu")).astype(np.float32)


def classical(
    image: np.ndarray, cyto: int | None, nucleus: int, diameter: float | None = None
) -> Segmentation:
    """Otsu-thresholded nuclei split by distance-transform watershed; cells grown from the
    nuclei inside the cytoplasm channel's foreground (``cyto=None``: nuclei are the objects)."""
    t0 = time.perf_counter()
    nuc = filters.gaussian(image[nucleus].astype(np.float32), 1.0)
    fg = nuc > filters.threshold_otsu(nuc)
    diameter = diameter or _estimate_diameter(fg)
    fg = _drop_small(fg, max(8, int(0.02 * diameter**2)))
    dist = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(
        dist, min_distance=max(2, int(diameter / 3)), labels=measure.label(fg), exclude_border=False
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = segmentation.watershed(-dist, markers, mask=fg).astype(np.int32)
    if cyto is None:
        masks = nuclei
    else:
        # cells: the cytoplasm channel's foreground (half Otsu: dim cytoplasm counts), shared
        # out between neighbouring nuclei by distance (a Voronoi split inside the foreground)
        cy = filters.gaussian(image[cyto].astype(np.float32), 1.0)
        cell_fg = (cy > 0.5 * filters.threshold_otsu(cy)) | (nuclei > 0)
        cell_fg = ndi.binary_fill_holes(ndi.binary_closing(cell_fg, iterations=2))
        masks = segmentation.watershed(
            ndi.distance_transform_edt(nuclei == 0), nuclei, mask=cell_fg
        ).astype(np.int32)
    masks = segmentation.relabel_sequential(masks)[0].astype(np.int32)
    return Segmentation(
        masks,
        masks_to_flows(masks),
        None,
        nuclei if cyto is not None else None,
        float(diameter),
        "classical",
        time.perf_counter() - t0,
    )


def _drop_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    lab, _ = ndi.label(mask)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[lab]


def _estimate_diameter(fg: np.ndarray) -> float:
    lab = measure.label(fg)
    areas = np.bincount(lab.ravel())[1:]
    areas = areas[areas > 4]
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if len(areas) else 20.0


_CELLPOSE: dict = {}


def _cellpose_models(weights: CellposeWeights, device=None):
    key = (str(weights.model), str(device))
    if key not in _CELLPOSE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cellpose import models

        from cellutils.runtime import pick_device

        device = device or pick_device(verbose=False)
        if device.type == "mps":  # cellpose 3 on mps is unreliable; CPU is the safe choice
            import torch

            device = torch.device("cpu")
        cp = models.CellposeModel(
            pretrained_model=str(weights.model), device=device, gpu=device.type == "cuda"
        )
        size = (
            models.SizeModel(cp, pretrained_size=str(weights.size_model))
            if weights.size_model
            else None
        )
        _CELLPOSE[key] = (cp, size)
    return _CELLPOSE[key]


def cellpose(
    image: np.ndarray,
    cyto: int | None,
    nucleus: int | None,
    diameter: float | None = None,
    flow_threshold: float = FLOW_THRESHOLD,
    cellprob_threshold: float = CELLPROB_THRESHOLD,
    weights: CellposeWeights | None = None,
    device=None,
) -> Segmentation:
    """cellpose 3 with the reports' settings; ``diameter=None`` estimates it with the size model
    (the reports' automatic diameter)."""
    weights = weights or find_cellpose_weights()
    if weights is None:
        raise SegmentationError(
            "no cellpose weights on this machine. Run `make weights` (converts the cyto model "
            "shipped in the registry's cellpose 0.0.1.6 wheel) or put cyto3 in "
            f"{model_dir()}; or use backend='classical'."
        )
    t0 = time.perf_counter()
    cp, size = _cellpose_models(weights, device)
    if cyto is None:  # nuclei (or one grey channel) only
        x, channels = image[nucleus if nucleus is not None else 0], [0, 0]
    elif nucleus is None:
        x, channels = image[cyto], [0, 0]
    else:
        x, channels = np.stack([image[cyto], image[nucleus]], -1), [1, 2]
    if diameter is None:
        diameter = (
            float(size.eval(x, channels=channels)[0]) if size is not None else float(cp.diam_labels)
        )
    masks, flows, _ = cp.eval(
        x,
        channels=channels,
        diameter=diameter,
        flow_threshold=flow_threshold,
        cellprob_threshold=cellprob_threshold,
    )
    return Segmentation(
        masks.astype(np.int32),
        np.asarray(flows[1], np.float32),
        np.asarray(flows[2], np.float32),
        None,
        float(diameter),
        "cellpose",
        time.perf_counter() - t0,
    )


def segment(
    image: np.ndarray,
    cyto: int | None = None,
    nucleus: int = 0,
    backend: str = "auto",
    diameter: float | None = None,
    **kw,
) -> Segmentation:
    """Segment a (C, H, W) image. ``backend``: "cellpose", "classical", or "auto" (cellpose when
    its weights exist, else classical, said once)."""
    if image.ndim == 2:
        image = image[None]
    chosen = resolve_backend(backend)  # raises on an unknown name
    if backend == "auto" and chosen == "classical":
        say_once("segment: no cellpose weights (run `make weights`); using the classical backend")
    if chosen == "cellpose":
        return cellpose(image, cyto, nucleus, diameter, **kw)
    return classical(image, cyto, nucleus, diameter)


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------


def average_precision(true: np.ndarray, pred: np.ndarray, thresholds=(0.5, 0.75)) -> dict:
    """cellpose's average precision (TP / (TP + FP + FN)) at each IoU threshold, with counts."""
    from cellpose import metrics

    ap, tp, fp, fn = metrics.average_precision(
        [true.astype(np.int32)], [pred.astype(np.int32)], threshold=list(thresholds)
    )
    out = {f"AP@{t}": float(ap[0, i]) for i, t in enumerate(thresholds)}
    out.update(
        {
            "true objects": int(true.max() and len(np.unique(true)) - 1),
            "found objects": int(pred.max() and len(np.unique(pred)) - 1),
        }
    )
    return out


# --------------------------------------------------------------------------------------------
# A whole dataset
# --------------------------------------------------------------------------------------------


def resolve_backend(backend: str) -> str:
    """ "auto" -> "cellpose" when weights exist, else "classical"; others unchanged."""
    if backend == "auto":
        return "cellpose" if find_cellpose_weights() else "classical"
    if backend not in ("cellpose", "classical"):
        raise ValueError(f"backend must be 'cellpose', 'classical' or 'auto', not {backend!r}")
    return backend


def output_dir(
    dataset_root: str | os.PathLike,
    backend: str,
    data_root: str | os.PathLike | None = None,
    settings: dict | None = None,
) -> Path:
    """Where a dataset's masks go: ``<data root>/segmentation/<dataset folder>/<key>``, shared
    by the notebooks so one segmentation serves them all. The key names everything that makes
    the masks: the backend, and for cellpose the weights file and the settings (default: report
    004's), e.g. ``cellpose-cyto3-cellprob-5.0-diameterNone-flow0.7``; masks made with other
    weights or thresholds are never reused by mistake."""
    from cellutils.paths import data_root as _data_root

    backend = resolve_backend(backend)
    key = backend
    if backend == "cellpose":
        weights = find_cellpose_weights()
        tag = "-".join(f"{k.split('_')[0]}{v}" for k, v in sorted((settings or REPORT_004).items()))
        key = f"cellpose-{weights.model.name if weights else 'noweights'}-{tag}"
    return _data_root(data_root) / "segmentation" / Path(dataset_root).name / key


def segment_index(
    index: pd.DataFrame,
    out_dir: str | os.PathLike,
    key: str,
    cyto: str | None,
    nucleus: str,
    backend: str = "auto",
    diameter: float | None = None,
    progress: bool = True,
    **kw,
) -> pd.DataFrame:
    """Segment every row of a dataset index; masks and flows go to ``out_dir`` as
    ``{key}_masks.tif`` / ``{key}_flows.tif``. Rows already done are skipped (resume after an
    interruption); files are written to a temporary name and renamed. ``out_dir`` may not hold
    any of the input images. ``cyto``/``nucleus`` name channels by their ``path_`` suffix.

    Returns one row per image: key, path_masks, path_flows, n_cells, backend; images where
    no cell was found are listed in ``result.attrs['problems']``."""
    from tqdm.auto import tqdm

    from cellutils.datasets import load_site

    out_dir = Path(out_dir).expanduser().resolve()
    channels = [c for c in (cyto, nucleus) if c is not None]
    inputs = {Path(p).resolve().parent for c in channels for p in index[f"path_{c}"]}
    if out_dir in inputs:
        raise SegmentationError(
            f"{out_dir} holds input images; write masks beside them, "
            "e.g. <data root>/segmentation/<dataset>/, never over them."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = resolve_backend(backend)
    rows, problems = [], []
    for _, row in tqdm(
        index.iterrows(),
        total=len(index),
        disable=not progress,
        desc=f"segment ({backend})",
        mininterval=2.0,
    ):
        k = str(row[key])
        mpath, fpath = out_dir / f"{k}_masks.tif", out_dir / f"{k}_flows.tif"
        if mpath.exists() and fpath.exists():
            masks = tifffile.imread(mpath)
        else:
            image = load_site(row, channels)
            seg = segment(image, 0 if cyto else None, len(channels) - 1, backend, diameter, **kw)
            masks = seg.masks
            _write_tif(fpath, seg.flows.astype(np.float16))
            _write_tif(mpath, masks)  # masks last: their presence marks the row done
        n = int(masks.max())
        if n == 0:
            problems.append(
                {
                    "problem": "no cell found",
                    "file": str(row[f"path_{nucleus}"]),
                    "detail": k,
                    "fix": "check the image and the channels chosen",
                }
            )
        rows.append(
            {key: k, "path_masks": mpath, "path_flows": fpath, "n_cells": n, "backend": backend}
        )
    result = pd.DataFrame(rows)
    result.attrs["problems"] = problems
    if problems:
        print(f"segment: no cell found in {len(problems)} image(s), e.g. {problems[0]['file']}")
    return result


def _write_tif(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, compression="zlib")
    atomic_write_bytes(path, buf.getvalue(), overwrite=True)
