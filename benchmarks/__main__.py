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
    from cellutils import datasets

    rows = {}
    jobs = min(os.cpu_count() or 1, 8)
    for label, n_jobs in (("1 process", 1), (f"{jobs} processes", jobs)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            root = datasets.write_rxrx1(
                Path(tmp) / "r",
                n_sirnas=n_sirnas,
                n_positive=0,
                experiments={"HUVEC": 1},
                n_test=0,
                sites=2,
                size=128,
                n_jobs=n_jobs,
                seed=1,
            )
            seconds = time.perf_counter() - t0
            n_sites = len((root / "metadata.csv").read_text().splitlines()) - 1
            rows[label] = n_sites / seconds
    (b_label, base), (c_label, cand) = rows.items()
    return [
        {
            "benchmark": "synthetic generation (RxRx1, 128 px, 6 PNG channels)",
            "baseline": b_label,
            "candidate": c_label,
            "unit": "sites/s",
            "baseline_value": round(base, 2),
            "candidate_value": round(cand, 2),
            "ratio": round(cand / base, 2),
        }
    ]


def _row(name: str, unit: str, base: tuple[str, float], cand: tuple[str, float]) -> dict:
    return {
        "benchmark": name,
        "baseline": base[0],
        "candidate": cand[0],
        "unit": unit,
        "baseline_value": round(base[1], 2),
        "candidate_value": round(cand[1], 2),
        "ratio": round(cand[1] / base[1], 2),
    }


def bench_decoded_cache(n_sirnas: int = 60, size: int = 256, epochs: int = 2) -> list[dict]:
    """Training input: samples/s read from the memory-mapped decoded cache against decoding six
    PNG files per sample (same tensors, same DataLoader, batch 32, one worker process)."""
    from torch.utils.data import DataLoader

    from cellutils import datasets, torchdata

    def rate(ds) -> float:
        t0 = time.perf_counter()
        n = 0
        for _ in range(epochs):
            for x, _y in DataLoader(ds, batch_size=32, shuffle=True):
                n += len(x)
        return n / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        root = datasets.write_rxrx1(
            Path(tmp) / "r",
            n_sirnas=n_sirnas,
            n_positive=0,
            experiments={"HUVEC": 1},
            n_test=0,
            sites=2,
            size=size,
            seed=1,
        )
        index = datasets.read_rxrx1(root)
        targets = index.sirna_id.fillna(-1).astype(int).to_numpy()
        t0 = time.perf_counter()
        images = torchdata.decode(index, size=size, data_root=tmp, verbose=False)
        build = time.perf_counter() - t0
        stats = torchdata.ChannelStats.fit(images, range(len(index)))
        files = rate(torchdata.FileDataset(index, targets, size=size, stats=stats))
        cached = rate(torchdata.ImageDataset(images, range(len(index)), targets, stats))
    name = f"training input, RxRx1 {size} px x 6 PNG channels, {epochs} epochs"
    return [
        _row(name, "samples/s", ("decode files", files), ("decoded cache", cached))
        | {"note": f"building the cache once took {build:.1f} s for {len(index)} sites"}
    ]


def _cpjump1_sites(tmp: str, n_compounds: int = 4, size: int = 256):
    from cellutils import datasets

    root = datasets.write_cpjump1(
        Path(tmp) / "c",
        plates=("BR00116991",),
        n_compounds=n_compounds,
        n_positive=0,
        n_dmso_wells=2,
        sites=2,
        size=size,
        seed=2,
    )
    index = datasets.read_cpjump1(root)
    return [datasets.load_site(r, ["DNA", "ER", "RNA", "AGP", "Mito"]) for _, r in index.iterrows()]


def bench_features() -> list[dict]:
    """Per-cell features: cells/s of one vectorised regionprops_table call per image against a
    per-cell, per-channel Python loop over regionprops (same masks, same numbers)."""
    from cellutils import features, segment

    with tempfile.TemporaryDirectory() as tmp:
        images = _cpjump1_sites(tmp)
    masks = [segment.classical(im[[3, 0]], 0, 1).masks for im in images]
    chans = ["DNA", "ER", "RNA", "AGP", "Mito"]
    n_cells = sum(int(m.max()) for m in masks)
    rates = {}
    for label, fn in (
        ("per-cell loop", features.measure_cells_naive),
        ("regionprops_table + ndimage", features.measure_cells),
    ):
        t0 = time.perf_counter()
        for m, im in zip(masks, images, strict=True):
            fn(m, im, chans)
        rates[label] = n_cells / (time.perf_counter() - t0)
    (b, bv), (c, cv) = rates.items()
    return [_row(f"per-cell features, 5 channels, {n_cells} cells", "cells/s", (b, bv), (c, cv))]


def bench_segmentation() -> list[dict]:
    """Segmentation speed, seconds per megapixel: cellpose (reports' settings, automatic
    diameter) against the classical backend. The ratio is classical's speed-up."""
    from cellutils import segment

    with tempfile.TemporaryDirectory() as tmp:
        images = _cpjump1_sites(tmp, n_compounds=2)[:4]
    mpix = sum(im.shape[1] * im.shape[2] for im in images) / 1e6
    backends = ["classical"] + (["cellpose"] if segment.find_cellpose_weights() else [])
    segment.segment(images[0][[3, 0]], 0, 1, backends[-1])  # warm-up: imports, model load
    secs = {}
    for b in backends:
        t0 = time.perf_counter()
        for im in images:
            segment.segment(im[[3, 0]], 0, 1, b)
        secs[b] = (time.perf_counter() - t0) / mpix
    if "cellpose" not in secs:
        print("bench_segmentation: no cellpose weights (`make weights`); classical only")
        return []
    row = _row(
        f"segmentation, {len(images)} images of 256 px, 2 channels",
        "s/MP",
        ("cellpose", secs["cellpose"]),
        ("classical", secs["classical"]),
    )
    row["ratio"] = round(secs["cellpose"] / secs["classical"], 2)  # lower s/MP is better
    row["note"] = "ratio = cellpose time / classical time"
    return [row]


def bench_fullscale() -> list[dict]:
    """Each notebook's full-profile data path at real scale: peak RSS against 16 GB."""
    from benchmarks.fullscale import bench_fullscale as run

    return run()


BENCHMARKS = [
    bench_generation,
    bench_decoded_cache,
    bench_features,
    bench_segmentation,
    bench_fullscale,
]


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks [name ...]``: all benchmarks, or those whose name contains one
    of the arguments (e.g. ``fullscale``)."""
    wanted = sys.argv[1:] if argv is None else argv
    rows = []
    for bench in BENCHMARKS:
        if wanted and not any(w in bench.__name__ for w in wanted):
            continue
        print(f"running {bench.__name__} ...", flush=True)
        rows += bench()
    width = max(len(r["benchmark"]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {'baseline':>22}  {'candidate':>22}  ratio")
    for r in rows:
        b = f"{r['baseline_value']} {r['unit']} ({r['baseline']})"
        c = f"{r['candidate_value']} {r['unit']} ({r['candidate']})"
        print(
            f"{r['benchmark']:<{width}}  {b:>22}  {c:>22}  {r['ratio']:.2f}x"
            + (f"  disk {r['disk_gb']} GB" if "disk_gb" in r else "")
        )
    out = results_root() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"bench-{stamp}.json"
    write_json(
        path,
        {
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
            },
            "rows": rows,
        },
    )
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
