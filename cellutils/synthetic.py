"""The synthetic generator's engine: the simulator's cells rendered into files, site by site,
with ground truth beside them. Each layout's writer lives in its own module of
``cellutils.datasets`` (``write_rxrx1``, ``write_cpjump1``, ``write_cpjump1_subset``,
``write_cell_lines``) and builds ``SiteJob`` records that this module renders.

Ground truth lives in ``<root>/ground_truth/``: ``sites.csv`` (perturbation, target, activity,
hidden test labels, cell count, nuisance), ``cells.csv`` (per-cell latent truth) and
``masks/<key>_cells.tif`` / ``<key>_nuclei.tif``. A dataset is written into a temporary folder
and renamed when complete; an existing folder is never overwritten. This engine never imports
the layouts (`cellutils.catalog.make_default_data` writes them all).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile
from tqdm.auto import tqdm

from cellutils import simulate as sim

GENERATOR_VERSION = 1
# The simulator's version: bump it when what the generator draws or renders changes (v2: the
# CPJUMP1 position effect), so that data of an older simulator gets its own folder.
VERSION = 2

MANIFEST = "synthetic.json"

# Each real channel's stain -> the simulator's compartment (AGP = actin + Golgi/membrane).
# The channel order of each layout is its module's ``CHANNELS`` table.
SIM_STAIN = {
    "Hoechst": "DNA",
    "ConA": "ER",
    "Phalloidin": "ACTIN",
    "Syto14": "RNA",
    "MitoTracker": "MITO",
    "WGA": "GOLGI",
    "Mito": "MITO",
    "AGP": "AGP",
    "RNA": "RNA",
    "ER": "ER",
    "DNA": "DNA",
    "Brightfield": "BF",
    "HighZBF": "BF_HI",
    "LowZBF": "BF_LO",
}
# Brightness of each channel relative to DNA, so composites look like the real ones.
_BRIGHT = {
    "DNA": 1.0,
    "ER": 0.9,
    "ACTIN": 0.9,
    "RNA": 0.8,
    "MITO": 0.8,
    "GOLGI": 0.9,
    "AGP": 0.9,
    "TUBULIN": 0.9,
    "PROTEIN": 0.7,
    "BF": 1.0,
    "BF_HI": 1.0,
    "BF_LO": 1.0,
}


# --------------------------------------------------------------------------------------------
# The engine: one job per site, rendered and written in worker processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteJob:
    key: str  # unique within the dataset; names the ground-truth masks
    line: str
    pert: int  # row of the Perturbations table
    experiment: str
    plate: str
    well: str
    site: int
    channels: tuple[str, ...]  # stains (or AGP / BF / BF_HI / BF_LO / PROTEIN) to acquire
    paths: tuple[str, ...]  # relative output path per channel, or one path when median
    median: bool = False  # write the median of the channels as one image


@dataclass(frozen=True)
class Imaging:
    size: int = 128
    scale: float = 0.35  # pixels per pixel of a 512-px reference site
    dtype: str = "uint8"
    counts: float = 60.0  # grey values per unit of stain
    offset: float = 0.0
    photons: float = 300.0
    batch_strength: float = 1.0
    illumination: float = 0.25
    # latent morphology shifts of the context, in units of a perturbation's typical effect
    # (``simulate.context_shift``): what a split sharing experiments or wells can memorise
    experiment_sd: float = 0.0
    plate_sd: float = 0.0
    well_sd: float = 0.0
    position_sd: float = 0.0  # keyed by well position: shared by that well on every plate


def _channel(spec: str, site: sim.Site, rng: np.random.Generator, protein: str) -> np.ndarray:
    if spec == "AGP":
        return 0.6 * site.stains["ACTIN"] + 0.6 * site.stains["GOLGI"]
    if spec == "PROTEIN":
        return site.stains[protein]
    if spec in ("BF", "BF_HI", "BF_LO"):
        return sim.brightfield(site, rng, focus={"BF": 0.0, "BF_HI": 2.5, "BF_LO": -2.5}[spec])
    return site.stains[spec]


def _run_job(
    job: SiteJob,
    root: Path,
    seed: int,
    effects: np.ndarray,
    imaging: Imaging,
    density: dict[str, float],
) -> tuple[dict, pd.DataFrame]:
    rng = sim.key_rng(seed, "site", job.key)
    line = sim.cell_line(job.line)
    edge = sim.is_edge_well(job.well)
    dens = density.get(job.well, 1.0) * (0.85 if edge else 1.0)
    shift = sim.context_shift(
        seed,
        job.experiment,
        job.plate,
        job.well,
        imaging.experiment_sd,
        imaging.plate_sd,
        imaging.well_sd,
        imaging.position_sd,
    )
    site = sim.render_site(rng, line, effects[job.pert] + shift, imaging.size, imaging.scale, dens)
    protein = sim.STAINS[int(rng.integers(1, len(sim.STAINS)))]
    stack = np.stack([_channel(c, site, rng, protein) * _BRIGHT.get(c, 1.0) for c in job.channels])
    gain = sim.channel_gain(
        seed, len(job.channels), job.experiment, job.plate, job.well, imaging.batch_strength
    )
    bf = np.array([c.startswith("BF") for c in job.channels])
    gain[bf] = 1.0  # transmitted light: no stain gain
    illum = sim.illumination(imaging.size, rng, imaging.illumination)
    raw = sim.acquire(stack, rng, gain, illum, photons=imaging.photons)
    info = np.iinfo(imaging.dtype)
    img = np.clip(np.rint(raw * imaging.counts + imaging.offset), 0, info.max).astype(imaging.dtype)
    if job.median:
        img = np.median(img, axis=0, keepdims=True).astype(imaging.dtype)
    for arr, rel in zip(img, job.paths, strict=False):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".png":
            iio.imwrite(path, arr)
        else:
            tifffile.imwrite(path, arr, compression="zlib")
    masks = root / "ground_truth" / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(masks / f"{job.key}_cells.tif", site.cells, compression="zlib")
    tifffile.imwrite(masks / f"{job.key}_nuclei.tif", site.nuclei, compression="zlib")
    cells = site.cell_table.copy()
    cells.insert(0, "key", job.key)
    row = {
        "key": job.key,
        "cell_line": job.line,
        "experiment": job.experiment,
        "plate": job.plate,
        "well": job.well,
        "site": job.site,
        "edge_well": edge,
        "n_cells": len(cells),
        "protein": protein,
    }
    row.update({f"gain_{c}": float(g) for c, g in zip(job.channels, gain, strict=False)})
    return row, cells


def _run_chunk(jobs: list[SiteJob], **kw) -> list[tuple[dict, pd.DataFrame]]:
    return [_run_job(j, **kw) for j in jobs]


def default_jobs() -> int:
    """Worker processes for generation: ``$CELLUTILS_JOBS``, else all cores (at most 8)."""
    return int(os.environ.get("CELLUTILS_JOBS", min(os.cpu_count() or 1, 8)))


def render_all(
    jobs: list[SiteJob],
    root: Path,
    seed: int,
    perts: sim.Perturbations,
    imaging: Imaging,
    density: dict[str, float] | None,
    n_jobs: int | None,
    desc: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    kw = dict(root=root, seed=seed, effects=perts.effects, imaging=imaging, density=density or {})
    n_jobs = n_jobs or default_jobs()
    chunks = [jobs[i : i + 16] for i in range(0, len(jobs), 16)]
    results: list[tuple[dict, pd.DataFrame]] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="site", leave=False, disable=None, mininterval=2)
    if n_jobs <= 1 or len(chunks) <= 1:
        for ch in chunks:
            results += _run_chunk(ch, **kw)
            bar.update(len(ch))
    else:
        with ProcessPoolExecutor(n_jobs) as pool:
            for ch, res in zip(chunks, pool.map(partial(_run_chunk, **kw), chunks), strict=False):
                results += res
                bar.update(len(ch))
    bar.close()
    sites = pd.DataFrame([r for r, _ in results])
    table = perts.table()
    pert_of = {j.key: j.pert for j in jobs}
    idx = sites.key.map(pert_of)
    sites.insert(1, "perturbation", table.perturbation.to_numpy()[idx])
    sites.insert(2, "target", table.target.to_numpy()[idx])
    sites.insert(3, "active", table.active.to_numpy()[idx])
    sites.insert(4, "pert_kind", table.kind.to_numpy()[idx])
    cells = pd.concat([c for _, c in results], ignore_index=True)
    return sites, cells


class Staging:
    """Write into ``<root>.partial``; rename onto ``root`` only when the dataset is complete."""

    def __init__(self, root: str | os.PathLike, params: dict):
        self.root = Path(root).expanduser().resolve()
        self.params = params
        self.tmp = self.root.with_name(self.root.name + ".partial")

    def existing(self) -> bool:
        """True when ``root`` already holds this very dataset; raise if it holds another."""
        manifest = self.root / MANIFEST
        if not self.root.exists():
            return False
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("params") == json.loads(json.dumps(self.params)):
                return True
            raise FileExistsError(
                f"{self.root} holds a synthetic dataset made with other parameters "
                f"({manifest}); choose another folder or delete that one yourself."
            )
        raise FileExistsError(
            f"{self.root} exists and is not a synthetic dataset written by cellutils; "
            "refusing to write into it. Choose another folder."
        )

    def __enter__(self) -> Path:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # our own leftover from an interrupted run
        self.tmp.mkdir(parents=True)
        self.t0 = time.perf_counter()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        manifest = {
            "generator": "cellutils.synthetic",
            "version": GENERATOR_VERSION,
            "params": self.params,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(self.tmp, self.root)


def write_truth(
    root: Path, sites: pd.DataFrame, cells: pd.DataFrame, perts: sim.Perturbations
) -> None:
    gt = root / "ground_truth"
    gt.mkdir(exist_ok=True)
    sites.to_csv(gt / "sites.csv", index=False)
    cells.round(4).to_csv(gt / "cells.csv", index=False)
    table = perts.table()
    effects = pd.DataFrame(perts.effects.round(5), columns=[f"effect_{n}" for n in sim.LATENT])
    pd.concat([table, effects], axis=1).to_csv(gt / "perturbations.csv", index=False)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_SYL1 = ["ba", "da", "fe", "ga", "ke", "lo", "ma", "ne", "pa", "ri", "so", "ta", "vi", "xe", "zo"]
_SYL2 = ["ci", "do", "fa", "li", "mo", "na", "pe", "ra", "se", "ti", "vo", "zu"]
_SUFFIX = [
    "tinib",
    "mab",
    "stat",
    "zole",
    "parin",
    "cillin",
    "mide",
    "lol",
    "pril",
    "sartan",
    "vir",
    "platin",
    "rubicin",
    "dronate",
    "setron",
]
GENE_SYMBOLS = [
    "EGFR",
    "KDR",
    "MTOR",
    "PIK3CA",
    "AKT1",
    "BRAF",
    "MAP2K1",
    "CDK4",
    "CDK2",
    "AURKA",
    "AURKB",
    "PLK1",
    "HDAC1",
    "HDAC6",
    "TUBB",
    "TOP1",
    "TOP2A",
    "HSP90AA1",
    "PARP1",
    "BRD4",
    "JAK2",
    "SRC",
    "ABL1",
    "FLT3",
    "KIT",
    "MET",
    "ALK",
    "ROCK1",
    "GSK3B",
    "PRKCA",
    "PTGS2",
    "ADRB2",
    "DRD2",
    "HTR2A",
    "CHRM1",
    "SLC6A4",
    "NR3C1",
    "ESR1",
    "AR",
    "PPARG",
    "RXRA",
    "VDR",
    "ATP1A1",
    "KCNH2",
    "SCN5A",
    "CACNA1C",
    "GABRA1",
    "OPRM1",
    "HMGCR",
    "DHFR",
    "TYMS",
    "RRM1",
    "POLA1",
    "PSMB5",
    "VCP",
    "MDM2",
    "BCL2",
    "MCL1",
    "XIAP",
    "CASP3",
    "NAMPT",
    "IDH1",
    "EZH2",
    "DNMT1",
]


def drug_names(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct, readable, made-up compound names (e.g. ``kelitinib``)."""
    rng = sim.key_rng(seed, "drug-names")
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = rng.choice(_SYL1) + rng.choice(_SYL2) + rng.choice(_SUFFIX)
        if name not in seen:
            seen.add(name)
            names.append(str(name))
    return names


