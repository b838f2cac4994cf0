"""The dataset layouts: one module per layout, each holding what the course knows about it --
channels and display colours, the reader (root -> tidy index: one row per site or sample,
metadata columns + one ``path_<channel>`` column per channel), the synthetic writer of the same
layout, the download manifest where one exists -- and a ``LAYOUT`` record that ties them
together. What the layouts share (the missing value, table reading, file matching, problem
reports, ``load_site``) is in ``_base``.

Adding a dataset means adding one module with a ``LAYOUT``; ``LAYOUTS`` finds it.

>>> from cellutils import datasets
>>> index = datasets.read_rxrx1("data/rxrx1")          # or datasets.LAYOUTS["rxrx1"].read(...)
>>> datasets.problems(index)                            # what the reader found wrong, with fixes
"""

from __future__ import annotations

import importlib
import pkgutil

from cellutils.datasets._base import (
    MISSING,
    DatasetError,
    Layout,
    load_site,
    normalise_missing,
    path_columns,
    problems,
    read_table,
    require_labels,
)
from cellutils.datasets.cell_lines import read_cell_lines, write_cell_lines
from cellutils.datasets.cpjump1 import cpjump1_site_key, read_cpjump1, write_cpjump1
from cellutils.datasets.cpjump1_subset import read_cpjump1_subset, write_cpjump1_subset
from cellutils.datasets.rxrx1 import read_rxrx1, rxrx1_rgb, write_rxrx1


def _layouts() -> dict[str, Layout]:
    found = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_"):
            continue
        layout = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "LAYOUT", None)
        if isinstance(layout, Layout):
            found[layout.name] = layout
    order = ["rxrx1", "cpjump1", "cpjump1_subset", "cell_lines"]  # the course's order
    rank = {k: i for i, k in enumerate(order)}
    return {k: found[k] for k in sorted(found, key=lambda k: (rank.get(k, len(order)), k))}


LAYOUTS: dict[str, Layout] = _layouts()

__all__ = [
    "LAYOUTS",
    "MISSING",
    "DatasetError",
    "Layout",
    "cpjump1_site_key",
    "load_site",
    "normalise_missing",
    "path_columns",
    "problems",
    "read_cell_lines",
    "read_cpjump1",
    "read_cpjump1_subset",
    "read_rxrx1",
    "read_table",
    "require_labels",
    "rxrx1_rgb",
    "write_cell_lines",
    "write_cpjump1",
    "write_cpjump1_subset",
    "write_rxrx1",
]
