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

from benchmarks.segmentation_realdata import bench_segmentation_realdata
from cellutils.paths import atomic_write_text, repo_root, results_root, write_json

FULLSCALE_START, FULLSCALE_END = "<!-- fullscale:start -->", "<!-- fullscale:end -->"


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
        "baseline_value": float(f"{base[1]:.3g}"),  # three significant digits
        "candidate_value": float(f"{cand[1]:.3g}"),
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


def _cpjump1_index(tmp: str, n_compounds: int = 4, size: int = 256, sites: int = 2):
    from cellutils import datasets

    root = datasets.write_cpjump1(
        Path(tmp) / f"c{n_compounds}-{size}-{sites}",
        plates=("BR00116991",),
        n_compounds=n_compounds,
        n_positive=0,
        n_dmso_wells=2,
        sites=sites,
        size=size,
        seed=2,
    )
    index = datasets.read_cpjump1(root)
    index["key"] = datasets.cpjump1_site_key(index)
    return root, index


CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def bench_features() -> list[dict]:
    """Per-site feature time, one process: report 004's regionprops set measured once per
    label image against a per-cell, per-channel loop over regionprops (the same numbers), and
    the CellProfiler-grade set (cp-measure) on the whole label image against one call per cell."""
    from cellutils import cellprofiler, features, segment

    with tempfile.TemporaryDirectory() as tmp:
        images = _cpjump1_sites(tmp)
    masks = [segment.classical(im[[3, 0]], 0, 1).masks for im in images]
    n_cells = sum(int(m.max()) for m in masks)

    def per_site(fn, sites: int) -> float:
        t0 = time.perf_counter()
        for m, im in zip(masks[:sites], images[:sites], strict=True):
            fn(m, im, CHANNELS)
        return (time.perf_counter() - t0) / sites

    rp = (per_site(features.measure_cells_naive, 12), per_site(features.measure_cells, 12))
    cp = (
        per_site(cellprofiler.measure_cellprofiler_per_cell, 3),
        per_site(cellprofiler.measure_cellprofiler, 3),
    )
    n_rp = len(features.feature_columns(features.measure_cells(masks[0], images[0], CHANNELS)))
    n_cp = len(
        features.feature_columns(cellprofiler.measure_cellprofiler(masks[0], images[0], CHANNELS))
    )
    size = f"{images[0].shape[1]} px, 5 channels, {n_cells / len(masks):.0f} cells per site"
    rows = []
    for name, (base, cand), labels, note in (
        (
            f"regionprops features ({n_rp}, before selection), per site, {size}",
            rp,
            ("per-cell loop", "once per label image"),
            "identical values (tests/test_segment_features.py)",
        ),
        (
            f"CellProfiler-grade features (cp-measure, {n_cp} before selection), per site, {size}",
            cp,
            ("one call per cell", "whole label image"),
            f"{cp[1] / max(rp[1], 1e-9):.0f}x the regionprops set's time per site",
        ),
    ):
        row = _row(name, "s/site", (labels[0], base), (labels[1], cand))
        row["ratio"] = round(base / cand, 2)  # lower s/site is better: the speed-up
        row["note"] = f"ratio = speed-up; {note}"
        rows.append(row)
    return rows


def bench_dask() -> list[dict]:
    """Whole-dataset measurement on dask: sites/s of the CellProfiler-grade set over the same
    sites with a LocalCluster of 2 worker processes against 1 (Parquet per plate, cluster
    start-up excluded)."""
    import shutil

    from cellutils import cluster, features, segment

    with tempfile.TemporaryDirectory() as tmp:
        _root, index = _cpjump1_index(tmp, n_compounds=6, size=160, sites=2)
        seg = segment.segment_index(
            index, Path(tmp) / "masks", "key", "AGP", "DNA", "classical", progress=False
        )
        meta = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
        rates = {}
        for n in (1, 2):
            client = cluster.get_client(n_workers=n, verbose=False)
            out = Path(tmp) / f"cp{n}"
            t0 = time.perf_counter()
            features.measure_dataset(
                index, seg, "key", CHANNELS, meta, "cellprofiler", out, client, progress=False
            )
            rates[f"{n} worker{'s' if n > 1 else ''}"] = len(index) / (time.perf_counter() - t0)
            cluster.close(client)
            shutil.rmtree(out)
    (b, bv), (c, cv) = rates.items()
    return [
        _row(
            f"dask: CellProfiler-grade features, {len(index)} sites of 160 px",
            "sites/s",
            (b, bv),
            (c, cv),
        )
        | {"note": f"LocalCluster, single-threaded workers; {os.cpu_count()} cores here"}
    ]


