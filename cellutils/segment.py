"""Cell segmentation with two backends and one output: instance masks + cellpose-style flows.

- ``cellpose``: cellpose 3.x, by default with report 004's settings (flow threshold 0.7, cell
  probability threshold -5, automatic diameter from cellpose's size model); report 003 ran
  cellpose's own defaults (flow 0.4, cell probability 0, 30-px diameter): ``REPORT_003``.
  Weights: your own ``cyto3``
  (``CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``) when present; else the converted
  ``cyto`` model of cellpose 0.0.1.6, which ``make weights`` (part of ``make setup``) builds from
  the registry's wheel (``cellutils.cellpose_weights``).
- ``classical``: scikit-image, every setting from the image's own scale (background and noise,
  nucleus diameter, smoothing, seed spacing), outlines on each nucleus's steepest edge (a
  gradient watershed); cells grown from the nuclei. Faster than cellpose on a CPU (make bench);
  AP@0.5 0.82, AP@0.75 0.63 on stardist's real nuclei (the goal of 0.85 at AP@0.5 is not met:
  touching nuclei merged under one seed), validated on held-out real sets too
  (``make bench ONLY=segmentation``); its flows come from ``cellpose.dynamics.masks_to_flows``.
- ``auto`` (the default): cellpose on a GPU, classical on a CPU.

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

from cellutils.cellpose_weights import CellposeWeights, find_cellpose_weights
from cellutils.paths import atomic_write_bytes, safe_key, under
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
# bumped whenever the classical algorithm changes, so masks of an older one are never reused
# (v2: settings from the image's scale, log-intensity + distance seeds, half-maximum cut;
#  v3: one channel of whole cells segmented as cells, ``classical_cells``;
#  v4: nucleus outlines on the steepest edge (gradient watershed), split again inside them)
CLASSICAL_VERSION = 4
# weight of the distance to the background against log-intensity (both scaled to [0, 1]) in
# the nucleus seeds' landscape (``_split_nuclei``). On stardist's nuclei (tuning) most of the
# errors are touching nuclei merged under one seed (11 of 18 missed nuclei; 7 more under the
# foreground or cut by the border); weight 2 merged 9 (AP@0.5 0.821 -> 0.836, simulator
# unchanged) but scored lower on the held-out sets, looked at once (AP@0.5 BBBC007 0.716 vs
# 0.723, ExampleFly 0.51 vs 0.53, nuclear.png 0.76 vs 0.79: ``benchmarks/
# segmentation_realdata.py``), so 1 stays; smaller seed spacing, Laplacian-of-Gaussian or
# h-maxima seeds over-split or merged more on the tuning sets
SEED_DISTANCE_WEIGHT = 1.0


class SegmentationError(RuntimeError):
    """Segmentation cannot run as asked (weights missing, bad input); the message has the fix."""


_NO_WEIGHTS = (
    "no cellpose weights on this machine. Run `make weights` (converts the cyto model shipped "
    "in the registry's cellpose 0.0.1.6 wheel) or put cyto3 in cellpose's model folder "
    "(CELLPOSE_LOCAL_MODELS_PATH or ~/.cellpose/models); or use backend='classical'."
)


# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Segmenting one image
# --------------------------------------------------------------------------------------------


@dataclass
class Segmentation:
    """Instance ``masks`` (0 = background), ``flows`` (dY, dX), the cell probability map
    (cellpose only), nucleus masks (classical only) and the diameter used. The classical
    backend's flows are computed from its masks when first read (they cost more than the
    segmentation itself), so a caller that needs masks only never pays for them."""

    masks: np.ndarray
    flows_: np.ndarray | None
    cellprob: np.ndarray | None
    nuclei: np.ndarray | None
    diameter: float
    backend: str
    seconds: float

    @property
    def flows(self) -> np.ndarray:
        if self.flows_ is None:
            self.flows_ = masks_to_flows(self.masks)
        return self.flows_

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
    """Nuclei by ``classical_nuclei``; cells (``cyto`` given) grown from them by a distance
    watershed inside the cytoplasm channel's foreground (``cyto=None``: nuclei are the objects;
    ``cyto == nucleus``: one channel shows whole cells, ``classical_cells``).

    Every setting follows from the image: the intensity scale from its percentiles, the
    background and noise from its median and MAD, the nucleus diameter from its bright objects
    (or ``diameter``), and smoothing and seed spacing from that diameter."""
    t0 = time.perf_counter()
    nuclei = None  # returned only when cells were grown from them
    if cyto is not None and cyto == nucleus:
        masks, diameter = classical_cells(image[cyto], diameter)
    elif cyto is None:
        masks, diameter = classical_nuclei(image[nucleus], diameter)
    else:
        nuclei, diameter = classical_nuclei(image[nucleus], diameter)
        # the cytoplasm channel's foreground: half its Otsu threshold (dim cytoplasm counts),
        # shared out between neighbouring nuclei by distance (a Voronoi split inside it)
        cy = filters.gaussian(_unit(image[cyto]), 1.0)
        cell_fg = ndi.binary_fill_holes((cy > 0.5 * filters.threshold_otsu(cy)) | (nuclei > 0))
        masks = segmentation.watershed(
            ndi.distance_transform_edt(nuclei == 0), nuclei, mask=cell_fg
        ).astype(np.int32)
        masks = segmentation.relabel_sequential(masks)[0].astype(np.int32)
    return Segmentation(
        masks,
        None,
        None,
        nuclei,
        float(diameter),
        "classical",
        time.perf_counter() - t0,
    )


def classical_nuclei(
    image: np.ndarray,
    diameter: float | None = None,
    noise_k: float = 3.0,
    distance_weight: float = SEED_DISTANCE_WEIGHT,
) -> tuple[np.ndarray, float]:
    """Nuclei of one channel, with every scale taken from the image itself:

    1. foreground: smoothed intensity above background + ``noise_k`` noise SDs (median and
       MAD of the darker half), low enough to keep dim nuclei, and never above Otsu's
       threshold (dense images, where the median lies inside the objects);
    2. diameter: from the objects above Otsu's threshold, weighted by area so specks and
       noise do not shrink it (or ``diameter`` when given);
    3. seeds and split (``_split_nuclei``): maxima of log-intensity plus ``distance_weight``
       times the distance to the background, a watershed inside the foreground;
    4. outline: a marker watershed on the gradient magnitude (Beucher and Meyer): each
       object's bright core (above half its peak) floods against the background beyond the
       foreground, so the outline settles on the steepest edge, which is where a blurred
       edge truly lies whatever the nucleus's inside looks like (flat, domed, dim rim,
       textured); the earlier cut at half of each nucleus's peak fitted one image's profile
       and gave nuclei at 60-85% of their true area on other real images
       (``benchmarks/segmentation_realdata.py``);
    5. the seeds of step 3 again inside the tightened outlines: nuclei that the looser
       foreground joined are split at their waist.

    Returns (labels 1..n, diameter in pixels)."""
    x = _unit(image)
    sm = filters.gaussian(x, 1.0)
    otsu = filters.threshold_otsu(sm)
    bg = float(np.median(sm))
    noise = 1.4826 * float(np.median(np.abs(sm[sm <= bg] - bg))) + 1e-6
    # never above Otsu's threshold: when objects cover most of the image, the median and MAD
    # sit inside them and background + k noise would cut the objects away
    fg = sm > min(bg + noise_k * noise, otsu)
    if diameter is None:
        diameter = _estimate_diameter(sm > otsu)
    min_px = max(8, int(0.1 * np.pi * diameter**2 / 4))
    fg = _drop_small(fg, min_px)
    if not fg.any():
        return np.zeros(x.shape, np.int32), float(diameter)
    # step: seeds and a first split of the foreground
    regions = _split_nuclei(x, fg, bg, noise, diameter, distance_weight)
    # step: outline on the steepest edge, from each object's core against the background
    peak = ndi.maximum(sm, regions, np.arange(regions.max() + 1))
    peak[0] = np.inf
    markers = np.where(sm > bg + 0.5 * (peak[regions] - bg), regions, 0)
    background = regions.max() + 1
    markers[~ndi.binary_dilation(fg) & (markers == 0)] = background
    outlined = segmentation.watershed(filters.sobel(sm), markers)
    outlined[outlined == background] = 0
    # fill each object's holes (a dim nucleolus inside a nucleus), then drop specks
    mask = _drop_small(_fill_objects(outlined) > 0, min_px)
    if not mask.any():
        return np.zeros(x.shape, np.int32), float(diameter)
    # step: split again inside the tightened outlines
    kept = _drop_small(_split_nuclei(x, mask, bg, noise, diameter, distance_weight), min_px)
    return segmentation.relabel_sequential(kept)[0].astype(np.int32), float(diameter)


def _split_nuclei(
    x: np.ndarray,
    fg: np.ndarray,
    bg: float,
    noise: float,
    diameter: float,
    distance_weight: float = SEED_DISTANCE_WEIGHT,
) -> np.ndarray:
    """Nuclei of the foreground ``fg``: seeds at the maxima of log-intensity (smoothed at
    diameter/10) plus ``distance_weight`` times the distance to the background (both scaled to
    [0, 1]), at least a quarter diameter apart: log so a dim nucleus beside a bright one keeps
    its own maximum, distance so touching nuclei split at their waist; a watershed from them
    inside ``fg``."""
    smooth = filters.gaussian(x, max(1.0, diameter / 10))
    log_i = np.log(np.maximum(smooth - bg, 0) + noise)
    log_i = (log_i - log_i[fg].min()) / max(float(np.ptp(log_i[fg])), 1e-6)
    dist = ndi.distance_transform_edt(fg)
    landscape = log_i + distance_weight * dist / max(float(dist.max()), 1.0)
    return _watershed_from_maxima(landscape, fg, max(2, int(diameter / 4)))


def _fill_objects(labels: np.ndarray) -> np.ndarray:
    """``labels`` with holes filled, each hole by the object around it."""
    return segmentation.watershed(
        np.zeros(labels.shape, np.float32), labels, mask=ndi.binary_fill_holes(labels > 0)
    )


def classical_cells(image: np.ndarray, diameter: float | None = None) -> tuple[np.ndarray, float]:
    """Whole cells of one channel that shows them (the CPJUMP1 subset's median of ch1-ch3, Mito,
    AGP and RNA: textured cells whose nuclei are not set apart), scales from the image as in
    ``classical_nuclei``:

    1. foreground: smoothed (sigma 2) intensity above half-way from the background (2nd
       percentile) to Otsu's threshold, holes filled -- dim cytoplasm counts, and the
       background is found even when cells cover most of the image;
    2. diameter: of the bright cores above Otsu's threshold (``_estimate_diameter``);
    3. seeds: maxima of the intensity smoothed at diameter/4 (texture gone, one maximum per
       cell body) plus half the distance to the background, at least 0.4 diameters apart;
    4. a watershed from the seeds inside the foreground, without the nuclei's edge outline
       (a cell's edge is dim).

    Seeding nuclei inside such cells (``classical``'s other modes) over-splits them on their
    texture: AP@0.5 0.00 as nuclei (v3; v4's edge outlines 0.25 on the test's 8 sites) and 0.35
    grown to cells, against 0.62 here (24 synthetic subset sites; cellpose about 0.87).
    Returns (labels 1..n, diameter in pixels)."""
    x = _unit(image)
    sm = filters.gaussian(x, 2.0)
    low = float(np.percentile(sm, 2))
    fg = ndi.binary_fill_holes(sm > low + 0.5 * (filters.threshold_otsu(sm) - low))
    if diameter is None:
        sm1 = filters.gaussian(x, 1.0)
        diameter = _estimate_diameter(sm1 > filters.threshold_otsu(sm1))
    fg = _drop_small(fg, max(8, int(0.1 * np.pi * diameter**2 / 4)))
    if not fg.any():
        return np.zeros(x.shape, np.int32), float(diameter)
    smooth = filters.gaussian(x, max(1.0, diameter / 4))
    dist = ndi.distance_transform_edt(fg)
    landscape = (smooth - smooth[fg].min()) / max(float(np.ptp(smooth[fg])), 1e-6)
    landscape = landscape + 0.5 * dist / max(float(dist.max()), 1.0)
    cells = _watershed_from_maxima(landscape, fg, max(2, int(0.4 * diameter)))
    return segmentation.relabel_sequential(cells)[0].astype(np.int32), float(diameter)


def _watershed_from_maxima(landscape: np.ndarray, fg: np.ndarray, min_distance: int) -> np.ndarray:
    """Objects of ``fg``: one seed per maximum of ``landscape`` (at least ``min_distance`` apart,
    within each connected piece of ``fg``), flooded downhill inside ``fg``."""
    peaks = peak_local_max(
        landscape, min_distance=min_distance, labels=measure.label(fg), exclude_border=False
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-landscape, markers, mask=fg)


def _drop_small(objects: np.ndarray, min_pixels: int) -> np.ndarray:
    """``objects`` (a mask, or labels) without the objects smaller than ``min_pixels``."""
    lab = ndi.label(objects)[0] if objects.dtype == bool else objects
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[lab] if objects.dtype == bool else np.where(keep[lab], lab, 0)


def _unit(x: np.ndarray) -> np.ndarray:
    """Intensities scaled to [0, 1] between the 0.5th and 99.9th percentiles (float32)."""
    x = x.astype(np.float32)
    lo, hi = np.percentile(x, (0.5, 99.9))
    return np.clip((x - lo) / max(float(hi - lo), 1e-6), 0, 1)


def _estimate_diameter(fg: np.ndarray) -> float:
    """Equivalent diameter of a typical object: the median area of the objects at least a
    fifth of the area-weighted median (the size a foreground pixel sees), so that specks of
    noise, which are many but small, do not decide the scale."""
    areas = np.bincount(measure.label(fg).ravel())[1:]
    areas = areas[areas > 0]
    if not len(areas):
        return 20.0
    ordered = np.sort(areas)
    cum = np.cumsum(ordered)
    weighted = ordered[np.searchsorted(cum, cum[-1] / 2)]
    return float(2 * np.sqrt(np.median(areas[areas >= 0.2 * weighted]) / np.pi))


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
        raise SegmentationError(_NO_WEIGHTS)
    t0 = time.perf_counter()
    cp, size = _cellpose_models(weights, device)
    if cyto is None:  # nuclei (or one grey channel) only
        x, channels = image[nucleus if nucleus is not None else 0], [0, 0]
    elif nucleus is None or nucleus == cyto:  # one channel of whole cells
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
    """Segment a (C, H, W) image. ``backend``: "cellpose", "classical", or "auto" (cellpose on a
    GPU, classical on a CPU or without weights; said once)."""
    if image.ndim == 2:
        image = image[None]
    chosen = resolve_backend(backend)  # raises on an unknown name
    if backend == "auto" and chosen == "classical":
        say_once(
            "segment: backend 'auto' -> classical ("
            + ("no GPU; " if find_cellpose_weights() else "no cellpose weights, `make weights`; ")
            + "backend='cellpose' for the reports' segmentation)"
        )
    if chosen == "cellpose":
        return cellpose(image, cyto, nucleus, diameter, **kw)
    return classical(image, cyto, nucleus, diameter)


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------


def average_precision(true: np.ndarray, pred: np.ndarray, thresholds=(0.5, 0.75)) -> dict:
    """cellpose's average precision (TP / (TP + FP + FN)) at each IoU threshold, with counts.

    Both label images are relabelled 1..n first: cellpose's metric counts ``max(label)`` as the
    number of objects, so gaps in the labels (stardist's sample has 125 nuclei numbered up to
    183) would count as missed objects and cap the AP."""
    from cellpose import metrics

    true = segmentation.relabel_sequential(true.astype(np.int32))[0]
    pred = segmentation.relabel_sequential(pred.astype(np.int32))[0]
    ap, tp, fp, fn = metrics.average_precision([true], [pred], threshold=list(thresholds))
    out = {f"AP@{t}": float(ap[0, i]) for i, t in enumerate(thresholds)}
    out.update(
        {
            "true objects": int(true.max() and len(np.unique(true)) - 1),
            "found objects": int(pred.max() and len(np.unique(pred)) - 1),
        }
    )
    return out


def score_masks(seg: pd.DataFrame, truth_keys: pd.Series, root, n: int = 8, seed: int = 0) -> dict:
    """Mean AP@0.5 of the masks ``segment_index`` wrote, against the simulator's ground-truth
    cells of ``n`` sites drawn at random (``truth_keys``: each row's key in the ground truth,
    aligned with ``seg``), with a 95% bootstrap interval over those sites. Only synthetic data
    has ground truth: for real data, check the masks by eye."""
    from cellutils import stats, synthetic

    rows = np.random.default_rng(seed).choice(len(seg), min(n, len(seg)), replace=False)
    ap = [
        average_precision(
            synthetic.read_truth_masks(root, truth_keys.iloc[i])[0],
            tifffile.imread(seg.path_masks.iloc[i]),
        )["AP@0.5"]
        for i in rows
    ]
    m = stats.bootstrap_mean(np.array(ap), seed=seed).iloc[0]
    return {"sites": len(ap), "AP@0.5": m["mean"], "ci_low": m["ci_low"], "ci_high": m["ci_high"]}


# --------------------------------------------------------------------------------------------
# A whole dataset
# --------------------------------------------------------------------------------------------


def resolve_backend(backend: str) -> str:
    """The backend a name stands for. "auto" is device-appropriate: cellpose on a GPU (when its
    weights exist), the classical backend on a CPU, where cellpose takes seconds per small site
    and tens of seconds per 512-px real image on two cores (``make bench`` measures the
    ratio and both backends' AP on real nuclei). "cellpose" without weights raises with
    the fix."""
    if backend == "auto":
        from cellutils.runtime import pick_device

        if find_cellpose_weights() is None:
            return "classical"
        return "cellpose" if pick_device(verbose=False).type == "cuda" else "classical"
    if backend not in ("cellpose", "classical"):
        raise ValueError(f"backend must be 'cellpose', 'classical' or 'auto', not {backend!r}")
    if backend == "cellpose" and find_cellpose_weights() is None:
        raise SegmentationError(_NO_WEIGHTS)
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
    004's), e.g. ``cellpose-cyto3-cellprob-5.0-diameterNone-flow0.7``, for the classical
    backend its version (``classical-v4``); masks made with other weights, thresholds or
    algorithms are never reused by mistake."""
    from cellutils.paths import data_root as _data_root

    backend = resolve_backend(backend)
    key = f"classical-v{CLASSICAL_VERSION}"
    if backend == "classical" and (settings or {}).get("diameter") is not None:
        key += f"-diameter{settings['diameter']}"  # a set diameter makes other masks
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
    n_workers: int | None = 1,
    client=None,
    address: str | None = None,
    flows: bool = True,
    **kw,
) -> pd.DataFrame:
    """Segment every row of a dataset index; masks and flows go to ``out_dir`` as
    ``{key}_masks.tif`` / ``{key}_flows.tif``. Rows already done are skipped (resume after an
    interruption); files are written to a temporary name and renamed. ``out_dir`` may not hold
    any of the input images. ``cyto``/``nucleus`` name channels by their ``path_`` suffix.
    A row is done when its stored key matches (this module's code, the settings, the input
    files' size and mtime; ``cellutils.keys``); others are recomputed, and the run says so.

    ``n_workers`` > 1 (or None: every core), ``client`` or ``address`` run the sites on dask
    (``cluster.run``); cellpose stays in this process (one model, one GPU). ``flows=False``
    skips the classical backend's flows (cellpose's flow field recomputed from its masks: many
    times the masks' own time, ``docs/scaling.md``); only report 004's second
    branch reads them.

    Returns one row per image: key, path_masks, path_flows, n_cells, backend; images where
    no cell was found are listed in ``result.attrs['problems']``."""
    from functools import partial

    from tqdm.auto import tqdm

    from cellutils import cluster, keys

    out_dir = Path(out_dir).expanduser().resolve()
    # cyto == nucleus: one channel shows whole cells (the CPJUMP1 subset's median image)
    channels = list(dict.fromkeys(c for c in (cyto, nucleus) if c is not None))
    inputs = {Path(p).resolve().parent for c in channels for p in index[f"path_{c}"]}
    if out_dir in inputs:
        raise SegmentationError(
            f"{out_dir} holds input images; write masks beside them, "
            "e.g. <data root>/segmentation/<dataset>/, never over them."
        )
    for k in index[key]:  # keys name the mask files: '/' or '..' would write elsewhere
        under(out_dir, out_dir / f"{safe_key(k, key, 'the index')}_masks.tif")
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = resolve_backend(backend)
    job = partial(
        _segment_row,
        out_dir=str(out_dir),
        key=key,
        channels=channels,
        cyto=cyto,
        backend=backend,
        diameter=diameter,
        flows=flows,
        kw=kw,
    )
    rows_in = [dict(r) for _, r in index.iterrows()]
    parallel = backend == "classical" and (
        client is not None or address is not None or n_workers != 1
    )
    if parallel:
        rows = cluster.run(
            rows_in, job, client, address, n_workers, f"segment ({backend})", progress
        )
    else:
        rows = [
            job(r)
            for r in tqdm(
                rows_in, disable=not progress, desc=f"segment ({backend})", mininterval=2.0
            )
        ]
    problems = [
        {
            "problem": "no cell found",
            "file": str(r[f"path_{nucleus}"]),
            "detail": row[key],
            "fix": "check the image and the channels chosen",
        }
        for r, row in zip(rows_in, rows, strict=True)
        if row["n_cells"] == 0
    ]
    stale = keys.Reporter(f"segment ({backend})")
    for row in rows:
        reason = row.pop("_stale")
        if reason:
            stale.add(f"{row[key]}_masks.tif", reason)
    stale.say()
    result = pd.DataFrame(rows)
    result.attrs["problems"] = problems
    if problems:
        print(f"segment: no cell found in {len(problems)} image(s), e.g. {problems[0]['file']}")
    return result


def _segment_row(
    row: dict,
    out_dir: str,
    key: str,
    channels: list[str],
    cyto: str | None,
    backend: str,
    diameter: float | None,
    flows: bool,
    kw: dict,
) -> dict:
    """One site of ``segment_index``: segment and write, or read what an earlier run wrote
    with the same code, settings and input files (its key in ``<key>_masks.tif.key.json``)."""
    from cellutils import keys
    from cellutils.datasets import load_site

    k = str(row[key])
    mpath, fpath = Path(out_dir) / f"{k}_masks.tif", Path(out_dir) / f"{k}_flows.tif"
    # what makes the masks: this module's code, the settings, the input files (size, mtime)
    settings = dict(backend=backend, channels=channels, cyto=cyto, diameter=diameter, kw=kw)
    want = keys.make_key(segment, settings, [row[f"path_{c}"] for c in channels])
    stale = keys.mismatch(keys.read_sidecar(mpath), want) if mpath.exists() else None
    if mpath.exists() and (fpath.exists() or not flows) and stale is None:
        masks = tifffile.imread(mpath)
    else:
        image = load_site(pd.Series(row), channels)
        seg = segment(image, 0 if cyto else None, len(channels) - 1, backend, diameter, **kw)
        masks = seg.masks
        if flows:
            _write_tif(fpath, seg.flows.astype(np.float16))
        _write_tif(mpath, masks)  # masks last: their presence marks the row done
        keys.write_sidecar(mpath, want)
    return {
        key: k,
        "path_masks": mpath,
        "path_flows": fpath if fpath.exists() else None,
        "n_cells": int(masks.max()),
        "backend": backend,
        "_stale": stale,
    }


def _write_tif(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, compression="zlib")
    atomic_write_bytes(path, buf.getvalue(), overwrite=True)
