"""Train/validation splits: the reports' random ones and the leak-free grouped ones.

Every function returns ``(train, val)`` DataFrames (original index kept). A grouped split keeps
each group (well, plate, experiment, image) on one side; ``check_disjoint`` fails loudly when a
group is on both sides, naming the groups. Oversampling happens after the split, on the
training side only (``oversample``); ``oversample_then_split`` is report 002's leaky protocol,
kept to show what it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split


class LeakError(ValueError):
    """The same group (well, plate, experiment, image) is on both sides of a split."""


def _groups(df: pd.DataFrame, by: str | Sequence[str]) -> pd.Series:
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"no column {missing} to group by; columns are {list(df.columns)}")
    return df[cols].astype(str).agg("/".join, axis=1)


def random_split(
    df: pd.DataFrame, val_size: float | int, stratify: str | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random split of rows (the reports' protocol), stratified by ``stratify`` when possible.

    Stratification needs two rows per class; classes with one row go to training.
    """
    if stratify is not None:
        counts = df[stratify].map(df[stratify].value_counts())
        single, rest = df[counts < 2], df[counts >= 2]
        n_classes = rest[stratify].nunique()
        n_val = val_size if isinstance(val_size, int) else round(val_size * len(rest))
        if n_classes and n_val >= n_classes and len(rest) - n_val >= n_classes:
            train, val = train_test_split(
                rest, test_size=n_val, random_state=seed, stratify=rest[stratify]
            )
            return pd.concat([train, single]), val
    train, val = train_test_split(df, test_size=val_size, random_state=seed)
    return train, val


