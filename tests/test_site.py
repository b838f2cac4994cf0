"""The course site (cellutils.site, `make site`): built from the smoke run of two notebooks, strict
about links and references, and its pages open in headless Chromium with figures and tables."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cellutils import site
from cellutils.paths import repo_root

pytestmark = [pytest.mark.site, pytest.mark.slow]

NODE = shutil.which("node")
MYST = repo_root() / "node_modules" / ".bin" / "myst"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not NODE:
    pytest.skip("node is not installed: the site needs node >= 18 and npm", allow_module_level=True)
if not MYST.exists():
    pytest.skip("mystmd is not installed: run `npm ci` (or `make site`)", allow_module_level=True)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """Notebooks 00 and 09 executed in the smoke settings into a fresh results folder."""
    root = tmp_path_factory.mktemp("site")
    env = os.environ | {
        "CELLUTILS_RESULTS": str(root / "results"),
        "CELLUTILS_DATA": str(root / "data"),
        "PYTHONPATH": str(repo_root()),
    }
    cmd = [sys.executable, "-m", "cellutils.notebooks", "run", "--settings", "smoke"]
    done = subprocess.run([*cmd, "--only", "00", "09"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "results"


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


def test_links_and_references_resolve_and_a_broken_one_fails(smoke_results, tmp_path):
    src = tmp_path / "src"
    site.build(src, tmp_path / "out", results=smoke_results, html=False)
    assert sorted(p.name for p in (src / "notebooks").iterdir()) == [
        "00_data.ipynb",
        "09_evaluation.ipynb",
    ]
    # the same sources with one broken cross-reference must stop the build
    start = src / "docs" / "start.md"
    start.write_text(start.read_text() + "\nSee [the missing section](#no-such-section).\n")
    done = subprocess.run(
        [str(MYST), "build", "--site", "--strict"], cwd=src, capture_output=True, text=True
    )
    assert done.returncode != 0 and "no-such-section" in done.stdout + done.stderr


PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const tables = document.querySelectorAll('table').length;
  document.body.setAttribute('data-probe', JSON.stringify({imgs, tables}));
}, 500));</script>"""


def _probe(page: Path, root: Path) -> dict:
    """Open ``page`` (served over http from ``root``) in headless Chromium; return its images
    ([loaded, width, height]) and table count, read after the page's scripts ran."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{probe.relative_to(root).as_posix()}"
    try:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.shutdown()
    assert 'data-probe="' in dom, f"the probe did not run on {url}:\n{dom[:2000]}"
    raw = dom.split('data-probe="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    return json.loads(raw)


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")
def test_start_page_and_a_notebook_page_render_in_chromium(smoke_results, tmp_path):
    template = os.environ.get("CELLUTILS_SITE_TEMPLATE", site.DEFAULT_TEMPLATE)
    try:
        out = site.build(tmp_path / "src", tmp_path / "html", smoke_results, template=template)
    except RuntimeError as exc:
        if "could not be downloaded" in str(exc):
            pytest.skip(
                "the MyST theme cannot be downloaded here (offline) and "
                "CELLUTILS_SITE_TEMPLATE names no built theme"
            )
        raise
    start = _probe(out / "index.html", out)
    assert start["imgs"] == [] or all(ok and w > 0 for ok, w, _ in start["imgs"]), start
    pages = [p for p in out.rglob("index.html") if "evaluation" in p.parent.name]
    assert pages, f"no page for notebook 09 under {out}"
    nb = _probe(pages[0], out)
    assert nb["imgs"], "notebook 09's page shows no figure"
    assert all(ok and w > 0 and h > 0 for ok, w, h in nb["imgs"]), nb["imgs"]
    assert nb["tables"] > 0, "notebook 09's page shows no table"


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")
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
    assert seen["tables"] == 1
    (ok, w, h), (_, w_missing, _) = seen["imgs"]
    assert ok and w > 0 and h > 0 and w_missing == 0
