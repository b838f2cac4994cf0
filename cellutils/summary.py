"""Collect every notebook's ``metrics.json`` into one table and ``results/SUMMARY.md``.

For each report: the number it claims, our number under the report's own protocol, and the
number to trust, as each lesson (``cellutils.lesson``) marked them, with their intervals,
class counts and baselines (chance, majority class, cell count alone); then each lesson's
primary comparison with its computed verdict (``verdict``: Holm-adjusted over the notebook's
family), then every paired comparison. The README's results block (``update_readme``) quotes
the headline and the primaries only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from cellutils.paths import atomic_write_text, results_root


def latest_runs(
    root: str | os.PathLike | None = None, profile: str | None = None
) -> dict[str, Path]:
    """{notebook: its newest run folder holding a metrics.json} (of ``profile`` if given)."""
    root = results_root(root)
    out = {}
    for folder in sorted(p for p in root.glob("[0-9][0-9]_*") if p.is_dir()):
        runs = sorted(folder.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
        if profile:
            runs = [r for r in runs if _settings(json.loads(r.read_text())) == profile]
        if runs:
            out[folder.name] = runs[-1].parent
    return out


def _settings(metrics: dict) -> str | None:
    """The run settings a metrics.json was made with (``profile``: the old key)."""
    return metrics.get("settings", metrics.get("profile"))


def load(root: str | os.PathLike | None = None, profile: str | None = None) -> dict[str, dict]:
    return {
        nb: json.loads((p / "metrics.json").read_text()) | {"run": str(p)}
        for nb, p in latest_runs(root, profile).items()
    }


def headline_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per report notebook: the claim, our number under the report's protocol and the
    number to trust (the rows each lesson marked), each with its interval, class count, chance
    and majority-class baseline."""
    rows = []
    for nb, m in sorted(metrics.items()):
        marked = {r.get("headline"): r for r in m.get("results", []) if r.get("headline")}
        if "trusted" not in marked:
            continue
        claim, rep, tr = m.get("claim", {}), marked.get("reported", {}), marked["trusted"]
        row = {
            "notebook": nb,
            "report": m.get("report"),
            "metric": tr["metric"],
            "claimed": claim.get("value"),
            "claimed_metric": claim.get("metric"),
            "claimed_classes": claim.get("n_classes"),
            "claimed_split": claim.get("split"),
            "claimed_majority": claim.get("majority"),
        }
        for prefix, r in (("reported", rep), ("trusted", tr)):
            row |= {
                f"{prefix}_{k}": r.get(k)
                for k in (
                    "label",
                    "value",
                    "ci_low",
                    "ci_high",
                    "n_classes",
                    "chance",
                    "majority",
                    "n_eval",
                    "n_units",
                    "unit",
                    "imagenet",
                    "seeds",
                    "cell_count",
                )
            }
        row |= {"data": m.get("data"), "settings": _settings(m), "run": m.get("run")}
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """Every paired comparison of every lesson, with its ``verdict``."""
    rows = [
        {"notebook": nb, **c, "verdict": verdict(c)}
        for nb, m in sorted(metrics.items())
        for c in m.get("comparisons", [])
    ]
    return pd.DataFrame(rows)


def verdict(c: dict, level: float = 0.05) -> str:
    """A comparison's conclusion, computed: "identical predictions" (nothing to estimate),
    "excludes 0 after Holm" (its Holm-adjusted p over the notebook's family below ``level``)
    or "cannot be told from 0"; a metrics.json from before Holm says "excludes 0 (no Holm)"."""
    if c.get("identical"):
        return "identical predictions"
    p = c.get("p_holm")
    if p is None or (isinstance(p, float) and pd.isna(p)):
        return "excludes 0 (no Holm)" if c.get("excludes_zero") else "cannot be told from 0"
    return "excludes 0 after Holm" if p < level else "cannot be told from 0"


def _runs(seeds) -> str:
    if seeds is None or (isinstance(seeds, float) and pd.isna(seeds)):
        return "–"
    return "one training run" if int(seeds) == 1 else f"{int(seeds)} seeds"


def _diff(c) -> str:
    if getattr(c, "identical", False) is True:
        return "identical predictions"
    return f"{c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"


def _p(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3g}"


