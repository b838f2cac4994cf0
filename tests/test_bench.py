"""The benchmark helpers that their numbers rest on (the benchmarks themselves run with
`make bench`, not in the tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_a_complete_fullscale_run_rewrites_the_scaling_table_and_a_partial_one_does_not(tmp_path):
    from benchmarks.__main__ import FULLSCALE_END, FULLSCALE_START, update_scaling_doc
    from benchmarks.fullscale import PATHS

    doc = tmp_path / "scaling.md"
    doc.write_text(f"# head\n{FULLSCALE_START}\nold table\n{FULLSCALE_END}\n## tail\n")

    def row(name: str, peak: float) -> dict:
        return {
            "benchmark": f"full-scale data path {name} (1,000 sites)",
            "candidate_value": peak,
            "within_budget": peak <= 16,
            "disk_gb": 1.5,
            "note": "what ran",
        }

    rows = [row(n, 17.0 if n == "08" else 1.0) for n in PATHS]
    assert not update_scaling_doc(rows[:3], source="x.json", doc=doc)  # some rows: kept
    assert "old table" in doc.read_text()
    assert update_scaling_doc(rows, source="bench-1.json", doc=doc)
    text = doc.read_text()
    assert "old table" not in text and text.startswith("# head") and text.endswith("## tail\n")
    assert text.count("| 0") == len(PATHS) and "| 08 | 1,000 sites | 17.00 | **no** |" in text
    doc.write_text("no markers\n")
    with pytest.raises(ValueError, match="must hold"):
        update_scaling_doc(rows, source="bench-1.json", doc=doc)
