"""The bookkeeping of a lesson: the report's claim, the protocols, the runs, the comparisons.

A notebook declares once what the report claimed (``Claim``) and which protocols it runs
(``Protocol``: how the split is made, whether that is leak-free and why). It then records each
evaluation (``Lesson.record``: targets, predictions, the evaluated units) and the comparisons it
draws (``Lesson.compare``: a paired difference on the same rows), one of them declared the
*primary* comparison before results exist (``Lesson.declare_primary``). The lesson computes every
interval and baseline (chance, majority class, and what cell count alone predicts), Holm-adjusts
the comparisons' p-values over the notebook's family, says each conclusion in a sentence
(``Lesson.conclusion``) and writes ``metrics.json``, the file ``make reproduce``'s summary
reads::

    {"notebook", "report", "title", "data", "settings", "nuisance",
     "claim": {"metric", "value", "split", "n_classes", "protocol", ...},
     "results": [{"label", "protocol", "leak_free", "why", "split_by", "model", "split",
                  "metric", "value", "ci_low", "ci_high", "n_eval", "unit", "n_units",
                  "n_classes", "chance", "majority", "cell_count", "seeds", "seed_values",
                  "two_stage", "selected_on", "imagenet", "headline", ...}, ...],
     "comparisons": [{"lesson", "a", "b", "metric", "diff", "ci", "unit", "n_units",
                      "seeds", "interval", "p", "p_holm", "primary", "identical", ...}, ...],
     "primary": "...", "trust": "...", "extra": {...}}

Intervals treat the lesson's unit as the independent draw (``n_units`` clusters; a cluster-
jackknife t interval, ``stats.INTERVAL``, recorded as ``"interval"``) and, with several training
seeds, add the seeds' spread (``stats``: two-stage); a comparison from one training run says so.

Two rules are enforced here rather than hoped for: a protocol is leak-free only when its split
is grouped by the lesson's nuisance unit (``LeakError`` otherwise), and nothing recorded as
leak-free may have been selected on the rows it is scored on: the selection set's row ids
(``selected_rows``, or a set named with ``Lesson.register_set``) are compared with the evaluated
rows, whatever the set is called; a set named "test" is refused as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellutils import stats
from cellutils.paths import write_json
from cellutils.splits import LeakError


@dataclass(frozen=True)
class Claim:
    """What the report says, typed once."""

    metric: str  # "accuracy" | "balanced_accuracy"
    value: float
    split: str  # where the report measured it: "validation" | "test"
    n_classes: int
    protocol: str  # how the report split and selected
    others: dict = field(default_factory=dict)  # its other numbers (training accuracy, loss)
    # the claim's own bar: what always predicting the commonest class scores with the claim's
    # metric on the report's data (from the class counts the report gives), and how it is known
    majority: float | None = None
    majority_from: str = ""


@dataclass(frozen=True)
class Protocol:
    """One way of splitting (and selecting): what the notebook trains and scores under."""

    name: str
    split_by: str | None  # the group kept on one side ("well", "experiment", "image"); None: rows
    leak_free: bool
    why: str  # one line: what leaks, or why nothing does


@dataclass
class Result:
    """One recorded evaluation: a protocol's model scored on one split."""

    label: str
    protocol: Protocol
    split: str
    targets: np.ndarray
    pred: np.ndarray  # (seeds, n) predicted labels
    units: np.ndarray
    rows: np.ndarray  # ids of the evaluated rows, to check that comparisons are paired
    row: dict


def labels_of(pred) -> np.ndarray:
    """Predicted labels from logits (n, K), labels (n,), or a list of either (one per seed)."""
    if isinstance(pred, (list, tuple)):
        return np.stack([labels_of(p) for p in pred])
    pred = np.asarray(pred)
    return pred.argmax(-1) if pred.ndim == 2 and pred.dtype.kind == "f" else pred


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


def rows_hash(rows) -> str:
    """A short fingerprint of a set of row ids (order ignored): equal sets, equal hashes."""
    ids = sorted(map(str, np.asarray(rows).ravel().tolist()))
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]


def seeds_text(seeds: int) -> str:
    """How a table names the training runs behind a number."""
    return "one training run" if seeds == 1 else f"{seeds} seeds"


