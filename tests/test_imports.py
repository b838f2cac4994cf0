"""The layout registry imports the layouts, never the reverse: the engines (``synthetic``,
``download``) do not import ``cellutils.datasets``, and every module imports first in a fresh
interpreter, whatever was imported before it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = [
    "cellutils.paths",
    "cellutils.synthetic",
    "cellutils.download",
    "cellutils.datasets._base",
    "cellutils.datasets.rxrx1",
    "cellutils.datasets.cpjump1",
    "cellutils.datasets.cpjump1_subset",
    "cellutils.datasets.cell_lines",
    "cellutils.datasets",
    "cellutils.catalog",
    "cellutils.cluster",
]


def _fresh(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("engine", ["cellutils.synthetic", "cellutils.download"])
def test_engines_do_not_import_the_layouts(engine):
    out = _fresh(
        f"import json, sys, {engine}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cellutils'))))"
    )
    loaded = json.loads(out)
    assert engine in loaded
    assert not [m for m in loaded if m.startswith("cellutils.datasets")], loaded
    assert "cellutils.catalog" not in loaded


@pytest.mark.parametrize("engine", ["synthetic", "download"])
def test_engines_never_name_the_layouts(engine):
    """Not even inside a function: the layout is passed in (``catalog`` looks names up)."""
    tree = ast.parse((REPO / "cellutils" / f"{engine}.py").read_text())
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [m for m in imported if m and m.startswith("cellutils.datasets")], imported


@pytest.mark.parametrize("first", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(first):
    rest = [m for m in reversed(MODULES) if m != first]
    _fresh(
        "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in [first, *rest])
    )
