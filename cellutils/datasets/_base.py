"""What every dataset layout shares: the one missing value, table reading, file matching,
problem reports, site loading, and the ``Layout`` record each layout module fills in.

Problems in the data are reported, never silently dropped: rows whose files are missing,
files that no metadata row names, and names matched only after lower-casing are kept with the
index (``problems(index)`` gives a DataFrame with the file, what is wrong and the fix),
summarised in a warning, or raised with ``errors="raise"``.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellutils.images import read_image, stack_channels


@dataclass(frozen=True)
class Layout:
    """Everything the course knows about one dataset layout, in its own module."""

    name: str  # the key used by catalog, profiles and ``--real``
    label: str  # the index column the reports predict
    channels: dict  # channel id in the file names -> stain (or colour -> compartment)
    colours: tuple  # display colour (RGB 0-255) per channel of a composite, in channel order
    read: Callable[..., pd.DataFrame]  # root -> tidy index
    write: Callable[..., Path]  # synthetic writer of the same layout
    markers: tuple[str, ...]  # globs that tell a folder holds this layout (``make data`` output)
    get_real: str  # how a user gets the real data
    manifest: Callable[..., list] | None = None  # files ``make data NAME=...`` downloads
    licence: str = ""  # the data's terms, in one line


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
    header), gzip allowed; missing values normalised (``normalise_missing``). Row ``i`` of the
    result is line ``i + 2`` of the file (``lines``). Bytes that are not UTF-8 are an error
    naming the file and the line."""
    path = Path(path)
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}, line {line}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8 "
            f"({exc.reason}). Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`, or "
            "'CSV UTF-8' in a spreadsheet)."
        ) from exc
    header = text.split("\n", 1)[0]
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    sep = "\t" if stem_suffix in (".tsv", ".txt") or "\t" in header else ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(
            f"cannot read {path} as a table ({type(exc).__name__}: {exc}); "
            "is it the metadata file it is named after?"
        ) from exc
    df = df.drop(columns=[c for c in df.columns if c == "" or c.startswith("Unnamed")])
    return normalise_missing(df)


def table_columns(path: str | os.PathLike) -> list[str]:
    """The header of a metadata table (``read_table``'s rules), without reading its rows;
    an unreadable file has no columns."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8-sig") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError):
        return []
    return next(csv.reader([header], delimiter="\t" if "\t" in header else ","), [])


def lines(df: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """``df`` (fresh from ``read_table``) with ``_file`` and ``_line``: where each row is."""
    return df.assign(_file=str(path), _line=np.arange(2, len(df) + 2))


def _where(df: pd.DataFrame, i) -> str:
    if "_file" in df:
        return f"{df.at[i, '_file']}, line {df.at[i, '_line']}"
    return f"row {i}"


def parse_int(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Column ``column`` as whole numbers; ``1.0``, ``f01`` or an empty cell is an error naming
    the file and the line (``_file``/``_line`` from ``lines``, else ``source``)."""
    text = df[column].astype(str).str.strip()
    bad = ~text.str.fullmatch(r"\+?\d+")
    if bad.any():
        i = bad.idxmax()
        where = _where(df, i) if "_file" in df else f"{source}, line {i + 2}"
        raise DatasetError(
            f"{where}: {column} {df.at[i, column]!r} is not a whole number ({int(bad.sum())} "
            f"such rows). Write it as a whole number (1, not 1.0 or f01) in that file."
        )
    return text.astype(int)


