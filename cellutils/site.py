"""The course as a static site (Sphinx + MyST-NB, the engine of Jupyter Book 1; all from PyPI).

``gather`` copies the newest executed copy of every notebook (``results/<nb>/<run>/<nb>.ipynb``;
a notebook never run is shown without outputs, saying so), the start page, the docs, their
figures and ``site/conf.py`` into ``build/site-src/``; ``build`` runs ``sphinx-build -W -n``
there (a warning, a broken cross-reference or a missing image stops it), then checks that every
internal ``href``/``src`` of the HTML names a file (``broken_links``) and writes ``build/site/``.
The learning path (a ``mermaid`` flowchart in docs/start.md, which GitHub renders too) becomes
an SVG drawn with matplotlib at build time (``parse_flowchart``, ``draw_flowchart``): offline.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cellutils.paths import repo_root, results_root

START_PAGE = "docs/start.md"
#: reference pages after the notebooks, in this order (the start page comes first)
DOC_PAGES = [
    "docs/glossary.md",
    "docs/running.md",
    "docs/datasets.md",
    "docs/scaling.md",
    "docs/simulator.md",
]
#: what ``gather`` writes into its folder (replaced on every build), and the file marking it
GATHERED = ("conf.py", "docs", "notebooks", "_generated")
MARKER = ".cellutils-site"
NOT_RUN_NOTE = (
    "```{note}\nThis page shows the notebook **without outputs**: no executed copy was found "
    "under `results/`. Run `make reproduce` (or the notebook), then `make site`.\n```"
)


def executed_notebooks(
    results: str | os.PathLike | None = None, settings: str | None = None
) -> dict[str, Path]:
    """{notebook: the executed copy in its newest run folder} (runs of ``settings`` if given).
    Run folders are ``<stamp>-<settings>`` (``paths.new_run_dir``); newest by modification time,
    as ``summary.latest_runs`` picks them."""
    root = results_root(results)
    out = {}
    for folder in sorted(p for p in root.glob("[0-9][0-9]_*") if p.is_dir()):
        runs = sorted(folder.glob(f"*/{folder.name}.ipynb"), key=lambda p: p.stat().st_mtime)
        if settings:
            runs = [r for r in runs if f"-{settings}" in r.parent.name]
        if runs:
            out[folder.name] = runs[-1]
    return out


def _toctree(caption: str, docs: list[str]) -> str:
    entries = "\n".join(f"/{Path(d).with_suffix('').as_posix()}" for d in docs)
    return f"\n\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n{entries}\n```\n"


def gather(
    out: str | os.PathLike,
    results: str | os.PathLike | None = None,
    settings: str | None = None,
) -> dict[str, bool]:
    """Write the site's sources into ``out``: ``conf.py``, ``docs/`` (start page with the table
    of contents, reference pages, figures) and ``notebooks/``. Returns {notebook: executed?};
    the notebooks without an executed copy are the committed ones, without outputs, with a note.
    What an earlier gather wrote there is replaced; a folder it did not write is refused."""
    import nbformat

    repo, out = repo_root(), Path(out)
    found = executed_notebooks(results, settings)
    if not found:
        where = results_root(results)
        raise FileNotFoundError(
            f"no executed notebooks under {where} (results/<notebook>/<run>/<notebook>.ipynb"
            f"{f' of the {settings!r} settings' if settings else ''}); run `make reproduce` first "
            "or point CELLUTILS_RESULTS at a results folder."
        )
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(
            f"{out} is not empty and was not written by cellutils.site: nothing there is "
            "replaced; pass another --src folder (default build/site-src)."
        )
    for name in GATHERED:  # only what an earlier gather wrote; Sphinx's cache _build is kept
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    (out / "notebooks").mkdir(parents=True)
    (out / MARKER).write_text("sources of the course site, rewritten by `make site`\n")
    (out / "docs").mkdir()
    shutil.copy2(repo / "site" / "conf.py", out / "conf.py")
    status = {}
    for source in sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        status[source.stem] = source.stem in found
        if status[source.stem]:
            shutil.copy2(found[source.stem], out / "notebooks" / source.name)
            continue
        nb = nbformat.read(source, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(NOT_RUN_NOTE))
        nbformat.write(nb, out / "notebooks" / source.name)
    for nb in sorted(set(found) - set(status)):  # executed, but no longer in notebooks/
        shutil.copy2(found[nb], out / "notebooks" / f"{nb}.ipynb")
        status[nb] = True
    docs = [d for d in DOC_PAGES if (repo / d).exists()]
    for doc in [START_PAGE, *docs]:
        shutil.copy2(repo / doc, out / doc)
    if (repo / "docs" / "figures").is_dir():
        shutil.copytree(repo / "docs" / "figures", out / "docs" / "figures")
    notebooks = [f"notebooks/{nb}" for nb in sorted(status)]
    with open(out / START_PAGE, "a") as start:  # the sidebar: start page, notebooks, reference
        start.write(_toctree("Notebooks", notebooks) + _toctree("Reference", docs))
    return status


# -- the learning path: a mermaid flowchart drawn as an SVG ---------------------------------------

_NODE = r'\s*([A-Za-z_]\w*)\s*(?:\["([^"]*)"\])?\s*'


def parse_flowchart(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The nodes ({id: label}) and edges of a mermaid ``flowchart LR`` made of lines
    ``A["label"] --> B["label"]`` (chains ``A --> B --> C`` too). Anything else is an error
    naming the line: the site draws this subset only."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not re.fullmatch(r"(flowchart|graph)\s+LR", lines[0]):
        raise ValueError(f"the learning path must start with 'flowchart LR', not {lines[:1]}")
    labels: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in lines[1:]:
        ids = []
        for part in line.split("-->"):
            m = re.fullmatch(_NODE, part)
            if not m:
                raise ValueError(
                    f"mermaid line {line!r}: the site draws only 'A[\"label\"] --> B' lines"
                )
            ids.append(m[1])
            if m[2] is not None or m[1] not in labels:
                labels[m[1]] = m[2] if m[2] is not None else labels.get(m[1], m[1])
        edges += list(zip(ids, ids[1:], strict=False))
    return labels, edges


def draw_flowchart(
    labels: dict[str, str], edges: list[tuple[str, str]], path: str | os.PathLike
) -> Path:
    """Draw the flowchart left to right into ``path`` (SVG): a node's column is its longest
    chain of predecessors, its row follows the mean row of its predecessors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    preds: dict[str, list[str]] = {n: [] for n in labels}
    for a, b in edges:
        preds[b].append(a)
    col: dict[str, int] = {}

    def column(n: str, seen: tuple[str, ...] = ()) -> int:
        if n in seen:
            raise ValueError(f"the learning path has a cycle through {n!r}")
        if n not in col:
            col[n] = max((column(p, (*seen, n)) + 1 for p in preds[n]), default=0)
        return col[n]

    for n in labels:
        column(n)
    row: dict[str, float] = {}
    height = max(sum(1 for c in col.values() if c == k) for k in set(col.values()))
    for k in sorted(set(col.values())):
        members = [n for n in labels if col[n] == k]
        members.sort(key=lambda n: sum(row[p] for p in preds[n]) / max(len(preds[n]), 1))
        for i, n in enumerate(members):
            row[n] = i - (len(members) - 1) / 2
    width, box_w, box_h, step = max(col.values()) + 1, 2.4, 0.8, 3.0
    fig, ax = plt.subplots(figsize=(1.9 * width, 0.8 * height + 0.3))
    for a, b in edges:  # an arrow that skips a column bends away from the middle row
        bend = 0.0 if col[b] - col[a] < 2 else (0.3 if row[a] + row[b] <= 0 else -0.3)
        ax.annotate(
            "",
            xy=(col[b] * step - box_w / 2, -row[b]),
            xytext=(col[a] * step + box_w / 2, -row[a]),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.45",
                "lw": 1,
                "shrinkA": 0,
                "shrinkB": 0,
                "connectionstyle": f"arc3,rad={bend}",
            },
            zorder=1,
        )
    for n, label in labels.items():
        x, y = col[n] * step, -row[n]
        ax.add_patch(
            FancyBboxPatch(
                (x - box_w / 2, y - box_h / 2),
                box_w,
                box_h,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor="#e8f0fa",
                edgecolor="#3a6ea5",
                zorder=2,  # over the arrows that skip a column
            )
        )
        ax.text(x, y, textwrap.fill(label, 18), ha="center", va="center", fontsize=9, zorder=3)
    ax.set_xlim(-box_w / 2 - 0.1, (width - 1) * step + box_w / 2 + 0.1)
    ax.set_ylim(-(height - 1) / 2 - box_h / 2 - 0.1, (height - 1) / 2 + box_h / 2 + 0.1)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path


