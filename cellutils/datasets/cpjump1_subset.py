"""The CPJUMP1 course subset (reports 002-004): one median-aggregated TIFF per site of plate
BR00116991 + the course's ``metadata_BR00116991.csv``; its reader, its synthetic writer, and
its builder from the downloaded plate (``build_cpjump1_subset``, ``make data
NAME=cpjump1_subset``). The course distributed it itself, so there is no download manifest.

Layout facts: ``docs/datasets.md``. Terms: derived from the Cell Painting Gallery (CC0 1.0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils import simulate as sim
from cellutils.datasets import cpjump1
from cellutils.datasets._base import (
    MISSING,
    DatasetError,
    Layout,
    _finish,
    _require,
    normalise_well,
    read_table,
    require_labels,
    walk,
)
from cellutils.synthetic import Imaging, SiteJob, Staging, render_all, well_name, write_truth

# One grey channel: the median of ch1-ch3 (Mito, AGP, RNA) of each site.
CHANNELS = {"median": "median of Mito, AGP and RNA"}
COLOURS = ((255, 255, 255),)
# What the reports say of the real subset (report 004: 2,867 images, 509 of them DMSO): the
# claims' own bars are computed from these counts, not from our synthetic stand-in.
REPORTED_IMAGES, REPORTED_DMSO = 2867, 509
ALWAYS_DMSO = (
    REPORTED_DMSO / REPORTED_IMAGES,
    "always DMSO: 509 of the plate's 2,867 images (report 004's counts)",
)

FILE = re.compile(r"^(?P<core>r\d{2}c\d{2}f\d{2})_median_aggregated\.tiff?$", re.I)
NUISANCE = cpjump1.NUISANCE
METADATA = "metadata_BR00116991.csv"
COLUMNS = [
    "ImageNumber",
    "FileName_OrigRNA",
    "Metadata_ChannelID",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_AbsPositionZ",
    "Metadata_PositionX",
    "Metadata_PositionY",
    "Metadata_PositionZ",
    "Metadata_Row",
    "Metadata_target",
    "Metadata_experiment_type",
    "Metadata_cell_line",
    "Metadata_pert_iname",
    "Metadata_gene",
    "Metadata_pubchem_cid",
]


def read_cpjump1_subset(
    root: str | os.PathLike,
    metadata: str | os.PathLike | None = None,
    errors: str = "report",
    labels: bool = True,
) -> pd.DataFrame:
    """Index the course subset: ``metadata_BR00116991.csv`` + ``r..c..f.._median_aggregated.tiff``.

    Images are matched on the first 9 characters of ``FileName_OrigRNA`` (``rXXcXXfXX``),
    ignoring case (names that differ in case are reported). Two files for one site anywhere
    under the folder (e.g. a copy in a results subfolder) are reported and neither is chosen.
    Adds ``core`` and ``path_median``; text columns use one missing value, ``MISSING``.
    ``labels`` (default): raise when no row names a compound.
    """
    root = Path(root).expanduser()
    _require(
        root,
        "CPJUMP1 subset folder",
        "Pass the folder holding metadata_BR00116991.csv and the median-aggregated TIFFs.",
    )
    if metadata is None:
        found = sorted(root.glob("metadata_*.csv"))
        if not found:
            raise DatasetError(
                f"no metadata_*.csv in {root}; pass metadata= the course CSV's path."
            )
        metadata = found[0]
    md = read_table(metadata)
    for need in ("FileName_OrigRNA", "Metadata_pert_iname", "Metadata_Well"):
        if need not in md:
            raise DatasetError(f"{metadata} has no column {need!r}; is it the course metadata CSV?")
    md["Metadata_Well"] = normalise_well(md, "Metadata_Well", str(metadata))  # A1 = A01
    if labels:
        require_labels(
            md,
            "Metadata_pert_iname",
            str(metadata),
            "Use the course's metadata CSV, which names each site's compound.",
        )
    md["core"] = md.FileName_OrigRNA.str[:9].str.lower()
    problems: list = []
    disk: dict[str, list[Path]] = {}
    for p in walk(root):  # follows a symlinked images/ folder
        m = FILE.match(p.name)
        if m:
            core = m["core"].lower()
            if m["core"] != core or p.name != p.name.lower():
                problems.append(
                    (
                        "case_mismatch",
                        str(p),
                        f"name differs in case from {core}",
                        "matched ignoring case (as report 002 did by lower-casing)",
                    )
                )
            disk.setdefault(core, []).append(p)
    ambiguous = {core for core, found in disk.items() if len(found) > 1}
    for core in sorted(ambiguous):
        problems.append(
            (
                "ambiguous_file",
                ", ".join(map(str, disk.pop(core))),
                f"several files for site {core}; none was chosen",
                "move the copies out of the dataset folder",
            )
        )
    md["path_median"] = md.core.map({k: v[0] for k, v in disk.items()})
    for core in md.core[md.path_median.isna() & ~md.core.isin(ambiguous)]:
        problems.append(
            (
                "missing_file",
                f"{core}_median_aggregated.tiff",
                "named by metadata but not on disk",
                "re-extract the course images",
            )
        )
    for core in sorted(set(disk) - set(md.core)):
        problems.append(
            (
                "no_metadata",
                str(disk[core]),
                "image that no metadata row names",
                "add its row to the metadata CSV or move the file away",
            )
        )
    dup = md.core.duplicated(keep=False)
    if dup.any():
        raise DatasetError(
            f"{metadata}: {dup.sum()} rows share a site core name "
            f"(e.g. {md.core[dup].iloc[0]}); one row per site expected."
        )
    return _finish(md, problems, errors, "CPJUMP1 subset", ["path_median"])


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
    than the real plate's share, so that a split by well has enough wells to test on),
    ``n_single`` in one well, ``sites`` sites per well, wells filled row-major from A01.
    A share ``upper_case_fraction`` of image files gets an upper-case name (report 002 had to
    lower-case names to match). ``index_column`` writes the unnamed first index column.
    """
    params = dict(
        layout="cpjump1_subset",
        n_single=n_single,
        n_double=n_double,
        n_dmso_wells=n_dmso_wells,
        sites=sites,
        size=size,
        upper_case_fraction=upper_case_fraction,
        index_column=index_column,
        seed=seed,
        strength=strength,
        nuisance=nuisance or NUISANCE,
    )
    stage = Staging(root, params)
    if stage.existing():
        return stage.root
    perts, compounds = cpjump1.compound_library(n_single + n_double, 0, seed, strength)
    dmso = perts.index("DMSO")
    content = (
        list(range(n_single + n_double))
        + list(range(n_single, n_single + n_double))
        + [dmso] * n_dmso_wells
    )
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
            jobs.append(
                SiteJob(
                    key,
                    "A549",
                    p,
                    "2020_11_04_CPJUMP1",
                    "BR00116991",
                    well,
                    f,
                    cpjump1.SIM[:3],
                    (f"images/{name}",),
                    median=True,
                )
            )
            rows.append(
                {
                    "FileName_OrigRNA": f"{core}p01-ch3sk1fk1fl1.tiff",
                    "Metadata_ChannelID": 3,
                    "Metadata_Plate": "BR00116991",
                    "Metadata_Well": well,
                    "Metadata_Site": f,
                    "Metadata_AbsPositionZ": round(float(rng.normal(0.135, 0.001)), 6),
                    "Metadata_PositionX": round(float((f - 1) % 3 * 0.00065 - 0.00065), 6),
                    "Metadata_PositionY": round(float((f - 1) // 3 * 0.00065 - 0.00065), 6),
                    "Metadata_PositionZ": round(float(rng.normal(0, 1e-6)), 9),
                    "Metadata_Row": r + 1,
                    "Metadata_target": compounds.target[p] if p != dmso else "",
                    "Metadata_experiment_type": "Compound",
                    "Metadata_cell_line": "A549",
                    "Metadata_pert_iname": perts.names[p],
                    "Metadata_gene": compounds.target[p] if p != dmso else "",
                    "Metadata_pubchem_cid": int(compounds.pubchem_cid[p]),
                }
            )
    imaging = Imaging(
        size=size,
        scale=0.3 * size / 160,
        dtype="uint16",
        counts=2500.0,
        offset=100.0,
        photons=600.0,
        **params["nuisance"],
    )
    with stage as tmp:
        sites_df, cells = render_all(
            jobs, tmp, seed, perts, imaging, None, n_jobs, "cpjump1 subset"
        )
        md = pd.DataFrame(rows)
        md.insert(0, "ImageNumber", np.arange(1, len(md) + 1))
        md = md[COLUMNS]
        md.to_csv(tmp / METADATA, index=index_column)
        sites_df["image_file"] = [j.paths[0] for j in jobs]
        write_truth(tmp, sites_df, cells, perts)
    return stage.root


# --------------------------------------------------------------------------------------------
# Builder: the course subset from the downloaded plate (``make data NAME=cpjump1_subset``)
# --------------------------------------------------------------------------------------------

MEDIAN_OF = (1, 2, 3)  # CPJUMP1 channel numbers whose per-pixel median makes the subset's image
COURSE_SITES = 2867  # the course's subset: the plate's first 2,867 sites (A01 f01 .. N07 f05)


def build_cpjump1_subset(
    plate_root: str | os.PathLike,
    out_root: str | os.PathLike,
    plate: str = "BR00116991",
    n_sites: int | None = COURSE_SITES,
    size: int | None = None,
    cell_line: str = "A549",
    compound_metadata: str | os.PathLike | None = None,
    n_jobs: int = 4,
) -> Path:
    """Build the course subset from a downloaded CPJUMP1 plate (``make data NAME=cpjump1``).

    Each site's image is the per-pixel median of ch1-ch3 (Mito, AGP, RNA), in the plate's
    dtype, resized to ``size`` x ``size`` pixels (anti-aliased; ``None`` keeps the plate's
    size, about the course's 1080). Sites are taken in plate order (row, column, field), the
    first ``n_sites`` of them (``None``: all); labels come from ``read_cpjump1`` (plate map +
    compound metadata), which must find every site complete. The result is the layout
    ``read_cpjump1_subset`` reads: ``metadata_<plate>.csv`` (``COLUMNS``) and
    ``images/r..c..f.._median_aggregated.tiff``. It is written into a temporary folder beside
    ``out_root`` and renamed onto it; an ``out_root`` that holds anything is never touched.
    """
    import tifffile

    plate_root, out = Path(plate_root).expanduser(), Path(out_root).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} already exists and is not empty; the subset is never built over it. "
            "Pass another destination (--dest) or move that folder away yourself."
        )
    _require_channels(plate_root, plate)
    index = cpjump1.read_cpjump1(
        plate_root,
        plates=[plate],
        errors="raise",
        channels=MEDIAN_OF,
        compound_metadata=compound_metadata,
    )
    index = _plate_order(index).head(n_sites) if n_sites else _plate_order(index)
    md = _subset_metadata(index, cell_line, _pubchem_cids(plate_root, compound_metadata))
    stains = [cpjump1.CHANNELS[c] for c in MEDIAN_OF]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (tmp / "images").mkdir()

        def one(i: int) -> None:
            row = index.iloc[i]
            image = _median_image([row[f"path_{s}"] for s in stains], size)
            name = f"{md.FileName_OrigRNA.iloc[i][:9]}_median_aggregated.tiff"
            tifffile.imwrite(tmp / "images" / name, image)

        with ThreadPoolExecutor(n_jobs) as pool:
            list(pool.map(one, range(len(index))))
        md.to_csv(tmp / f"metadata_{plate}.csv", index=False)
        (tmp / "subset_build.json").write_text(
            json.dumps(
                {
                    "plate_root": str(plate_root),
                    "plate": plate,
                    "n_sites": len(md),
                    "size": size,
                    "median_of_channels": list(MEDIAN_OF),
                },
                indent=1,
            )
            + "\n"
        )
        os.replace(tmp, out)  # onto a missing or empty folder only
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own staging folder, nothing else
        raise
    print(f"CPJUMP1 subset: {len(md)} sites of plate {plate} in {out}")
    return out


