"""CPJUMP1 (reports 002-004's source): channels and colours, the reader of the Cell Painting
Gallery's plates (load_data tables, plate maps, compound metadata in their real variants), the
synthetic writer of the same layout, and the download manifest (``make data NAME=cpjump1``).

Layout facts: ``docs/datasets.md``. Terms: the Cell Painting Gallery's (CC0 1.0).
"""

from __future__ import annotations

import json
import os
import re
import string
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils import simulate as sim
from cellutils.datasets._base import (
    MISSING,
    DatasetError,
    Layout,
    _DiskFiles,
    _find,
    _finish,
    _require,
    _unclaimed,
    lines,
    normalise_missing,
    normalise_well,
    parse_int,
    read_table,
    require_labels,
    table_columns,
    unique_rows,
    walk,
)
from cellutils.paths import safe_key
from cellutils.synthetic import (
    SIM_STAIN,
    Imaging,
    SiteJob,
    Staging,
    drug_names,
    gene_names,
    render_all,
    well_name,
    write_truth,
)

# Channel number in the file names (ch1..ch8) -> stain (best-supported mapping; the order of
# the brightfield planes is unverified).
CHANNELS = {
    1: "Mito",
    2: "AGP",
    3: "RNA",
    4: "ER",
    5: "DNA",
    6: "Brightfield",
    7: "HighZBF",
    8: "LowZBF",
}
STAINS = tuple(CHANNELS.values())
# ch1..ch5 in the usual Cell Painting display colours (Mito magenta, AGP red, RNA yellow,
# ER green, DNA blue); the brightfield planes are shown grey, on their own.
COLOURS = ((255, 0, 255), (255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 0, 255))
SIM = tuple(SIM_STAIN[v] for v in STAINS)  # the simulator's compartment per channel

FILE = re.compile(
    r"^r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p(?P<plane>\d{2})-ch(?P<ch>\d)sk1fk1fl1\.tiff$"
)
BUCKET = "cellpainting-gallery"  # the Cell Painting Gallery's public S3 bucket
FLUORESCENT = (1, 2, 3, 4, 5)  # what ``make data NAME=cpjump1`` fetches unless told otherwise
PREFIX = "cpg0000-jump-pilot/source_4/"
IMAGE_DIR = "images/2020_11_04_CPJUMP1/images"
PLATEMAP = "metadata/platemaps/2020_11_04_CPJUMP1/platemap/JUMP-Target-1_compound_platemap.tsv"
COMPOUNDS = "metadata/external_metadata/JUMP-Target-1_compound_metadata.tsv"
# Latent shifts (``simulate.context_shift``; chosen, not fitted: docs/simulator.md): CPJUMP1's
# well-position effect is large (same-position DMSO wells: 53.1% percent replicating), shared by
# a position on every plate (``position_sd``), beside each well's own handling (``well_sd``);
# together as large as the former per-well 0.5 (0.3^2 + 0.4^2 = 0.5^2). Its plates differ less.
NUISANCE = {"experiment_sd": 0.0, "plate_sd": 0.2, "well_sd": 0.3, "position_sd": 0.4}


def cpjump1_site_key(index: pd.DataFrame) -> pd.Series:
    """``{plate}_{well}_{site}``: how a CPJUMP1 site is named in masks and ground truth."""
    return (
        index.Metadata_Plate.astype(str)
        + "_"
        + index.Metadata_Well.astype(str)
        + "_"
        + index.Metadata_Site.astype(str)
    )


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def _plate_image_dirs(root: Path) -> dict[str, Path]:
    """``{plate: .../Images}`` for every Phenix measurement folder under root."""
    out = {}
    for d in walk(root, "*__*", dirs=True):  # follows a symlinked images/ folder
        if (d / "Images").is_dir():
            out[safe_key(d.name.split("__")[0], "plate", str(d))] = d / "Images"
    return out


