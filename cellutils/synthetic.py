"""Write synthetic datasets in the real on-disk layouts, with ground truth beside them.

Four layouts (``docs/datasets.md``), each read back by the real readers in
``cellutils.datasets``:

- :func:`write_rxrx1`            RxRx1, Kaggle or rxrx.ai form, 6 PNG channels per site
- :func:`write_cpjump1`          CPJUMP1, 8 TIFF channels, load_data CSV, platemap, metadata
- :func:`write_cpjump1_subset`   the course subset: one median-aggregated TIFF per site +
                                 ``metadata_BR00116991.csv`` (DMSO-heavy class balance)
- :func:`write_cell_lines`       HPA-style nine cell lines, blue/red/yellow/green PNGs

Ground truth lives in ``<root>/ground_truth/``: ``sites.csv`` (perturbation, target, activity,
hidden test labels, cell count, nuisance), ``cells.csv`` (per-cell latent truth) and
``masks/<key>_cells.tif`` / ``<key>_nuclei.tif``. A dataset is written into a temporary folder
and renamed when complete; an existing folder is never overwritten.
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
from cellutils.datasets import CPJUMP1_CHANNELS, RXRX1_CHANNELS

GENERATOR_VERSION = 1
MANIFEST = "synthetic.json"

# Each real channel's stain -> the simulator's compartment (AGP = actin + Golgi/membrane).
# Channel order comes from the readers' tables in cellutils.datasets (one place).
SIM_STAIN = {"Hoechst": "DNA", "ConA": "ER", "Phalloidin": "ACTIN", "Syto14": "RNA",
             "MitoTracker": "MITO", "WGA": "GOLGI", "Mito": "MITO", "AGP": "AGP", "RNA": "RNA",
             "ER": "ER", "DNA": "DNA", "Brightfield": "BF", "HighZBF": "BF_HI", "LowZBF": "BF_LO"}
RXRX1_SIM = tuple(SIM_STAIN[v] for v in RXRX1_CHANNELS.values())  # w1..w6
CPJUMP1_SIM = tuple(SIM_STAIN[v] for v in CPJUMP1_CHANNELS.values())  # ch1..ch8
HPA_CHANNELS = {"blue": "DNA", "red": "TUBULIN", "yellow": "ER", "green": "PROTEIN"}
# Brightness of each channel relative to DNA, so composites look like the real ones.
_BRIGHT = {"DNA": 1.0, "ER": 0.9, "ACTIN": 0.9, "RNA": 0.8, "MITO": 0.8, "GOLGI": 0.9,
           "AGP": 0.9, "TUBULIN": 0.9, "PROTEIN": 0.7, "BF": 1.0, "BF_HI": 1.0, "BF_LO": 1.0}


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


def _channel(spec: str, site: sim.Site, rng: np.random.Generator, protein: str) -> np.ndarray:
    if spec == "AGP":
        return 0.6 * site.stains["ACTIN"] + 0.6 * site.stains["GOLGI"]
    if spec == "PROTEIN":
        return site.stains[protein]
    if spec in ("BF", "BF_HI", "BF_LO"):
        return sim.brightfield(site, rng, focus={"BF": 0.0, "BF_HI": 2.5, "BF_LO": -2.5}[spec])
    return site.stains[spec]


def _run_job(job: SiteJob, root: Path, seed: int, effects: np.ndarray, imaging: Imaging,
             density: dict[str, float]) -> tuple[dict, pd.DataFrame]:
    rng = sim.key_rng(seed, "site", job.key)
    line = sim.cell_line(job.line)
    edge = sim.is_edge_well(job.well)
    dens = density.get(job.well, 1.0) * (0.85 if edge else 1.0)
    shift = sim.context_shift(seed, job.experiment, job.plate, job.well, imaging.experiment_sd,
                              imaging.plate_sd, imaging.well_sd)
    site = sim.render_site(rng, line, effects[job.pert] + shift, imaging.size, imaging.scale,
                           dens)
    protein = sim.STAINS[int(rng.integers(1, len(sim.STAINS)))]
    stack = np.stack([_channel(c, site, rng, protein) * _BRIGHT.get(c, 1.0) for c in job.channels])
    gain = sim.channel_gain(seed, len(job.channels), job.experiment, job.plate, job.well,
                            imaging.batch_strength)
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
    row = {"key": job.key, "cell_line": job.line, "experiment": job.experiment,
           "plate": job.plate, "well": job.well, "site": job.site, "edge_well": edge,
           "n_cells": len(cells), "protein": protein}
    row.update({f"gain_{c}": float(g) for c, g in zip(job.channels, gain, strict=False)})
    return row, cells


def _run_chunk(jobs: list[SiteJob], **kw) -> list[tuple[dict, pd.DataFrame]]:
    return [_run_job(j, **kw) for j in jobs]


def default_jobs() -> int:
    """Worker processes for generation: ``$CELLUTILS_JOBS``, else all cores (at most 8)."""
    return int(os.environ.get("CELLUTILS_JOBS", min(os.cpu_count() or 1, 8)))


def _render_all(jobs: list[SiteJob], root: Path, seed: int, perts: sim.Perturbations,
                imaging: Imaging, density: dict[str, float] | None, n_jobs: int | None,
                desc: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    kw = dict(root=root, seed=seed, effects=perts.effects, imaging=imaging,
              density=density or {})
    n_jobs = n_jobs or default_jobs()
    chunks = [jobs[i: i + 16] for i in range(0, len(jobs), 16)]
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


class _Staging:
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
        manifest = {"generator": "cellutils.synthetic", "version": GENERATOR_VERSION,
                    "params": self.params}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(self.tmp, self.root)


def _write_truth(root: Path, sites: pd.DataFrame, cells: pd.DataFrame,
                 perts: sim.Perturbations) -> None:
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
_SUFFIX = ["tinib", "mab", "stat", "zole", "parin", "cillin", "mide", "lol", "pril", "sartan",
           "vir", "platin", "rubicin", "dronate", "setron"]
GENE_SYMBOLS = [
    "EGFR", "KDR", "MTOR", "PIK3CA", "AKT1", "BRAF", "MAP2K1", "CDK4", "CDK2", "AURKA", "AURKB",
    "PLK1", "HDAC1", "HDAC6", "TUBB", "TOP1", "TOP2A", "HSP90AA1", "PARP1", "BRD4", "JAK2",
    "SRC", "ABL1", "FLT3", "KIT", "MET", "ALK", "ROCK1", "GSK3B", "PRKCA", "PTGS2", "ADRB2",
    "DRD2", "HTR2A", "CHRM1", "SLC6A4", "NR3C1", "ESR1", "AR", "PPARG", "RXRA", "VDR", "ATP1A1",
    "KCNH2", "SCN5A", "CACNA1C", "GABRA1", "OPRM1", "HMGCR", "DHFR", "TYMS", "RRM1", "POLA1",
    "PSMB5", "VCP", "MDM2", "BCL2", "MCL1", "XIAP", "CASP3", "NAMPT", "IDH1", "EZH2", "DNMT1",
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
# RxRx1
# --------------------------------------------------------------------------------------------

RXRX1_EXPERIMENTS = {"HUVEC": 5, "HEPG2": 2, "RPE": 2, "U2OS": 2}
# Latent shifts of experiments, plates and wells (``simulate.context_shift``), in units of a
# perturbation's typical effect. RxRx1's batches are experiments and their plates (each plate
# holds a fixed quarter of the siRNAs, so a plate's look tells its siRNA group); CPJUMP1's
# well-position effect is large (percent replicating of DMSO wells at one position: 53%).
RXRX1_NUISANCE = {"experiment_sd": 0.5, "plate_sd": 0.5, "well_sd": 0.2}
CPJUMP1_NUISANCE = {"experiment_sd": 0.0, "plate_sd": 0.2, "well_sd": 0.5}


def write_rxrx1(
    root: str | os.PathLike,
    form: str = "rxrx.ai",
    n_sirnas: int = 40,
    n_positive: int = 4,
    experiments: dict[str, int] | None = None,
    n_test: int = 1,
    sites: int = 2,
    size: int = 128,
    seed: int = 0,
    strength: float = 1.0,
    nuisance: dict[str, float] | None = None,
    n_jobs: int | None = None,
) -> Path:
    """RxRx1 look-alike: ``n_sirnas`` siRNAs in 4 fixed plate groups, each once per experiment.

    ``experiments`` maps cell type -> number of experiments (the last ``n_test`` of each are the
    test set). Wells are B02..O23 (308 used wells on the real plates). ``form`` is ``"rxrx.ai"``
    (``images/`` + ``metadata.csv``) or ``"kaggle"`` (``train/``, ``test/`` + the Kaggle CSVs).
    """
    if form not in ("rxrx.ai", "kaggle"):
        raise ValueError(f"form must be 'rxrx.ai' or 'kaggle', got {form!r}")
    experiments = experiments or dict(RXRX1_EXPERIMENTS)
    if n_sirnas % 4:
        raise ValueError(f"n_sirnas must split into 4 plate groups, got {n_sirnas}")
    params = dict(layout="rxrx1", form=form, n_sirnas=n_sirnas, n_positive=n_positive,
                  experiments=experiments, n_test=n_test, sites=sites, size=size, seed=seed,
                  strength=strength,
                  nuisance=nuisance or RXRX1_NUISANCE)
    stage = _Staging(root, params)
    if stage.existing():
        return stage.root
    perts = sim.make_perturbations(n_sirnas, seed, prefix="sirna", strength=strength,
                                   negative_control="EMPTY", n_positive=n_positive)
    rng = sim.key_rng(seed, "rxrx1-names")
    vendor = [f"s{x}" for x in rng.choice(np.arange(1000, 99999), len(perts.names), replace=False)]
    used = [well_name(r, c) for r in range(1, 15) for c in range(2, 24)]  # B02..O23
    group = np.arange(n_sirnas) % 4
    jobs, meta = [], []
    for cell_type, n_exp in experiments.items():
        for e in range(1, n_exp + 1):
            exp = f"{cell_type}-{e:02d}"
            dataset = "test" if e > n_exp - n_test else "train"
            for plate in range(1, 5):
                members = [int(i) for i in np.flatnonzero(group == plate - 1)]
                controls = list(range(n_sirnas, len(perts.names)))
                prng = sim.key_rng(seed, "rxrx1-layout", exp, plate)
                wells = prng.choice(used, len(members) + len(controls), replace=False)
                for p, well in zip(members + controls, wells, strict=False):
                    kind = perts.kind[p]
                    well_type = {"trt": "treatment", "negcon": "negative_control",
                                 "poscon": "positive_control"}[kind]
                    for s in range(1, sites + 1):
                        base = f"{well}_s{s}_w{{}}.png"
                        folder = ("images" if form == "rxrx.ai" else dataset) + f"/{exp}/Plate{plate}"
                        paths = tuple(f"{folder}/{base.format(w)}" for w in range(1, 7))
                        key = f"{exp}_{plate}_{well}_{s}"
                        jobs.append(SiteJob(key, cell_type, p, exp, str(plate), well, s,
                                            RXRX1_SIM, paths))
                        meta.append(dict(site_id=key, well_id=f"{exp}_{plate}_{well}",
                                         cell_type=cell_type, dataset=dataset, experiment=exp,
                                         plate=plate, well=well, site=s, well_type=well_type,
                                         sirna=vendor[p]))
    # sirna_id numbering as in RxRx1: treatments first, then positive controls, negative last
    order = [i for i, k in enumerate(perts.kind) if k == "trt"] + \
            [i for i, k in enumerate(perts.kind) if k == "poscon"] + \
            [i for i, k in enumerate(perts.kind) if k == "negcon"]
    new_id = {old: new for new, old in enumerate(order)}
    imaging = Imaging(size=size, scale=0.35 * size / 128, dtype="uint8", counts=55.0,
                      **params["nuisance"])
    with stage as tmp:
        sites_df, cells = _render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "rxrx1")
        md = pd.DataFrame(meta)
        md["sirna_id"] = [new_id[jobs[i].pert] for i in range(len(jobs))]
        sites_df["sirna_id"] = md["sirna_id"].to_numpy()
        if form == "rxrx.ai":
            md.to_csv(tmp / "metadata.csv", index=False)
        else:
            _write_kaggle_csvs(tmp, md)
        _write_truth(tmp, sites_df, cells, perts)
    return stage.root


def _write_kaggle_csvs(root: Path, md: pd.DataFrame) -> None:
    wells = md.drop_duplicates("well_id").copy()
    wells["id_code"] = wells.well_id
    for dataset in ("train", "test"):
        part = wells[wells.dataset == dataset]
        trt = part[part.well_type == "treatment"]
        ctl = part[part.well_type != "treatment"]
        cols = ["id_code", "experiment", "plate", "well"]
        if dataset == "train":
            trt.assign(sirna=trt.sirna_id)[cols + ["sirna"]].to_csv(root / "train.csv", index=False)
        else:
            trt[cols].to_csv(root / "test.csv", index=False)
        ctl.assign(sirna=ctl.sirna_id)[cols + ["sirna", "well_type"]].to_csv(
            root / f"{dataset}_controls.csv", index=False)
    stats = []
    for row in md.itertuples():
        folder = root / row.dataset / row.experiment / f"Plate{row.plate}"
        for ch in range(1, 7):
            arr = iio.imread(folder / f"{row.well}_s{row.site}_w{ch}.png")
            stats.append((row.well_id, row.experiment, row.plate, row.well, row.site, ch,
                          arr.mean(), arr.std(), np.median(arr), arr.min(), arr.max()))
    pd.DataFrame(stats, columns=["id_code", "experiment", "plate", "well", "site", "channel",
                                 "mean", "std", "median", "min", "max"]).round(4).to_csv(
        root / "pixel_stats.csv", index=False)


# --------------------------------------------------------------------------------------------
# CPJUMP1 (8 channels) and its course subset (median-aggregated)
# --------------------------------------------------------------------------------------------

CPJUMP1_STAINS = tuple(CPJUMP1_CHANNELS.values())
CPJUMP1_DIR = "images/2020_11_04_CPJUMP1/images"
PLATEMAP = "metadata/platemaps/2020_11_04_CPJUMP1/platemap/JUMP-Target-1_compound_platemap.tsv"
COMPOUNDS = "metadata/external_metadata/JUMP-Target-1_compound_metadata.tsv"


def cpjump1_filename(row: int, col: int, field: int, ch: int) -> str:
    """Opera Phenix name, 1-based row/col/field/channel: ``r01c01f01p01-ch1sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{field:02d}p01-ch{ch}sk1fk1fl1.tiff"


