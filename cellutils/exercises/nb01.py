"""Checks of notebook 01's exercises (segmentation). Each recomputes the expected answer
another way than the solution does (scikit-image, cellpose's metric) and ends in
:func:`cellutils.exercises.check`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cellutils.exercises import check


def check_threshold(answer, image: np.ndarray, nbins: int = 256) -> None:
    """``answer``: Otsu's threshold of ``image`` read from its ``nbins``-bin histogram (the
    bin centre that best separates two classes). Expected: ``skimage.filters.threshold_otsu``,
    within one bin."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    x = np.asarray(image, dtype=float)
    expected = float(threshold_otsu(x, nbins=nbins))
    width = (x.max() - x.min()) / nbins
    n_objects = ndimage.label(x > expected)[1]
    check(
        "01.1 Otsu threshold",
        answer,
        expected,
        tol=1.01 * width,
        hint="for each bin edge t: w0, w1 = the pixel shares below/above t, m0, m1 their mean "
        "intensities; keep the t (a bin centre) where w0 * w1 * (m0 - m1) ** 2 is largest",
        explain=f"above it, {n_objects} connected objects: specks count as objects and "
        "touching nuclei as one, which is why the classical backend smooths first, drops small "
        "objects and cuts with a watershed",
    )


def check_nucleus_diameter(answer, nuclei: np.ndarray | None, estimate: float) -> None:
    """``answer``: the median equivalent diameter (of the disc of the same area) of the true
    nuclei in ``nuclei``. Expected: scikit-image's ``regionprops`` ``equivalent_diameter_area``."""
    from skimage.measure import regionprops

    if nuclei is None:
        print("exercise 01.2: no ground truth here (real data): nothing to check")
        return
    expected = float(np.median([r.equivalent_diameter_area for r in regionprops(nuclei)]))
    check(
        "01.2 nucleus diameter",
        answer,
        expected,
        tol=1e-6,
        hint="area per label: np.bincount(nuclei.ravel())[1:] (drop zeros); a disc of area A "
        "has diameter sqrt(4 A / pi); then the median",
        explain=f"the classical backend estimated {estimate:.1f} px from the image alone "
        f"(truth {expected:.1f} px)",
    )


def check_ap_by_hand(fn: Callable, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """``fn(truth, masks)``: AP at IoU 0.5, TP / (TP + FP + FN), written by hand. Called on
    each (truth, masks) pair of ``pairs`` and on two made from the first (the masks shifted by
    1 px, the truth against itself). Expected: ``segment.average_precision`` (cellpose)."""
    from cellutils import segment

    truth, masks = pairs[0]
    pairs = [*pairs, (truth, np.roll(masks, 1, axis=1)), (truth, truth)]
    expected = [segment.average_precision(t, m)["AP@0.5"] for t, m in pairs]
    answer = ...
    if fn is not ...:
        got = [fn(t, m) for t, m in pairs]
        answer = ... if any(g is None for g in got) else [float(g) for g in got]
    check(
        "01.3 AP by hand",
        answer,
        expected,
        tol=1e-6,
        hint="number the objects 1..n (skimage.segmentation.relabel_sequential); count the "
        "pixels of every (true, found) pair (np.add.at on a table); IoU = overlap / (area "
        "true + area found - overlap); TP = pairs with IoU >= 0.5 (each object has at most one)",
        explain=f"{len(pairs)} mask pairs, AP@0.5 from {min(expected):.2f} to "
        f"{max(expected):.2f}, as cellpose's metric computes them",
    )
