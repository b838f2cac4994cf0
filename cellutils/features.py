"""Per-cell features (report 004's regionprops list) and image/well profiles (pycytominer).

Column names follow CellProfiler's convention so pycytominer infers them: ``Metadata_*`` for
metadata, ``Cells_AreaShape_*`` for shape, ``Cells_Intensity_{Mean,Min,Max}Intensity_<channel>``
for each channel.

>>> cells = measure_cells(masks, image, ["DNA", "ER"], {"Metadata_Well": "A01"})
>>> cells, dropped = clean_cells(cells)              # report 004: perimeter 0 removed
>>> wells = profiles(cells, strata=["Metadata_Plate", "Metadata_Well"])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import measure

# report 004's regionprops list: skimage name -> CellProfiler-style feature name
SHAPE = {
    "area": "Area",
    "area_convex": "ConvexArea",
    "perimeter": "Perimeter",
    "eccentricity": "Eccentricity",
    "axis_major_length": "MajorAxisLength",
    "axis_minor_length": "MinorAxisLength",
    "orientation": "Orientation",
    "solidity": "Solidity",
    "extent": "Extent",
}
POSITION = {
    "centroid-0": "Center_Y",
    "centroid-1": "Center_X",
    "bbox-0": "BoundingBoxMinimum_Y",
    "bbox-1": "BoundingBoxMinimum_X",
    "bbox-2": "BoundingBoxMaximum_Y",
    "bbox-3": "BoundingBoxMaximum_X",
}
INTENSITY = {
    "intensity_mean": "MeanIntensity",
    "intensity_min": "MinIntensity",
    "intensity_max": "MaxIntensity",
}
# position is metadata for profiling, not a phenotype
POSITION_COLUMNS = [f"Cells_AreaShape_{v}" for v in POSITION.values()]


def measure_cells(
    masks: np.ndarray,
    image: np.ndarray,
    channels: Sequence[str],
    metadata: dict | None = None,
    compartment: str = "Cells",
) -> pd.DataFrame:
    """One row per object of ``masks``: shape and position (``regionprops_table``) and the
    mean/min/max intensity of every channel of the (C, H, W) ``image`` (labelled reductions)."""
    image = image if image.ndim == 3 else image[None]
    if image.shape[0] != len(channels):
        raise ValueError(f"image has {image.shape[0]} channels, {len(channels)} names given")
    if masks.shape != image.shape[1:]:
        raise ValueError(f"masks {masks.shape} and image {image.shape[1:]} differ in size")
    masks = masks.astype(np.int32)
    table = measure.regionprops_table(masks, properties=["label", *SHAPE, "centroid", "bbox"])
    out = {"Metadata_ObjectNumber": table["label"]}
    for k, v in {**SHAPE, **POSITION}.items():
        out[f"{compartment}_AreaShape_{v}"] = table[k]
    # intensities: one labelled reduction per channel (scipy), not one Python call per cell
    labels = table["label"]
    for i, ch in enumerate(channels):
        img = image[i].astype(np.float64)
        out[f"{compartment}_Intensity_MeanIntensity_{ch}"] = ndi.mean(img, masks, labels)
        out[f"{compartment}_Intensity_MinIntensity_{ch}"] = ndi.minimum(img, masks, labels)
        out[f"{compartment}_Intensity_MaxIntensity_{ch}"] = ndi.maximum(img, masks, labels)
    df = pd.DataFrame(out)
    for key, value in (metadata or {}).items():
        df.insert(0, key if key.startswith("Metadata_") else f"Metadata_{key}", value)
    return df


def measure_cells_naive(
    masks: np.ndarray, image: np.ndarray, channels: Sequence[str]
) -> pd.DataFrame:
    """The baseline ``measure_cells`` is benchmarked against: a Python loop over cells and
    channels reading ``regionprops`` attributes one by one (how report 004 measured)."""
    rows = []
    for c, ch in enumerate(channels):
        for i, r in enumerate(measure.regionprops(masks.astype(np.int32), image[c])):
            if c == 0:
                rows.append(
                    {
                        "Metadata_ObjectNumber": r.label,
                        **{f"Cells_AreaShape_{v}": getattr(r, k) for k, v in SHAPE.items()},
                        "Cells_AreaShape_Center_Y": r.centroid[0],
                        "Cells_AreaShape_Center_X": r.centroid[1],
                        **{
                            f"Cells_AreaShape_{v}": r.bbox[j]
                            for j, v in enumerate(list(POSITION.values())[2:])
                        },
                    }
                )
            for k, v in INTENSITY.items():
                rows[i][f"Cells_Intensity_{v}_{ch}"] = getattr(r, k)
    return pd.DataFrame(rows)


def feature_columns(df: pd.DataFrame, position: bool = False) -> list[str]:
    """Feature columns (not ``Metadata_``), without position/bounding-box unless asked."""
    cols = [c for c in df.columns if not c.startswith("Metadata_")]
    return cols if position else [c for c in cols if c not in POSITION_COLUMNS]


def clean_cells(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Report 004's cleaning made explicit: drop cells with perimeter 0 (one- or two-pixel
    objects whose shape features are undefined) and rows with missing features.
    Returns (kept cells, counts of rows dropped per reason)."""
    zero = cells["Cells_AreaShape_Perimeter"] <= 0
    missing = cells[feature_columns(cells)].isna().any(axis=1) & ~zero
    dropped = pd.Series({"perimeter 0": int(zero.sum()), "missing values": int(missing.sum())})
    return cells[~zero & ~missing].reset_index(drop=True), dropped


