"""Full-scale data paths: each notebook's full-profile input pipeline on an index of the real
dataset's size, run in its own process, reporting peak memory and disk.

The generator renders a small pool of sites at the real image size (RxRx1 at 512 px, the course
subset at 1080 x 1080 uint16, cell lines at 64 px); the index is then built at the real count
(29,568 HUVEC site-1 images; 2,867 subset sites; 16,501 cell-line samples; >= 400k cells)
with each row pointing at a pool file. What grows with the dataset (indexes, tables, caches,
crop stores) is built at full size; per-item work that does not change memory (decoding more
sites into a memory-mapped cache, more training batches, cellpose on more images) is capped,
and the disk a full run writes is computed by the code's own sizes and reported beside what the
capped run wrote.

Peak memory is sampled from ``/proc/self/status`` every 20 ms: ``RssAnon`` (memory that cannot
be given back: arrays, tensors, tables) is the row's value; the peak of ``VmRSS`` (which also
counts pages of memory-mapped cache files, reclaimable page cache) is in the note.

    python -m benchmarks.fullscale            # all rows, printed as JSON lines
    python -m benchmarks.fullscale 03 09      # some rows
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

BUDGET_GB = 16.0  # the goal: every notebook's data path within 16 GB on one GPU box
GB = 1e9


class PeakMemory:
    """Samples this process's RssAnon and VmRSS (Linux) in a thread; peaks in GB."""

    def __init__(self, every: float = 0.02):
        self.every, self.anon, self.total = every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> tuple[float, float]:
        fields = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    fields[key] = int(value.split()[0]) * 1024 / GB
        return fields.get("RssAnon", 0.0), fields.get("VmRSS", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            anon, total = self.now()
            self.anon, self.total = max(self.anon, anon), max(self.total, total)
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        anon, total = self.now()
        self.anon, self.total = max(self.anon, anon), max(self.total, total)


def _du(path: Path) -> int:
    """Bytes actually written under ``path`` (sparse files count what they hold)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _cycle(pool: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows whose path columns cycle through the pool's files."""
    return pool.iloc[np.arange(n) % len(pool)].reset_index(drop=True)


def _batches(ds, batch_size: int, n_batches: int, seed: int = 0) -> int:
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(seed)
    seen = 0
    for i, (_x, y) in enumerate(DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g)):
        seen += len(y)
        if i + 1 >= n_batches:
            break
    return seen


# --------------------------------------------------------------------------------------------
# Pools: a few sites at the real image size, written once per benchmark run
# --------------------------------------------------------------------------------------------


POOLS_OF = {  # the pools each notebook's row reads
    "01": ("cpjump1",),
    "02": ("cpjump1",),
    "03": ("rxrx1",),
    "04": ("lines",),
    "05": ("subset",),
    "06": ("subset", "seg"),
    "07": ("subset",),
    "08": ("subset", "seg"),
    "09": ("rxrx1",),
}