def mermaid_directive():
    """A docutils directive ``mermaid``: the flowchart drawn by ``draw_flowchart`` as an image
    (``site/conf.py`` registers it; Sphinx copies the SVG into ``_images``)."""
    from docutils import nodes
    from docutils.parsers.rst import Directive

    class Mermaid(Directive):
        has_content = True

        def run(self):
            text = "\n".join(self.content)
            try:
                labels, edges = parse_flowchart(text)
            except ValueError as exc:
                raise self.error(str(exc)) from exc
            env = self.state.document.settings.env
            name = f"flowchart-{hashlib.sha1(text.encode()).hexdigest()[:10]}.svg"
            draw_flowchart(labels, edges, Path(env.srcdir) / "_generated" / name)
            alt = "learning path: " + "; ".join(f"{labels[a]} -> {labels[b]}" for a, b in edges)
            return [nodes.image(uri=f"/_generated/{name}", alt=alt)]

    return Mermaid


# -- the built HTML: every internal link names a file ---------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.targets.append(value)


def broken_links(html_dir: str | os.PathLike) -> list[str]:
    """``"page -> target"`` for every internal ``href``/``src`` in the HTML under ``html_dir``
    that names no file (a folder counts when it holds ``index.html``). Web, ``mailto:`` and
    ``data:`` links, same-page anchors and the theme's own files (``_static/``) are not
    checked."""
    root = Path(html_dir).resolve()
    broken = []
    for page in sorted(root.rglob("*.html")):
        if page.relative_to(root).parts[0] in ("_static", "_sources"):  # theme templates
            continue
        parser = _Links()
        parser.feed(page.read_text(errors="replace"))
        for target in parser.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path:
                continue
            base = root if parts.path.startswith("/") else page.parent
            file = (base / unquote(parts.path).lstrip("/")).resolve()
            if not (file.is_file() or (file / "index.html").is_file()):
                broken.append(f"{page.relative_to(root)} -> {target}")
    return broken