def read_cpjump1(
    root: str | os.PathLike,
    plates: Sequence[str] | None = None,
    errors: str = "report",
    check_files: bool = True,
    labels: bool = True,
    compound_metadata: str | os.PathLike | None = None,
    channels: Sequence[int] | None = None,
    unlabelled: str = "error",
) -> pd.DataFrame:
    """Index CPJUMP1 sites: load_data tables (or, without them, the Phenix file names) joined to
    each plate's plate map (named by ``barcode_platemap.csv``) and the compound metadata.

    ``load_data.csv`` or ``load_data.csv.gz`` per plate, with ``FileName_Orig<stain>`` +
    ``PathName_Orig<stain>`` or ``URL_Orig<stain>`` columns (the Cell Painting Gallery's), all
    resolved to the local plate folder. Plate maps: ``.tsv``, ``.txt`` or ``.csv``, any name
    the barcode file gives, extra columns ignored; wells written ``A1`` or ``A01`` alike.
    Compound metadata: ``compound_metadata``, else the file named after the plate map
    (``..._platemap`` -> ``..._metadata``), else the one table under a ``metadata*`` folder
    with ``broad_sample`` and ``pert_iname`` columns (so a pilot plate map such as
    ``C-7210-01-CMP-013.txt`` finds it); ``target``, ``target_list`` and/or ``gene`` (see
    ``_targets``). Rows repeated exactly in a table are collapsed; conflicting ones are an
    error naming both lines. Rows are sorted by plate, well, site.

    Columns: Metadata_Plate, Metadata_Well, Metadata_Site, Metadata_broad_sample,
    Metadata_pert_iname, Metadata_target, Metadata_target_list, Metadata_pert_type,
    Metadata_control_type, path_<stain> for the 8 channels (``CHANNELS``). Text
    columns use one missing value, ``MISSING``. ``labels`` (default): raise when no site has a
    compound name. A site whose well has no plate-map row, or whose compound has no metadata
    row, is an error naming the file and the wells (``unlabelled="error"``); with
    ``unlabelled="keep"`` it stays in the index with ``Metadata_pert_iname`` ``MISSING`` (and
    is listed in ``problems``), never as DMSO. A plate-map row with an empty
    ``broad_sample`` is a DMSO well (the real plate maps write them so).
    ``channels``: the channel numbers to index (default: those ``make data`` fetched, named in
    the folder's ``download.json``, else all eight); other channels' files are not looked for.
    """
    if unlabelled not in ("error", "keep"):
        raise ValueError(f"unlabelled must be 'error' or 'keep', got {unlabelled!r}")
    root = Path(root).expanduser()
    _require(root, "CPJUMP1 folder", "Pass the folder holding images/ and load_data_csv/.")
    image_dirs = _plate_image_dirs(root)
    stains = [CHANNELS[c] for c in (channels or _downloaded_channels(root))]
    load = _load_data_files(root)
    if load:
        ld = pd.concat(
            [_load_data_columns(lines(read_table(p), p), p, stains) for p in load],
            ignore_index=True,
        )
        keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
        ld = unique_rows(ld, keys, "load_data tables").drop(columns=["_file", "_line"])
    elif image_dirs:
        ld = _load_data_from_names(image_dirs)
    else:
        raise DatasetError(
            f"{root} has neither load_data.csv(.gz) files nor Phenix image folders "
            "('<plate>__<timestamp>-Measurement1/Images'). Run `make data NAME=cpjump1`."
        )
    ld["Metadata_Plate"] = ld.Metadata_Plate.astype(str)
    if plates is not None:
        ld = ld[ld.Metadata_Plate.isin(list(plates))].reset_index(drop=True)
    problems: list = []
    for s in stains:
        folders = [
            _resolve_folder(root, p, plate, image_dirs)
            for p, plate in zip(ld[f"PathName_Orig{s}"], ld.Metadata_Plate, strict=False)
        ]
        ld[f"path_{s}"] = [
            Path(f) / n for f, n in zip(folders, ld[f"FileName_Orig{s}"], strict=False)
        ]
    cols = [f"path_{s}" for s in stains]
    if check_files:
        disk = [
            p
            for plate, d in image_dirs.items()
            if plates is None or plate in plates
            for p in d.glob("*.tif*")
            if not FILE.match(p.name) or CHANNELS.get(int(FILE.match(p.name)["ch"])) in stains
        ]
        found = _DiskFiles(disk)
        claimed = []
        for c in cols:
            ld[c] = found.resolve(
                list(ld[c]), problems, "re-download the plate's images (`make data NAME=cpjump1`)"
            )
            claimed += list(ld[c])
        _unclaimed(disk, claimed, problems, "add the site to load_data.csv")
    unknown: list = []
    try:
        ld, unknown = _join_platemap(root, ld, compound_metadata)
    except DatasetError as exc:
        if labels:
            raise
        warnings.warn(f"{exc} Perturbation columns are left empty (labels=False).", stacklevel=2)
        for c in (
            "broad_sample",
            "pert_iname",
            "target",
            "target_list",
            "pert_type",
            "control_type",
        ):
            ld[f"Metadata_{c}"] = MISSING
    if unknown and unlabelled == "error":
        shown = "\n".join(f"  {file}: {why}" for file, why in unknown[:10])
        raise DatasetError(
            f"CPJUMP1 at {root}: {len(unknown)} wells have no label, so their sites would be "
            f"mislabelled or lost:\n{shown}\nAdd the missing rows to those files (or pass "
            "unlabelled='keep' to index these sites with an empty label)."
        )
    for file, why in unknown:
        problems.append(("no_label", file, why, "add the row; the sites are kept unlabelled"))
    if labels:
        require_labels(
            ld,
            "Metadata_pert_iname",
            f"CPJUMP1 at {root}",
            "Put the plate maps, barcode_platemap.csv and the compound metadata under "
            "the folder (`make data NAME=cpjump1` fetches them).",
        )
    meta = [c for c in ld.columns if c.startswith("Metadata_")]
    return _finish(
        ld[meta + cols],
        problems,
        errors,
        "CPJUMP1",
        cols,
        sort=["Metadata_Plate", "Metadata_Well", "Metadata_Site"],
    )