def _compound_library(n_compounds: int, n_positive: int, seed: int, strength: float):
    names = drug_names(n_compounds + n_positive, seed)
    perts = sim.make_perturbations(n_compounds, seed, prefix="cmpd", strength=strength,
                                   names=names[:n_compounds], n_positive=n_positive,
                                   negative_control="DMSO")
    for j in range(n_positive):
        perts.names[n_compounds + 1 + j] = names[n_compounds + j]
    genes = gene_names(perts.targets)
    rng = sim.key_rng(seed, "broad")
    broad = [f"BRD-K{x:08d}-001-01-{int(rng.integers(0, 10))}" for x in
             rng.choice(np.arange(10**7, 10**8), len(perts.names), replace=False)]
    table = pd.DataFrame({
        "broad_sample": broad,
        "InChIKey": ["".join(rng.choice(list(string.ascii_uppercase), 14)) + "-UHFFFAOYSA-N"
                     for _ in perts.names],
        "pert_iname": perts.names,
        "pubchem_cid": rng.choice(np.arange(10**5, 10**7), len(perts.names), replace=False),
        "target": genes,
        "pert_type": ["control" if k != "trt" else "trt" for k in perts.kind],
        "control_type": [{"trt": "", "negcon": "negcon", "poscon": "poscon_cp"}[k]
                         for k in perts.kind],
        "smiles": ["C" * int(rng.integers(3, 12)) + "O" for _ in perts.names],
    })
    table.loc[table.pert_iname == "DMSO", ["broad_sample", "InChIKey", "pubchem_cid", "smiles"]] = \
        ["", "", -1, ""]
    return perts, table