class Lesson:
    """The claim, protocols, results and comparisons of one notebook."""

    def __init__(
        self,
        notebook: str,
        report: str,
        title: str,
        claim: Claim,
        nuisance: str,
        unit: str,
        metric: str | None = None,
        n_boot: int = 1000,
        seed: int = 0,
    ):
        self.notebook, self.report, self.title, self.claim = notebook, report, title, claim
        self.nuisance = nuisance  # the group a split must respect to be leak-free
        self.unit = unit  # what the bootstrap resamples by default
        self.metric = metric or claim.metric
        self.n_boot, self.seed = n_boot, seed
        self.results: dict[str, Result] = {}
        self.comparisons: list[dict] = []
        self.primary: str | None = None  # the comparison the notebook stands on, declared first
        self.sets: dict[str, np.ndarray] = {}  # named selection sets: their row ids

    def declare_primary(self, name: str) -> None:
        """Name the one comparison this notebook stands on, before any result exists; the
        others are its family, Holm-adjusted. ``compare(name, ...)`` must make it later."""
        if self.primary not in (None, name):
            raise ValueError(f"the primary comparison is already {self.primary!r}; one only")
        self.primary = name

    def register_set(self, name: str, rows) -> None:
        """The row ids of a named set (a validation or selection set), so that a result
        ``selected_on=name`` is checked by its rows, not by its name."""
        self.sets[name] = np.asarray(rows)

    def _check_selection(self, protocol: Protocol, selected_on, selected_rows, rows) -> dict:
        """Refuse a leak-free result selected on the rows it is scored on; return what was
        checked (the selection set's fingerprint, or that only its name could be)."""
        if not protocol.leak_free or not selected_on and selected_rows is None:
            return {}
        if selected_on and "test" in selected_on.lower():
            raise LeakError(
                f"{protocol.name!r}: a leak-free result cannot be selected on "
                f"{selected_on!r}; select on a validation split carved from "
                "training, or keep the last epoch."
            )
        if selected_rows is None and selected_on in self.sets:
            selected_rows = self.sets[selected_on]
        if selected_rows is None:
            return {"selection_checked": False}
        shared = set(map(str, np.asarray(selected_rows).ravel().tolist())) & set(
            map(str, np.asarray(rows).ravel().tolist())
        )
        if shared:
            raise LeakError(
                f"{protocol.name!r}: selected on {selected_on or 'a set'!r}, which holds "
                f"{len(shared)} of the {len(rows)} rows it is scored on (e.g. "
                f"{sorted(shared)[0]!r}): the choice was made on the evaluation set. Carve the "
                "selection set from the training rows, or keep the last epoch."
            )
        return {"selection_checked": True, "selected_rows_hash": rows_hash(selected_rows)}

    # -- recording -------------------------------------------------------------------------

    def record(
        self,
        protocol: Protocol,
        targets,
        pred,
        units,
        n_classes: int,
        train_targets,
        *,
        split: str = "val",
        model: str = "",
        rows=None,
        selected_on: str | None = None,
        imagenet: bool | None = None,
        unit: str | None = None,
        label: str | None = None,
        metric: str | None = None,
        selected_rows=None,
        cell_counts: tuple | None = None,
        **extra,
    ) -> Result:
        """Score ``pred`` (labels or logits; a list for several seeds) against ``targets`` on
        the evaluated ``units`` (one per row); return the result, also kept by its label.
        ``selected_rows``: the row ids of the set its epoch or model was chosen on (checked
        against ``rows``); ``cell_counts``: (training rows' counts, evaluated rows' counts)
        for the cell-count baseline (``add_cell_count``)."""
        if protocol.leak_free and protocol.split_by != self.nuisance:
            raise LeakError(
                f"{protocol.name!r} is labelled leak-free but splits by "
                f"{protocol.split_by or 'row'}, not by {self.nuisance}, the unit "
                "that carries the nuisance here. Name it for what it is."
            )
        metric = metric or self.metric
        targets, pred = np.asarray(targets), np.atleast_2d(labels_of(pred))
        if not len(targets):
            raise ValueError(f"{protocol.name!r}: no evaluated rows to score")
        rows = np.asarray(rows if rows is not None else np.arange(len(targets)))
        checked = self._check_selection(protocol, selected_on, selected_rows, rows)
        units = np.asarray(units).astype(str)
        label = label or protocol.name + (f" [{model}]" if model else "") + (
            f" ({split})" if split != "val" else ""
        )
        if label in self.results:
            raise ValueError(f"a result is already recorded as {label!r}")
        est = stats.estimate(targets, pred, units, metric, self.n_boot, self.seed)
        row = {
            "label": label,
            "protocol": protocol.name,
            "leak_free": protocol.leak_free,
            "why": protocol.why,
            "split_by": protocol.split_by,
            "model": model,
            "split": split,
            "metric": metric,
            **est.as_dict(),
            "unit": unit or self.unit,
            "n_classes": int(n_classes),
            **stats.baselines(train_targets, targets, n_classes, metric),
            "seeds": len(pred),
            "selected_on": selected_on,
            **checked,
            "imagenet": imagenet,
            "headline": None,
            **extra,
        }
        result = Result(label, protocol, split, targets, pred, units, rows, row)
        self.results[label] = result
        if cell_counts is not None:
            self.add_cell_count(result, cell_counts[0], train_targets, cell_counts[1])
        return result

    def add_cell_count(self, result: Result, train_counts, train_targets, eval_counts) -> dict:
        """The cell-count baseline beside ``result``: a classifier of log cell count fitted on
        the training rows (``train_counts``, ``train_targets``), scored on ``result``'s rows
        (``eval_counts``, in their order) with its metric, resampled by the same units.
        Counts come from ``stats.cell_counts`` (the simulator's truth, or masks)."""
        est = stats.cell_count_baseline(
            train_counts,
            train_targets,
            eval_counts,
            result.targets,
            result.units,
            result.row["metric"],
            self.n_boot,
            self.seed,
        )
        result.row.update(
            cell_count=est.value, cell_count_ci=[round(est.ci_low, 4), round(est.ci_high, 4)]
        )
        return {"value": est.value, "ci": [est.ci_low, est.ci_high]}

    def record_experiment(
        self,
        protocol: Protocol,
        experiments,
        rows: pd.DataFrame,
        units: str,
        train_targets,
        split: str = "val",
        where=None,
        **kw,
    ) -> Result:
        """``record`` for trained models (``train.Experiment``; a list: one per seed) scored on
        the evaluation ``rows`` (a DataFrame, in the order of the dataset), resampled by the
        column ``units``; ``where`` (a boolean mask over ``rows``) scores a part of them."""
        exps = experiments if isinstance(experiments, (list, tuple)) else [experiments]
        first = exps[0]
        keep = np.ones(len(rows), bool) if where is None else np.asarray(where, bool)
        info = getattr(first.fit.model, "info", {})
        kw.setdefault("model", info.get("arch", first.name))
        kw.setdefault("imagenet", info.get("imagenet"))
        return self.record(
            protocol,
            first.predictions[split]["targets"][keep],
            [e.labels(split)[keep] for e in exps],
            rows[units].to_numpy()[keep],
            len(first.classes),
            train_targets,
            split=split,
            rows=rows.index.to_numpy()[keep],
            selected_on=first.selected_on,
            selected_rows=kw.pop("selected_rows", getattr(first, "selected_rows", None)),
            epochs_run=int(first.fit.history.epoch.max()),
            kept_epoch=int(first.fit.best_epoch),
            **kw,
        )

    def compare(
        self,
        lesson: str,
        a: Result,
        b: Result,
        metric: str | None = None,
        *,
        primary: bool = False,
    ) -> dict:
        """The paired difference ``a - b`` on the rows both were scored on (they must be the
        same rows: same classes, same units); two-stage over seeds and units when there are
        several seeds. ``primary=True`` makes it the notebook's one primary comparison."""
        if primary:
            self.declare_primary(lesson)
        if any(c["lesson"] == lesson for c in self.comparisons):
            raise ValueError(
                f"a comparison is already named {lesson!r}; give each its own name (add the "
                "split or subset it is on): names key the primary, Holm and conclusions"
            )
        if a.rows.shape != b.rows.shape or set(a.rows.tolist()) != set(b.rows.tolist()):
            raise ValueError(
                f"{a.label!r} and {b.label!r} are scored on different rows; a "
                "paired comparison needs the same evaluation units"
            )
        order = pd.Index(b.rows).get_indexer(a.rows)
        if not np.array_equal(a.targets, b.targets[order]):
            raise ValueError(f"{a.label!r} and {b.label!r} disagree on the targets of a row")
        metric = metric or self.metric
        d = stats.paired_difference(
            a.targets, a.pred, b.pred[:, order], a.units, metric, self.n_boot, self.seed
        )
        entry = {
            "lesson": lesson,
            "a": a.label,
            "b": b.label,
            "metric": metric,
            "diff": round(d.diff, 4),
            "ci": [round(d.ci_low, 4), round(d.ci_high, 4)],
            "unit": a.row["unit"],
            "n_eval": d.n_eval,
            "n_units": d.n_units,
            "seeds": d.seeds,
            "two_stage": d.two_stage,
            "interval": d.method,
            "identical": d.identical,
            "p": round(d.p_value, 4),
            "p_holm": None,
            "primary": lesson == self.primary,
            "excludes_zero": d.excludes_zero,
        }
        self.comparisons.append(entry)
        self._adjust()
        return entry

    def _adjust(self) -> None:
        """Holm over the family (every comparison of this notebook), and the primary flag."""
        for c, p in zip(
            self.comparisons, stats.holm([c["p"] for c in self.comparisons]), strict=True
        ):
            c["p_holm"] = round(float(p), 4)
            c["primary"] = c["lesson"] == self.primary

    def conclusion(self, comparison: str | dict, level: float = 0.05) -> str:
        """One sentence for a comparison, computed from it: which side is higher and by how
        much with its 95% interval, when its Holm-adjusted p is below ``level``; otherwise
        that the two cannot be told apart; identical predictions said as such."""
        c = comparison
        if isinstance(comparison, str):
            found = [x for x in self.comparisons if x["lesson"] == comparison]
            if not found:
                raise KeyError(f"no comparison named {comparison!r}")
            c = found[0]
        self._adjust()
        where = f"{c['n_units']} {c['unit']}s"
        if c["identical"]:
            return f"{c['a']} and {c['b']} make identical predictions on all {where}."
        tag = "primary; " if c["primary"] else ""
        detail = (
            f"{c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] ({tag}Holm p="
            f"{c['p_holm']:.3g}, {seeds_text(c['seeds'])}, {where})"
        )
        metric = c["metric"].replace("_", " ")
        if c["p_holm"] < level:
            side = "higher" if c["diff"] > 0 else "lower"
            return f"{c['a']} scores {side} {metric} than {c['b']}: {detail}."
        return f"{c['a']} and {c['b']} cannot be told apart on {metric}: {detail}."

    # -- reading ---------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """One row per result: the metric, its interval, class count and baselines."""
        cols = [
            "leak_free",
            "split",
            "metric",
            "value",
            "ci_low",
            "ci_high",
            "n_eval",
            "unit",
            "n_units",
            "n_classes",
            "chance",
            "majority",
            "cell_count",
            "seeds",
        ]
        df = pd.DataFrame([r.row for r in self.results.values()]).set_index("label")
        df = df.reindex(columns=cols)
        df["seeds"] = df["seeds"].map(seeds_text)
        return df.round(3)

    def comparisons_table(self) -> pd.DataFrame:
        """One row per comparison: the difference, its interval (or "identical predictions"),
        the unit and its count, the training runs behind it, the Holm-adjusted p."""
        self._adjust()
        df = pd.DataFrame(self.comparisons)
        if not len(df):
            return df
        df["95% interval"] = [
            "identical predictions" if same else f"[{lo:+.3f}, {hi:+.3f}]"
            for (lo, hi), same in zip(df.ci, df.identical, strict=True)
        ]
        df["training runs"] = df.seeds.map(seeds_text)
        return df[
            [
                "lesson",
                "primary",
                "a",
                "b",
                "metric",
                "diff",
                "95% interval",
                "n_units",
                "unit",
                "training runs",
                "p_holm",
                "excludes_zero",
            ]
        ].set_index("lesson")

    def plot(self, labels: list[str] | None = None, ax=None, title: str = ""):
        """Each result with its 95% interval; per bar, chance (grey bar), the majority-class
        baseline (black tick) at that result's own class count and, where recorded, what cell
        count alone predicts (orange diamond); leaky protocols hatched."""
        res = [self.results[k] for k in (labels or list(self.results))]
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.55 * len(res) + 1.6))
        y = np.arange(len(res))
        v = np.array([r.row["value"] for r in res])
        err = np.array(
            [[r.row["value"] - r.row["ci_low"], r.row["ci_high"] - r.row["value"]] for r in res]
        ).T
        colours = ["#1b7837" if r.protocol.leak_free else "#c2a5cf" for r in res]
        bars = ax.barh(
            y,
            v,
            xerr=err,
            color=colours,
            edgecolor="black",
            capsize=3,
            error_kw={"elinewidth": 1.2},
        )
        for bar, r in zip(bars, res, strict=True):
            if not r.protocol.leak_free:
                bar.set_hatch("//")
        ax.scatter(
            [r.row["chance"] for r in res],
            y,
            marker="|",
            s=300,
            color="grey",
            zorder=3,
            label="chance (1 / classes)",
        )
        ax.scatter(
            [r.row["majority"] for r in res],
            y,
            marker="x",
            s=40,
            color="black",
            zorder=3,
            label="majority class",
        )
        counted = [(i, r.row["cell_count"]) for i, r in enumerate(res) if "cell_count" in r.row]
        if counted:
            ax.scatter(
                [v for _, v in counted],
                [i for i, _ in counted],
                marker="D",
                s=25,
                facecolors="none",
                edgecolors="#d95f02",
                zorder=3,
                label="cell count alone",
            )
        ax.set_yticks(
            y,
            [
                f"{r.label}\n{r.row['n_classes']} classes, {r.row['n_eval']} "
                f"rows, {r.row['n_units']} {r.row['unit']}s"
                for r in res
            ],
            fontsize=8,
        )
        ax.invert_yaxis()
        ax.set(
            xlabel=f"{self.metric.replace('_', ' ')} (95% interval over {self.unit}s)",
            xlim=(0, 1),
            title=title or self.title,
        )
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        ax.figure.tight_layout()
        return ax.figure

    def plot_comparisons(self, ax=None, title: str = "Paired differences (same rows)"):
        """Forest plot of every comparison: the difference and its 95% interval, zero drawn."""
        if not self.comparisons:
            return None
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.6 * len(self.comparisons) + 1.4))
        y = np.arange(len(self.comparisons))
        for i, c in enumerate(self.comparisons):
            colour = "#b2182b" if c["excludes_zero"] else "#777777"
            ax.plot(c["ci"], [i, i], color=colour, lw=2)
            ax.plot(c["diff"], i, "o", color=colour)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(
            y, [f"{c['lesson']}\n{c['a']} − {c['b']}" for c in self.comparisons], fontsize=8
        )
        ax.invert_yaxis()
        ax.set(
            xlabel=f"difference in {self.metric.replace('_', ' ')} (95% interval; red: excludes 0)",
            title=title,
        )
        ax.figure.tight_layout()
        return ax.figure

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        run: str | Path,
        *,
        reported: Result,
        trusted: Result,
        trust: str,
        data: str,
        settings: str,
        extra: dict | None = None,
    ) -> Path:
        """Mark the headline pair (the report's protocol, the number to trust) and write
        ``metrics.json`` in ``run`` (never over an existing one), with the Holm-adjusted p of
        every comparison and exactly one primary."""
        if not trusted.protocol.leak_free:
            raise LeakError(f"the number to trust, {trusted.label!r}, is not leak-free")
        if self.comparisons and self.primary is None:
            raise ValueError(
                f"{self.notebook}: no primary comparison was declared; call "
                "lesson.declare_primary(name) at the start (or compare(..., primary=True))"
            )
        if self.primary is not None and not any(
            c["lesson"] == self.primary for c in self.comparisons
        ):
            raise ValueError(
                f"{self.notebook}: the primary comparison {self.primary!r} was declared but never "
                f"made; made: {[c['lesson'] for c in self.comparisons]}"
            )
        self._adjust()
        reported.row["headline"], trusted.row["headline"] = "reported", "trusted"
        return write_json(
            Path(run) / "metrics.json",
            {
                "notebook": self.notebook,
                "report": self.report,
                "title": self.title,
                "data": data,
                "settings": settings,
                "nuisance": self.nuisance,
                "claim": asdict(self.claim),
                "results": [
                    {k: _round(v) for k, v in r.row.items()} for r in self.results.values()
                ],
                "comparisons": self.comparisons,
                "primary": self.primary,
                "family": "every comparison of this notebook (Holm)",
                "trust": trust,
                "extra": extra or {},
            },
        )
