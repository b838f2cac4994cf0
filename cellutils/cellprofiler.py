"""CellProfiler-grade per-cell measurements with cp-measure (CellProfiler's measurement code
as a numpy API): what JUMP's profiles are made of, beside report 004's regionprops set.

Groups (``GROUPS``; CellProfiler's module in brackets): size and shape (MeasureObjectSizeShape),
intensity (MeasureObjectIntensity), texture (MeasureTexture, Haralick at scale 3),
granularity (MeasureGranularity), radial distribution (MeasureObjectIntensityDistribution) and
Pearson correlation between every pair of channels (MeasureColocalization). Columns are named
as CellProfiler names them, e.g. ``Cells_Texture_Contrast_DNA_3_00_256``,
``Cells_Granularity_1_Mito``, ``Cells_RadialDistribution_FracAtD_RNA_1of4``,
``Cells_Correlation_Correlation_DNA_ER``, so pycytominer and copairs take them as they are.
Zernike moments and the Costes/Manders/RWC colocalisation measures are left out by default
(slow, and largely redundant with the above on five stains); ``zernike=True`` adds the shape ones.

>>> cells = measure_cellprofiler(masks, image, ["DNA", "ER", "RNA", "AGP", "Mito"])
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUPS = ("sizeshape", "intensity", "texture", "granularity", "radial_distribution")
# CellProfiler's defaults for the per-channel groups
SETTINGS: dict[str, dict] = {
    "intensity": {},
    "texture": {"scale": 3, "gray_levels": 256},
    "granularity": {"granular_spectrum_length": 16},
    "radial_distribution": {"bin_count": 4},
}


def _cellprofiler_name(compartment: str, feature: str, channel: str | None) -> str:
    """cp-measure's ``Texture_Contrast_3_00_256`` -> ``Cells_Texture_Contrast_DNA_3_00_256``:
    the channel goes after the measurement, before its settings (CellProfiler's order)."""
    if channel is None:
        return f"{compartment}_AreaShape_{feature}"
    parts = feature.split("_")
    if parts[0] == "Granularity":  # Granularity_1 -> Granularity_1_DNA
        return f"{compartment}_{feature}_{channel}"
    if parts[0] == "RadialDistribution":  # RadialDistribution_FracAtD_1of4
        return f"{compartment}_{parts[0]}_{parts[1]}_{channel}_{'_'.join(parts[2:])}"
    if parts[0] == "Location":  # Location_CenterMassIntensity_X -> ..._X_DNA (a position)
        return f"{compartment}_{feature}_{channel}"
    if len(parts) > 2 and parts[0] == "Intensity":
        return f"{compartment}_Intensity_{'_'.join(parts[1:])}_{channel}"
    if parts[0] == "Intensity":
        return f"{compartment}_{feature}_{channel}"
    # texture: Contrast_3_00_256 (cp-measure omits the module name)
    return f"{compartment}_Texture_{parts[0]}_{channel}_{'_'.join(parts[1:])}"


def measure_cellprofiler(
    masks: np.ndarray,
    image: np.ndarray,
    channels: Sequence[str],
    metadata: dict | None = None,
    compartment: str = "Cells",
    groups: Sequence[str] = GROUPS,
    correlation: bool = True,
    zernike: bool = False,
) -> pd.DataFrame:
    """One row per object of ``masks`` with CellProfiler's measurements of the (C, H, W)
    ``image``: shape once, the intensity groups per channel, Pearson correlation per channel
    pair. Intensities are scaled to [0, 1] by the image's dtype range (CellProfiler's rescaling
    of integer images), so values compare across sites."""
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements

    image = image if image.ndim == 3 else image[None]
    if image.shape[0] != len(channels):
        raise ValueError(f"image has {image.shape[0]} channels, {len(channels)} names given")
    if masks.shape != image.shape[1:]:
        raise ValueError(f"masks {masks.shape} and image {image.shape[1:]} differ in size")
    masks = masks.astype(np.int32)
    labels = np.unique(masks)
    labels = labels[labels > 0]
    out: dict[str, np.ndarray] = {"Metadata_ObjectNumber": labels}
    if not len(labels):
        return pd.DataFrame(out)
    scale = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    pixels = [np.clip(image[i].astype(np.float32) / scale, 0, 1) for i in range(len(channels))]
    core = get_core_measurements()
    with warnings.catch_warnings():  # empty radial bins divide by zero: NaN, dropped later
        warnings.simplefilter("ignore", RuntimeWarning)
        if "sizeshape" in groups:
            for name, values in core["sizeshape"](masks, None).items():
                out[_cellprofiler_name(compartment, name, None)] = np.asarray(values)
        if zernike:
            for name, values in core["zernike"](masks, None).items():
                out[_cellprofiler_name(compartment, name, None)] = np.asarray(values)
        for group in (g for g in groups if g != "sizeshape"):
            for ch, px in zip(channels, pixels, strict=True):
                for name, values in core[group](masks, px, **SETTINGS[group]).items():
                    out[_cellprofiler_name(compartment, name, ch)] = np.asarray(values)
        if correlation:
            pearson = get_correlation_measurements()["pearson"]
            for (a, pa), (b, pb) in itertools.combinations(zip(channels, pixels, strict=True), 2):
                r = pearson(pa, pb, masks)["Correlation_Pearson"]
                out[f"{compartment}_Correlation_Correlation_{a}_{b}"] = np.asarray(r)
    df = pd.DataFrame(out)
    for key, value in (metadata or {}).items():
        df.insert(0, key if key.startswith("Metadata_") else f"Metadata_{key}", value)
    return df


def measure_cellprofiler_per_cell(
    masks: np.ndarray, image: np.ndarray, channels: Sequence[str], **kw
) -> pd.DataFrame:
    """The per-cell baseline ``make bench`` sets ``measure_cellprofiler`` against: the same
    measurements called once per cell, each on its own bounding box (how a loop over
    ``regionprops`` would call them)."""
    from scipy import ndimage as ndi

    rows = []
    for lab, box in enumerate(ndi.find_objects(masks.astype(np.int32)), start=1):
        if box is None:
            continue
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        one = (masks[pad] == lab).astype(np.int32)
        rows.append(measure_cellprofiler(one, image[(slice(None), *pad)], channels, **kw))
        rows[-1]["Metadata_ObjectNumber"] = lab
    return pd.concat(rows, ignore_index=True)