def _units(c) -> str:
    return f"{c.n_units} {c.unit}s"


def plot_headline(table: pd.DataFrame):
    """One panel per report, three rows kept apart: the report's claim (real data, its own
    metric and class count, red outline), then our synthetic results under the report's
    protocol and the number to trust (each with its 95% interval, metric and class count), every
    row with its own chance (grey bar: 1 / its classes) and majority-class (x) baselines where
    known; a legend says which is which."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colours = {"reported": "#c2a5cf", "trusted": "#1b7837"}
    fig, axes = plt.subplots(len(table), 1, figsize=(10, 1.6 * len(table) + 1.2), squeeze=False)
    for ax, r in zip(axes[:, 0], table.itertuples(index=False), strict=True):
        claimed_metric = str(r.claimed_metric or r.metric).replace("_", " ")
        if r.claimed is not None and not pd.isna(r.claimed):
            ax.barh(0, r.claimed, color="white", edgecolor="#b2182b", lw=1.5, hatch="..")
            ax.text(
                1.01,
                0,
                f"{claimed_metric}, {r.claimed_classes} classes",
                va="center",
                fontsize=7,
                color="#b2182b",
                transform=ax.get_yaxis_transform(),
            )
        claim_majority = getattr(r, "claimed_majority", None)  # on the report's own data
        if claim_majority is not None and not pd.isna(claim_majority):
            ax.plot(claim_majority, 0, "x", color="#b2182b")
        if r.claimed_classes and not pd.isna(r.claimed_classes):  # chance on the report's task
            ax.plot([1 / r.claimed_classes] * 2, [-0.4, 0.4], color="grey", lw=3)
        for y, prefix in ((1, "reported"), (2, "trusted")):
            v = getattr(r, f"{prefix}_value")
            if v is None or pd.isna(v):
                continue
            err = [[v - getattr(r, f"{prefix}_ci_low")], [getattr(r, f"{prefix}_ci_high") - v]]
            ax.barh(y, v, xerr=err, color=colours[prefix], edgecolor="black", capsize=3)
            ax.plot([getattr(r, f"{prefix}_chance")] * 2, [y - 0.4, y + 0.4], color="grey", lw=3)
            ax.plot(getattr(r, f"{prefix}_majority"), y, "kx")
            ax.text(
                1.01,
                y,
                f"{r.metric.replace('_', ' ')}, {getattr(r, f'{prefix}_n_classes')} classes",
                va="center",
                fontsize=7,
                transform=ax.get_yaxis_transform(),
            )
        ax.axhline(0.5, color="black", lw=0.6)
        ax.set_yticks(
            [0, 1, 2], ["claim (real data)", "ours: report's protocol", "ours: trust this"]
        )
        ax.tick_params(axis="y", labelsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"report {r.report} ({r.notebook})", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("score (each row on its own metric and classes; bars: 95% interval)")
    handles = [
        Patch(facecolor="white", edgecolor="#b2182b", hatch="..", label="claim: real data"),
        Patch(
            facecolor=colours["reported"], edgecolor="black", label="synthetic: report's protocol"
        ),
        Patch(facecolor=colours["trusted"], edgecolor="black", label="synthetic: trust this"),
        Line2D([], [], color="grey", lw=3, label="chance (1 / classes)"),
        Line2D([], [], color="black", marker="x", ls="", label="majority class (red: the claim's)"),
    ]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8, frameon=False)
    return fig


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _weights(imagenet) -> str:
    """Whether a row's model started from ImageNet weights (a silent fallback shows here)."""
    if imagenet is None or (isinstance(imagenet, float) and pd.isna(imagenet)):
        return "–"
    return "yes" if imagenet else "no (random init)"


def _ci(r, prefix: str) -> str:
    v = getattr(r, f"{prefix}_value")
    if v is None or pd.isna(v):
        return "–"
    return f"{v:.3f} [{getattr(r, f'{prefix}_ci_low'):.3f}, {getattr(r, f'{prefix}_ci_high'):.3f}]"


def _baselines(r, prefix: str) -> str:
    """classes / chance / majority / cell count of one headline row."""
    g = lambda k: getattr(r, f"{prefix}_{k}", None)  # noqa: E731
    return (
        f"{g('n_classes')} / {_fmt(g('chance'))} / {_fmt(g('majority'))} / {_fmt(g('cell_count'))}"
    )


