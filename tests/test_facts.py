"""Counts the docs quote are the functions' own: the features per cell before selection."""

import re
from pathlib import Path

import numpy as np
from skimage.draw import disk

from cellutils import cellprofiler, features

STAINS = ["DNA", "ER", "RNA", "AGP", "Mito"]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _counts(table):
    return len(features.feature_columns(table)), sum(map(features.is_position, table.columns))


def test_feature_counts_in_scaling_md_are_the_functions():
    rng = np.random.default_rng(0)
    masks = np.zeros((80, 80), np.int32)
    for label, centre in enumerate([(20, 20), (20, 58), (58, 38)], start=1):
        masks[disk(centre, 12, shape=masks.shape)] = label
    image = (rng.random((5, 80, 80)) * 60000).astype(np.uint16)
    rp = _counts(features.measure_cells(masks, image, STAINS))
    cp = _counts(cellprofiler.measure_cellprofiler(masks, image, STAINS))
    text = (DOCS / "scaling.md").read_text()
    quoted = re.findall(r"(\d+) features for 5 stains before selection, \+ (\d+) position", text)
    assert [tuple(map(int, q)) for q in quoted] == [rp, cp]