def profiles(cells: pd.DataFrame, strata: Sequence[str], operation: str = "median") -> pd.DataFrame:
    """Aggregate cells into one profile per stratum (image or well) with pycytominer, keeping
    every ``Metadata_`` column that is constant within a stratum."""
    import pycytominer

    feats = feature_columns(cells)
    counted = "Metadata_ObjectNumber" in cells  # cells (count them) or sites (nothing to count)
    agg = pycytominer.aggregate(
        cells,
        strata=list(strata),
        features=feats,
        operation=operation,
        output_type=None,
        compute_object_count=counted,
        object_feature="Metadata_ObjectNumber",
    )
    meta = [
        c
        for c in cells.columns
        if c.startswith("Metadata_") and c not in strata and c != "Metadata_ObjectNumber"
    ]
    const = cells.groupby(list(strata))[meta].nunique().le(1).all()
    keep = [c for c in meta if const[c]]
    first = cells.groupby(list(strata), as_index=False)[keep].first()
    return first.merge(agg, on=list(strata))


def normalize(
    profiles_df: pd.DataFrame,
    control: str,
    plate: str = "Metadata_Plate",
    method: str = "mad_robustize",
) -> pd.DataFrame:
    """Per-plate normalisation against the negative control (pycytominer), e.g.
    ``control="Metadata_pert_iname == 'DMSO'"``: each feature centred and scaled by the
    control wells of its own plate, which removes plate-to-plate intensity drift."""
    import pycytominer

    feats = feature_columns(profiles_df)
    parts = []
    for _, part in profiles_df.groupby(plate, sort=False):
        parts.append(
            pycytominer.normalize(
                part, features=feats, samples=control, method=method, output_type=None
            )
        )
    return pd.concat(parts, ignore_index=True)


def select_features(
    profiles_df: pd.DataFrame,
    operations: Sequence[str] = (
        "variance_threshold",
        "correlation_threshold",
        "drop_na_columns",
        "drop_outliers",
    ),
) -> pd.DataFrame:
    """pycytominer feature selection: drop near-constant, highly correlated (> 0.9), mostly
    missing and outlier-driven features."""
    import pycytominer

    return pycytominer.feature_select(
        profiles_df,
        features=feature_columns(profiles_df),
        operation=list(operations),
        output_type=None,
    )


def replicate_map(
    profiles_df: pd.DataFrame,
    label: str,
    batch: str | None = None,
    control: str | None = None,
    null_size: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Replicate retrieval with copairs: for each profile, the average precision of retrieving
    the other profiles of its own perturbation (``label``) against the negative ``control``
    profiles (or all other perturbations), then the mean per perturbation with a permutation
    p-value. Replicates in another ``batch`` (e.g. plate) are the harder, honest positives.
    Returns one row per perturbation: label, mean_average_precision, p-value, below_p."""
    from copairs import map as cmap

    feats = feature_columns(profiles_df)
    df = profiles_df.dropna(subset=feats).reset_index(drop=True)
    if batch and df[batch].nunique() < 2:
        print(f"replicate_map: one {batch} only; replicates are taken within it")
        batch = None
    counts = df[label].value_counts()
    if (counts.drop(control, errors="ignore") < 2).all():
        raise ValueError(
            f"no {label} has two profiles: nothing to retrieve. Replicate "
            "retrieval needs replicate wells (or plates) per perturbation."
        )
    meta = df[[c for c in df.columns if c.startswith("Metadata_")]].copy()
    meta["_ctrl"] = meta[label] == control if control else False
    pos_diffby = [batch] if batch else []
    neg_sameby: list[str] = []
    neg_diffby = [label, "_ctrl"] if control else [label]
    # with a control: negatives must differ in label AND control status, so a treated
    # profile's negatives are the control profiles only (copairs' phenotypic activity)
    ap = cmap.average_precision(
        meta,
        df[feats].to_numpy(),
        pos_sameby=[label],
        pos_diffby=pos_diffby,
        neg_sameby=neg_sameby,
        neg_diffby=neg_diffby,
        progress_bar=False,
    )
    if control:
        ap = ap[~ap._ctrl]
    ap = ap.dropna(subset=["average_precision"])
    maps = cmap.mean_average_precision(
        ap, sameby=[label], null_size=null_size, threshold=0.05, seed=seed, progress_bar=False
    )
    return maps.sort_values("mean_average_precision", ascending=False).reset_index(drop=True)


def measure_dataset(
    index: pd.DataFrame,
    segmented: pd.DataFrame,
    key: str,
    channels: Sequence[str],
    metadata: Sequence[str],
    progress: bool = True,
) -> pd.DataFrame:
    """``measure_cells`` over a dataset: ``segmented`` is ``segment.segment_index``'s result
    (masks per ``key``); intensities are read from ``index``'s ``path_<channel>`` columns."""
    import tifffile
    from tqdm.auto import tqdm

    from cellutils.datasets import load_site

    masks_of = dict(zip(segmented[key].astype(str), segmented.path_masks, strict=True))
    parts = []
    for _, row in tqdm(
        index.iterrows(),
        total=len(index),
        disable=not progress,
        desc="measure cells",
        mininterval=2.0,
    ):
        k = str(row[key])
        if k not in masks_of:
            raise KeyError(f"no masks for {key}={k}; run segment.segment_index on this index")
        masks = tifffile.imread(masks_of[k])
        parts.append(
            measure_cells(masks, load_site(row, channels), channels, {m: row[m] for m in metadata})
        )
    return pd.concat(parts, ignore_index=True)