def parse_label_id(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A numeric label column (``Int64``): empty cells are hidden labels (``<NA>``); anything
    else must be a whole number, so that a typo is an error naming the line, never a lost
    label."""
    text = df[column].astype(str).str.strip()
    given = text.notna() & ~text.isin(_MISSING_WORDS)
    out = pd.Series(pd.NA, index=df.index, dtype="Int64")
    if given.any():
        out[given] = parse_int(df[given], column, source).astype("Int64")
    return out


_WELL = re.compile(r"^\s*([A-Za-z]{1,2})0*(\d{1,3})\s*$")


def normalise_well(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Well names as ``A01``: ``A1``, ``a01`` and ``A001`` are one well. Anything else (``A``,
    ``../x``) is an error naming the file and the line."""
    text = df[column].astype(str)
    spelling = {}  # a plate has a few hundred wells: parse each spelling once
    for value in text.unique():
        m = _WELL.match(value)
        if m and int(m[2]):
            spelling[value] = f"{m[1].upper()}{int(m[2]):02d}"
    bad = ~text.isin(list(spelling))
    if bad.any():
        i = bad.idxmax()
        where = _where(df, i) if "_file" in df else f"{source}, line {i + 2}"
        raise DatasetError(
            f"{where}: {column} {df.at[i, column]!r} is not a well name (a row letter and a "
            "column number, like A01). Correct it in that file."
        )
    return text.map(spelling).astype(str)


def unique_rows(
    df: pd.DataFrame, key: Sequence[str], what: str, ignore: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per ``key``: rows repeated exactly are collapsed; two rows with one key and any
    other value different are an error naming both rows (file and line, from ``lines``).
    Columns starting with ``_`` and those in ``ignore`` (spellings of the key) are not
    compared."""
    data = [c for c in df.columns if not c.startswith("_") and c not in ignore]
    out = df.drop_duplicates(subset=list(dict.fromkeys([*key, *data])))
    clash = out[out.duplicated(subset=list(key), keep=False)]
    if len(clash):
        first = clash.iloc[0]
        same = clash[(clash[list(key)] == first[list(key)]).all(axis=1)]
        a, b = same.index[0], same.index[1]
        differ = [c for c in data if c not in key and out.at[a, c] != out.at[b, c]]
        shown = {k: first[k] for k in key}
        raise DatasetError(
            f"{what}: two rows for {shown} that differ in {differ}: "
            f"{_where(out, a)} ({ {c: out.at[a, c] for c in differ} }) and "
            f"{_where(out, b)} ({ {c: out.at[b, c] for c in differ} }). Keep the right row "
            "and delete the other (identical repeats are collapsed; conflicting ones never "
            "are chosen between)."
        )
    return out


def walk(root: str | os.PathLike, pattern: str = "*", dirs: bool = False) -> list[Path]:
    """Files (or, with ``dirs``, folders) under ``root`` whose name matches ``pattern``,
    following symlinked folders (``Path.rglob`` does not) and visiting each real folder once
    (a link loop ends there). Sorted."""
    seen: set[tuple[int, int]] = set()
    out = []
    for top, subdirs, files in os.walk(root, followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in seen:
            subdirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        names = subdirs if dirs else files
        out += [Path(top) / n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return sorted(out)


def _find(
    root: Path, stem: str, what: str, fix: str, suffixes: tuple[str, ...] = (".tsv", ".txt", ".csv")
) -> Path:
    """The one file under ``root`` named ``stem`` + a table suffix (gzip allowed); two
    candidates are an error (never silently chosen), none is an error naming the fix."""
    hits = [
        p
        for p in walk(root, f"{stem}.*")
        if p.suffix in suffixes or (p.suffix == ".gz" and Path(p.stem).suffix in suffixes)
    ]
    if not hits:
        raise DatasetError(
            f"{what} {stem!r} not found under {root} (looked for {stem}"
            f"{{{','.join(suffixes)}}}[.gz]). {fix}"
        )
    if len(hits) > 1:
        raise DatasetError(
            f"{what}: {len(hits)} candidate files for {stem!r}: "
            f"{[str(h) for h in hits]}. Keep one, or pass the one to use."
        )
    return hits[0]


def require_labels(index: pd.DataFrame, column: str, source: str, fix: str) -> None:
    """Raise when an index meant for a labelled task has no label at all."""
    if column not in index or not (index[column].astype(str) != MISSING).any():
        raise DatasetError(
            f"{source}: no row has a {column!r} label, so this index cannot "
            f"train or score a classifier. {fix} (For segmentation only, pass "
            "labels=False.)"
        )


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

    def resolve(
        self, expected: Sequence[Path], problems: list, fix_missing: str
    ) -> list[Path | None]:
        """Map each expected path to the file on disk, matching case-insensitively when needed."""
        out: list[Path | None] = []
        for p in expected:
            hit = self.exact.get(str(p))
            if hit is None:
                hit = self.lower.get(str(p).lower())
                if hit is not None:
                    problems.append(
                        (
                            "case_mismatch",
                            str(hit),
                            f"metadata names {p.name}",
                            "matched ignoring case; rename the file to silence this",
                        )
                    )
            if hit is None:
                problems.append(
                    ("missing_file", str(p), "named by metadata but not on disk", fix_missing)
                )
            out.append(hit)
        return out


def _unclaimed(
    on_disk: Iterable[Path], claimed: Iterable[Path | None], problems: list, fix: str
) -> None:
    used = {p for p in claimed if p is not None}
    for p in sorted(set(on_disk) - used):
        problems.append(("no_metadata", str(p), "image file that no metadata row names", fix))


def _finish(
    index: pd.DataFrame,
    problems: list,
    errors: str,
    name: str,
    path_cols: list[str],
    sort: Sequence[str] | None = None,
) -> pd.DataFrame:
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
        msg = (
            f"{name}: {counts} ({(~complete).sum()} incomplete rows left out of the index; "
            f"see cellutils.datasets.problems(index))\n{head}"
        )
        if errors == "raise" and len(serious):
            raise DatasetError(msg)
        warnings.warn(msg, stacklevel=3)
    return index


def problems(index: pd.DataFrame) -> pd.DataFrame:
    """The problems a reader found for ``index``: problem, file, detail, fix."""
    return pd.DataFrame(
        index.attrs.get("problems", []), columns=["problem", "file", "detail", "fix"]
    )


def path_columns(index: pd.DataFrame) -> list[str]:
    """The ``path_*`` columns of an index, in channel order."""
    return [c for c in index.columns if c.startswith("path_")]


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
