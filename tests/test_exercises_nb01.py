"""Notebook 01's exercise checks: the right answer passes, a wrong one raises NotYet without
the expected value, the student's stub (``...``) does not raise."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import draw, segmentation
from skimage.filters import threshold_otsu

from cellutils.exercises import NotYet, nb01


def _discs(shift: int = 0) -> np.ndarray:
    masks = np.zeros((64, 64), np.int32)
    for label, (r, c, rad) in enumerate([(15, 15, 7), (40, 20, 6), (30, 48, 9)], start=1):
        masks[draw.disk((r, c + shift), rad, shape=masks.shape)] = label * 3  # gaps in labels
    return masks


def _otsu_by_hand(image: np.ndarray, nbins: int = 256) -> float:
    counts, edges = np.histogram(image, bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    w1 = np.cumsum(counts[::-1])[::-1][1:]
    m0 = np.cumsum(counts * centres)[:-1] / w0
    m1 = (np.cumsum((counts * centres)[::-1])[::-1])[1:] / w1
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def _ap_by_hand(truth: np.ndarray, masks: np.ndarray) -> float:
    truth = segmentation.relabel_sequential(truth)[0]
    masks = segmentation.relabel_sequential(masks)[0]
    overlap = np.zeros((truth.max() + 1, masks.max() + 1))
    np.add.at(overlap, (truth.ravel(), masks.ravel()), 1)
    union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
    tp = int(((overlap / union)[1:, 1:] >= 0.5).sum())
    return tp / (truth.max() + masks.max() - tp)


def test_threshold(capsys):
    rng = np.random.default_rng(0)
    image = (_discs() > 0) * 100.0 + rng.normal(20, 5, (64, 64))
    nb01.check_threshold(_otsu_by_hand(image), image)
    assert "3 connected objects" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb01.check_threshold(float(image.mean()), image)
    assert f"{threshold_otsu(image):.2f}" not in str(err.value)
    nb01.check_threshold(..., image)
    assert "not answered yet" in capsys.readouterr().out


def test_nucleus_diameter(capsys):
    nuclei = _discs()
    areas = np.bincount(nuclei.ravel())[1:]
    right = float(np.median(np.sqrt(4 * areas[areas > 0] / np.pi)))
    nb01.check_nucleus_diameter(right, nuclei, estimate=12.0)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(NotYet) as err:
        nb01.check_nucleus_diameter(float(np.median(areas[areas > 0])), nuclei, estimate=12.0)
    assert f"{right:.1f}" not in str(err.value)
    nb01.check_nucleus_diameter(..., nuclei, estimate=12.0)
    assert "not answered yet" in capsys.readouterr().out
    nb01.check_nucleus_diameter(1.0, None, estimate=12.0)  # real data
    assert "nothing to check" in capsys.readouterr().out


def test_ap_by_hand(capsys):
    pairs = [(_discs(), _discs(shift=2))]
    nb01.check_ap_by_hand(_ap_by_hand, pairs)
    assert "correct" in capsys.readouterr().out

    def at_any_overlap(truth, masks):  # IoU > 0 is not IoU > 0.5
        t, m = truth > 0, masks > 0
        return float((t & m).sum() / (t | m).sum())

    with pytest.raises(NotYet) as err:
        nb01.check_ap_by_hand(at_any_overlap, pairs)
    assert "AP@0.5 from" not in str(err.value)

    def stub(truth, masks): ...  # the student build's stub returns None

    nb01.check_ap_by_hand(stub, pairs)
    assert "not answered yet" in capsys.readouterr().out
    nb01.check_ap_by_hand(..., pairs)
    assert "not answered yet" in capsys.readouterr().out