def _downloaded_channels(root: Path) -> list[int]:
    """The channels ``make data NAME=cpjump1 --channels ...`` fetched (its ``download.json``),
    so that channels left out on purpose are not reported missing; all eight otherwise."""
    record = root / "download.json"
    chans = json.loads(record.read_text()).get("channels") if record.is_file() else None
    return [int(c) for c in chans] if chans else list(CHANNELS)


def _load_data_files(root: Path) -> list[Path]:
    """``load_data.csv`` or ``load_data.csv.gz`` of every plate; both in one folder is refused."""
    files = sorted([*walk(root, "load_data.csv"), *walk(root, "load_data.csv.gz")])
    folders = [p.parent for p in files]
    twice = sorted({str(f) for f in folders if folders.count(f) > 1})
    if twice:
        raise DatasetError(
            f"both load_data.csv and load_data.csv.gz in {twice}: keep one "
            "(they may differ), so that no site is read twice."
        )
    return files


def _load_data_columns(ld: pd.DataFrame, path: Path, stains: list[str]) -> pd.DataFrame:
    """``FileName_Orig<stain>`` / ``PathName_Orig<stain>`` for every stain, from those columns
    or from ``URL_Orig<stain>`` (a file's URL: its name and its folder)."""
    for s in stains:
        url = f"URL_Orig{s}"
        if f"FileName_Orig{s}" not in ld and url in ld:
            ld[f"FileName_Orig{s}"] = ld[url].str.rsplit("/", n=1).str[-1]
        if f"PathName_Orig{s}" not in ld:
            ld[f"PathName_Orig{s}"] = ld[url].str.rsplit("/", n=1).str[0] if url in ld else MISSING
    missing = [s for s in stains if f"FileName_Orig{s}" not in ld]
    if missing:
        raise DatasetError(
            f"{path} has neither FileName_Orig<stain> nor URL_Orig<stain> "
            f"columns for {missing}; expected a CellProfiler load_data table."
        )
    for need in ("Metadata_Plate", "Metadata_Well", "Metadata_Site"):
        if need not in ld:
            raise DatasetError(f"{path} has no {need} column; expected a load_data table.")
    for i, plate in ld.Metadata_Plate.items():  # plates name mask and part files
        safe_key(plate, "Metadata_Plate", f"{path}, line {ld.at[i, '_line']}")
    ld["Metadata_Well"] = normalise_well(ld, "Metadata_Well", str(path))
    ld["Metadata_Site"] = parse_int(ld, "Metadata_Site", str(path))
    return unique_rows(ld, ["Metadata_Plate", "Metadata_Well", "Metadata_Site"], str(path))


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
            m = FILE.match(f.name)
            if not m:
                continue
            row, col, field = int(m["row"]), int(m["col"]), int(m["field"])
            well = f"{chr(ord('A') + row - 1)}{col:02d}"
            rec = rows.setdefault(
                (plate, well, field),
                {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": field},
            )
            stain = CHANNELS.get(int(m["ch"]))
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


PERTURBATION = ("broad_sample", "pert_iname", "target", "target_list", "pert_type", "control_type")


def _join_platemap(
    root: Path, ld: pd.DataFrame, compound_metadata: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Add perturbation columns: plate -> plate map (``barcode_platemap.csv``) -> well ->
    broad_sample -> compound metadata. A missing or ambiguous file is an error naming it and
    the fix. Returns the index and the wells left without a label, as (file, what is missing):
    those are ``MISSING``, never filled."""
    fix = "Download the plate's metadata (`make data NAME=cpjump1`) into this folder."
    barcodes = walk(root, "barcode_platemap.csv")
    if barcodes:
        bc = pd.concat([lines(read_table(p), p) for p in barcodes])
        bc = unique_rows(bc, ["Assay_Plate_Barcode"], "barcode_platemap.csv")
        names = dict(zip(bc.Assay_Plate_Barcode, bc.Plate_Map_Name, strict=True))
        unknown = sorted(set(ld.Metadata_Plate) - set(names))
        if unknown:
            raise DatasetError(
                f"plates {unknown} are not in {barcodes[0]}; add them with their plate map's name."
            )
    else:
        maps = [
            p
            for p in walk(root, "*platemap*")
            if p.name != "barcode_platemap.csv" and ".csv" not in p.name
        ]
        if len(maps) != 1:
            raise DatasetError(
                f"no barcode_platemap.csv under {root} and {len(maps)} plate maps "
                f"({[p.name for p in maps][:4]}): which plate uses which is "
                f"unknown. {fix}"
            )
        names = {p: maps[0].name.split(".")[0] for p in ld.Metadata_Plate.unique()}
    ld = ld.assign(_map=ld.Metadata_Plate.map(names))
    pm, map_files = [], {}
    for name in sorted(ld._map.unique()):
        path = _find(root, name, "plate map", fix)
        t = lines(read_table(path), path)
        if not {"well_position", "broad_sample"} <= set(t.columns):
            raise DatasetError(
                f"plate map {path} lacks well_position/broad_sample columns; has "
                f"{[c for c in t.columns if not c.startswith('_')]}"
            )
        t = t[["well_position", "broad_sample", "_file", "_line"]]
        t["well_position"] = normalise_well(t, "well_position", str(path))
        pm.append(unique_rows(t, ["well_position"], f"plate map {path}").assign(_map=name))
        map_files[name] = path
    pm = pd.concat(pm).drop(columns=["_file", "_line"])
    cm, cm_files = _compound_metadata(root, map_files, compound_metadata, fix)
    keep = [c for c in PERTURBATION if c in cm]
    out = ld.merge(
        pm,
        left_on=["_map", "Metadata_Well"],
        right_on=["_map", "well_position"],
        how="left",
        indicator="_in_map",
    )
    no_row = out._in_map != "both"
    out["broad_sample"] = out.broad_sample.fillna(MISSING)
    dmso = ~no_row & out.broad_sample.isin([MISSING, "DMSO"])  # the plate maps' DMSO wells
    out = out.merge(cm[keep], on="broad_sample", how="left", indicator="_in_meta")
    out = normalise_missing(out.drop(columns=["well_position"]))
    out.loc[dmso, "pert_iname"] = "DMSO"
    out.loc[dmso, "pert_type"] = "control"
    out.loc[dmso, "control_type"] = "negcon"
    no_compound = ~no_row & ~dmso & (out._in_meta != "both")
    for c in PERTURBATION:  # a well without a row is MISSING in every column, never DMSO
        out[f"Metadata_{c}"] = out.get(c, MISSING)
        out.loc[no_row | no_compound, f"Metadata_{c}"] = MISSING
    out.loc[no_compound, "Metadata_broad_sample"] = out.loc[no_compound, "broad_sample"]
    unknown = []
    wells = out[["Metadata_Plate", "Metadata_Well", "_map", "broad_sample"]]
    for (plate, well, name), _ in wells[no_row].groupby(
        ["Metadata_Plate", "Metadata_Well", "_map"]
    ):
        unknown.append((str(map_files[name]), f"plate {plate} well {well} has no row"))
    for (plate, well, sample), _ in wells[no_compound].groupby(
        ["Metadata_Plate", "Metadata_Well", "broad_sample"]
    ):
        unknown.append(
            (
                ", ".join(map(str, cm_files)),
                f"compound {sample} (plate {plate} well {well}) has no row",
            )
        )
    drop = [c for c in (*PERTURBATION, "_map", "_in_map", "_in_meta") if c in out]
    return out.drop(columns=drop), unknown


def _compound_metadata(
    root: Path,
    map_files: dict[str, Path],
    given: str | os.PathLike | None,
    fix: str,
) -> tuple[pd.DataFrame, list[Path]]:
    """The compound metadata, one row per ``broad_sample``: the file given, else the one named
    after the plate map (``..._platemap`` -> ``..._metadata``), else the one table under a
    ``metadata*`` folder whose columns include ``broad_sample`` and ``pert_iname`` (found by
    its columns, whatever its name)."""
    need = {"broad_sample", "pert_iname"}
    if given is not None:
        found = [_require(Path(given), "compound metadata", fix)]
    else:
        stems = {n.replace("platemap", "metadata") for n in map_files} - set(map_files)
        named = [p for st in sorted(stems) for p in walk(root, f"{st}.*") if _is_table(p)]
        found = named if len(named) == len(stems) and stems else []
        if not found:
            maps = {p.resolve() for p in map_files.values()}
            folders = walk(root, "metadata*", dirs=True) or [root]
            tables = sorted(
                {
                    p
                    for d in folders
                    for p in walk(d)
                    if _is_table(p)
                    and p.resolve() not in maps
                    and not p.name.startswith(("load_data", "barcode_platemap"))
                }
            )
            found = [p for p in tables if need <= set(table_columns(p))]
            if not found:
                raise DatasetError(
                    f"no compound metadata under {root}: looked for a file named "
                    f"{sorted(stems) or 'after the plate map'} (.tsv/.txt/.csv) and for any "
                    f"table under {[str(d) for d in folders]} with the "
                    f"columns {sorted(need)} (the tables there have none: "
                    f"{[p.name for p in tables][:6]}). Put the compound metadata (JUMP-Target's "
                    f"..._compound_metadata.tsv) there or pass compound_metadata=. {fix}"
                )
            if len(found) > 1:
                raise DatasetError(
                    f"{len(found)} tables under {root} have the compound-metadata columns "
                    f"{sorted(need)}: {[str(p) for p in found]}. Pass compound_metadata= the "
                    "one to use (none is chosen for you)."
                )
    parts = []
    for p in found:
        t = read_table(p)
        missing = need - set(t.columns)
        if missing:
            raise DatasetError(
                f"{p} has no {sorted(missing)} column; is it compound metadata? (a plate map "
                "has well_position and broad_sample; the compound metadata has broad_sample "
                "and pert_iname)"
            )
        parts.append(lines(_targets(t), p))
    cm = unique_rows(pd.concat(parts, ignore_index=True), ["broad_sample"], "compound metadata")
    return cm.drop(columns=["_file", "_line"]), found


def _is_table(p: Path) -> bool:
    suffixes = (".tsv", ".txt", ".csv")
    return p.suffix in suffixes or (p.suffix == ".gz" and Path(p.stem).suffix in suffixes)


# --------------------------------------------------------------------------------------------
# Synthetic writer (the course subset's writer shares the compound library)
# --------------------------------------------------------------------------------------------


def cpjump1_filename(row: int, col: int, field: int, ch: int) -> str:
    """Opera Phenix name, 1-based row/col/field/channel: ``r01c01f01p01-ch1sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{field:02d}p01-ch{ch}sk1fk1fl1.tiff"


def compound_library(n_compounds: int, n_positive: int, seed: int, strength: float):
    names = drug_names(n_compounds + n_positive, seed)
    perts = sim.make_perturbations(
        n_compounds,
        seed,
        prefix="cmpd",
        strength=strength,
        names=names[:n_compounds],
        n_positive=n_positive,
        negative_control="DMSO",
    )
    for j in range(n_positive):
        perts.names[n_compounds + 1 + j] = names[n_compounds + j]
    genes = gene_names(perts.targets)
    rng = sim.key_rng(seed, "broad")
    broad = [
        f"BRD-K{x:08d}-001-01-{int(rng.integers(0, 10))}"
        for x in rng.choice(np.arange(10**7, 10**8), len(perts.names), replace=False)
    ]
    table = pd.DataFrame(
        {
            "broad_sample": broad,
            "InChIKey": [
                "".join(rng.choice(list(string.ascii_uppercase), 14)) + "-UHFFFAOYSA-N"
                for _ in perts.names
            ],
            "pert_iname": perts.names,
            "pubchem_cid": rng.choice(np.arange(10**5, 10**7), len(perts.names), replace=False),
            "target": genes,
            "pert_type": ["control" if k != "trt" else "trt" for k in perts.kind],
            "control_type": [
                {"trt": "", "negcon": "negcon", "poscon": "poscon_cp"}[k] for k in perts.kind
            ],
            "smiles": ["C" * int(rng.integers(3, 12)) + "O" for _ in perts.names],
        }
    )
    table.loc[table.pert_iname == "DMSO", ["broad_sample", "InChIKey", "pubchem_cid", "smiles"]] = [
        "",
        "",
        -1,
        "",
    ]
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
    params = dict(
        layout="cpjump1",
        plates=list(plates),
        n_compounds=n_compounds,
        n_positive=n_positive,
        n_dmso_wells=n_dmso_wells,
        sites=sites,
        size=size,
        seed=seed,
        strength=strength,
        nuisance=nuisance or NUISANCE,
    )
    stage = Staging(root, params)
    if stage.existing():
        return stage.root
    perts, compounds = compound_library(n_compounds, n_positive, seed, strength)
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
        folder = f"{IMAGE_DIR}/{plate}__2020-11-05T19_51_35-Measurement1/Images"
        for well, _, _, p, r, c in platemap:
            for f in range(1, sites + 1):
                files = [cpjump1_filename(r + 1, c, f, ch) for ch in range(1, 9)]
                key = f"{plate}_{well}_{f}"
                jobs.append(
                    SiteJob(
                        key,
                        "A549",
                        p,
                        "2020_11_04_CPJUMP1",
                        plate,
                        well,
                        f,
                        SIM,
                        tuple(f"{folder}/{x}" for x in files),
                    )
                )
                row = {f"FileName_Orig{s}": x for s, x in zip(STAINS, files, strict=False)}
                row.update({f"PathName_Orig{s}": folder for s in STAINS})
                row.update(
                    Metadata_Plate=plate,
                    Metadata_Well=well,
                    Metadata_Site=f,
                    Metadata_Row=r + 1,
                    Metadata_Col=c,
                    Metadata_Field=f,
                    Metadata_AbsPositionZ=round(float(rng.normal(0.135, 0.001)), 6),
                )
                load_rows.append(row)
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
        sites_df, cells = render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "cpjump1")
        ld = pd.DataFrame(load_rows)
        for plate in plates:
            out = tmp / "load_data_csv" / "2020_11_04_CPJUMP1" / plate / "load_data.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            ld[ld.Metadata_Plate == plate].to_csv(out, index=False)
        pm = pd.DataFrame(
            platemap, columns=["well_position", "broad_sample", "solvent", "_p", "_r", "_c"]
        )[["well_position", "broad_sample", "solvent"]]
        (tmp / PLATEMAP).parent.mkdir(parents=True, exist_ok=True)
        pm.to_csv(tmp / PLATEMAP, sep="\t", index=False)
        (tmp / COMPOUNDS).parent.mkdir(parents=True, exist_ok=True)
        compounds.to_csv(tmp / COMPOUNDS, sep="\t", index=False)
        pd.DataFrame(
            {
                "Assay_Plate_Barcode": list(plates),
                "Plate_Map_Name": ["JUMP-Target-1_compound_platemap"] * len(plates),
            }
        ).to_csv(tmp / "metadata/platemaps/2020_11_04_CPJUMP1/barcode_platemap.csv", index=False)
        write_truth(tmp, sites_df, cells, perts)
    return stage.root


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def manifest(
    plates: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    max_images: int | None = None,
    bucket: str = BUCKET,
    **_,
) -> list:
    """What ``make data NAME=cpjump1`` mirrors from the Gallery's public bucket: the images of
    ``plates`` (default BR00116991) in ``channels`` (default the five fluorescent ones,
    ``FLUORESCENT``), their load_data tables, and the plate maps and compound metadata."""
    from cellutils.download import S3Prefix

    chans = tuple(sorted(channels or FLUORESCENT))

    def keep(key: str) -> bool:
        m = FILE.match(key.rsplit("/", 1)[-1])
        return m is None or int(m["ch"]) in chans

    out = []
    for plate in plates or ("BR00116991",):
        out.append(
            S3Prefix(bucket, f"{PREFIX}{IMAGE_DIR}/{plate}__", PREFIX, keep, max_images, chans)
        )
        out.append(
            S3Prefix(
                bucket,
                f"{PREFIX}workspace/load_data_csv/2020_11_04_CPJUMP1/{plate}/",
                PREFIX,
                required=False,
            )
        )
    out.append(S3Prefix(bucket, f"{PREFIX}workspace/metadata/", PREFIX))
    return out


LAYOUT = Layout(
    name="cpjump1",
    label="Metadata_pert_iname",
    channels=CHANNELS,
    colours=COLOURS,
    read=read_cpjump1,
    write=write_cpjump1,
    markers=("**/load_data.csv", "**/load_data.csv.gz", "images/*/*__*/Images"),
    get_real="`make data NAME=cpjump1`, then real_cpjump1='data/cpjump1'",
    manifest=manifest,
    licence="Cell Painting Gallery: CC0 1.0",
)