def build(
    src: str | os.PathLike = "build/site-src",
    out: str | os.PathLike = "build/site",
    results: str | os.PathLike | None = None,
    settings: str | None = None,
) -> Path:
    """Gather the sources, build them with ``sphinx-build -b html -W --keep-going -n`` and check
    the links; returns the HTML folder (``out``, with an ``index.html`` opening the start page)."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").exists():
        raise FileExistsError(
            f"{out} is not empty and holds no Sphinx site: nothing there is replaced; pass "
            "another --out folder (default build/site)."
        )
    gather(src, results, settings)
    html_dir = src / "_build" / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q"]
    done = subprocess.run([*cmd, str(src), str(html_dir)], capture_output=True, text=True, cwd=src)
    if done.returncode:
        log = (done.stdout + done.stderr)[-6000:]
        raise RuntimeError(
            f"`sphinx-build` failed in {src} (every warning is an error: a broken link, a "
            f"cross-reference without a target or a missing image; fix the page it names):\n{log}"
        )
    start = Path(START_PAGE).with_suffix(".html").as_posix()
    (html_dir / "index.html").write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>cellpaint-course</title>'
        f'<meta http-equiv="refresh" content="0; url={start}"></head>'
        f'<body><a href="{start}">Start here</a></body></html>\n'
    )
    broken = broken_links(html_dir)
    if broken:
        raise RuntimeError(
            f"{len(broken)} internal link(s) in {html_dir} name no file:\n  " + "\n  ".join(broken)
        )
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html_dir, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cellutils.site", description=__doc__)
    ap.add_argument("--results", help="results root (default: $CELLUTILS_RESULTS or results/)")
    ap.add_argument("--settings", help="only runs of these settings (quick, smoke, full)")
    ap.add_argument("--src", default=str(repo_root() / "build" / "site-src"))
    ap.add_argument("--out", default=str(repo_root() / "build" / "site"))
    a = ap.parse_args(argv)
    where = build(a.src, a.out, a.results, a.settings)
    print(f"site: {where} (open {where / 'index.html'})")


if __name__ == "__main__":
    main()
