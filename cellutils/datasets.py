"""Readers for the four real layouts: each returns a tidy index (pandas, one row per site or
sample, metadata columns + one ``path_<channel>`` column per channel).

The synthetic generator (``cellutils.synthetic``) writes the same layouts, so the same readers
serve the offline default and the real downloads. Problems in the data are reported, never
silently dropped: rows whose files are missing, files that no metadata row names, and names
matched only after lower-casing are kept with the index (``problems(index)`` gives a DataFrame
with the file, what is wrong and the fix), summarised in a warning, or raised with
``errors="raise"``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils.images import stack_channels

# The channel tables, one place each (DATASETS.md). Index = channel number in the file names.
RXRX1_CHANNELS = {1: "Hoechst", 2: "ConA", 3: "Phalloidin", 4: "Syto14", 5: "MitoTracker",
                  6: "WGA"}
RXRX1_COMPARTMENTS = {1: "nucleus", 2: "ER", 3: "actin", 4: "nucleoli/RNA", 5: "mitochondria",
                      6: "Golgi/membrane"}
# CPJUMP1 channel -> stain (best-supported mapping; brightfield plane order unverified).
CPJUMP1_CHANNELS = {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA", 6: "Brightfield",
                    7: "HighZBF", 8: "LowZBF"}
HPA_CHANNELS = {"blue": "nucleus", "red": "microtubules", "yellow": "ER", "green": "protein"}

RXRX1_FILE = re.compile(r"^(?P<well>[A-P]\d{2})_s(?P<site>[12])_w(?P<channel>[1-6])\.png$")
RXRX1_EXPERIMENT = re.compile(r"^(HEPG2|HUVEC|RPE|U2OS)-\d{2}$")
CPJUMP1_FILE = re.compile(
    r"^r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p(?P<plane>\d{2})-ch(?P<ch>\d)sk1fk1fl1\.tiff$"
)
SUBSET_FILE = re.compile(r"^(?P<core>r\d{2}c\d{2}f\d{2})_median_aggregated\.tiff?$", re.I)


class DatasetError(ValueError):
    """The folder does not hold the expected layout, or (errors="raise") holds problems."""


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}. {fix}")
    return path


class _DiskFiles:
    """The image files found on disk, indexed once by exact and by lower-cased path."""

    def __init__(self, on_disk: Iterable[Path]):
        self.exact = {str(p): p for p in on_disk}
        self.lower: dict[str, Path] = {}
        for p in self.exact.values():
            self.lower.setdefault(str(p).lower(), p)

    def resolve(self, expected: Sequence[Path], problems: list,
                fix_missing: str) -> list[Path | None]:
        """Map each expected path to the file on disk, matching case-insensitively when needed."""
        out: list[Path | None] = []
        for p in expected:
            hit = self.exact.get(str(p))
            if hit is None:
                hit = self.lower.get(str(p).lower())
                if hit is not None:
                    problems.append(("case_mismatch", str(hit), f"metadata names {p.name}",
                                     "matched ignoring case; rename the file to silence this"))
            if hit is None:
                problems.append(("missing_file", str(p), "named by metadata but not on disk",
                                 fix_missing))
            out.append(hit)
        return out


def _unclaimed(on_disk: Iterable[Path], claimed: Iterable[Path | None], problems: list,
               fix: str) -> None:
    used = {p for p in claimed if p is not None}
    for p in sorted(set(on_disk) - used):
        problems.append(("no_metadata", str(p), "image file that no metadata row names", fix))


def _finish(index: pd.DataFrame, problems: list, errors: str, name: str,
            path_cols: list[str]) -> pd.DataFrame:
    if errors not in ("report", "raise", "ignore"):
        raise ValueError(f"errors must be 'report', 'raise' or 'ignore', got {errors!r}")
    table = pd.DataFrame(problems, columns=["problem", "file", "detail", "fix"])
    complete = index[path_cols].notna().all(axis=1)
    index = index[complete].reset_index(drop=True)
    index.attrs["problems"] = [tuple(p) for p in problems]  # plain records: pandas copies attrs
    serious = table[table.problem != "case_mismatch"]
    if len(table) and errors != "ignore":
        counts = ", ".join(f"{k}: {v}" for k, v in table.problem.value_counts().items())
        head = "\n".join(f"  {r.problem}: {r.file} -- {r.fix}" for r in table.head(5).itertuples())
        msg = (f"{name}: {counts} ({(~complete).sum()} incomplete rows left out of the index; "
               f"see cellutils.datasets.problems(index))\n{head}")
        if errors == "raise" and len(serious):
            raise DatasetError(msg)
        warnings.warn(msg, stacklevel=3)
    return index


def problems(index: pd.DataFrame) -> pd.DataFrame:
    """The problems a reader found for ``index``: problem, file, detail, fix."""
    return pd.DataFrame(index.attrs.get("problems", []),
                        columns=["problem", "file", "detail", "fix"])


def path_columns(index: pd.DataFrame) -> list[str]:
    """The ``path_*`` columns of an index, in channel order."""
    return [c for c in index.columns if c.startswith("path_")]


def cpjump1_site_key(index: pd.DataFrame) -> pd.Series:
    """``{plate}_{well}_{site}``: how a CPJUMP1 site is named in masks and ground truth."""
    return (index.Metadata_Plate.astype(str) + "_" + index.Metadata_Well.astype(str) + "_"
            + index.Metadata_Site.astype(str))


def load_site(row: pd.Series | dict, channels: Sequence[str] | None = None) -> np.ndarray:
    """Load one site (or sample) of an index as a (C, H, W) array.

    ``channels`` picks and orders channels by the suffix of their path column (e.g.
    ``["DNA", "ER"]`` for ``path_DNA``, ``path_ER``); default: all, in index order.
    """
    row = dict(row)
    cols = [c for c in row if c.startswith("path_")]
    if channels is not None:
        wanted = [f"path_{c}" for c in channels]
        missing = [c for c in wanted if c not in row]
        if missing:
            raise KeyError(f"no column {missing}; this index has {cols}")
        cols = wanted
    return stack_channels([row[c] for c in cols])


# --------------------------------------------------------------------------------------------
# RxRx1
# --------------------------------------------------------------------------------------------


def read_rxrx1(root: str | os.PathLike, errors: str = "report",
               check_files: bool = True) -> pd.DataFrame:
    """Index an RxRx1 folder in either released form.

    - rxrx.ai release: ``images/{experiment}/Plate{n}/{well}_s{site}_w{ch}.png`` + ``metadata.csv``
    - Kaggle: ``{train,test}/{experiment}/Plate{n}/...`` + ``train.csv``, ``test.csv``,
      ``train_controls.csv``, ``test_controls.csv``

    Columns: site_id, well_id, cell_type, dataset, experiment, plate, well, site, well_type,
    sirna, sirna_id (<NA> where hidden), path_w1 .. path_w6.
    """
    root = Path(root).expanduser()
    _require(root, "RxRx1 folder", "Pass the folder that holds metadata.csv or train.csv.")
    if not (root / "metadata.csv").exists() and (root / "rxrx1" / "metadata.csv").exists():
        root = root / "rxrx1"  # the release zips extract into rxrx1/
    if (root / "metadata.csv").exists():
        md = pd.read_csv(root / "metadata.csv", keep_default_na=False)
        need = {"experiment", "plate", "well", "site", "sirna_id", "well_type", "dataset"}
        if not need <= set(md.columns):
            raise DatasetError(f"{root / 'metadata.csv'} lacks columns {sorted(need - set(md.columns))}; "
                               "is this the rxrx.ai release's metadata.csv?")
        md["folder"] = "images"
        md["sirna_id"] = pd.to_numeric(md.sirna_id, errors="coerce").astype("Int64")
    elif (root / "train.csv").exists():
        md = _read_kaggle(root)
    else:
        raise DatasetError(
            f"{root} holds neither metadata.csv (rxrx.ai release) nor train.csv (Kaggle): not an "
            "RxRx1 folder. Point root at the folder that holds them, or run "
            "`make data NAME=rxrx1` to download the release."
        )
    md["plate"] = md.plate.astype(int)
    md["site"] = md.site.astype(int)
    bad = ~md.experiment.astype(str).str.match(RXRX1_EXPERIMENT)
    if bad.any():
        raise DatasetError(f"{root}: experiment names {sorted(md.experiment[bad].unique())[:5]} do not "
                           "match 'HUVEC-01'-style names; is this RxRx1?")
    problems: list = []
    for ch in RXRX1_CHANNELS:
        md[f"path_w{ch}"] = [
            root / f / e / f"Plate{p}" / f"{w}_s{s}_w{ch}.png"
            for f, e, p, w, s in zip(md.folder, md.experiment, md.plate, md.well, md.site, strict=False)
        ]
    cols = [f"path_w{c}" for c in RXRX1_CHANNELS]
    if check_files:
        disk = [p for f in md.folder.unique() for p in (root / f).glob("*/Plate*/*.png")]
        fix = "re-download or regenerate this site; a missing channel makes the site unusable"
        found = _DiskFiles(disk)
        claimed = []
        for c in cols:
            md[c] = found.resolve(list(md[c]), problems, fix)
            claimed += list(md[c])
        _unclaimed(disk, claimed, problems,
                   "add the site to the metadata CSV, or move the file out of the image folder")
    md = md.drop(columns=["folder"])
    return _finish(md, problems, errors, "RxRx1", cols)


def _read_kaggle(root: Path) -> pd.DataFrame:
    parts = []
    for dataset in ("train", "test"):
        for name, well_type in ((f"{dataset}.csv", "treatment"), (f"{dataset}_controls.csv", None)):
            path = root / name
            if not path.exists():
                continue
            df = pd.read_csv(path)
            if well_type:
                df["well_type"] = well_type
            df["dataset"] = dataset
            parts.append(df)
    wells = pd.concat(parts, ignore_index=True)
    if "sirna" not in wells:
        wells["sirna"] = pd.NA
    wells["sirna_id"] = pd.to_numeric(wells.sirna, errors="coerce").astype("Int64")
    wells["sirna"] = wells.sirna_id.astype(str).replace("<NA>", "")
    wells["cell_type"] = wells.experiment.str.split("-").str[0]
    wells["well_id"] = wells.id_code
    sites = wells.loc[wells.index.repeat(2)].copy()
    sites["site"] = np.tile([1, 2], len(wells))
    sites["site_id"] = sites.well_id + "_" + sites.site.astype(str)
    sites["folder"] = sites.dataset
    cols = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
            "well_type", "sirna", "sirna_id", "folder"]
    return sites[cols].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# CPJUMP1
# --------------------------------------------------------------------------------------------


def _plate_image_dirs(root: Path) -> dict[str, Path]:
    """``{plate: .../Images}`` for every Phenix measurement folder under root."""
    out = {}
    for d in root.rglob("*__*"):
        if d.is_dir() and (d / "Images").is_dir():
            out[d.name.split("__")[0]] = d / "Images"
    return out


def read_cpjump1(root: str | os.PathLike, plates: Sequence[str] | None = None,
                 errors: str = "report", check_files: bool = True) -> pd.DataFrame:
    """Index CPJUMP1 sites: load_data CSVs (or, without them, the Phenix file names) joined to
    the compound platemap and compound metadata.

    Columns: Metadata_Plate, Metadata_Well, Metadata_Site, Metadata_broad_sample,
    Metadata_pert_iname, Metadata_target, Metadata_pert_type, Metadata_control_type,
    path_<stain> for the 8 channels (``CPJUMP1_CHANNELS``).
    """
    root = Path(root).expanduser()
    _require(root, "CPJUMP1 folder", "Pass the folder holding images/ and load_data_csv/.")
    image_dirs = _plate_image_dirs(root)
    stains = list(CPJUMP1_CHANNELS.values())
    load = sorted(root.rglob("load_data.csv"))
    if load:
        ld = pd.concat([pd.read_csv(p) for p in load], ignore_index=True)
        missing = [f"FileName_Orig{s}" for s in stains if f"FileName_Orig{s}" not in ld]
        if missing:
            raise DatasetError(f"{load[0]} lacks {missing}; expected CellProfiler load_data columns.")
    elif image_dirs:
        ld = _load_data_from_names(image_dirs)
    else:
        raise DatasetError(
            f"{root} has neither load_data.csv files nor Phenix image folders "
            "('<plate>__<timestamp>-Measurement1/Images'). Run `make data NAME=cpjump1`."
        )
    ld["Metadata_Plate"] = ld.Metadata_Plate.astype(str)
    if plates is not None:
        ld = ld[ld.Metadata_Plate.isin(list(plates))].reset_index(drop=True)
    problems: list = []
    for s in stains:
        folders = [_resolve_folder(root, p, plate, image_dirs)
                   for p, plate in zip(ld[f"PathName_Orig{s}"], ld.Metadata_Plate, strict=False)]
        ld[f"path_{s}"] = [Path(f) / n for f, n in zip(folders, ld[f"FileName_Orig{s}"], strict=False)]
    cols = [f"path_{s}" for s in stains]
    if check_files:
        disk = [p for plate, d in image_dirs.items()
                if plates is None or plate in plates for p in d.glob("*.tif*")]
        found = _DiskFiles(disk)
        claimed = []
        for c in cols:
            ld[c] = found.resolve(list(ld[c]), problems,
                                  "re-download the plate's images (`make data NAME=cpjump1`)")
            claimed += list(ld[c])
        _unclaimed(disk, claimed, problems, "add the site to load_data.csv")
    ld = _join_platemap(root, ld)
    meta = [c for c in ld.columns if c.startswith("Metadata_")]
    return _finish(ld[meta + cols], problems, errors, "CPJUMP1", cols)


def _resolve_folder(root: Path, path_name: str, plate: str, image_dirs: dict[str, Path]) -> Path:
    p = Path(str(path_name))
    if p.is_absolute() and p.is_dir():
        return p
    if not p.is_absolute() and "://" not in str(path_name) and (root / p).is_dir():
        return root / p
    if plate in image_dirs:  # s3:// paths or another machine's: use the local plate folder
        return image_dirs[plate]
    return root / p


def _load_data_from_names(image_dirs: dict[str, Path]) -> pd.DataFrame:
    rows: dict[tuple, dict] = {}
    for plate, d in image_dirs.items():
        for f in d.glob("*.tiff"):
            m = CPJUMP1_FILE.match(f.name)
            if not m:
                continue
            row, col, field = int(m["row"]), int(m["col"]), int(m["field"])
            well = f"{chr(ord('A') + row - 1)}{col:02d}"
            rec = rows.setdefault((plate, well, field), {
                "Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": field})
            stain = CPJUMP1_CHANNELS.get(int(m["ch"]))
            if stain:
                rec[f"FileName_Orig{stain}"] = f.name
                rec[f"PathName_Orig{stain}"] = str(d)
    return pd.DataFrame(list(rows.values()))


def _join_platemap(root: Path, ld: pd.DataFrame) -> pd.DataFrame:
    maps = {p.stem: p for p in root.rglob("*platemap*.tsv")}
    barcode = sorted(root.rglob("barcode_platemap.csv"))
    compounds = sorted(root.rglob("*compound_metadata*.tsv"))
    if not maps or not compounds:
        warnings.warn(f"{root}: no platemap / compound metadata TSV found; perturbation columns "
                      "are empty. Download them with `make data NAME=cpjump1`.", stacklevel=3)
        for c in ("broad_sample", "pert_iname", "target", "pert_type", "control_type"):
            ld[f"Metadata_{c}"] = ""
        return ld
    plate_map = {}
    if barcode:
        bc = pd.read_csv(barcode[0], dtype=str)
        plate_map = dict(zip(bc.Assay_Plate_Barcode, bc.Plate_Map_Name, strict=False))
    default = next(iter(maps))
    ld["_map"] = ld.Metadata_Plate.map(plate_map).fillna(default)
    pm = pd.concat([pd.read_csv(maps[m], sep="\t", dtype=str, keep_default_na=False)
                    .assign(_map=m) for m in ld._map.unique() if m in maps])
    cm = pd.read_csv(compounds[0], sep="\t", dtype=str, keep_default_na=False)
    cm = cm.rename(columns={"target_list": "target"}).drop_duplicates("broad_sample")
    out = ld.merge(pm, left_on=["_map", "Metadata_Well"], right_on=["_map", "well_position"],
                   how="left").merge(cm, on="broad_sample", how="left")
    dmso = out.broad_sample.fillna("").eq("")
    out.loc[dmso, "pert_iname"] = "DMSO"
    out.loc[dmso, "pert_type"] = "control"
    out.loc[dmso, "control_type"] = "negcon"
    for c in ("broad_sample", "pert_iname", "target", "pert_type", "control_type"):
        out[f"Metadata_{c}"] = out[c].fillna("") if c in out else ""
    return out


# --------------------------------------------------------------------------------------------
# CPJUMP1 course subset
# --------------------------------------------------------------------------------------------


def read_cpjump1_subset(root: str | os.PathLike, metadata: str | os.PathLike | None = None,
                        errors: str = "report") -> pd.DataFrame:
    """Index the course subset: ``metadata_BR00116991.csv`` + ``r..c..f.._median_aggregated.tiff``.

    Images are matched on the first 9 characters of ``FileName_OrigRNA`` (``rXXcXXfXX``),
    ignoring case (names that differ in case are reported). Adds ``core`` and ``path_median``.
    """
    root = Path(root).expanduser()
    _require(root, "CPJUMP1 subset folder",
             "Pass the folder holding metadata_BR00116991.csv and the median-aggregated TIFFs.")
    if metadata is None:
        found = sorted(root.glob("metadata_*.csv"))
        if not found:
            raise DatasetError(f"no metadata_*.csv in {root}; pass metadata= the course CSV's path.")
        metadata = found[0]
    md = pd.read_csv(metadata, keep_default_na=False)
    md = md.drop(columns=[c for c in md.columns if c.startswith("Unnamed") or c == ""])
    for need in ("FileName_OrigRNA", "Metadata_pert_iname", "Metadata_Well"):
        if need not in md:
            raise DatasetError(f"{metadata} has no column {need!r}; is it the course metadata CSV?")
    md["core"] = md.FileName_OrigRNA.str[:9].str.lower()
    problems: list = []
    disk: dict[str, Path] = {}
    for p in root.rglob("*"):
        m = SUBSET_FILE.match(p.name)
        if m and p.is_file():
            core = m["core"].lower()
            if m["core"] != core or p.name != p.name.lower():
                problems.append(("case_mismatch", str(p), f"name differs in case from {core}",
                                 "matched ignoring case (as report 002 did by lower-casing)"))
            disk[core] = p
    md["path_median"] = md.core.map(disk)
    for core in md.core[md.path_median.isna()]:
        problems.append(("missing_file", f"{core}_median_aggregated.tiff",
                         "named by metadata but not on disk", "re-extract the course images"))
    for core in sorted(set(disk) - set(md.core)):
        problems.append(("no_metadata", str(disk[core]), "image that no metadata row names",
                         "add its row to the metadata CSV or move the file away"))
    dup = md.core.duplicated(keep=False)
    if dup.any():
        raise DatasetError(f"{metadata}: {dup.sum()} rows share a site core name "
                           f"(e.g. {md.core[dup].iloc[0]}); one row per site expected.")
    return _finish(md, problems, errors, "CPJUMP1 subset", ["path_median"])


# --------------------------------------------------------------------------------------------
# HPA-style cell lines
# --------------------------------------------------------------------------------------------


def read_cell_lines(root: str | os.PathLike, split: str = "train",
                    channels: Sequence[str] = ("blue", "red", "yellow"),
                    errors: str = "report") -> pd.DataFrame:
    """Index HPA-style samples: ``{split}/{id}_{colour}.png``; labels from ``{split}.csv``
    (``filename,cell_line``) when present. Columns: filename, cell_line, path_<colour>."""
    root = Path(root).expanduser()
    folder = _require(root / split, f"{split}/ folder of the cell-line data",
                      "Pass the folder that holds train/ and train.csv.")
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    ids = sorted({p.name.rsplit("_", 1)[0] for p in files})
    labels = root / f"{split}.csv"
    if labels.exists():
        md = pd.read_csv(labels, dtype=str)
        if not {"filename", "cell_line"} <= set(md.columns):
            raise DatasetError(f"{labels} must have columns filename,cell_line; has {list(md.columns)}")
    else:
        md = pd.DataFrame({"filename": ids, "cell_line": pd.NA})
    problems: list = []
    cols = [f"path_{c}" for c in channels]
    found = _DiskFiles(files)
    claimed = []
    for c in channels:
        md[f"path_{c}"] = found.resolve([folder / f"{i}_{c}.png" for i in md.filename],
                                        problems, "the sample needs all its channel files")
        claimed += list(md[f"path_{c}"])
    if labels.exists():
        mine = [p for p in files if p.stem.rsplit("_", 1)[-1].lower() in channels]
        _unclaimed(mine, claimed, problems, f"add the sample to {labels.name} or move it away")
    return _finish(md, problems, errors, f"cell lines ({split})", cols)