def write_cpjump1(
    root: str | os.PathLike,
    plates: tuple[str, ...] = ("BR00116991", "BR00116992"),
    n_compounds: int = 24,
    n_positive: int = 2,
    n_dmso_wells: int = 8,
    sites: int = 4,
    size: int = 160,
    seed: int = 0,
    strength: float = 1.0,
    nuisance: dict[str, float] | None = None,
    n_jobs: int | None = None,
) -> Path:
    """CPJUMP1 look-alike: replicate plates sharing one compound platemap, 8 channels per site.

    Writes the Phenix image folders, a ``load_data.csv`` per plate, the platemap TSV, the
    compound metadata TSV and ``barcode_platemap.csv``.
    """
    params = dict(layout="cpjump1", plates=list(plates), n_compounds=n_compounds,
                  n_positive=n_positive, n_dmso_wells=n_dmso_wells, sites=sites, size=size,
                  seed=seed, strength=strength,
                  nuisance=nuisance or CPJUMP1_NUISANCE)
    stage = _Staging(root, params)
    if stage.existing():
        return stage.root
    perts, compounds = _compound_library(n_compounds, n_positive, seed, strength)
    dmso = perts.index("DMSO")
    content = [i for i in range(len(perts.names)) if i != dmso] + [dmso] * n_dmso_wells
    rng = sim.key_rng(seed, "cpjump1-platemap")
    all_wells = [(r, c) for r in range(16) for c in range(1, 25)]
    chosen = rng.choice(len(all_wells), len(content), replace=False)
    platemap = []
    for (r, c), p in sorted(zip([all_wells[i] for i in chosen], content, strict=False)):
        platemap.append((well_name(r, c), compounds.broad_sample[p], "DMSO", p, r, c))
    jobs, load_rows = [], []
    for plate in plates:
        folder = f"{CPJUMP1_DIR}/{plate}__2020-11-05T19_51_35-Measurement1/Images"
        for well, _, _, p, r, c in platemap:
            for f in range(1, sites + 1):
                files = [cpjump1_filename(r + 1, c, f, ch) for ch in range(1, 9)]
                key = f"{plate}_{well}_{f}"
                jobs.append(SiteJob(key, "A549", p, "2020_11_04_CPJUMP1", plate, well, f,
                                    CPJUMP1_SIM, tuple(f"{folder}/{x}" for x in files)))
                row = {f"FileName_Orig{s}": x for s, x in zip(CPJUMP1_STAINS, files, strict=False)}
                row.update({f"PathName_Orig{s}": folder for s in CPJUMP1_STAINS})
                row.update(Metadata_Plate=plate, Metadata_Well=well, Metadata_Site=f,
                           Metadata_Row=r + 1, Metadata_Col=c, Metadata_Field=f,
                           Metadata_AbsPositionZ=round(float(rng.normal(0.135, 0.001)), 6))
                load_rows.append(row)
    imaging = Imaging(size=size, scale=0.3 * size / 160, dtype="uint16", counts=2500.0,
                      offset=100.0, photons=600.0, **params["nuisance"])
    with stage as tmp:
        sites_df, cells = _render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "cpjump1")
        ld = pd.DataFrame(load_rows)
        for plate in plates:
            out = tmp / "load_data_csv" / "2020_11_04_CPJUMP1" / plate / "load_data.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            ld[ld.Metadata_Plate == plate].to_csv(out, index=False)
        pm = pd.DataFrame(platemap, columns=["well_position", "broad_sample", "solvent", "_p",
                                             "_r", "_c"])[["well_position", "broad_sample",
                                                           "solvent"]]
        (tmp / PLATEMAP).parent.mkdir(parents=True, exist_ok=True)
        pm.to_csv(tmp / PLATEMAP, sep="\t", index=False)
        (tmp / COMPOUNDS).parent.mkdir(parents=True, exist_ok=True)
        compounds.to_csv(tmp / COMPOUNDS, sep="\t", index=False)
        pd.DataFrame({"Assay_Plate_Barcode": list(plates),
                      "Plate_Map_Name": ["JUMP-Target-1_compound_platemap"] * len(plates)}).to_csv(
            tmp / "metadata/platemaps/2020_11_04_CPJUMP1/barcode_platemap.csv", index=False)
        _write_truth(tmp, sites_df, cells, perts)
    return stage.root