def make_pools(base: Path, names: Sequence[str] | None = None) -> dict[str, str]:
    """The pools the rows ``names`` (default: all) read, written under ``base``."""
    import tifffile

    from cellutils import datasets, segment, synthetic

    need = {p for n in (names or POOLS_OF) for p in POOLS_OF[n]}
    pools = {"base": str(base)}
    if "rxrx1" in need:
        pools["rxrx1"] = str(
            datasets.write_rxrx1(
                base / "rxrx1",
                n_sirnas=8,
                n_positive=0,
                experiments={"HUVEC": 1},
                n_test=0,
                sites=1,
                size=512,
                seed=5,
            )
        )
    if need & {"subset", "seg"}:
        pools["subset"] = str(
            datasets.write_cpjump1_subset(
                base / "subset",
                n_single=6,
                n_double=0,
                n_dmso_wells=2,
                sites=2,
                size=1080,
                upper_case_fraction=0.0,
                seed=5,
            )
        )
    if "lines" in need:
        pools["lines"] = str(
            datasets.write_cell_lines(base / "lines", n_train=64, n_test=0, size=64, seed=5)
        )
    if "cpjump1" in need:
        pools["cpjump1"] = str(
            datasets.write_cpjump1(
                base / "cpjump1",
                plates=("BR00116991",),
                n_compounds=2,
                n_positive=0,
                n_dmso_wells=1,
                sites=1,
                size=1080,
                seed=5,
            )
        )
    if "seg" in need:
        # masks and flows from the generator's ground truth (what a good segmentation returns;
        # ~90 cells per site, the real subset has ~160): the data paths after segmentation
        sub = Path(pools["subset"])
        index = datasets.read_cpjump1_subset(sub)
        (base / "seg").mkdir()
        rows = []
        for well, site, core in zip(
            index.Metadata_Well, index.Metadata_Site, index.core, strict=True
        ):
            masks = synthetic.read_truth_masks(sub, f"BR00116991_{well}_{site}")[0]
            mpath, fpath = base / "seg" / f"{core}_masks.tif", base / "seg" / f"{core}_flows.tif"
            tifffile.imwrite(mpath, masks, compression="zlib")
            tifffile.imwrite(
                fpath, segment.masks_to_flows(masks).astype(np.float16), compression="zlib"
            )
            rows.append(
                {
                    "core": core,
                    "path_masks": mpath,
                    "path_flows": fpath,
                    "n_cells": int(masks.max()),
                }
            )
        pd.DataFrame(rows).to_csv(base / "seg.csv", index=False)
        pools["seg"] = str(base / "seg.csv")
    return pools


# --------------------------------------------------------------------------------------------
# One function per notebook's full-profile data path; each returns (row fields, note)
# --------------------------------------------------------------------------------------------


CPJUMP1_SITES = 3456  # one plate (BR00116991): 384 wells x 9 sites, 1080 x 1080, 16 bit
CELLS_PER_SITE = 160  # the real plate's cells per site (docs/scaling.md)


def _cpjump1_plate(pools: dict) -> pd.DataFrame:
    """The pool's sites cycled to a whole real plate, each row with its own key."""
    from cellutils import datasets

    pool = datasets.read_cpjump1(pools["cpjump1"])
    index = _cycle(pool, CPJUMP1_SITES)
    index["key"] = [f"site{i:05d}" for i in range(len(index))]
    return index


def path_01(pools: dict, work: Path) -> dict:
    """01: the whole plate segmented (classical masks, report 004's AGP + DNA; cellpose when
    its weights are here). ``segment_index`` writes masks per site and keeps one row per site,
    so its memory is one site's whatever the plate size: 4 sites are segmented here, in this
    process (on dask each worker process holds one such site at a time); the index and the
    disk are the whole plate's."""
    from cellutils import segment

    index = _cpjump1_plate(pools)
    backend = "cellpose" if segment.find_cellpose_weights() else "classical"
    done = segment.segment_index(
        index.iloc[:4], work / "seg", "key", "AGP", "DNA", backend, progress=False, flows=False
    )
    per_site = _du(work / "seg") / len(done)
    return {
        "n": f"{len(index):,} sites",
        "disk_gb": per_site * len(index) / GB,
        "written_gb": _du(work) / GB,
        "note": f"{backend} masks of 4 sites of 1080 px ({done.n_cells.mean():.0f} cells each), "
        "in this process; disk = masks of every site",
    }


