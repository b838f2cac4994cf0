"""The checks of notebook 04's exercises: the right answer passes, a wrong one raises NotYet
without giving the answer away, the student's stub (...) does not raise."""

import numpy as np
import pandas as pd
import pytest

from cellutils.exercises import NotYet, nb04


def test_majority():
    train = pd.DataFrame({"line": ["a"] * 5 + ["b"] * 3 + ["c"] * 2})
    evaluation = pd.DataFrame({"line": ["a", "b", "b", "c"]})
    assert nb04.check_majority(0.25, 1 / 3, train=train, evaluation=evaluation, label="line")
    with pytest.raises(NotYet) as e:
        nb04.check_majority(0.25, 0.25, train=train, evaluation=evaluation, label="line")
    assert "0.333" not in str(e.value)
    assert not nb04.check_majority(..., ..., train=train, evaluation=evaluation, label="line")


def test_class_weights():
    targets = np.array([0, 0, 0, 0, 1, 1, 3, 3])
    counts = np.bincount(targets, minlength=4)
    k = (counts > 0).sum()
    hand = np.where(counts > 0, len(targets) / (k * np.maximum(counts, 1)), 0.0)
    assert nb04.check_class_weights(hand, targets=targets, n_classes=4)
    with pytest.raises(NotYet) as e:
        nb04.check_class_weights(1 / np.maximum(counts, 1), targets=targets, n_classes=4)
    assert "1.33" not in str(e.value)
    assert not nb04.check_class_weights(..., targets=targets, n_classes=4)


def test_balanced_accuracy():
    t = np.array([0, 0, 0, 0, 1, 2, 2])
    p = np.array([0, 0, 0, 0, 0, 2, 0])
    hand = float(np.mean([np.mean(p[t == k] == k) for k in np.unique(t)]))
    assert nb04.check_balanced_accuracy(hand, targets=t, pred=p)
    with pytest.raises(NotYet) as e:
        nb04.check_balanced_accuracy(float(np.mean(t == p)), targets=t, pred=p)
    assert "0.500" not in str(e.value)
    assert not nb04.check_balanced_accuracy(..., targets=t, pred=p)


def test_epoch_choice():
    history = pd.DataFrame({"epoch": [3, 1, 2], "val_balanced_accuracy": [0.5, 0.4, 0.7]})
    assert nb04.check_epoch_choice(0.2, history=history)
    with pytest.raises(NotYet) as e:
        nb04.check_epoch_choice(0.3, history=history)
    assert "0.2" not in str(e.value)
    assert not nb04.check_epoch_choice(..., history=history)