def _require_channels(root: Path, plate: str) -> None:
    """Refuse a plate folder without files of every channel the median needs, naming it."""
    folders = [d for p, d in cpjump1._plate_image_dirs(root).items() if p == plate]
    if not folders:
        raise DatasetError(
            f"no image folder of plate {plate} ('{plate}__*/Images') under {root}. Download it "
            f"first: `make data NAME=cpjump1 ARGS='--plates {plate}'`."
        )
    for folder in folders:
        found = {int(m["ch"]) for p in folder.iterdir() if (m := cpjump1.FILE.match(p.name))}
        lacking = [c for c in MEDIAN_OF if c not in found]
        if lacking:
            raise DatasetError(
                f"{folder} has no files of channel(s) {[f'ch{c}' for c in lacking]}; the "
                f"subset is the median of ch1-ch3. Download them: `make data NAME=cpjump1` "
                "(its default channels 1-5 include them)."
            )


def _plate_order(index: pd.DataFrame) -> pd.DataFrame:
    """Sites by row, column and field (A01 f1, A01 f2, ..., A02 f1, ...)."""
    key = index.Metadata_Well.str[0] + index.Metadata_Well.str[1:].str.zfill(2)
    order = pd.DataFrame({"w": key, "s": index.Metadata_Site.astype(int)}).sort_values(["w", "s"])
    return index.loc[order.index].reset_index(drop=True)