def write_summary(
    root: str | os.PathLike | None = None,
    profile: str | None = None,
    times: dict[str, float] | None = None,
    name: str = "SUMMARY.md",
) -> Path:
    """Write ``results/SUMMARY.md``: the headline table (intervals, classes, baselines), the
    paired comparisons, segmentation accuracy, times, and the evaluation notebook's figures.
    Overwrites only the previous summary (it is derived)."""
    root = results_root(root)
    metrics = load(root, profile)
    table = headline_table(metrics)
    data = sorted({str(m["data"]) for m in metrics.values() if m.get("data") and m.get("claim")})
    lines = [
        "# Results summary",
        "",
        f"Run settings: **{profile or 'any'}**; data: {', '.join(data) or 'unknown'}. "
        "Generated by `make reproduce` from each notebook's newest `metrics.json`. Every "
        "number carries its 95% interval (a cluster-jackknife t interval over the unit named; "
        "`make calibrate` checks its coverage on the simulator), its class count, and the "
        "chance, majority-class and cell-count baselines of that same task.",
        "",
        "## Claimed vs reproduced vs the number to trust",
        "",
        "| report | notebook | metric | claimed (classes; majority on the report's data) "
        "| ours, report's protocol "
        "[95% CI] | classes / chance / majority / cell count | **trust this** [95% CI] | "
        "classes / chance / majority / cell count | evaluated | training runs | protocol to "
        "trust | ImageNet weights |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.report} | `{r.notebook}` | {r.metric.replace('_', ' ')} | {_fmt(r.claimed)} "
            f"({r.claimed_classes}; {_fmt(getattr(r, 'claimed_majority', None))}) | "
            f"{_ci(r, 'reported')} | {_baselines(r, 'reported')} | **{_ci(r, 'trusted')}** "
            f"| {_baselines(r, 'trusted')} | "
            f"{r.trusted_n_eval} rows, {r.trusted_n_units} {r.trusted_unit}s | "
            f"{_runs(r.trusted_seeds)} | {r.trusted_label} | {_weights(r.trusted_imagenet)} |"
        )
    comps = comparisons_table(metrics)
    if len(comps):
        primaries = (
            comps[comps["primary"].fillna(False).astype(bool)] if "primary" in comps else comps[:0]
        )
        lines += [
            "",
            "## Primary comparisons (one per lesson, declared before it ran)",
            "",
            "Each notebook names one comparison before any result exists; the others are its "
            'family, Holm-adjusted. Verdict: the Holm-adjusted p below 0.05 ("excludes 0 '
            'after Holm"), or not ("cannot be told from 0"), or the two protocols made '
            "identical predictions.",
            "",
            "| notebook | primary comparison: a − b | difference [95% CI] | training runs | "
            "units | Holm p | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in primaries.itertuples(index=False):
            lines.append(
                f"| `{c.notebook}` | {c.lesson}: {c.a} − {c.b} | {_diff(c)} | "
                f"{_runs(getattr(c, 'seeds', None))} | {_units(c)} | "
                f"{_p(getattr(c, 'p_holm', None))} | {c.verdict} |"
            )
        lines += [
            "",
            "## All paired comparisons (same evaluation rows)",
            "",
            "Every comparison of every notebook; **primary** marks the one declared first, the "
            "rest are read with their Holm-adjusted p (family: the notebook's comparisons).",
            "",
            "| notebook | comparison | a − b | difference [95% CI] | training runs | units | "
            "p | Holm p | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comps.itertuples(index=False):
            tag = " **primary**" if getattr(c, "primary", False) is True else ""
            lines.append(
                f"| `{c.notebook}` | {c.lesson}{tag} | {c.a} − {c.b} | {_diff(c)} | "
                f"{_runs(getattr(c, 'seeds', None))} | {_units(c)} | "
                f"{_p(getattr(c, 'p', None))} | {_p(getattr(c, 'p_holm', None))} | "
                f"{c.verdict} |"
            )
    if "01_segmentation" in metrics:
        lines += [
            "",
            "## Segmentation (notebook 01), average precision",
            "",
            "| backend and data | AP@0.5 | AP@0.75 |",
            "|---|---|---|",
        ]
        for r in metrics["01_segmentation"]["results"]:
            lines.append(
                f"| {r['protocol']} | {_fmt(r.get('AP@0.5'))} | {_fmt(r.get('AP@0.75'))} |"
            )
    if times:
        lines += ["", "## Time per notebook", "", "| notebook | seconds |", "|---|---|"]
        lines += [f"| `{k}` | {v:.0f} |" for k, v in times.items()]
        lines.append(f"| **total** | **{sum(times.values()):.0f}** |")
    if "09_evaluation" in metrics:
        run = Path(metrics["09_evaluation"]["run"])
        figs = sorted(run.glob("*.png"))
        if figs:
            lines += ["", "## Figures", ""]
            lines += [f"![{f.stem}]({os.path.relpath(f, root)})" for f in figs]
    lines += [
        "",
        "On synthetic data the numbers teach the protocols, not the biology: read each "
        "row's two numbers against each other and against their own baselines, not "
        "against the claims, which are on other tasks.",
        "",
    ]
    path = root / name
    atomic_write_text(path, "\n".join(lines), overwrite=True)
    return path


def predictions(metrics: dict[str, dict]) -> dict[tuple[str, str, str], dict]:
    """Every saved prediction file: {(notebook, model, split): arrays} from the runs in
    ``metrics`` (``load``'s result)."""
    import numpy as np

    out = {}
    for nb, m in metrics.items():
        for f in sorted(Path(m["run"]).glob("*-predictions.npz")):
            model, split = f.name.removesuffix("-predictions.npz").rsplit("-", 1)
            with np.load(f, allow_pickle=False) as z:
                out[(nb, model, split)] = {k: z[k] for k in z.files}
    return out


def predictions_table(preds: dict[tuple[str, str, str], dict]) -> pd.DataFrame:
    """Accuracy, balanced accuracy, top-5 and macro F1 of every saved prediction set."""
    from cellutils.evaluate import classification_metrics

    rows = []
    for (nb, model, split), p in preds.items():
        rows.append(
            {
                "notebook": nb,
                "model": model,
                "split": split,
                "classes": len(p["classes"]),
                "samples": len(p["targets"]),
                **classification_metrics(p["targets"], p["logits"]),
            }
        )
    return pd.DataFrame(rows)


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
# the SUMMARY.md sections the README quotes: the headline and the primaries, not every comparison
README_SECTIONS = (
    "Claimed vs reproduced",
    "Primary comparisons",
    "Segmentation",
    "Time per notebook",
)


def update_readme(
    summary: str | os.PathLike | None = None, readme: str | os.PathLike | None = None
) -> Path:
    """Copy ``SUMMARY.md``'s opening and its ``README_SECTIONS`` (the headline with its
    baselines, each lesson's primary comparison, segmentation, times; not the full list of
    comparisons nor the figures, which stay in results/) into the README between
    ``README_START`` and ``README_END``, so the README quotes the last run instead of typed
    numbers. ``make reproduce`` calls it; only the text between the markers changes."""
    from cellutils.paths import repo_root

    summary = Path(summary) if summary else results_root() / "SUMMARY.md"
    readme = Path(readme) if readme else repo_root() / "README.md"
    if not summary.exists():
        raise FileNotFoundError(f"{summary} does not exist; run `make reproduce` first.")
    text = readme.read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(
            f"{readme} must hold {README_START} and {README_END} once each (the generated "
            "results block); put them back around the results section."
        )
    body, keep = [], True
    for line in summary.read_text().splitlines()[1:]:  # drop the title
        if line.startswith("## "):
            keep = line[3:].startswith(README_SECTIONS)
        if keep:
            body.append(("#" + line) if line.startswith("## ") else line)
    block = "\n".join(
        [README_START, f"<!-- generated from {summary.name}: edit cellutils.summary -->"]
        + body
        + ["", f"Every table, with the figures: `results/{summary.name}`.", README_END]
    )
    head, rest = text.split(README_START, 1)
    new = head + block + rest.split(README_END, 1)[1]
    atomic_write_text(readme, new, overwrite=True)
    return readme


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["readme"]:
        sys.exit("usage: python -m cellutils.summary readme  (refresh the README's results)")
    print(f"results block refreshed: {update_readme()}")
