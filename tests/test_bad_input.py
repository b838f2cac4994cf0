"""Bad input: each fault gives a loud error that names the problem and the fix (or a correct
result). One table per area; the sections are concatenated when branches merge."""

from __future__ import annotations

# ---- stats (lesson, stats, features' sphering and pairing) ----
import numpy as np
import pandas as pd
import pytest

from cellutils import features as stats_features
from cellutils import stats as stats_stats
from cellutils.lesson import Claim as StatsClaim
from cellutils.lesson import Lesson as StatsLesson
from cellutils.lesson import Protocol as StatsProtocol
from cellutils.splits import LeakError as StatsLeakError


def _stats_lesson():
    return StatsLesson("05_x", "002", "t", StatsClaim("accuracy", 0.9, "test", 2, "random"),
                       nuisance="well", unit="well")  # fmt: skip


def _stats_free():
    return StatsProtocol("by well", "well", True, "no well on both sides")


def _stats_rows():
    t = np.arange(40) % 2
    return t, t.copy(), np.repeat(np.arange(10), 4)


def _stats_selected_on_eval_by_another_name():
    t, p, u = _stats_rows()
    _stats_lesson().record(_stats_free(), t, p, u, 2, t, selected_on="eval",
                           selected_rows=np.arange(40))  # fmt: skip


def _stats_registered_set_overlaps():
    t, p, u = _stats_rows()
    lesson = _stats_lesson()
    lesson.register_set("val", np.arange(35, 60))
    lesson.record(_stats_free(), t, p, u, 2, t, selected_on="val")


def _stats_no_primary():
    t, p, u = _stats_rows()
    lesson = _stats_lesson()
    r = lesson.record(_stats_free(), t, p, u, 2, t)
    lesson.compare("x", r, r)
    lesson.write("unused", reported=r, trusted=r, trust="", data="", profile="")


def _stats_two_primaries():
    lesson = _stats_lesson()
    lesson.declare_primary("a")
    lesson.declare_primary("b")


def _stats_counts_missing_rows():
    stats_stats.cell_counts(
        pd.DataFrame({"key": ["s1", "s9"]}), pd.DataFrame({"key": ["s1"], "n_cells": [3]})
    )


def _stats_counts_wrong_length():
    stats_stats.cell_count_baseline([1, 2], [0, 1, 1], [3], [0], [0])


def _stats_counts_nan():
    stats_stats.cell_count_baseline([1, np.nan], [0, 1], [3], [0], [0])


def _stats_one_control_to_sphere():
    df = pd.DataFrame({"Metadata_Plate": ["P"] * 3, "Metadata_pert_iname": ["DMSO", "a", "b"],
                       "Cells_F": [0.0, 1.0, 2.0]})  # fmt: skip
    stats_features.spherize(df, "Metadata_pert_iname == 'DMSO'")


def _stats_same_position_replicates_only():
    df = pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P2"] * 3,
            "Metadata_Well": ["A1", "A1", "B1", "B1", "C1", "C1"],
            "Metadata_pert_iname": ["a", "a", "b", "b", "DMSO", "DMSO"],
            "Cells_F": np.arange(6.0),
            "Cells_G": np.arange(6.0) ** 2,
        }
    )
    stats_features.replicate_map(df, "Metadata_pert_iname", "Metadata_Plate", "DMSO", 10,
                                 position="Metadata_Well")  # fmt: skip


STATS_CASES = [
    ("leak-free result selected on the evaluation rows under another name",
     _stats_selected_on_eval_by_another_name, StatsLeakError, "holds 40 of the 40 rows"),
    ("registered selection set overlaps the scored rows", _stats_registered_set_overlaps,
     StatsLeakError, "Carve the selection set from the training rows"),
    ("comparisons written without a primary", _stats_no_primary, ValueError,
     "declare_primary"),
    ("two primary comparisons", _stats_two_primaries, ValueError, "one only"),
    ("cell counts missing for some rows", _stats_counts_missing_rows, ValueError,
     "first: 's9'"),
    ("cell counts and targets of different lengths", _stats_counts_wrong_length, ValueError,
     "one entry per row"),
    ("missing cell counts", _stats_counts_nan, ValueError, "0 is a count"),
    ("sphering with one control well", _stats_one_control_to_sphere, ValueError,
     "two or more"),
    ("position-aware pairing on one plate map", _stats_same_position_replicates_only,
     ValueError, "nothing is left to retrieve"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "call", "error", "match"), STATS_CASES, ids=[c[0] for c in STATS_CASES]
)
def test_stats_bad_input(fault, call, error, match):
    with pytest.raises(error, match=match):
        call()
