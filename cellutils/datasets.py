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

import gzip
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils.images import read_image, stack_channels

# The channel tables, one place each (docs/datasets.md). Index = channel number in the file names.
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


MISSING = ""  # the one missing value of every text column of an index
_MISSING_WORDS = {"", "NA", "N/A", "NaN", "nan", "None", "<NA>", "null", "NULL"}


def normalise_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns with one missing value: ``NA``, ``NaN``, ``None``, empty -> ``MISSING``."""
    out = df.copy()
    for c in out.columns:
        if c.startswith("path_"):
            continue
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            col = out[c].astype(object)
            miss = col.isna() | col.astype(str).str.strip().isin(_MISSING_WORDS)
            out[c] = col.where(~miss, MISSING).astype(str)
    return out


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A metadata table as text: CSV, or tab-separated (``.tsv``/``.txt``, or a tab in the
    header), gzip allowed; missing values normalised (``normalise_missing``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        header = f.readline()
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    sep = "\t" if stem_suffix in (".tsv", ".txt") or "\t" in header else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"cannot read {path} as a table ({type(exc).__name__}: {exc}); "
                           "is it the metadata file it is named after?") from exc
    df = df.drop(columns=[c for c in df.columns if c == "" or c.startswith("Unnamed")])
    return normalise_missing(df)


def _find(root: Path, stem: str, what: str, fix: str,
          suffixes: tuple[str, ...] = (".tsv", ".txt", ".csv")) -> Path:
    """The one file under ``root`` named ``stem`` + a table suffix (gzip allowed); two
    candidates are an error (never silently chosen), none is an error naming the fix."""
    hits = sorted(p for p in root.rglob(f"{stem}.*") if p.is_file() and (
        p.suffix in suffixes or (p.suffix == ".gz" and Path(p.stem).suffix in suffixes)))
    if not hits:
        raise DatasetError(f"{what} {stem!r} not found under {root} (looked for {stem}"
                           f"{{{','.join(suffixes)}}}[.gz]). {fix}")
    if len(hits) > 1:
        raise DatasetError(f"{what}: {len(hits)} candidate files for {stem!r}: "
                           f"{[str(h) for h in hits]}. Keep one, or pass the one to use.")
    return hits[0]


def require_labels(index: pd.DataFrame, column: str, source: str, fix: str) -> None:
    """Raise when an index meant for a labelled task has no label at all."""
    if column not in index or not (index[column].astype(str) != MISSING).any():
        raise DatasetError(f"{source}: no row has a {column!r} label, so this index cannot "
                           f"train or score a classifier. {fix} (For segmentation only, pass "
                           "labels=False.)")


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
            path_cols: list[str], sort: Sequence[str] | None = None) -> pd.DataFrame:
    if errors not in ("report", "raise", "ignore"):
        raise ValueError(f"errors must be 'report', 'raise' or 'ignore', got {errors!r}")
    table = pd.DataFrame(problems, columns=["problem", "file", "detail", "fix"])
    if sort:  # deterministic row order, whatever order the file system listed files in
        index = index.sort_values(list(sort), kind="stable")
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
    if cols == ["path_rgb"]:  # one RGB composite per site (WILDS' RxRx1)
        return read_image(row["path_rgb"], rgb=True)
    return stack_channels([row[c] for c in cols])


# --------------------------------------------------------------------------------------------
# RxRx1
# --------------------------------------------------------------------------------------------


def read_rxrx1(root: str | os.PathLike, errors: str = "report", check_files: bool = True,
               labels: bool = True) -> pd.DataFrame:
    """Index an RxRx1 folder in any of its released forms.

    - rxrx.ai release: ``images/{experiment}/Plate{n}/{well}_s{site}_w{ch}.png`` +
      ``metadata.csv``; columns ``path_w1`` .. ``path_w6``
    - WILDS (``rxrx1_v1.0``): ``images/{experiment}/Plate{n}/{well}_s{site}.png``, one RGB
      composite per site, + ``metadata.csv`` whose ``dataset`` column holds WILDS' split
      (``train``; ``val`` and ``test``: held-out experiments; ``id_test``); column ``path_rgb``
    - Kaggle: ``{train,test}/{experiment}/Plate{n}/...`` + ``train.csv``, ``test.csv``,
      ``train_controls.csv``, ``test_controls.csv``; hidden test labels are ``MISSING``

    Columns: site_id, well_id, cell_type, dataset, experiment, plate, well, site, well_type,
    sirna (text, ``MISSING`` where hidden), sirna_id (<NA> where hidden), path columns.
    ``labels`` (default): raise when no training row has a label.
    """
    root = Path(root).expanduser()
    _require(root, "RxRx1 folder", "Pass the folder that holds metadata.csv or train.csv.")
    if not (root / "metadata.csv").exists() and (root / "rxrx1" / "metadata.csv").exists():
        root = root / "rxrx1"  # the release zips extract into rxrx1/
    form = "rxrx.ai"
    if (root / "metadata.csv").exists():
        md = read_table(root / "metadata.csv")
        need = {"experiment", "plate", "well", "site", "sirna_id", "well_type", "dataset"}
        if not need <= set(md.columns):
            raise DatasetError(f"{root / 'metadata.csv'} lacks columns {sorted(need - set(md.columns))}; "
                               "is this the rxrx.ai or WILDS release's metadata.csv?")
        md["folder"] = "images"
        images = root / "images"
        if not any(images.glob("*/Plate*/*_w1.png")) and any(images.glob("*/Plate*/*_s*.png")):
            form = "wilds"
    elif (root / "train.csv").exists():
        md, form = _read_kaggle(root), "kaggle"
    else:
        raise DatasetError(
            f"{root} holds neither metadata.csv (rxrx.ai or WILDS release) nor train.csv (Kaggle):"
            " not an RxRx1 folder. Point root at the folder that holds them, or run "
            "`make data NAME=rxrx1` to download the release."
        )
    md["sirna_id"] = pd.to_numeric(md.sirna_id.replace(MISSING, None), errors="coerce"
                                   ).astype("Int64")
    if "sirna" not in md:
        md["sirna"] = md.sirna_id.astype(object).where(md.sirna_id.notna(), MISSING).astype(str)
    md["plate"] = md.plate.astype(int)
    md["site"] = md.site.astype(int)
    bad = ~md.experiment.astype(str).str.match(RXRX1_EXPERIMENT)
    if bad.any():
        raise DatasetError(f"{root}: experiment names {sorted(md.experiment[bad].unique())[:5]} do not "
                           "match 'HUVEC-01'-style names; is this RxRx1?")
    if labels:
        require_labels(md[md.dataset == "train"], "sirna", f"RxRx1 at {root}",
                       "Use the release's metadata.csv (or Kaggle's train.csv), which label the "
                       "training wells.")
    problems: list = []
    files = {"path_rgb": "{w}_s{s}.png"} if form == "wilds" else {
        f"path_w{ch}": f"{{w}}_s{{s}}_w{ch}.png" for ch in RXRX1_CHANNELS}
    for col, pattern in files.items():
        md[col] = [root / f / e / f"Plate{p}" / pattern.format(w=w, s=s)
                   for f, e, p, w, s in zip(md.folder, md.experiment, md.plate, md.well, md.site,
                                            strict=False)]
    cols = list(files)
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
    index = _finish(md, problems, errors, f"RxRx1 ({form})", cols,
                    sort=["experiment", "plate", "well", "site"])
    index.attrs["form"] = form
    return index


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
    wells = wells.drop(columns=["sirna"])  # rebuilt as text (MISSING where hidden)
    wells["cell_type"] = wells.experiment.str.split("-").str[0]
    wells["well_id"] = wells.id_code
    sites = wells.loc[wells.index.repeat(2)].copy()
    sites["site"] = np.tile([1, 2], len(wells))
    sites["site_id"] = sites.well_id + "_" + sites.site.astype(str)
    sites["folder"] = sites.dataset
    cols = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
            "well_type", "sirna_id", "folder"]
    return normalise_missing(sites[cols].reset_index(drop=True))  # hidden labels: MISSING


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
                 errors: str = "report", check_files: bool = True, labels: bool = True,
                 compound_metadata: str | os.PathLike | None = None) -> pd.DataFrame:
    """Index CPJUMP1 sites: load_data tables (or, without them, the Phenix file names) joined to
    each plate's plate map (named by ``barcode_platemap.csv``) and the compound metadata.

    ``load_data.csv`` or ``load_data.csv.gz`` per plate, with ``FileName_Orig<stain>`` +
    ``PathName_Orig<stain>`` or ``URL_Orig<stain>`` columns (the Cell Painting Gallery's), all
    resolved to the local plate folder. Plate maps: ``.tsv``, ``.txt`` or ``.csv``, any name
    the barcode file gives, extra columns ignored. Compound metadata with ``target``,
    ``target_list`` and/or ``gene`` (see ``_targets``). Rows are sorted by plate, well, site.

    Columns: Metadata_Plate, Metadata_Well, Metadata_Site, Metadata_broad_sample,
    Metadata_pert_iname, Metadata_target, Metadata_target_list, Metadata_pert_type,
    Metadata_control_type, path_<stain> for the 8 channels (``CPJUMP1_CHANNELS``). Text
    columns use one missing value, ``MISSING``. ``labels`` (default): raise when no site has a
    compound name; wells whose compound is not in the metadata are reported and left out.
    """
    root = Path(root).expanduser()
    _require(root, "CPJUMP1 folder", "Pass the folder holding images/ and load_data_csv/.")
    image_dirs = _plate_image_dirs(root)
    stains = list(CPJUMP1_CHANNELS.values())
    load = _load_data_files(root)
    if load:
        ld = pd.concat([_load_data_columns(read_table(p), p, stains) for p in load],
                       ignore_index=True)
    elif image_dirs:
        ld = _load_data_from_names(image_dirs)
    else:
        raise DatasetError(
            f"{root} has neither load_data.csv(.gz) files nor Phenix image folders "
            "('<plate>__<timestamp>-Measurement1/Images'). Run `make data NAME=cpjump1`."
        )
    ld["Metadata_Plate"] = ld.Metadata_Plate.astype(str)
    ld["Metadata_Site"] = ld.Metadata_Site.astype(int)
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
    try:
        ld = _join_platemap(root, ld, compound_metadata)
    except DatasetError as exc:
        if labels:
            raise
        warnings.warn(f"{exc} Perturbation columns are left empty (labels=False).", stacklevel=2)
        for c in ("broad_sample", "pert_iname", "target", "target_list", "pert_type",
                  "control_type"):
            ld[f"Metadata_{c}"] = MISSING
    if labels:
        require_labels(ld, "Metadata_pert_iname", f"CPJUMP1 at {root}",
                       "Put the plate maps, barcode_platemap.csv and the compound metadata under "
                       "the folder (`make data NAME=cpjump1` fetches them).")
        unknown = ld[ld.Metadata_pert_iname == MISSING]
        for (plate, well), _ in unknown.groupby(["Metadata_Plate", "Metadata_Well"]):
            sample = ld.loc[(ld.Metadata_Plate == plate) & (ld.Metadata_Well == well),
                            "Metadata_broad_sample"].iloc[0]
            problems.append(("no_label", f"{plate}/{well}", f"compound {sample} is not in the "
                             "compound metadata", "use the metadata version of the plate map"))
        ld = ld[ld.Metadata_pert_iname != MISSING]
    meta = [c for c in ld.columns if c.startswith("Metadata_")]
    return _finish(ld[meta + cols], problems, errors, "CPJUMP1", cols,
                   sort=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])


def _load_data_files(root: Path) -> list[Path]:
    """``load_data.csv`` or ``load_data.csv.gz`` of every plate; both in one folder is refused."""
    files = sorted([*root.rglob("load_data.csv"), *root.rglob("load_data.csv.gz")])
    folders = [p.parent for p in files]
    twice = sorted({str(f) for f in folders if folders.count(f) > 1})
    if twice:
        raise DatasetError(f"both load_data.csv and load_data.csv.gz in {twice}: keep one "
                           "(they may differ), so that no site is read twice.")
    return files


def _load_data_columns(ld: pd.DataFrame, path: Path, stains: list[str]) -> pd.DataFrame:
    """``FileName_Orig<stain>`` / ``PathName_Orig<stain>`` for every stain, from those columns
    or from ``URL_Orig<stain>`` (a file's URL: its name and its folder)."""
    for s in stains:
        url = f"URL_Orig{s}"
        if f"FileName_Orig{s}" not in ld and url in ld:
            ld[f"FileName_Orig{s}"] = ld[url].str.rsplit("/", n=1).str[-1]
        if f"PathName_Orig{s}" not in ld:
            ld[f"PathName_Orig{s}"] = (ld[url].str.rsplit("/", n=1).str[0] if url in ld
                                       else MISSING)
    missing = [s for s in stains if f"FileName_Orig{s}" not in ld]
    if missing:
        raise DatasetError(f"{path} has neither FileName_Orig<stain> nor URL_Orig<stain> "
                           f"columns for {missing}; expected a CellProfiler load_data table.")
    for need in ("Metadata_Plate", "Metadata_Well", "Metadata_Site"):
        if need not in ld:
            raise DatasetError(f"{path} has no {need} column; expected a load_data table.")
    return ld


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


def _targets(cm: pd.DataFrame) -> pd.DataFrame:
    """One documented target column from any version of the compound metadata.

    ``target`` (single gene; older JUMP-Target) wins, then ``gene`` (the CPJUMP1 paper's
    file), then ``target_list`` (genes joined by ``|``; current JUMP-Target). The full list is
    kept as ``target_list`` (the single target where no list exists).
    """
    out = cm.copy()
    single = next((c for c in ("target", "gene") if c in out), None)
    listed = out.get("target_list")
    if single is not None:
        out["target"] = out[single]
        if listed is not None:  # a gene missing from the single column: take the list
            out["target"] = out.target.where(out.target != MISSING, listed)
    else:
        out["target"] = listed if listed is not None else MISSING
    out["target_list"] = listed if listed is not None else out.target
    return out.drop(columns=[c for c in ("gene",) if c in out])


def _join_platemap(root: Path, ld: pd.DataFrame,
                   compound_metadata: str | os.PathLike | None = None) -> pd.DataFrame:
    """Add perturbation columns: plate -> plate map (``barcode_platemap.csv``) -> well ->
    broad_sample -> compound metadata. Anything missing or ambiguous is an error naming the
    file and the fix; labels are never left empty silently."""
    fix = "Download the plate's metadata (`make data NAME=cpjump1`) into this folder."
    barcodes = sorted(root.rglob("barcode_platemap.csv"))
    if barcodes:
        bc = pd.concat([read_table(p) for p in barcodes]).drop_duplicates()
        clash = bc[bc.Assay_Plate_Barcode.duplicated(keep=False)]
        if len(clash):
            raise DatasetError(f"{[str(p) for p in barcodes]} map plate "
                               f"{clash.Assay_Plate_Barcode.iloc[0]} to several plate maps; keep "
                               "one barcode_platemap.csv.")
        names = dict(zip(bc.Assay_Plate_Barcode, bc.Plate_Map_Name, strict=True))
        unknown = sorted(set(ld.Metadata_Plate) - set(names))
        if unknown:
            raise DatasetError(f"plates {unknown} are not in {barcodes[0]}; add them with their "
                               "plate map's name.")
    else:
        maps = sorted(p for p in root.rglob("*platemap*") if p.is_file()
                      and p.name != "barcode_platemap.csv" and ".csv" not in p.name)
        if len(maps) != 1:
            raise DatasetError(f"no barcode_platemap.csv under {root} and {len(maps)} plate maps "
                               f"({[p.name for p in maps][:4]}): which plate uses which is "
                               f"unknown. {fix}")
        names = {p: maps[0].name.split(".")[0] for p in ld.Metadata_Plate.unique()}
    ld = ld.assign(_map=ld.Metadata_Plate.map(names))
    pm = []
    for name in sorted(ld._map.unique()):
        t = read_table(_find(root, name, "plate map", fix))
        if not {"well_position", "broad_sample"} <= set(t.columns):
            raise DatasetError(f"plate map {name} lacks well_position/broad_sample columns; "
                               f"has {list(t.columns)}")
        pm.append(t[["well_position", "broad_sample"]].assign(_map=name))
    pm = pd.concat(pm)
    if compound_metadata is None:
        stems = {n.replace("platemap", "metadata") for n in ld._map.unique()}
        found = [_find(root, st, "compound metadata", fix) for st in sorted(stems)]
    else:
        found = [_require(Path(compound_metadata), "compound metadata", fix)]
    cm = _targets(pd.concat([read_table(p) for p in found]))
    for need in ("broad_sample", "pert_iname"):
        if need not in cm:
            raise DatasetError(f"{found[0]} has no {need!r} column; is it compound metadata?")
    cm = cm.drop_duplicates("broad_sample")
    keep = [c for c in ("broad_sample", "pert_iname", "target", "target_list", "pert_type",
                        "control_type") if c in cm]
    out = ld.merge(pm, left_on=["_map", "Metadata_Well"], right_on=["_map", "well_position"],
                   how="left").merge(cm[keep], on="broad_sample", how="left")
    out = normalise_missing(out.drop(columns=["_map", "well_position"]))
    dmso = out.broad_sample.isin([MISSING, "DMSO"])
    out.loc[dmso, "pert_iname"] = "DMSO"
    out.loc[dmso, "pert_type"] = "control"
    out.loc[dmso, "control_type"] = "negcon"
    for c in ("broad_sample", "pert_iname", "target", "target_list", "pert_type", "control_type"):
        out[f"Metadata_{c}"] = out.get(c, MISSING)
    return out.drop(columns=[c for c in ("broad_sample", "pert_iname", "target", "target_list",
                                         "pert_type", "control_type") if c in out])


# --------------------------------------------------------------------------------------------
# CPJUMP1 course subset
# --------------------------------------------------------------------------------------------


def read_cpjump1_subset(root: str | os.PathLike, metadata: str | os.PathLike | None = None,
                        errors: str = "report", labels: bool = True) -> pd.DataFrame:
    """Index the course subset: ``metadata_BR00116991.csv`` + ``r..c..f.._median_aggregated.tiff``.

    Images are matched on the first 9 characters of ``FileName_OrigRNA`` (``rXXcXXfXX``),
    ignoring case (names that differ in case are reported). Two files for one site anywhere
    under the folder (e.g. a copy in a results subfolder) are reported and neither is chosen.
    Adds ``core`` and ``path_median``; text columns use one missing value, ``MISSING``.
    ``labels`` (default): raise when no row names a compound.
    """
    root = Path(root).expanduser()
    _require(root, "CPJUMP1 subset folder",
             "Pass the folder holding metadata_BR00116991.csv and the median-aggregated TIFFs.")
    if metadata is None:
        found = sorted(root.glob("metadata_*.csv"))
        if not found:
            raise DatasetError(f"no metadata_*.csv in {root}; pass metadata= the course CSV's path.")
        metadata = found[0]
    md = read_table(metadata)
    for need in ("FileName_OrigRNA", "Metadata_pert_iname", "Metadata_Well"):
        if need not in md:
            raise DatasetError(f"{metadata} has no column {need!r}; is it the course metadata CSV?")
    if labels:
        require_labels(md, "Metadata_pert_iname", str(metadata),
                       "Use the course's metadata CSV, which names each site's compound.")
    md["core"] = md.FileName_OrigRNA.str[:9].str.lower()
    problems: list = []
    disk: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        m = SUBSET_FILE.match(p.name)
        if m and p.is_file():
            core = m["core"].lower()
            if m["core"] != core or p.name != p.name.lower():
                problems.append(("case_mismatch", str(p), f"name differs in case from {core}",
                                 "matched ignoring case (as report 002 did by lower-casing)"))
            disk.setdefault(core, []).append(p)
    ambiguous = {core for core, found in disk.items() if len(found) > 1}
    for core in sorted(ambiguous):
        problems.append(("ambiguous_file", ", ".join(map(str, disk.pop(core))),
                         f"several files for site {core}; none was chosen",
                         "move the copies out of the dataset folder"))
    md["path_median"] = md.core.map({k: v[0] for k, v in disk.items()})
    for core in md.core[md.path_median.isna() & ~md.core.isin(ambiguous)]:
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
                    errors: str = "report", labels: bool | None = None) -> pd.DataFrame:
    """Index the cell-line samples: ``{split}/`` or ``images_{split}/`` holding
    ``{id}_{colour}.png``; labels from ``{split}.csv`` or ``y_{split}.csv`` (an id column
    ``filename``, ``file_id`` or ``id``, and ``cell_line``). The challenge's zero-padded ids
    (``00026_blue.png``) and unpadded ids (``26``) match each other; two files for one id are
    reported, never chosen. Columns: filename, cell_line, path_<colour>.

    ``labels``: raise when no sample has a label (default: for the training split; the
    challenge kept its test labels).
    """
    root = Path(root).expanduser()
    labels = split == "train" if labels is None else labels
    folder = next((root / f for f in (split, f"images_{split}") if (root / f).is_dir()), None)
    if folder is None:
        raise DatasetError(f"{split}/ (or images_{split}/) folder not found in {root}. Pass the folder "
                           f"that holds the extracted images_{split}.tar and y_{split}.csv.")
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    problems: list = []
    by_key: dict[str, set[str]] = {}
    for p in files:
        sid = p.name.rsplit("_", 1)[0]
        by_key.setdefault(_sample_key(sid), set()).add(sid)
    for key, ids in list(by_key.items()):
        if len(ids) > 1:
            problems.append(("ambiguous_file", str(folder / sorted(ids)[0]),
                             f"sample ids {sorted(ids)} are one sample", "keep one set of files"))
            del by_key[key]
    table = next((root / n for n in (f"{split}.csv", f"y_{split}.csv") if (root / n).exists()),
                 None)
    if table is not None:
        md = read_table(table)
        idcol = next((c for c in ("filename", "file_id", "id", "ID") if c in md), None)
        if idcol is None or "cell_line" not in md:
            raise DatasetError(f"{table} needs an id column (filename, file_id or id) and "
                               f"cell_line; has {list(md.columns)}")
        md = md.rename(columns={idcol: "filename"})
    elif labels:
        raise DatasetError(f"no {split}.csv or y_{split}.csv in {root}: the {split} samples "
                           "have no labels. Put the challenge's y_train.csv beside the images "
                           "(or pass labels=False for an unlabelled index).")
    else:
        md = pd.DataFrame({"filename": sorted(i for ids in by_key.values() for i in ids),
                           "cell_line": MISSING})
    md["filename"] = [next(iter(by_key.get(_sample_key(i), {i}))) for i in md.filename]
    if labels:
        require_labels(md, "cell_line", str(table), "Check the label file's cell_line column.")
    cols = [f"path_{c}" for c in channels]
    found = _DiskFiles(files)
    claimed = []
    for c in channels:
        md[f"path_{c}"] = found.resolve([folder / f"{i}_{c}.png" for i in md.filename],
                                        problems, "the sample needs all its channel files")
        claimed += list(md[f"path_{c}"])
    if table is not None:
        mine = [p for p in files if p.stem.rsplit("_", 1)[-1].lower() in channels]
        _unclaimed(mine, claimed, problems, f"add the sample to {table.name} or move it away")
    return _finish(md, problems, errors, f"cell lines ({split})", cols, sort=["filename"])


def _sample_key(sample_id: str) -> str:
    """``00026`` and ``26`` are one sample (the challenge told users to strip the zeros)."""
    return sample_id.lstrip("0") or "0"