def _median_image(paths: list, size: int | None) -> np.ndarray:
    """The per-pixel median of the channel files, resized to ``size`` (dtype kept)."""
    import tifffile
    from skimage.transform import resize

    planes = [tifffile.imread(p) for p in paths]
    dtype = planes[0].dtype
    if len(planes) == 3:  # the middle value, exact in the images' own dtype, ~10x np.median
        a, b, c = planes
        image = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    else:
        image = np.median(np.stack(planes), axis=0)
    if size and image.shape != (size, size):
        image = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return image.astype(dtype)


def _pubchem_cids(root: Path, compound_metadata: str | os.PathLike | None) -> dict[str, str]:
    """``broad_sample -> pubchem_cid`` from the compound metadata under ``root`` (any table
    with both columns); one compound with two different ids is an error naming the files."""
    if compound_metadata is not None:
        files = [Path(compound_metadata)]
    else:
        files = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file()
            and (p.suffix in (".tsv", ".txt", ".csv") or p.name.endswith((".tsv.gz", ".csv.gz")))
            and not p.name.startswith(("load_data", "download_manifest"))
            and {"broad_sample", "pubchem_cid"} <= set(_header(p))
        ]
    out: dict[str, tuple[str, Path]] = {}
    for f in files:
        t = read_table(f)
        if not {"broad_sample", "pubchem_cid"} <= set(t.columns):
            continue
        for b, cid in zip(t.broad_sample, t.pubchem_cid, strict=True):
            if b == MISSING or cid == MISSING:
                continue
            if b in out and out[b][0] != cid:
                raise DatasetError(
                    f"compound {b} has pubchem_cid {out[b][0]} in {out[b][1]} and {cid} in {f}; "
                    "keep one version of the compound metadata."
                )
            out[b] = (cid, f)
    return {b: v[0] for b, v in out.items()}


