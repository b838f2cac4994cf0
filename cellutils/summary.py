"""Collect every notebook's ``metrics.json`` into one table and ``results/SUMMARY.md``.

For each report: the number it claims, our number under the report's own protocol, and the
number to trust, as each lesson (``cellutils.lesson``) marked them, with their intervals,
class counts and baselines; then every paired comparison.
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
                )
            }
        row |= {"data": m.get("data"), "settings": _settings(m), "run": m.get("run")}
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """Every paired comparison of every lesson."""
    rows = [
        {"notebook": nb, **c} for nb, m in sorted(metrics.items()) for c in m.get("comparisons", [])
    ]
    return pd.DataFrame(rows)


def plot_headline(table: pd.DataFrame):
    """One panel per report, each on its own task: ours under the report's protocol and the
    number to trust, with 95% intervals and that task's chance (grey bar) and majority-class
    (x) baselines; the claim as a red dashed line, its class count in the title."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(table), 1, figsize=(10, 1.3 * len(table) + 0.8), squeeze=False)
    for ax, r in zip(axes[:, 0], table.itertuples(index=False), strict=True):
        for y, (prefix, colour) in enumerate((("reported", "#c2a5cf"), ("trusted", "#1b7837"))):
            v = getattr(r, f"{prefix}_value")
            if v is None or pd.isna(v):
                continue
            err = [[v - getattr(r, f"{prefix}_ci_low")], [getattr(r, f"{prefix}_ci_high") - v]]
            ax.barh(
                y,
                v,
                xerr=err,
                color=colour,
                edgecolor="black",
                capsize=3,
                hatch="//" if prefix == "reported" else None,
            )
            ax.plot([getattr(r, f"{prefix}_chance")] * 2, [y - 0.4, y + 0.4], color="grey", lw=3)
            ax.plot(getattr(r, f"{prefix}_majority"), y, "kx")
            ax.text(
                1.01,
                y,
                f"{getattr(r, f'{prefix}_n_classes')} classes",
                va="center",
                fontsize=7,
                transform=ax.get_yaxis_transform(),
            )
        if r.claimed is not None and not pd.isna(r.claimed):
            ax.plot([r.claimed] * 2, [-0.5, 1.5], color="#b2182b", ls="--", lw=1.5)
        ax.set_yticks([0, 1], ["report's protocol", "trust this"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(
            f"report {r.report} ({r.notebook}): {r.metric.replace('_', ' ')}; claimed "
            f"{r.claimed:.2f} on {r.claimed_classes} classes (red)",
            fontsize=9,
            loc="left",
        )
    axes[-1, 0].set_xlabel(
        "score with 95% interval; grey bar: chance, x: majority class, "
        "each for that row's own classes"
    )
    fig.tight_layout()
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
        "number carries its 95% interval (a bootstrap over the unit named), its class "
        "count, and the chance and majority-class baselines of that same task.",
        "",
        "## Claimed vs reproduced vs the number to trust",
        "",
        "| report | notebook | metric | claimed (classes; majority on the report's data) "
        "| ours, report's protocol "
        "[95% CI] | classes / chance / majority | **trust this** [95% CI] | classes / "
        "chance / majority | evaluated | protocol to trust | ImageNet weights |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.report} | `{r.notebook}` | {r.metric.replace('_', ' ')} | {_fmt(r.claimed)} "
            f"({r.claimed_classes}; {_fmt(getattr(r, 'claimed_majority', None))}) | "
            f"{_ci(r, 'reported')} | {r.reported_n_classes} / "
            f"{_fmt(r.reported_chance)} / {_fmt(r.reported_majority)} | **{_ci(r, 'trusted')}** "
            f"| {r.trusted_n_classes} / {_fmt(r.trusted_chance)} / {_fmt(r.trusted_majority)} | "
            f"{r.trusted_n_eval} rows, {r.trusted_n_units} {r.trusted_unit}s | "
            f"{r.trusted_label} | {_weights(r.trusted_imagenet)} |"
        )
    comps = comparisons_table(metrics)
    if len(comps):
        lines += [
            "",
            "## Paired comparisons (same evaluation rows)",
            "",
            "| notebook | lesson | a − b | difference [95% CI] | units |",
            "|---|---|---|---|---|",
        ]
        for c in comps.itertuples(index=False):
            mark = " **(excludes 0)**" if c.excludes_zero else ""
            lines.append(
                f"| `{c.notebook}` | {c.lesson} | {c.a} − {c.b} | {c.diff:+.3f} "
                f"[{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]{mark} | {c.n_units} {c.unit}s |"
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
