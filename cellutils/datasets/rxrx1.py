"""RxRx1 (report 000): channels and colours, the reader of its three released forms, the
synthetic writer of the same layout, and the download manifest (``make data NAME=rxrx1``).

Layout facts: ``docs/datasets.md``. Terms: CC BY-NC-SA 4.0 (non-commercial, share alike).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd

from cellutils import simulate as sim
from cellutils.datasets._base import (
    MISSING,
    DatasetError,
    Layout,
    _DiskFiles,
    _finish,
    _require,
    _unclaimed,
    lines,
    normalise_missing,
    normalise_well,
    parse_int,
    parse_label_id,
    read_table,
    require_labels,
    unique_rows,
)
from cellutils.synthetic import (
    SIM_STAIN,
    Imaging,
    SiteJob,
    Staging,
    render_all,
    well_name,
    write_truth,
)

# Channel number in the file names (w1..w6) -> stain, and what it stains.
CHANNELS = {1: "Hoechst", 2: "ConA", 3: "Phalloidin", 4: "Syto14", 5: "MitoTracker", 6: "WGA"}
COMPARTMENTS = {
    1: "nucleus",
    2: "ER",
    3: "actin",
    4: "nucleoli/RNA",
    5: "mitochondria",
    6: "Golgi/membrane",
}
# rxrx1-utils' display: an RGB colour and a display range per channel.
COLOURS = ((19, 0, 249), (42, 255, 31), (255, 0, 25), (45, 255, 252), (250, 0, 253), (254, 255, 40))
RANGES = ((0, 51), (0, 107), (0, 64), (0, 191), (0, 89), (0, 191))
SIM = tuple(SIM_STAIN[v] for v in CHANNELS.values())  # the simulator's compartment per channel

FILE = re.compile(r"^(?P<well>[A-P]\d{2})_s(?P<site>[12])_w(?P<channel>[1-6])\.png$")
EXPERIMENT = re.compile(r"^(HEPG2|HUVEC|RPE|U2OS)-\d{2}$")
BASE_URL = "https://storage.googleapis.com/rxrx/rxrx1"

EXPERIMENTS = {"HUVEC": 5, "HEPG2": 2, "RPE": 2, "U2OS": 2}  # the synthetic default
# Latent shifts of experiments, plates and wells (``simulate.context_shift``), in units of a
# perturbation's typical effect. RxRx1's batches are experiments and their plates (each plate
# holds a fixed quarter of the siRNAs, so a plate's look tells its siRNA group).
NUISANCE = {"experiment_sd": 0.5, "plate_sd": 0.5, "well_sd": 0.2}


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def read_rxrx1(
    root: str | os.PathLike, errors: str = "report", check_files: bool = True, labels: bool = True
) -> pd.DataFrame:
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
        md = lines(read_table(root / "metadata.csv"), root / "metadata.csv")
        need = {"experiment", "plate", "well", "site", "sirna_id", "well_type", "dataset"}
        if not need <= set(md.columns):
            raise DatasetError(
                f"{root / 'metadata.csv'} lacks columns {sorted(need - set(md.columns))}; "
                "is this the rxrx.ai or WILDS release's metadata.csv?"
            )
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
    md["sirna_id"] = parse_label_id(md, "sirna_id", str(root))
    if "sirna" not in md:
        md["sirna"] = md.sirna_id.astype(object).where(md.sirna_id.notna(), MISSING).astype(str)
    md["plate"] = parse_int(md, "plate", str(root))
    md["site"] = parse_int(md, "site", str(root))
    md["well"] = normalise_well(md, "well", str(root))  # B2 = B02, the files' spelling
    bad = ~md.experiment.astype(str).str.match(EXPERIMENT)
    if bad.any():
        raise DatasetError(
            f"{root}: experiment names {sorted(md.experiment[bad].unique())[:5]} do not "
            "match 'HUVEC-01'-style names; is this RxRx1?"
        )
    keys = ["experiment", "plate", "well", "site"]
    md = unique_rows(md, keys, "RxRx1 metadata").drop(columns=["_file", "_line"], errors="ignore")
    if labels:
        require_labels(
            md[md.dataset == "train"],
            "sirna",
            f"RxRx1 at {root}",
            "Use the release's metadata.csv (or Kaggle's train.csv), which label the "
            "training wells.",
        )
    problems: list = []
    files = (
        {"path_rgb": "{w}_s{s}.png"}
        if form == "wilds"
        else {f"path_w{ch}": f"{{w}}_s{{s}}_w{ch}.png" for ch in CHANNELS}
    )
    for col, pattern in files.items():
        md[col] = [
            root / f / e / f"Plate{p}" / pattern.format(w=w, s=s)
            for f, e, p, w, s in zip(
                md.folder, md.experiment, md.plate, md.well, md.site, strict=False
            )
        ]
    cols = list(files)
    if check_files:
        disk = [p for f in md.folder.unique() for p in (root / f).glob("*/Plate*/*.png")]
        fix = "re-download or regenerate this site; a missing channel makes the site unusable"
        found = _DiskFiles(disk)
        claimed = []
        for c in cols:
            md[c] = found.resolve(list(md[c]), problems, fix)
            claimed += list(md[c])
        _unclaimed(
            disk,
            claimed,
            problems,
            "add the site to the metadata CSV, or move the file out of the image folder",
        )
    md = md.drop(columns=["folder"])
    index = _finish(
        md, problems, errors, f"RxRx1 ({form})", cols, sort=["experiment", "plate", "well", "site"]
    )
    index.attrs["form"] = form
    return index


def _read_kaggle(root: Path) -> pd.DataFrame:
    parts = []
    for dataset in ("train", "test"):
        for name, well_type in ((f"{dataset}.csv", "treatment"), (f"{dataset}_controls.csv", None)):
            path = root / name
            if not path.exists():
                continue
            df = lines(read_table(path), path)
            if well_type:
                df["well_type"] = well_type
            df["dataset"] = dataset
            parts.append(df)
    wells = pd.concat(parts, ignore_index=True)
    for need in ("id_code", "experiment", "plate", "well"):
        if need not in wells:
            raise DatasetError(f"{root}: the Kaggle CSVs have no {need!r} column; is it RxRx1?")
    wells["plate"] = parse_int(wells, "plate", str(root))
    wells["well"] = normalise_well(wells, "well", str(root))
    wells = unique_rows(wells.fillna(MISSING), ["experiment", "plate", "well"], "RxRx1 CSVs")
    if "sirna" not in wells:
        wells["sirna"] = MISSING
    wells["sirna_id"] = parse_label_id(wells, "sirna", str(root))
    # sirna is rebuilt as text (MISSING where hidden)
    wells = wells.drop(columns=["sirna", "_file", "_line"]).reset_index(drop=True)
    wells["cell_type"] = wells.experiment.str.split("-").str[0]
    wells["well_id"] = wells.id_code
    sites = wells.loc[wells.index.repeat(2)].copy()
    sites["site"] = np.tile([1, 2], len(wells))
    sites["site_id"] = sites.well_id + "_" + sites.site.astype(str)
    sites["folder"] = sites.dataset
    cols = [
        "site_id",
        "well_id",
        "cell_type",
        "dataset",
        "experiment",
        "plate",
        "well",
        "site",
        "well_type",
        "sirna_id",
        "folder",
    ]
    return normalise_missing(sites[cols].reset_index(drop=True))  # hidden labels: MISSING


# --------------------------------------------------------------------------------------------
# Synthetic writer
# --------------------------------------------------------------------------------------------


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
    experiments = experiments or dict(EXPERIMENTS)
    if n_sirnas % 4:
        raise ValueError(f"n_sirnas must split into 4 plate groups, got {n_sirnas}")
    params = dict(
        layout="rxrx1",
        form=form,
        n_sirnas=n_sirnas,
        n_positive=n_positive,
        experiments=experiments,
        n_test=n_test,
        sites=sites,
        size=size,
        seed=seed,
        strength=strength,
        nuisance=nuisance or NUISANCE,
    )
    stage = Staging(root, params)
    if stage.existing():
        return stage.root
    perts = sim.make_perturbations(
        n_sirnas,
        seed,
        prefix="sirna",
        strength=strength,
        negative_control="EMPTY",
        n_positive=n_positive,
    )
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
                    well_type = {
                        "trt": "treatment",
                        "negcon": "negative_control",
                        "poscon": "positive_control",
                    }[kind]
                    for s in range(1, sites + 1):
                        base = f"{well}_s{s}_w{{}}.png"
                        folder = (
                            "images" if form == "rxrx.ai" else dataset
                        ) + f"/{exp}/Plate{plate}"
                        paths = tuple(f"{folder}/{base.format(w)}" for w in range(1, 7))
                        key = f"{exp}_{plate}_{well}_{s}"
                        jobs.append(
                            SiteJob(key, cell_type, p, exp, str(plate), well, s, SIM, paths)
                        )
                        meta.append(
                            dict(
                                site_id=key,
                                well_id=f"{exp}_{plate}_{well}",
                                cell_type=cell_type,
                                dataset=dataset,
                                experiment=exp,
                                plate=plate,
                                well=well,
                                site=s,
                                well_type=well_type,
                                sirna=vendor[p],
                            )
                        )
    # sirna_id numbering as in RxRx1: treatments first, then positive controls, negative last
    order = (
        [i for i, k in enumerate(perts.kind) if k == "trt"]
        + [i for i, k in enumerate(perts.kind) if k == "poscon"]
        + [i for i, k in enumerate(perts.kind) if k == "negcon"]
    )
    new_id = {old: new for new, old in enumerate(order)}
    imaging = Imaging(
        size=size, scale=0.35 * size / 128, dtype="uint8", counts=55.0, **params["nuisance"]
    )
    with stage as tmp:
        sites_df, cells = render_all(jobs, tmp, seed, perts, imaging, None, n_jobs, "rxrx1")
        md = pd.DataFrame(meta)
        md["sirna_id"] = [new_id[jobs[i].pert] for i in range(len(jobs))]
        sites_df["sirna_id"] = md["sirna_id"].to_numpy()
        if form == "rxrx.ai":
            md.to_csv(tmp / "metadata.csv", index=False)
        else:
            _write_kaggle_csvs(tmp, md)
        write_truth(tmp, sites_df, cells, perts)
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
            root / f"{dataset}_controls.csv", index=False
        )
    stats = []
    for row in md.itertuples():
        folder = root / row.dataset / row.experiment / f"Plate{row.plate}"
        for ch in range(1, 7):
            arr = iio.imread(folder / f"{row.well}_s{row.site}_w{ch}.png")
            stats.append(
                (
                    row.well_id,
                    row.experiment,
                    row.plate,
                    row.well,
                    row.site,
                    ch,
                    arr.mean(),
                    arr.std(),
                    np.median(arr),
                    arr.min(),
                    arr.max(),
                )
            )
    pd.DataFrame(
        stats,
        columns=[
            "id_code",
            "experiment",
            "plate",
            "well",
            "site",
            "channel",
            "mean",
            "std",
            "median",
            "min",
            "max",
        ],
    ).round(4).to_csv(root / "pixel_stats.csv", index=False)


# --------------------------------------------------------------------------------------------
# Display and download
# --------------------------------------------------------------------------------------------


def rxrx1_rgb(image: np.ndarray) -> np.ndarray:
    """RxRx1's own 6-channel -> RGB conversion of a (6, H, W) uint8 site (rxrx1-utils)."""
    if image.shape[0] != 6:
        raise ValueError(f"expected 6 channels (w1..w6), got shape {image.shape}")
    rgb = np.zeros((*image.shape[1:], 3), np.float32)
    for ch, colour, (lo, hi) in zip(image.astype(np.float32), COLOURS, RANGES, strict=False):
        x = np.clip((ch / 255) / ((hi - lo) / 255) + lo / 255, 0, 1)
        rgb += x[..., None] * np.asarray(colour, np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def manifest(images: bool = True, **_) -> list:
    """The rxrx.ai release: metadata zip (small) and images zip (~46 GB).

    No MD5 of the zips is recorded here (none is known to the course): each is checked against
    the MD5 the server states (``x-goog-hash``), which ``cellutils.download`` then records in
    ``download_manifest.tsv`` and in the extraction marker. Put a published MD5 in ``md5=``."""
    from cellutils.download import Remote

    files = [Remote(f"{BASE_URL}/rxrx1-metadata.zip", "rxrx1-metadata.zip", unzip=True)]
    if images:
        files.append(Remote(f"{BASE_URL}/rxrx1-images.zip", "rxrx1-images.zip", unzip=True))
    return files


LAYOUT = Layout(
    name="rxrx1",
    label="sirna_id",
    channels=CHANNELS,
    colours=COLOURS,
    read=read_rxrx1,
    write=write_rxrx1,
    markers=("metadata.csv", "rxrx1/metadata.csv", "train.csv"),
    get_real="`make data NAME=rxrx1` (46 GB), then real_rxrx1='data/rxrx1'",
    manifest=manifest,
    licence="CC BY-NC-SA 4.0 (Recursion): non-commercial use, share alike",
)