def gene_names(targets: list[str]) -> list[str]:
    """Map generated target ids (GENE001 ...) to real-looking gene symbols, stably."""
    out = []
    for t in targets:
        if t.startswith("GENE"):
            i = int(t[4:]) - 1
            sym = GENE_SYMBOLS[i % len(GENE_SYMBOLS)]
            out.append(sym if i < len(GENE_SYMBOLS) else f"{sym}{i // len(GENE_SYMBOLS) + 1}")
        else:
            out.append(t)
    return out


def well_name(row: int, col: int) -> str:
    """0-based row, 1-based column -> ``B03``."""
    return f"{string.ascii_uppercase[row]}{col:02d}"


# --------------------------------------------------------------------------------------------
# The default data of every notebook
# --------------------------------------------------------------------------------------------


def load_manifest(root: str | os.PathLike) -> dict:
    """The generator parameters of a synthetic dataset, or {} for a real one."""
    path = Path(root) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def read_truth(root: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Ground-truth tables of a synthetic dataset (sites, cells, perturbations)."""
    gt = Path(root) / "ground_truth"
    if not gt.is_dir():
        raise FileNotFoundError(f"{root} has no ground_truth/ folder: it is not synthetic data.")
    return {p.stem: pd.read_csv(p, keep_default_na=False) for p in sorted(gt.glob("*.csv"))}


def read_truth_masks(root: str | os.PathLike, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth (cells, nuclei) instance masks of site ``key``."""
    masks = Path(root) / "ground_truth" / "masks"
    return (
        tifffile.imread(masks / f"{key}_cells.tif"),
        tifffile.imread(masks / f"{key}_nuclei.tif"),
    )


__all__ = [
    "MANIFEST",
    "Imaging",
    "SiteJob",
    "Staging",
    "drug_names",
    "gene_names",
    "load_manifest",
    "read_truth",
    "read_truth_masks",
    "render_all",
    "well_name",
    "write_truth",
]
