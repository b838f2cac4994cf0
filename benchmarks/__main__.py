"""Run every benchmark, print a table and save JSON under results/bench/ (never overwritten).

Each benchmark returns rows: what was measured, the baseline's and the candidate's value, the
unit, and candidate/baseline as the ratio (higher is better for throughputs).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from cellutils.paths import results_root, write_json


def bench_generation(n_sirnas: int = 40) -> list[dict]:
    """Synthetic data generation: sites/s with all cores against one process."""
    from cellutils import synthetic

    rows = {}
    jobs = min(os.cpu_count() or 1, 8)
    for label, n_jobs in (("1 process", 1), (f"{jobs} processes", jobs)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            root = synthetic.write_rxrx1(Path(tmp) / "r", n_sirnas=n_sirnas, n_positive=0,
                                         experiments={"HUVEC": 1}, sites=2, size=128,
                                         n_jobs=n_jobs, seed=1)
            seconds = time.perf_counter() - t0
            n_sites = len((root / "metadata.csv").read_text().splitlines()) - 1
            rows[label] = n_sites / seconds
    (b_label, base), (c_label, cand) = rows.items()
    return [{"benchmark": "synthetic generation (RxRx1, 128 px, 6 PNG channels)",
             "baseline": b_label, "candidate": c_label, "unit": "sites/s",
             "baseline_value": round(base, 2), "candidate_value": round(cand, 2),
             "ratio": round(cand / base, 2)}]


BENCHMARKS = [bench_generation]


def main() -> int:
    rows = []
    for bench in BENCHMARKS:
        print(f"running {bench.__name__} ...", flush=True)
        rows += bench()
    width = max(len(r["benchmark"]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {'baseline':>22}  {'candidate':>22}  ratio")
    for r in rows:
        b = f"{r['baseline_value']} {r['unit']} ({r['baseline']})"
        c = f"{r['candidate_value']} {r['unit']} ({r['candidate']})"
        print(f"{r['benchmark']:<{width}}  {b:>22}  {c:>22}  {r['ratio']:.2f}x")
    out = results_root() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"bench-{stamp}.json"
    write_json(path, {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                  "platform": platform.platform()}, "rows": rows})
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
