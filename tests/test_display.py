"""display.segmentation_grid: the segmentation figure (panels, AP in titles, scale bar, key)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage.draw import disk

from cellutils import display, segment


def _cells(centres, radius, size=64):
    masks = np.zeros((size, size), np.int32)
    for label, c in enumerate(centres, start=1):
        masks[disk(c, radius, shape=masks.shape)] = label
    return masks


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    truth = [_cells([(16, 16), (16, 46), (46, 30)], 9), _cells([(20, 20), (44, 44)], 10)]
    images = [np.stack([(t > 0) * 1.0 + rng.normal(0, 0.1, t.shape)] * 2) for t in truth]
    classical = [t.copy() for t in truth]
    classical[1] = _cells([(20, 20)], 10)  # misses one of two cells: AP@0.5 = 1/2
    return images, truth, classical


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_grid_panels_and_ap_titles(rows):
    images, truth, classical = rows
    fig = display.segmentation_grid(
        images, ["AGP", "DNA"], truth, {"classical": classical, "cellpose": "not run: no weights"},
        row_labels=["site a", "site b"],
    )  # fmt: skip
    assert len(fig.axes) == 2 * 4
    titles = _titles(fig)
    for i, (t, m) in enumerate(zip(truth, classical, strict=True)):
        ap = segment.average_precision(t, m)["AP@0.5"]
        shown = re.search(r"AP@0\.5 ([0-9.]+)", titles[4 * i + 2])
        assert shown and float(shown.group(1)) == pytest.approx(ap, abs=0.005)
    assert "AP@0.5 0.50" in titles[6] and "AP@0.5 1.00" in titles[2]
    assert "AGP + DNA" in titles[0] and "site b" in titles[4]
    assert "truth: 3 cells" in titles[1]
    texts = [t.get_text() for ax in fig.axes[3::4] for t in ax.texts]
    assert all("not run" in t for t in texts) and len(texts) == 2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"truth outline", "backend's outline", "AGP (image)", "DNA (image)"} <= set(labels)
    w, h = fig.get_size_inches()
    assert 0.75 <= w / h <= 2  # readable at README width, not a 5:1 strip


def test_scale_bar_units(rows):
    images, truth, classical = rows
    for um, unit in ((None, "px"), (0.65, "µm")):
        fig = display.segmentation_grid([images[0][:1]], ["AGP"], truth[:1], {"c": classical[:1]},
                                        um_per_px=um)  # fmt: skip
        bars = [a for a in fig.axes[0].artists if hasattr(a, "txt_label")]
        assert len(bars) == 1 and bars[0].txt_label.get_text().endswith(unit)


def test_grid_without_truth(rows):
    images, _, classical = rows
    fig = display.segmentation_grid(images, ["AGP", "DNA"], None, {"classical": classical})
    assert "no truth" in fig.axes[2].get_title() and "none" in fig.axes[1].get_title()


def test_grid_names_a_channel_mismatch(rows):
    images, truth, classical = rows
    with pytest.raises(ValueError, match="one plane per channel"):
        display.segmentation_grid(images, ["AGP"], truth, {"classical": classical})


def test_flow_key_draws_opposite_directions_in_different_colours():
    import matplotlib.pyplot as plt

    ax = plt.subplots()[1]
    key = display.flow_key(ax, size=41)
    rgb = key.images[0].get_array()
    left, right, corner = rgb[20, 5], rgb[20, 35], rgb[0, 0]
    assert not np.array_equal(left, right)  # flows point right on the left, left on the right
    assert (corner == 255).all()  # outside the round cell: white
