"""The checks of notebook 05's exercises: the right answer passes, a wrong one raises NotYet
without giving the answer away, the student's stub (...) does not raise."""

import numpy as np
import pandas as pd
import pytest

from cellutils.exercises import NotYet, nb05


@pytest.fixture
def pool():
    wells = ["A01", "A01", "A02", "A02", "B01", "B01", "B02", "B02"]
    return pd.DataFrame({"Metadata_Well": wells, "c": list("xxyyxxyy")}, index=range(10, 18))


def test_copies(pool):
    train = pd.concat([pool.iloc[:6], pool.iloc[[0, 0, 1]]])
    evaluation = pool.iloc[[0, 1, 6, 7]]
    assert nb05.check_copies(2, train=train, evaluation=evaluation)
    with pytest.raises(NotYet) as e:
        nb05.check_copies(3, train=train, evaluation=evaluation)
    assert "2" not in str(e.value)
    assert not nb05.check_copies(..., train=train, evaluation=evaluation)


def test_grouped_split(pool):
    by_well = pool.Metadata_Well.isin(["A02", "B02"])
    assert nb05.check_grouped_split((pool[~by_well], pool[by_well]), pool=pool)
    by_row = pool.index.isin([10, 12, 14, 16])
    with pytest.raises(NotYet) as e:
        nb05.check_grouped_split((pool[~by_row], pool[by_row]), pool=pool)
    assert "groups on both sides" in str(e.value)
    assert not nb05.check_grouped_split((..., ...), pool=pool)


def test_well_vote(pool):
    targets = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1, 1, 1, 0, 0])  # A01 tie -> 0 (right), A02 right, B01/B02 wrong
    assert nb05.check_well_vote(0.5, evaluation=pool, pred=pred, targets=targets)
    with pytest.raises(NotYet) as e:
        nb05.check_well_vote(
            float(np.mean(pred == targets)), evaluation=pool, pred=pred, targets=targets
        )
    assert "0.5" not in str(e.value)
    assert not nb05.check_well_vote(..., evaluation=pool, pred=pred, targets=targets)


def test_copy_gain(pool):
    train = pool.iloc[:4]
    evaluation = pool.iloc[2:6]
    targets, pred = np.array([0, 1, 0, 0]), np.array([0, 1, 1, 0])
    assert nb05.check_copy_gain(
        (1.0, 0.5), train=train, evaluation=evaluation, pred=pred, targets=targets
    )
    with pytest.raises(NotYet) as e:
        nb05.check_copy_gain(
            (0.5, 1.0), train=train, evaluation=evaluation, pred=pred, targets=targets
        )
    assert "1.0, 0.5" not in str(e.value)
    none_copied = nb05.check_copy_gain(
        (np.nan, 0.75), train=pool.iloc[:0], evaluation=evaluation, pred=pred, targets=targets
    )
    assert none_copied
    assert not nb05.check_copy_gain(
        ..., train=train, evaluation=evaluation, pred=pred, targets=targets
    )
