"""The benchmark helpers that their numbers rest on (the benchmarks themselves run with
`make bench`, not in the tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.fullscale import PeakMemory, _cycle, _du


def test_peak_memory_sees_an_allocation_that_is_gone_again():
    with PeakMemory(every=0.005) as mem:
        before = PeakMemory.now()[0]
        block = np.ones(300_000_000 // 8)  # 0.3 GB, touched
        block.sum()
        import time

        time.sleep(0.05)
        del block
    assert mem.anon - before > 0.25
    assert PeakMemory.now()[0] < mem.anon - 0.2  # the peak, not the end


def test_cycle_and_disk_usage(tmp_path):
    pool = pd.DataFrame({"path_a": ["x", "y", "z"]})
    assert _cycle(pool, 7).path_a.tolist() == ["x", "y", "z", "x", "y", "z", "x"]
    sparse = np.memmap(tmp_path / "s.f16", np.float16, "w+", shape=(1000, 1000))
    sparse[:10] = 1
    sparse.flush()
    assert _du(tmp_path / "s.f16") < 1_000_000 < (tmp_path / "s.f16").stat().st_size + 1


def test_every_notebook_has_a_full_scale_row():
    from benchmarks.fullscale import PATHS

    assert set(PATHS) == {f"{i:02d}" for i in range(1, 10)}
