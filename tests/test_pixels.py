"""Exact pixels and full-scale memory: streamed channel statistics and the decode rule."""

from __future__ import annotations

import numpy as np
import pytest

from cellutils import images, torchdata


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_streamed_channel_stats_equal_the_exact_computation(dtype, tmp_path):
    rng = np.random.default_rng(0)
    scale = 20.0  # channels with different levels and spreads
    offset = np.array([0, 2, 8])[:, None, None] * scale
    x = (rng.gamma(2.0, scale, (57, 3, 24, 24)) * [[[1]], [[0.5]], [[2]]] + offset).clip(0, 255)
    x = (x if dtype == np.uint8 else x * 100.3).astype(dtype)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", dtype, x.shape)
    mm[:] = x
    rows = rng.choice(57, 40, replace=False)
    exact = np.asarray(x[np.unique(rows)], np.float64)  # the old computation, all in memory
    for batch_bytes in (1, 24 * 24 * 3 * 8 * 7, 2**26):  # one image, 7 images, all at once
        mean, std = torchdata.channel_moments(mm, np.unique(rows), batch_bytes)
        assert np.allclose(mean, exact.mean(axis=(0, 2, 3)), rtol=1e-10)
        assert np.allclose(std, exact.std(axis=(0, 2, 3)), rtol=1e-8)
    stats = torchdata.ChannelStats.fit(mm, rows)
    assert np.allclose(stats.mean, exact.mean(axis=(0, 2, 3)), rtol=1e-10)
    assert np.allclose(stats.std, exact.std(axis=(0, 2, 3)), rtol=1e-8)


def test_common_dtype_holds_every_file_exactly():
    assert images.common_dtype([np.uint8, np.uint16]) == np.uint16
    assert images.common_dtype([np.uint16, np.float32]) == np.float32
    assert images.common_dtype([np.uint8]) == np.uint8
    for a, b in ((np.uint8, np.uint16), (np.uint16, np.float32), (np.int16, np.uint8)):
        into = images.common_dtype([a, b])
        assert np.can_cast(a, into, "safe") and np.can_cast(b, into, "safe")
