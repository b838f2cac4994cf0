"""The course site (cellutils.site, `make site`): Sphinx + MyST-NB built from the smoke run of two
notebooks, strict about references, images and links, and its pages open in headless Chromium
with their figures and tables."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from importlib.util import find_spec
from pathlib import Path

import pytest

from cellutils import site
from cellutils.paths import repo_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM, reason="chromium is not installed (Debian: apt-get install chromium)"
)
PATH_LR = """flowchart LR
  N00["00 data"] --> N01["01 segmentation"]
  N01 --> N02["02 features"] --> N09["09 evaluation"]
  N00 --> N09
"""


def test_executed_notebooks_newest_run_of_the_settings(tmp_path):
    for run in ("20260101-000000-quick", "20260102-000000-smoke", "20260103-000000-quick"):
        folder = tmp_path / "00_data" / run
        folder.mkdir(parents=True)
        (folder / "00_data.ipynb").write_text("{}")
        os.utime(folder / "00_data.ipynb", (int(run[:8]), int(run[:8])))
    (tmp_path / "01_segmentation" / "20260101-000000-quick").mkdir(parents=True)  # failed run
    found = site.executed_notebooks(tmp_path)
    assert found == {"00_data": tmp_path / "00_data/20260103-000000-quick/00_data.ipynb"}
    smoke = site.executed_notebooks(tmp_path, settings="smoke")
    assert smoke["00_data"].parent.name == "20260102-000000-smoke"


def test_gather_without_runs_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"make reproduce"):
        site.gather(tmp_path / "src", results=tmp_path / "empty")


def test_gather_marks_the_notebooks_not_run_and_builds_the_table_of_contents(tmp_path):
    run = tmp_path / "results" / "00_data" / "20260101-000000-smoke"
    run.mkdir(parents=True)
    shutil.copy2(repo_root() / "notebooks" / "00_data.ipynb", run / "00_data.ipynb")
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "stale.md").write_text("old")
    with pytest.raises(FileExistsError, match="not written by cellutils.site"):
        site.gather(src, results=tmp_path / "results")  # a folder it did not write: untouched
    assert (src / "docs" / "stale.md").exists()
    (src / site.MARKER).write_text("")
    (src / "_build").mkdir()  # Sphinx's cache is kept, what gather wrote is replaced
    status = site.gather(src, results=tmp_path / "results")
    assert status["00_data"] and not status["09_evaluation"]
    assert (src / "_build").is_dir() and not (src / "docs" / "stale.md").exists()
    assert (src / "conf.py").read_text() == (repo_root() / "site" / "conf.py").read_text()
    assert "without outputs" not in (src / "notebooks" / "00_data.ipynb").read_text()
    assert "without outputs" in (src / "notebooks" / "09_evaluation.ipynb").read_text()
    start = (src / "docs" / "start.md").read_text()
    assert "/notebooks/09_evaluation" in start and "/docs/glossary" in start


def test_the_learning_path_is_parsed_and_drawn(tmp_path):
    labels, edges = site.parse_flowchart(PATH_LR)
    assert labels == {
        "N00": "00 data",
        "N01": "01 segmentation",
        "N02": "02 features",
        "N09": "09 evaluation",
    }
    assert edges == [("N00", "N01"), ("N01", "N02"), ("N02", "N09"), ("N00", "N09")]
    svg = site.draw_flowchart(labels, edges, tmp_path / "path.svg").read_text()
    assert svg.count("<path") > 4 and "<svg" in svg
    with pytest.raises(ValueError, match="N00 -.-> N01"):
        site.parse_flowchart("flowchart LR\n N00 -.-> N01\n")
    with pytest.raises(ValueError, match="cycle"):
        site.draw_flowchart({"a": "a", "b": "b"}, [("a", "b"), ("b", "a")], tmp_path / "c.svg")


def test_the_start_page_path_is_one_the_site_draws():
    text = (repo_root() / site.START_PAGE).read_text()
    block = text.split("```{mermaid}", 1)[1].split("```", 1)[0]
    labels, edges = site.parse_flowchart(block)
    assert len(labels) >= 10 and edges


def test_broken_links_finds_a_missing_file_and_passes_a_good_one(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.html").write_text(
        '<a href="b.html#x">b</a><img src="../_images/f.png"><a href="https://x.org/y">web</a>'
        '<a href="#top">top</a><a href="../notebooks/">folder</a>'
        '<link href="../_static/missing.css">'
    )
    (tmp_path / "docs" / "b.html").write_text("<p>b</p>")
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "f.png").write_bytes(b"png")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "index.html").write_text("")
    assert site.broken_links(tmp_path) == ["docs/a.html -> ../_static/missing.css"]
    (tmp_path / "_images" / "f.png").unlink()
    assert "docs/a.html -> ../_images/f.png" in site.broken_links(tmp_path)


SMOKE_BOOKS = ("00_data", "09_evaluation")


def _runs_of_this_session(basetemp: Path) -> dict[str, Path]:
    """The smoke runs of ``SMOKE_BOOKS`` that tests/test_notebooks.py already made in this pytest
    session (it runs first): finished ones only (metrics.json written, no error output)."""
    found = {}
    for nb in SMOKE_BOOKS:
        for copy in sorted(basetemp.glob(f"*/results/{nb}/*-smoke/{nb}.ipynb")):
            text = copy.read_text()
            if (copy.parent / "metrics.json").is_file() and '"output_type": "error"' not in text:
                found[nb] = copy
    return found


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """A results folder with notebooks 00 and 09 executed in the smoke settings: the runs
    test_notebooks.py made in this session when it ran (as in `make test`), else run here
    (``CELLUTILS_SITE_SMOKE_RESULTS`` names an existing folder, to rerun these tests quickly)."""
    if os.environ.get("CELLUTILS_SITE_SMOKE_RESULTS"):
        return Path(os.environ["CELLUTILS_SITE_SMOKE_RESULTS"])
    root = tmp_path_factory.mktemp("site")
    earlier = _runs_of_this_session(tmp_path_factory.getbasetemp())
    if set(earlier) == set(SMOKE_BOOKS):
        for nb, copy in earlier.items():
            shutil.copytree(copy.parent, root / "results" / nb / copy.parent.name)
        return root / "results"
    env = os.environ | {
        "CELLUTILS_RESULTS": str(root / "results"),
        "CELLUTILS_DATA": str(root / "data"),
        "PYTHONPATH": str(repo_root()),
    }
    cmd = [sys.executable, "-m", "cellutils.notebooks", "run", "--settings", "smoke", "--only"]
    done = subprocess.run([*cmd, "00", "09"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "results"


def test_the_smoke_runs_of_this_session_are_found_and_a_failed_one_is_not(tmp_path):
    for test, nb in [("test_nb0", "00_data"), ("test_nb9", "09_evaluation")]:
        run = tmp_path / test / "results" / nb / "20260101-000000-smoke"
        run.mkdir(parents=True)
        (run / f"{nb}.ipynb").write_text('{"cells": []}')
        (run / "metrics.json").write_text("{}")
    assert set(_runs_of_this_session(tmp_path)) == set(SMOKE_BOOKS)
    (tmp_path / "test_nb9/results/09_evaluation/20260101-000000-smoke/metrics.json").unlink()
    assert set(_runs_of_this_session(tmp_path)) == {"00_data"}


@pytest.fixture(scope="module")
def built(smoke_results, tmp_path_factory) -> Path:
    """The site built from the smoke run: its HTML folder (sources beside it in ``../src``)."""
    missing = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme") if not find_spec(m)]
    assert not missing, f"{missing} not installed: run `make setup` (it installs the [site] extra)"
    root = tmp_path_factory.mktemp("built")
    return site.build(root / "src", root / "html", results=smoke_results)


@pytest.mark.slow
@pytest.mark.site
def test_a_page_per_notebook_and_doc_and_every_link_resolves(built, smoke_results):
    names = {p.stem for p in (built / "notebooks").glob("*.html")}
    notebooks = {p.stem for p in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert names == notebooks
    docs = {Path(d).stem for d in [site.START_PAGE, *site.DOC_PAGES]}
    assert docs <= {p.stem for p in (built / "docs").glob("*.html")}
    assert site.broken_links(built) == []
    assert "docs/start.html" in (built / "index.html").read_text()
    mine = built.parent / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="holds no Sphinx site"):
        site.build(built.parent / "src", mine, results=smoke_results)
    assert (mine / "notes.txt").read_text() == "a user's file"
    page = (built / "notebooks" / "09_evaluation.html").read_text()
    assert "without outputs" not in page and "<img" in page  # executed, with its figures
    assert "without outputs" in (built / "notebooks" / "01_segmentation.html").read_text()
    for nb in ("00_data", "09_evaluation"):  # every figure the run drew is on its page
        cells = json.loads((built.parent / "src" / "notebooks" / f"{nb}.ipynb").read_text())
        drawn = sum(
            any(k.startswith("image/") for k in out.get("data", {}))
            for cell in cells["cells"]
            for out in cell.get("outputs", [])
        )
        shown = (built / "notebooks" / f"{nb}.html").read_text().count('src="../_images/')
        assert drawn > 0 and shown == drawn, (nb, drawn, shown)


BROKEN = {  # what breaks the start page -> what the build's error must name
    "See [the missing section](#no-such-section).": "no-such-section",
    "See [a page that is not there](nowhere.md).": "nowhere",
    "![a figure](figures/no-such-figure.png)": "no-such-figure.png",
}


@pytest.mark.slow
@pytest.mark.site
def test_a_broken_reference_or_a_missing_image_fails_the_build(built, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(built.parent / "src", src)  # with Sphinx's cache: an incremental rebuild
    start = src / "docs" / "start.md"
    start.write_text(start.read_text() + "".join(f"\n\n{line}\n" for line in BROKEN))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q"]
    done = subprocess.run([*cmd, str(src), str(src / "_build" / "html")], capture_output=True)
    log = (done.stdout + done.stderr).decode()
    assert done.returncode != 0, log[-2000:]
    assert all(named in log for named in BROKEN.values()), log[-2000:]  # --keep-going: each


PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight,
                                              i.getAttribute('src')]);
  const tables = [...document.querySelectorAll('table')].map(t => t.rows.length);
  document.body.setAttribute('data-probe', JSON.stringify({imgs, tables}));
}, 300));</script>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per file served: not in the test log
        pass


def _probe(page: Path, root: Path) -> dict:
    """Open ``page`` (served over http from ``root``) in headless Chromium; return its images
    ([loaded, width, height, src]) and the row count of each table, read after the page's
    scripts ran (``--dump-dom`` prints the DOM once the page has loaded)."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{probe.relative_to(root).as_posix()}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    try:
        dom = subprocess.run(
            [CHROMIUM, *flags, "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.shutdown()
        probe.unlink()
    assert 'data-probe="' in dom, f"the probe did not run on {url}:\n{dom[:2000]}"
    raw = dom.split('data-probe="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    return json.loads(raw.replace("&amp;", "&"))


def _all_rendered(seen: dict) -> bool:
    return all(ok and w > 0 and h > 0 for ok, w, h, _ in seen["imgs"])


@pytest.mark.slow
@pytest.mark.site
@needs_chromium
def test_start_page_and_a_notebook_page_render_in_chromium(built):
    start = _probe(built / "docs" / "start.html", built)
    assert any("flowchart" in src for *_, src in start["imgs"]), "no learning-path diagram"
    assert _all_rendered(start), start["imgs"]
    assert start["tables"] and max(start["tables"]) > 5, "the notebook table did not render"
    # 09 run alone (as in `make test`) has only one-row tables: the row counts are 00's
    for nb, at_least, rows in [("09_evaluation", 1, 1), ("00_data", 2, 2)]:
        seen = _probe(built / "notebooks" / f"{nb}.html", built)
        figures = [img for img in seen["imgs"] if "_images/" in img[3]]
        assert len(figures) >= at_least, f"{nb}'s page shows {len(figures)} figure(s)"
        assert _all_rendered(seen), seen["imgs"]
        assert seen["tables"] and max(seen["tables"]) >= rows, f"{nb}'s page shows no table"


@pytest.mark.slow
@pytest.mark.site
@needs_chromium
def test_a_figure_removed_from_the_build_is_caught(built, tmp_path):
    html = tmp_path / "html"
    shutil.copytree(built, html)
    page = html / "notebooks" / "09_evaluation.html"
    first = next(p for p in (html / "_images").iterdir() if f"_images/{p.name}" in page.read_text())
    first.unlink()
    seen = _probe(page, html)
    assert not _all_rendered(seen)
    assert [img for img in seen["imgs"] if first.name in img[3]][0][1] == 0
    assert any(first.name in link for link in site.broken_links(html))


@needs_chromium
def test_the_chromium_probe_tells_a_loaded_figure_from_a_broken_one(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    fig.savefig(tmp_path / "fig.png")
    plt.close(fig)
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body><img src='fig.png'><img src='missing.png'>"
        "<table><tr><td>1</td></tr></table></body></html>"
    )
    seen = _probe(page, tmp_path)
    assert seen["tables"] == [1]
    (ok, w, h, _), (_, w_missing, _, _) = seen["imgs"]
    assert ok and w > 0 and h > 0 and w_missing == 0