SUBSET_METADATA = "metadata_BR00116991.csv"
SUBSET_COLUMNS = [
    "ImageNumber", "FileName_OrigRNA", "Metadata_ChannelID", "Metadata_Plate", "Metadata_Well",
    "Metadata_Site", "Metadata_AbsPositionZ", "Metadata_PositionX", "Metadata_PositionY",
    "Metadata_PositionZ", "Metadata_Row", "Metadata_target", "Metadata_experiment_type",
    "Metadata_cell_line", "Metadata_pert_iname", "Metadata_gene", "Metadata_pubchem_cid",
]


def write_cpjump1_subset(
    root: str | os.PathLike,
    n_single: int = 40,
    n_double: int = 20,
    n_dmso_wells: int = 12,
    sites: int = 9,
    size: int = 160,
    upper_case_fraction: float = 0.03,
    index_column: bool = True,
    seed: int = 0,
    strength: float = 2.0,
    nuisance: dict[str, float] | None = None,
    n_jobs: int | None = None,
) -> Path:
    """The course subset of plate BR00116991: one median-aggregated TIFF per site.

    Scaled down: DMSO in ``n_dmso_wells`` wells, ``n_double`` compounds in two wells (more
    than the real plate's share, so that a split by well has enough wells to test on), ``n_single`` in one well, ``sites`` sites per well, wells filled row-major from A01.
    A share ``upper_case_fraction`` of image files gets an upper-case name (report 002 had to
    lower-case names to match). ``index_column`` writes the unnamed first index column.
    """
    params = dict(layout="cpjump1_subset", n_single=n_single, n_double=n_double,
                  n_dmso_wells=n_dmso_wells, sites=sites, size=size,
                  upper_case_fraction=upper_case_fraction, index_column=index_column, seed=seed,
                  strength=strength,
                  nuisance=nuisance or CPJUMP1_NUISANCE)
    stage = _Staging(root, params)
    if stage.existing():
        return stage.root
    perts, compounds = _compound_library(n_single + n_double, 0, seed, strength)
    dmso = perts.index("DMSO")
    content = list(range(n_single + n_double)) + list(range(n_single, n_single + n_double)) + \
        [dmso] * n_dmso_wells
    rng = sim.key_rng(seed, "subset-layout")
    content = [content[i] for i in rng.permutation(len(content))]
    jobs, rows = [], []
    for w, p in enumerate(content):
        r, c = divmod(w, 24)
        well = well_name(r, c + 1)
        for f in range(1, sites + 1):
            core = f"r{r + 1:02d}c{c + 1:02d}f{f:02d}"
            name = f"{core}_median_aggregated.tiff"
            if rng.random() < upper_case_fraction:
                name = name.upper()
            key = f"BR00116991_{well}_{f}"
            jobs.append(SiteJob(key, "A549", p, "2020_11_04_CPJUMP1", "BR00116991", well, f,
                                CPJUMP1_SIM[:3], (f"images/{name}",), median=True))
            rows.append({
                "FileName_OrigRNA": f"{core}p01-ch3sk1fk1fl1.tiff", "Metadata_ChannelID": 3,
                "Metadata_Plate": "BR00116991", "Metadata_Well": well, "Metadata_Site": f,
                "Metadata_AbsPositionZ": round(float(rng.normal(0.135, 0.001)), 6),
                "Metadata_PositionX": round(float((f - 1) % 3 * 0.00065 - 0.00065), 6),
                "Metadata_PositionY": round(float((f - 1) // 3 * 0.00065 - 0.00065), 6),
                "Metadata_PositionZ": round(float(rng.normal(0, 1e-6)), 9),
                "Metadata_Row": r + 1,
                "Metadata_target": compounds.target[p] if p != dmso else "",
                "Metadata_experiment_type": "Compound", "Metadata_cell_line": "A549",
                "Metadata_pert_iname": perts.names[p],
                "Metadata_gene": compounds.target[p] if p != dmso else "",
                "Metadata_pubchem_cid": int(compounds.pubchem_cid[p]),
            })
    imaging = Imaging(size=size, scale=0.3 * size / 160, dtype="uint16", counts=2500.0,
                      offset=100.0, photons=600.0, **params["nuisance"])
    with stage as tmp:
        sites_df, cells = _render_all(jobs, tmp, seed, perts, imaging, None, n_jobs,
                                      "cpjump1 subset")
        md = pd.DataFrame(rows)
        md.insert(0, "ImageNumber", np.arange(1, len(md) + 1))
        md = md[SUBSET_COLUMNS]
        md.to_csv(tmp / SUBSET_METADATA, index=index_column)
        sites_df["image_file"] = [j.paths[0] for j in jobs]
        _write_truth(tmp, sites_df, cells, perts)
    return stage.root


# --------------------------------------------------------------------------------------------
# HPA-style cell lines (report 001)
# --------------------------------------------------------------------------------------------

HPA_WEIGHTS = {"U-251 MG": 1.0, "HeLa": 0.22, "PC-3": 0.9, "A549": 0.8, "MCF7": 0.75,
               "U-2 OS": 0.2, "HEK 293": 0.95, "CACO-2": 0.6, "RT4": 0.5}


def write_cell_lines(
    root: str | os.PathLike,
    n_train: int = 900,
    n_test: int = 600,
    size: int = 64,
    weights: dict[str, float] | None = None,
    n_batches: int = 6,
    seed: int = 0,
    n_jobs: int | None = None,
) -> Path:
    """Nine cell lines as HPA-style samples: ``{id}_{blue,red,yellow,green}.png`` per sample.

    Classes are imbalanced by ``weights`` (HeLa and U-2 OS rare, as in report 001). ``train.csv``
    holds ``filename,cell_line``; the test labels are kept in ``ground_truth/sites.csv``.
    Samples come from ``n_batches`` acquisition batches (hidden nuisance).
    """
    weights = weights or dict(HPA_WEIGHTS)
    params = dict(layout="cell_lines", n_train=n_train, n_test=n_test, size=size,
                  weights=weights, n_batches=n_batches, seed=seed)
    stage = _Staging(root, params)
    if stage.existing():
        return stage.root
    lines = list(weights)
    prob = np.array([weights[k] for k in lines], float)
    prob /= prob.sum()
    perts = sim.make_perturbations(0, seed, negative_control="none")  # no perturbation
    rng = sim.key_rng(seed, "hpa-samples")
    jobs, labels = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(n):
            line = lines[int(rng.choice(len(lines), p=prob))]
            sid = f"{int(rng.integers(16**7, 16**8)):08x}-{split[:2]}{k:05d}"
            batch = f"batch{int(rng.integers(1, n_batches + 1))}"
            paths = tuple(f"{split}/{sid}_{c}.png" for c in HPA_CHANNELS)
            jobs.append(SiteJob(sid, line, 0, batch, "1", "C03", 1,
                                tuple(HPA_CHANNELS.values()), paths))
            labels.append((split, sid, line))
    imaging = Imaging(size=size, scale=0.35 * size / 64, dtype="uint8", counts=170.0,
                      photons=200.0)
    with stage as tmp:
        sites_df, cells = _render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "cell lines")
        lab = pd.DataFrame(labels, columns=["split", "filename", "cell_line"])
        lab[lab.split == "train"][["filename", "cell_line"]].to_csv(tmp / "train.csv", index=False)
        sites_df["split"] = lab.split.to_numpy()
        sites_df = sites_df.drop(columns=["plate", "well", "site", "edge_well"]).rename(
            columns={"experiment": "batch"})
        _write_truth(tmp, sites_df, cells, perts)
    return stage.root


# --------------------------------------------------------------------------------------------
# The default data of every notebook
# --------------------------------------------------------------------------------------------

DEFAULTS = {
    "rxrx1": write_rxrx1,
    "cpjump1": write_cpjump1,
    "cpjump1_subset": write_cpjump1_subset,
    "cell_lines": write_cell_lines,
}


def make_default_data(root: str | os.PathLike | None = None, which: tuple[str, ...] | None = None,
                      seed: int = 0, n_jobs: int | None = None, **overrides) -> dict[str, Path]:
    """Write (or find, when already written) the default synthetic datasets.

    They live in ``<data root>/synthetic/<name>``. ``overrides`` maps a dataset name to keyword
    arguments for its writer, e.g. ``rxrx1={"size": 64}``.
    """
    from cellutils.paths import data_root

    base = data_root(root) / "synthetic"
    out = {}
    for name in which or tuple(DEFAULTS):
        if name not in DEFAULTS:
            raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DEFAULTS)}")
        t0 = time.perf_counter()
        existed = (base / name / MANIFEST).exists()
        out[name] = DEFAULTS[name](base / name, seed=seed, n_jobs=n_jobs,
                                   **overrides.get(name, {}))
        what = "found" if existed else f"written in {time.perf_counter() - t0:.1f} s"
        print(f"synthetic {name}: {what} -> {out[name]}")
    return out


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
    return (tifffile.imread(masks / f"{key}_cells.tif"),
            tifffile.imread(masks / f"{key}_nuclei.tif"))


__all__ = [
    "DEFAULTS", "Imaging", "SiteJob", "drug_names", "make_default_data",
    "read_truth", "read_truth_masks", "write_cell_lines", "write_cpjump1",
    "write_cpjump1_subset", "write_rxrx1",
]