def group_split(
    df: pd.DataFrame,
    by: str | Sequence[str],
    val_size: float = 0.2,
    stratify: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A split that keeps every group of ``by`` on one side.

    With ``stratify`` the groups are dealt so each class is spread over both sides as far as the
    groups allow (``StratifiedGroupKFold``, the fold closest to ``val_size``).
    """
    groups = _groups(df, by)
    if groups.nunique() < 2:
        raise ValueError(f"only one group of {by!r}; a grouped split needs at least two")
    if stratify is None:
        gss = GroupShuffleSplit(n_splits=1, test_size=val_size, random_state=seed)
        tr, va = next(gss.split(df, groups=groups))
    else:
        k = max(2, min(round(1 / val_size), groups.nunique()))
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        tr, va = next(sgkf.split(df, df[stratify].astype(str), groups=groups))
    train, val = df.iloc[tr], df.iloc[va]
    check_disjoint(train, val, by)
    return train, val


def hold_out(
    df: pd.DataFrame, column: str, values: Sequence | None = None, n: int = 1, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation = the rows whose ``column`` is in ``values`` (default: ``n`` random values),
    e.g. one whole experiment, for a test of generalisation to a new batch."""
    levels = sorted(df[column].unique())
    if values is None:
        rng = np.random.default_rng(seed)
        values = list(rng.choice(levels, size=n, replace=False))
    unknown = set(values) - set(levels)
    if unknown:
        raise ValueError(f"{column} has no {sorted(unknown)}; it has {levels}")
    is_val = df[column].isin(values)
    if is_val.all():
        raise ValueError(f"holding out {list(values)} leaves nothing to train on")
    return df[~is_val], df[is_val]


def with_replicate_groups(df: pd.DataFrame, label: str, by: str | Sequence[str]) -> pd.DataFrame:
    """The rows whose class occurs in more than one group of ``by`` (e.g. compounds in two or
    more wells): the only classes a split by ``by`` can test on groups it has not seen."""
    n_groups = _groups(df, by).groupby(df[label]).nunique()
    return df[df[label].map(n_groups) > 1]


def check_disjoint(train: pd.DataFrame, val: pd.DataFrame, by: str | Sequence[str]) -> None:
    """Raise ``LeakError`` when a group of ``by`` has rows on both sides."""
    shared = set(_groups(train, by)) & set(_groups(val, by))
    if shared:
        example = sorted(shared)[:5]
        raise LeakError(
            f"{len(shared)} group(s) of {by!r} are on both sides of the split, e.g. "
            f"{example}. Split with group_split(..., by={by!r}) instead."
        )


def overlap(train: pd.DataFrame, val: pd.DataFrame, by: str | Sequence[str]) -> float:
    """The fraction of validation rows whose ``by`` group also appears in training."""
    seen = set(_groups(train, by))
    return float(_groups(val, by).isin(seen).mean()) if len(val) else 0.0


def size_matched(train: pd.DataFrame, like: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A random subset of the rows ``train`` as large as ``like``: a leaky protocol trained on
    as many rows as the leak-free one, so that the leak is not confounded with training-set
    size (more rows alone raise accuracy). Raises when ``train`` is the smaller."""
    if len(train) < len(like):
        raise ValueError(f"cannot match {len(like)} rows with {len(train)}: nothing to remove")
    return train.sample(n=len(like), random_state=seed).sort_index()


def oversample(train: pd.DataFrame, label: str, seed: int = 0) -> pd.DataFrame:
    """Random oversampling of the training rows (imbalanced-learn) to the largest class."""
    from imblearn.over_sampling import RandomOverSampler

    ros = RandomOverSampler(random_state=seed)
    pos = np.arange(len(train)).reshape(-1, 1)
    res, _ = ros.fit_resample(pos, train[label].astype(str))
    return train.iloc[res.ravel()]


def oversample_then_split(
    df: pd.DataFrame, label: str, val_size: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Report 002's protocol, kept on purpose: oversample ALL rows, then split at random.

    Copies of one image land on both sides, so validation partly measures memory.
    """
    return random_split(oversample(df, label, seed), val_size, stratify=label, seed=seed)


def describe(
    train: pd.DataFrame,
    val: pd.DataFrame,
    label: str,
    groups: dict[str, str | Sequence[str]] | None = None,
) -> pd.Series:
    """Sizes and leakage indicators of a split, for a notebook table."""
    out = {
        "train rows": len(train),
        "val rows": len(val),
        "classes in train": train[label].nunique(),
        "classes in val": val[label].nunique(),
        "val classes unseen in train": int((~val[label].isin(set(train[label]))).sum()),
    }
    dup = val.index.isin(train.index)
    out["val rows that are copies of train rows"] = int(dup.sum())
    for name, by in (groups or {}).items():
        out[f"val rows whose {name} is in train"] = f"{overlap(train, val, by):.0%}"
    return pd.Series(out)


@dataclass
class Holdout:
    """One set of evaluation rows that every protocol of a lesson is scored on.

    ``levels`` nest from the outermost group to the innermost (e.g. ``["well"]`` for images,
    ``["well", "image"]`` for cells). The evaluation rows are a share of the rows of a share of
    the groups, so every held-out group also keeps rows outside the evaluation set ("siblings").
    ``train(split_by)`` is what a protocol that splits by ``split_by`` trains on: every other
    row, minus the rows that share a ``split_by`` group with an evaluation row. Splitting by a
    level keeps that level's siblings out; splitting by rows (``None``) or by an inner level
    lets them in — the leak, measured on the very same evaluation rows.
    """

    pool: pd.DataFrame
    eval: pd.DataFrame
    levels: list[str]

    def train(self, split_by: str | None) -> pd.DataFrame:
        rest = self.pool.drop(index=self.eval.index)
        if split_by is None:
            return rest
        if split_by not in self.levels:
            raise ValueError(f"split_by must be one of {self.levels} or None, not {split_by!r}")
        shared = _groups(rest, split_by).isin(set(_groups(self.eval, split_by)))
        return rest[~shared]


def holdout(
    df: pd.DataFrame,
    label: str,
    levels: Sequence[str],
    groups_frac: float = 0.25,
    keep: float = 0.5,
    per_class: bool = True,
    seed: int = 0,
) -> Holdout:
    """Choose evaluation rows for paired comparisons (see ``Holdout``).

    Outermost groups: with ``per_class`` a share ``groups_frac`` of each class's groups (at
    least one, never all: a class needs a group left to train on; classes in one group are not
    evaluated); otherwise that share of all groups. Inside each chosen group, a share ``keep``
    of its subgroups (then of its rows) is evaluated, at least one, leaving at least one.
    """
    levels = list(levels)
    rng = np.random.default_rng(seed)

    def some_of(names: pd.Series, share: float) -> set:
        """A share of the distinct ``names``: at least one, and one left over (none of one)."""
        names = sorted(names.unique())
        if len(names) < 2:
            return set()
        k = min(max(1, round(share * len(names))), len(names) - 1)
        return set(rng.choice(names, k, replace=False))

    outer = _groups(df, levels[0])
    chosen = (
        set().union(*(some_of(g, groups_frac) for _, g in outer.groupby(df[label])))
        if per_class
        else some_of(outer, groups_frac)
    )
    if not chosen:
        raise ValueError(f"no class of {label!r} has two groups of {levels[0]!r} to hold one out")
    rows = df[outer.isin(chosen)]
    for level in [*levels[1:], None]:  # inner levels, then the rows themselves
        parent = levels[levels.index(level) - 1] if level else levels[-1]
        unit = _groups(rows, level) if level else pd.Series(rows.index.astype(str), rows.index)
        picked = set().union(*(some_of(g, keep) for _, g in unit.groupby(_groups(rows, parent))))
        rows = rows[unit.isin(picked)]
    return Holdout(df, rows, levels)


def oversample_with_copies_of(
    pool: pd.DataFrame, eval_rows: pd.DataFrame, label: str, seed: int = 0
) -> pd.DataFrame:
    """Report 002's leak on a fixed evaluation set: oversample *all* rows, then take one copy of
    each evaluation row out; the copies the oversampler made of it stay in training."""
    over = oversample(pool, label, seed)
    pos = pd.Series(np.arange(len(over)), index=over.index)
    first = pos[~pos.index.duplicated()]  # one occurrence of every row
    drop = first[first.index.isin(eval_rows.index)].to_numpy()
    return over.iloc[np.setdiff1d(np.arange(len(over)), drop)]


def cross_predict(
    estimator,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence | None = None,
    n_splits: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predictions: every row predicted by a model that did not train on it (nor,
    with ``groups``, on any row of its group). Stratified folds; grouped ones keep each group in
    one fold (``StratifiedGroupKFold``). Two calls on the same rows give paired predictions."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if groups is None:
        cv = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    else:
        cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    return cross_val_predict(estimator, x, y, groups=groups, cv=cv)


@dataclass
class CrossFolds:
    """The same rows cut into k folds twice, fold by fold alike in size and classes.

    ``grouped[i]`` is the fold of row ``i`` when every group of ``by`` (an experiment) sits in
    one fold: a model trained on the other folds never saw the group (leave-one-group-out
    when there is one fold per group). ``rows[i]`` is its fold when rows are dealt at random
    (the reports' protocol): fold ``k`` gets, class by class, as many rows as grouped fold
    ``k`` has, so both protocols train on the same number of rows of each class in every fold
    and only *which* groups they hold differs. Over the folds each row is predicted once by
    each protocol: paired out-of-fold predictions.
    """

    pool: pd.DataFrame
    by: str
    grouped: np.ndarray
    rows: np.ndarray

    @property
    def n_folds(self) -> int:
        return int(self.grouped.max()) + 1

    def folds(self, kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train, eval)`` row positions of each fold; ``kind``: "grouped" or "rows"."""
        if kind not in ("grouped", "rows"):
            raise ValueError(f"kind must be 'grouped' or 'rows', not {kind!r}")
        fold = self.grouped if kind == "grouped" else self.rows
        return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(self.n_folds)]


def cross_folds(
    df: pd.DataFrame, label: str, by: str, n_folds: int | None = None, seed: int = 0
) -> CrossFolds:
    """Paired k-fold cuts of ``df`` (see ``CrossFolds``): by ``by`` groups, one fold per group
    when ``n_folds`` is None (leave-one-group-out), else the groups dealt into ``n_folds``
    folds of about equal size (``GroupKFold``); and at random, class by class, with the same
    class counts per fold."""
    from sklearn.model_selection import GroupKFold

    names = df[by].astype(str).to_numpy()
    levels = np.unique(names)
    if n_folds is None:
        grouped = np.searchsorted(levels, names)
    else:
        if not 2 <= n_folds <= len(levels):
            raise ValueError(f"n_folds must be between 2 and {len(levels)} ({by}s), not {n_folds}")
        grouped = np.empty(len(df), int)
        for k, (_, ev) in enumerate(GroupKFold(n_folds).split(names, groups=names)):
            grouped[ev] = k
    if len(np.unique(grouped)) < 2:
        raise ValueError(f"one {by} only: no fold could be held out")
    rng = np.random.default_rng(seed)
    rows = np.empty(len(df), int)
    for c in pd.unique(df[label]):
        at = np.flatnonzero(df[label].to_numpy() == c)
        rows[rng.permutation(at)] = np.sort(grouped[at])  # the same fold sizes, dealt at random
    return CrossFolds(df, by, grouped, rows)
