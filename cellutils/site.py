"""The course as a static site (Jupyter Book 2: MyST, the ``mystmd`` npm package).

``gather`` copies the newest executed copy of every notebook (``results/<nb>/<run>/<nb>.ipynb``),
the start page and the docs into ``build/site-src/`` with a ``myst.yml`` table of contents;
``build`` runs ``myst build --html --strict`` there (a broken link or cross-reference stops it)
and copies the HTML to ``build/site/``. ``make site`` installs the pinned ``mystmd`` (package.json)
into ``node_modules/`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

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
#: the MyST theme: a name that ``myst`` downloads once (cached under ``_build/templates``), or the
#: folder of a built theme for offline machines (``make site SITE_TEMPLATE=<folder>``)
DEFAULT_TEMPLATE = "book-theme"


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


def _myst_yml(
    notebooks: list[str], docs: list[str], template: str, unchecked: tuple[str, ...] = ()
) -> str:
    """The project's table of contents (start page, notebooks, reference pages) and its error
    rules: a cross-reference without a target is an error; ``unchecked`` web links (offline
    only) are not checked."""
    rules = ["  error_rules:", "    - rule: reference-target-resolves", "      severity: error"]
    if unchecked:
        rules += ["    - rule: link-resolves", "      severity: ignore", "      keys:"]
        rules += [f"        - {json.dumps(url)}" for url in unchecked]
    lines = [
        "version: 1",
        "project:",
        "  title: cellpaint-course",
        *rules,
        "  license:",
        "    content: CC-BY-4.0",
        "    code: MIT",
        "  toc:",
        f"    - file: {START_PAGE}",
        "    - title: Notebooks",
        "      children:",
        *[f"        - file: notebooks/{nb}.ipynb" for nb in notebooks],
        "    - title: Reference",
        "      children:",
        *[f"        - file: {doc}" for doc in docs],
        "site:",
        f"  template: {template}",
        "  options:",
        "    folders: true",
        "",
    ]
    return "\n".join(lines)


def gather(
    out: str | os.PathLike,
    results: str | os.PathLike | None = None,
    settings: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    unchecked: tuple[str, ...] = (),
) -> list[str]:
    """Write the site's sources into ``out``: ``docs/`` (start page, reference pages, figures),
    ``notebooks/`` (the executed copies), ``myst.yml``. Returns the notebooks gathered.
    ``out/_build`` (myst's cache, the downloaded theme) is kept; everything else is replaced."""
    repo, out = repo_root(), Path(out)
    found = executed_notebooks(results, settings)
    if not found:
        where = results_root(results)
        raise FileNotFoundError(
            f"no executed notebooks under {where} (results/<notebook>/<run>/<notebook>.ipynb"
            f"{f' of the {settings!r} settings' if settings else ''}); run `make reproduce` first "
            "or point CELLUTILS_RESULTS at a results folder."
        )
    for name in ("docs", "notebooks", "myst.yml"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (out / "notebooks").mkdir(parents=True)
    (out / "docs").mkdir()
    for nb, path in found.items():
        shutil.copy2(path, out / "notebooks" / f"{nb}.ipynb")
    docs = [d for d in DOC_PAGES if (repo / d).exists()]
    for doc in [START_PAGE, *docs]:
        shutil.copy2(repo / doc, out / doc)
    if (repo / "docs" / "figures").is_dir():
        shutil.copytree(repo / "docs" / "figures", out / "docs" / "figures")
    (out / "myst.yml").write_text(_myst_yml(list(found), docs, template, unchecked))
    return list(found)


def myst_command() -> list[str]:
    """The pinned ``myst`` in ``node_modules/`` (``make site`` installs it), else one on PATH."""
    local = repo_root() / "node_modules" / ".bin" / "myst"
    if local.exists():
        return [str(local)]
    if shutil.which("myst"):
        return ["myst"]
    raise FileNotFoundError(
        f"mystmd is not installed ({local} is missing); run `make site` (it runs `npm ci`) or "
        "`npm ci` in the repository (needs node >= 18 and npm)."
    )


def build(
    src: str | os.PathLike = "build/site-src",
    out: str | os.PathLike = "build/site",
    results: str | os.PathLike | None = None,
    settings: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    html: bool = True,
) -> Path:
    """Gather the sources and build the site with ``myst --strict``; returns the HTML folder
    (``out``). ``html=False`` only resolves links and references (``myst build --site``), which
    needs no theme server."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if not html:  # resolving links needs the theme's options only, not its server: no download
        template = str(src / "_links-only-template")
        Path(template).mkdir(parents=True, exist_ok=True)
        (Path(template) / "template.yml").write_text("jtex: v1\ntitle: links and references\n")
    gather(src, results, settings, template)
    cmd = [*myst_command(), "build", "--html" if html else "--site", "--strict"]
    done = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    web = tuple(
        sorted(set(re.findall(r'Link for "(https?://[^"]+)" did not resolve', done.stdout)))
    )
    if done.returncode and web and _offline():
        # --strict checks web links too; offline they cannot resolve: check everything else
        print(f"offline: {len(web)} web link(s) not checked: {', '.join(web)}")
        gather(src, results, settings, template, unchecked=web)
        done = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    if done.returncode:
        log = (done.stdout + done.stderr)[-4000:]
        hint = ""
        if "Querying template" in log and ("ENOTFOUND" in log or "failed" in log):
            hint = (
                f"\nThe MyST theme {template!r} could not be downloaded (offline?): pass the "
                "folder of a built book-theme with `make site SITE_TEMPLATE=<folder>`."
            )
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed in {src} (a broken link or reference fails the build: "
            f"fix the page it names):\n{log}{hint}"
        )
    if not html:
        return src / "_build" / "site"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src / "_build" / "html", out)
    return out


def _offline(host: str = "api.mystmd.org") -> bool:
    """True when ``host`` (myst's own server) does not resolve: no internet here."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cellutils.site", description=__doc__)
    ap.add_argument("--results", help="results root (default: $CELLUTILS_RESULTS or results/)")
    ap.add_argument("--settings", help="only runs of these settings (quick, smoke, full)")
    ap.add_argument("--src", default=str(repo_root() / "build" / "site-src"))
    ap.add_argument("--out", default=str(repo_root() / "build" / "site"))
    ap.add_argument("--template", default=DEFAULT_TEMPLATE, help="theme name or built theme folder")
    ap.add_argument("--check", action="store_true", help="links and references only, no HTML")
    a = ap.parse_args(argv)
    where = build(a.src, a.out, a.results, a.settings, a.template, html=not a.check)
    print(f"site: {where}" + ("" if a.check else f" (open {where / 'index.html'})"))


if __name__ == "__main__":
    main()