def _header(path: Path) -> list[str]:
    import gzip

    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", errors="replace") as fh:
        line = fh.readline().rstrip("\r\n")
    return line.split("\t" if "\t" in line else ",")


def _subset_metadata(index: pd.DataFrame, cell_line: str, cids: dict[str, str]) -> pd.DataFrame:
    """The course CSV's columns (``COLUMNS``) for the chosen sites, in their order."""

    def col(name: str) -> pd.Series:
        return index[name] if name in index else pd.Series(MISSING, index=index.index)

    md = pd.DataFrame(
        {
            "ImageNumber": np.arange(1, len(index) + 1),
            "FileName_OrigRNA": [Path(p).name for p in index.path_RNA],
            "Metadata_ChannelID": 3,
            "Metadata_Plate": index.Metadata_Plate,
            "Metadata_Well": index.Metadata_Well,
            "Metadata_Site": index.Metadata_Site.astype(int),
            "Metadata_AbsPositionZ": col("Metadata_AbsPositionZ"),
            "Metadata_PositionX": col("Metadata_PositionX"),
            "Metadata_PositionY": col("Metadata_PositionY"),
            "Metadata_PositionZ": col("Metadata_PositionZ"),
            "Metadata_Row": [ord(w[0].upper()) - ord("A") + 1 for w in index.Metadata_Well],
            "Metadata_target": col("Metadata_target"),
            "Metadata_experiment_type": "Compound",
            "Metadata_cell_line": cell_line,
            "Metadata_pert_iname": index.Metadata_pert_iname,
            "Metadata_gene": MISSING,  # the paper's per-well metadata: NA for compounds
            "Metadata_pubchem_cid": col("Metadata_broad_sample").map(cids).fillna(MISSING),
        }
    )
    return md[COLUMNS]


LAYOUT = Layout(
    name="cpjump1_subset",
    label="Metadata_pert_iname",
    channels=CHANNELS,
    colours=COLOURS,
    read=read_cpjump1_subset,
    write=write_cpjump1_subset,
    markers=("metadata_*.csv",),
    get_real="the course's metadata_BR00116991.csv + median-aggregated TIFFs folder",
    licence="derived from the Cell Painting Gallery (CC0 1.0)",
)