def bench_segmentation() -> list[dict]:
    """Segmentation speed, seconds per megapixel: cellpose (reports' settings, automatic
    diameter) against the classical backend, and each one's AP@0.5 against the simulator's
    ground-truth cells. The ratio is classical's speed-up."""
    from cellutils import segment
    from cellutils import synthetic as synth

    with tempfile.TemporaryDirectory() as tmp:
        root, index = _cpjump1_index(tmp, n_compounds=2)
        index = index.iloc[:4]
        images = [datasets_load(r) for _, r in index.iterrows()]
        truth = [synth.read_truth_masks(root, k)[0] for k in index.key]
    mpix = sum(im.shape[1] * im.shape[2] for im in images) / 1e6
    backends = ["classical"] + (["cellpose"] if segment.find_cellpose_weights() else [])
    segment.segment(images[0], 0, 1, backends[-1])  # warm-up: imports, model load
    secs, ap = {}, {}
    for b in backends:
        t0 = time.perf_counter()
        masks = [segment.segment(im, 0, 1, b).masks for im in images]
        secs[b] = (time.perf_counter() - t0) / mpix
        ap[b] = sum(
            segment.average_precision(t, m)["AP@0.5"] for t, m in zip(truth, masks, strict=True)
        ) / len(masks)
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
    row["note"] = (
        f"ratio = cellpose time / classical time (masks); AP@0.5 on the ground-truth cells: "
        f"cellpose {ap['cellpose']:.2f}, classical {ap['classical']:.2f}"
    )
    return [row, *_segmentation_real()]


def _segmentation_real() -> list[dict]:
    """The same on stardist's real nuclei (512 px, expert masks), cellpose at its default
    cell probability threshold (report 004's -5 scores far lower on sparse nuclei)."""
    from cellutils import realdata, segment

    if not realdata.available()["stardist"]:
        return []
    image, truth = realdata.stardist_nuclei()
    secs, ap = {}, {}
    for b, kw in (("cellpose", {"cellprob_threshold": 0.0}), ("classical", {})):
        t0 = time.perf_counter()
        masks = segment.segment(image[None], None, 0, b, **kw).masks
        secs[b] = time.perf_counter() - t0
        ap[b] = segment.average_precision(truth, masks)["AP@0.5"]
    row = _row(
        "segmentation, stardist's real nuclei (512 px)",
        "s/image",
        ("cellpose", secs["cellpose"]),
        ("classical", secs["classical"]),
    )
    row["ratio"] = round(secs["cellpose"] / secs["classical"], 2)
    row["note"] = (
        f"ratio = cellpose time / classical time; AP@0.5: cellpose (cellprob 0) "
        f"{ap['cellpose']:.2f}, classical {ap['classical']:.2f}"
    )
    return [row]


def datasets_load(row):
    from cellutils import datasets

    return datasets.load_site(row, ["AGP", "DNA"])


def bench_fullscale() -> list[dict]:
    """Each notebook's full-profile data path at real scale: peak RSS against 16 GB."""
    from benchmarks.fullscale import bench_fullscale as run

    return run()


BENCHMARKS = [
    bench_generation,
    bench_decoded_cache,
    bench_features,
    bench_dask,
    bench_segmentation,
    bench_segmentation_realdata,
    bench_fullscale,
]


def fullscale_table(rows: list[dict], source: str) -> str:
    """The full-scale rows as a markdown table (notebook, data size, peak memory, disk)."""
    lines = [
        f"<!-- generated by `make bench ONLY=fullscale` from {source}: edit benchmarks -->",
        "",
        "| notebook | at the real size | peak anonymous RSS (GB) | within 16 GB | disk for a "
        "full run (GB) | what ran |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name, _, size = r["benchmark"].removeprefix("full-scale data path ").partition(" ")
        lines.append(
            f"| {name} | {size.strip('()')} | {r['candidate_value']:.2f} | "
            f"{'yes' if r['within_budget'] else '**no**'} | {r['disk_gb']:.2f} | {r['note']} |"
        )
    return "\n".join(lines)


def update_scaling_doc(rows: list[dict], source: str, doc: Path | None = None) -> bool:
    """Replace the block between the full-scale markers of docs/scaling.md by the table of
    this run's full-scale rows (only when the run measured all of them); True if written."""
    from benchmarks.fullscale import PATHS

    full = [r for r in rows if r["benchmark"].startswith("full-scale data path")]
    if len(full) != len(PATHS):
        return False
    doc = doc or repo_root() / "docs" / "scaling.md"
    text = doc.read_text(encoding="utf-8")
    if text.count(FULLSCALE_START) != 1 or text.count(FULLSCALE_END) != 1:
        raise ValueError(f"{doc} must hold {FULLSCALE_START} and {FULLSCALE_END} once each")
    head, rest = text.split(FULLSCALE_START, 1)
    tail = rest.split(FULLSCALE_END, 1)[1]
    block = f"{FULLSCALE_START}\n{fullscale_table(full, source)}\n{FULLSCALE_END}"
    atomic_write_text(doc, head + block + tail, overwrite=True)
    return True


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
    if update_scaling_doc(rows, source=path.name):
        print("docs/scaling.md: the full-scale table now quotes this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