def path_02(pools: dict, work: Path) -> dict:
    """02: report 004's per-cell features (regionprops set, five channels) measured on 2 real-
    size sites (the generator's true cells as masks) by the notebook's per-site function; the
    cell table then built at the plate's size (3,456 sites x 160 cells), cleaned and profiled
    as the notebook does (median per well, DMSO-normalised, selected): what grows with the
    plate is the table."""
    import tifffile

    from cellutils import datasets, features, synthetic

    index = _cpjump1_plate(pools)
    (work / "seg").mkdir()
    seg = []
    for key, truth_key in zip(
        index.key[:2], datasets.cpjump1_site_key(index.iloc[:2]), strict=True
    ):
        path = work / "seg" / f"{key}_masks.tif"
        tifffile.imwrite(path, synthetic.read_truth_masks(pools["cpjump1"], truth_key)[0])
        seg.append({"key": key, "path_masks": path})
    seg = pd.DataFrame(seg)
    meta = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_pert_iname"]
    measured = features.measure_dataset(
        index.iloc[:2], seg, "key", ["DNA", "ER", "RNA", "AGP", "Mito"], meta, progress=False
    )
    n_cells = CPJUMP1_SITES * CELLS_PER_SITE
    cells = _cycle(measured, n_cells)
    plate = np.array([f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)])
    wells = plate[np.arange(n_cells) // (CELLS_PER_SITE * 9)]  # 384 wells x 9 sites
    cells["Metadata_Well"] = wells
    dmso = np.char.endswith(wells, "01") | np.char.endswith(wells, "24")
    cells["Metadata_pert_iname"] = np.where(dmso, "DMSO", np.char.add("cmpd-", wells))
    feats = features.feature_columns(cells)
    rng = np.random.default_rng(0)  # cycled cells differ a little, as real cells do
    for f in feats:
        values = cells[f].to_numpy(np.float64)
        cells[f] = values * rng.normal(1, 0.1, n_cells)
    cells, _ = features.clean_cells(cells)
    profiles = features.make_profiles(cells)
    return {
        "n": f"{n_cells:,} cells",
        "disk_gb": cells.memory_usage(deep=True).sum() / GB,
        "written_gb": _du(work) / GB,
        "note": f"{len(measured)} cells measured on 2 sites, table of {cells.shape[1]} columns "
        f"at the plate's size, {len(profiles)} well profiles; disk = the table in memory "
        "(Parquet is smaller)",
    }


def path_03(pools: dict, work: Path) -> dict:
    """03: 24 HUVEC experiments x 4 plates x 308 wells, site 1, six 512-px PNGs; decoded to a
    memory-mapped cache at 320 px (512 sites decoded), control-normalised, batches of 32."""
    from cellutils import datasets, torchdata

    pool = datasets.read_rxrx1(pools["rxrx1"], labels=False)
    exps = [f"HUVEC-{e:02d}" for e in range(1, 25)]
    keys = pd.MultiIndex.from_product(
        [exps, [1, 2, 3, 4], range(308)], names=["experiment", "plate", "w"]
    ).to_frame(index=False)
    index = pd.concat([keys, _cycle(pool.drop(columns=["experiment", "plate"]), len(keys))], axis=1)
    index["well_type"] = np.where(keys.w < 31, "negative_control", "treatment")
    size, decoded = 320, 512
    part = index.iloc[:decoded]
    images = torchdata.decode(part, size=size, data_root=work, verbose=False)
    # the whole cache (sparse: only the decoded sites are written) for the channel statistics
    full = np.lib.format.open_memmap(
        work / "full.npy", "w+", images.dtype, (len(index), 6, size, size)
    )
    full[:decoded] = images
    full.flush()
    train = np.flatnonzero(index.experiment.isin(exps[:19]).to_numpy())  # as 03: 19 of 24 exps
    stats = torchdata.ChannelStats.fit(full, train)  # up to 2,000 training images
    norm = torchdata.ControlNormalised(images, part, part.well_type != "treatment")
    ds = torchdata.ImageDataset(norm, range(len(part)), np.zeros(len(part), int), stats)
    seen = _batches(ds, 32, 12)
    planned = len(index) * 6 * size * size
    return {
        "n": f"{len(index):,} sites",
        "disk_gb": planned / GB,
        "written_gb": _du(work) / GB,
        "note": f"{decoded} sites decoded; channel statistics on 2,000 of {len(train):,} "
        f"training images of the full-size cache (streamed; held whole as float64 they were "
        f"{2000 * 6 * size * size * 8 * 2 / GB:.1f} GB); {seen} samples in batches of 32",
    }


def path_04(pools: dict, work: Path) -> dict:
    """04: 9,632 training + 6,869 test samples of three 64-px PNGs, all decoded, batches of 64."""
    from cellutils import datasets, torchdata

    pool = datasets.read_cell_lines(pools["lines"])
    index = _cycle(pool, 9632 + 6869)
    index["filename"] = [f"{i:05d}" for i in range(len(index))]
    images = torchdata.decode(index, ["blue", "red", "yellow"], 64, data_root=work, verbose=False)
    stats = torchdata.ChannelStats.fit(images, range(9632))
    ds = torchdata.ImageDataset(images, range(9632), np.zeros(9632, int), stats)
    seen = _batches(ds, 64, 20)
    return {
        "n": f"{len(index):,} samples",
        "disk_gb": _du(work) / GB,
        "written_gb": _du(work) / GB,
        "note": f"all decoded, {seen} samples in batches of 64",
    }


def _subset_index(pools: dict) -> pd.DataFrame:
    from cellutils import datasets

    pool = datasets.read_cpjump1_subset(pools["subset"])
    index = _cycle(pool, 2867)
    index["core"] = [f"s{i:05d}" for i in range(len(index))]
    return index


def path_05(pools: dict, work: Path) -> dict:
    """05: 2,867 sites of 1080 x 1080 uint16, all decoded at 128 px, batches of 16 with flips,
    rotation and jitter."""
    from cellutils import torchdata

    index = _subset_index(pools)
    images = torchdata.decode(index, size=128, data_root=work, verbose=False)
    stats = torchdata.ChannelStats.fit(images, range(len(index)))
    ds = torchdata.ImageDataset(
        images,
        range(len(index)),
        np.zeros(len(index), int),
        stats,
        torchdata.augmentation("flips_rotation_jitter", 128),
    )
    seen = _batches(ds, 16, 40)
    return {
        "n": "2,867 sites",
        "disk_gb": _du(work) / GB,
        "written_gb": _du(work) / GB,
        "note": f"all decoded, {seen} samples in batches of 16",
    }


def _seg_bytes_per_site(pools: dict) -> float:
    seg = pd.read_csv(pools["seg"])
    return float(
        np.mean(
            [
                _du(Path(p)) + _du(Path(q))
                for p, q in zip(seg.path_masks, seg.path_flows, strict=True)
            ]
        )
    )


def path_06(pools: dict, work: Path) -> dict:
    """06: cellpose (report 003's settings) on one 1080-px site, then 2,867 sites' images and
    masks decoded at 128 px, two-channel batches of 32."""
    from cellutils import segment, torchdata

    index = _subset_index(pools)
    backend = "cellpose" if segment.find_cellpose_weights() else "classical"
    one = segment.segment_index(
        index.iloc[:1],
        work / "seg",
        "core",
        None,
        "median",
        backend,
        progress=False,
        **(segment.REPORT_003 if backend == "cellpose" else {}),
    )
    masks_pool = pd.read_csv(pools["seg"]).path_masks
    images = torchdata.decode(index, size=128, data_root=work, verbose=False)
    masks = torchdata.decode_masks(_cycle(masks_pool.to_frame(), len(index)).path_masks, 128)
    x = np.concatenate([images.astype(np.float32), masks.astype(np.float32)], axis=1)  # as 06
    ds = torchdata.ImageDataset(x, range(len(index)), np.zeros(len(index), int), None)
    seen = _batches(ds, 32, 20)
    planned = _du(work / "cache") + len(index) * _seg_bytes_per_site(pools)
    return {
        "n": "2,867 sites",
        "disk_gb": planned / GB,
        "written_gb": _du(work) / GB,
        "note": f"{backend} on 1 site ({int(one.n_cells.iloc[0])} cells); {seen} samples in "
        "batches of 32; disk = cache + masks and flows of every site",
    }


def path_07(pools: dict, work: Path) -> dict:
    """07: 2,867 sites decoded at 224 px, ImageNet-normalised batches of 32 through a frozen
    ResNet-50 (random weights: memory is the same) for 4 batches."""
    import torch
    import torchvision

    from cellutils import torchdata

    index = _subset_index(pools)
    images = torchdata.decode(index, size=224, data_root=work, verbose=False)
    stats = torchdata.ChannelStats.imagenet(images, range(len(index)))
    ds = torchdata.ImageDataset(images, range(len(index)), np.zeros(len(index), int), stats)
    model = torchvision.models.resnet50(weights=None).eval()
    seen = 0
    from torch.utils.data import DataLoader

    with torch.no_grad():
        for i, (x, _y) in enumerate(DataLoader(ds, batch_size=32)):
            model(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)
            seen += len(x)
            if i + 1 >= 4:
                break
    return {
        "n": "2,867 sites",
        "disk_gb": _du(work) / GB,
        "written_gb": _du(work) / GB,
        "note": f"{seen} images through ResNet-50 in batches of 32",
    }


def path_08(pools: dict, work: Path) -> dict:
    """08: >= 400k cells: crops of 24 sites built by ``cells.build_cells`` into its memory-mapped
    store (64 px), the store then sized for every cell (sparse file), the full cell table, and
    batches of 512 pairs of 224-px crops + features drawn from all cells."""
    from cellutils import cells

    index = _subset_index(pools)
    seg = pd.read_csv(pools["seg"])
    seg = _cycle(seg, len(index)).assign(core=index.core.to_numpy())
    built = cells.build_cells(
        index.iloc[:24],
        seg,
        "core",
        ["Metadata_pert_iname"],
        size=224,
        max_cells_per_image=None,
        progress=False,
        store=work / "built",
        store_size=64,
    )
    per_site = len(built.table) / 24
    n_cells = max(400_000, int(per_site * len(index)))
    table = _cycle(built.table, n_cells)
    shape = (n_cells, 4, 64, 64)
    stores = []
    for name, src in (("mask", built.mask_crops), ("flow", built.flow_crops)):
        mm = np.memmap(work / f"{name}.f16", np.float16, "w+", shape=shape)  # sparse until written
        mm[: len(src)] = src
        mm.flush()
        stores.append(mm)
    full = cells.CellSet(table, stores[0], stores[1], 224)
    feats = full.table[full.feature_columns].to_numpy(np.float32)
    ds = cells.CellDataset(
        full, np.arange(n_cells), np.zeros(n_cells, int), feats.mean(0), feats.std(0) + 1e-6
    )
    seen = _batches(ds, 512, 4)
    planned = 2 * np.prod(shape) * 2 + len(index) * _seg_bytes_per_site(pools)
    return {
        "n": f"{n_cells:,} cells",
        "disk_gb": planned / GB,
        "written_gb": _du(work) / GB,
        "note": f"{per_site:.0f} cells per pool site; {seen} cells in batches of 512; disk = "
        "crop store for every cell + masks and flows",
    }


RXRX1_SITE1 = 62_755  # RxRx1's site-1 images (125,510 sites, 2 per well): what 09 embeds


def path_09(pools: dict, work: Path) -> dict:
    """09: every RxRx1 site-1 image decoded at 64 px (512 decoded into the cache; the full-size
    cache a sparse file), channel statistics, Lite0 embeddings (16 batches of 64 run; the
    (62,755, 1280) matrix allocated whole), standardised and PCA'd at full size as
    ``evaluate.embed_2d`` does; t-SNE itself on 4,000 rows (its neighbour graph grows
    linearly: ~90 neighbours per point)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from cellutils import datasets, embeddings, evaluate, torchdata

    pool = datasets.read_rxrx1(pools["rxrx1"], labels=False)
    index = _cycle(pool, RXRX1_SITE1)
    index["experiment"] = [f"e{i // 1108:03d}" for i in range(len(index))]
    decoded, size = 512, 64
    images = torchdata.decode(index.iloc[:decoded], size=size, data_root=work, verbose=False)
    full = np.lib.format.open_memmap(
        work / "full.npy", "w+", images.dtype, (len(index), 6, size, size)
    )
    full[:decoded] = images
    full.flush()
    stats = torchdata.ChannelStats.fit(full, np.arange(len(index)))
    lite0 = next(
        iter(embeddings.available_backbones(["efficientnet_lite0"], verbose=False).values())
    )
    part = embeddings.extract(full[: 16 * 64], stats, *lite0, device=None)
    emb = _cycle(pd.DataFrame(part), len(index)).to_numpy(np.float32)
    x = StandardScaler().fit_transform(emb)
    x = PCA(50, random_state=0).fit_transform(x)
    xy = evaluate.embed_2d(emb[:4000], "tsne", 0)
    return {
        "n": f"{len(index):,} sites",
        "disk_gb": len(index) * 6 * size * size / GB,
        "written_gb": _du(work) / GB,
        "note": f"{decoded} sites decoded; {len(part)} embedded, embeddings {emb.shape} "
        f"standardised + PCA at full size, t-SNE on {len(xy):,} rows",
    }


PATHS = {
    "01": path_01,
    "02": path_02,
    "03": path_03,
    "04": path_04,
    "05": path_05,
    "06": path_06,
    "07": path_07,
    "08": path_08,
    "09": path_09,
}


def run_one(name: str, pools: dict) -> dict:
    """Run notebook ``name``'s data path in this process; its peak memory and disk."""
    with tempfile.TemporaryDirectory(dir=pools["base"]) as tmp, PeakMemory() as mem:
        t0 = time.perf_counter()
        out = PATHS[name](pools, Path(tmp))
        out["seconds"] = time.perf_counter() - t0
    return out | {"anon_gb": mem.anon, "rss_gb": mem.total}


def bench_fullscale(names: list[str] | None = None) -> list[dict]:
    """One row per notebook (or those in ``names``): peak anonymous RSS of its full-profile
    data path at real scale, each in a fresh process, one after the other, against the 16 GB
    budget (ratio = budget / peak; ``within_budget`` says whether the peak is at most 16 GB)."""
    rows = []
    base = Path(os.environ.get("CELLUTILS_BENCH_TMP", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        t0 = time.perf_counter()
        pools = make_pools(Path(tmp), names)
        print(f"  pools at real image size written in {time.perf_counter() - t0:.0f} s", flush=True)
        for name in names or PATHS:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.fullscale", "--one", name, json.dumps(pools)],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise RuntimeError(f"full-scale data path {name} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {name}: {r}", flush=True)
            rows.append(
                {
                    "benchmark": f"full-scale data path {name} ({r['n']})",
                    "baseline": "budget",
                    "candidate": "peak anonymous RSS",
                    "unit": "GB peak RSS",
                    "baseline_value": BUDGET_GB,
                    "candidate_value": round(r["anon_gb"], 2),
                    "ratio": round(BUDGET_GB / max(r["anon_gb"], 1e-3), 2),
                    "within_budget": bool(r["anon_gb"] <= BUDGET_GB),
                    "disk_gb": round(r["disk_gb"], 2),
                    "written_gb": round(r["written_gb"], 2),
                    "note": f"{r['note']}; peak VmRSS incl. mapped cache pages "
                    f"{r['rss_gb']:.2f} GB; {r['seconds']:.0f} s; disk for a full run "
                    f"{r['disk_gb']:.2f} GB (this run wrote {r['written_gb']:.2f} GB)",
                }
            )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(run_one(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        for row in bench_fullscale(sys.argv[1:] or None):
            print(json.dumps(row))
