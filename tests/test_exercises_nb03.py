"""The checks of notebook 03's exercises: the right answer passes, a wrong one raises NotYet
without giving the answer away, the student's stub (...) does not raise."""

import numpy as np
import pandas as pd
import pytest
import torch

from cellutils.exercises import NotYet, nb03


@pytest.fixture
def split():
    train = pd.DataFrame({"experiment": ["A", "A", "B", "C", "C", "C"]})
    evaluation = pd.DataFrame({"experiment": ["A", "C", "D", "D"]})
    return train, evaluation


def test_seen_images(split, capsys):
    train, evaluation = split
    right = train.experiment.value_counts().reindex(evaluation.experiment.unique(), fill_value=0)
    assert nb03.check_seen_images(right, train=train, evaluation=evaluation)
    with pytest.raises(NotYet) as e:
        nb03.check_seen_images({"A": 2, "C": 3}, train=train, evaluation=evaluation)
    assert "'D': 0" not in str(e.value) and "3" not in str(e.value)
    assert not nb03.check_seen_images(..., train=train, evaluation=evaluation)
    assert "not answered yet" in capsys.readouterr().out


def test_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    hand = -(logits - logits.logsumexp(1, keepdim=True))[torch.arange(8), targets].mean()
    assert nb03.check_cross_entropy(hand, logits=logits, targets=targets)
    wrong = -(logits.softmax(1))[torch.arange(8), targets].mean()
    with pytest.raises(NotYet) as e:
        nb03.check_cross_entropy(wrong, logits=logits, targets=targets)
    assert f"{float(hand):.3f}" not in str(e.value)
    assert not nb03.check_cross_entropy(..., logits=logits, targets=targets)


def test_control_normalised():
    rng = np.random.default_rng(0)
    images = rng.normal(5, 2, (6, 2, 4, 4)).astype(np.float32)
    index = pd.DataFrame({"experiment": ["E"] * 6, "plate": [1, 1, 1, 2, 2, 2]})
    controls = np.array([True, True, False, True, False, False])
    ctrl = images[[0, 1]].astype(np.float64)
    hand = (images[2] - ctrl.mean((0, 2, 3))[:, None, None]) / ctrl.std((0, 2, 3))[:, None, None]
    assert nb03.check_control_normalised(hand, images=images, index=index, controls=controls, i=2)
    everything = images.astype(np.float64)
    wrong = (images[2] - everything.mean((0, 2, 3))[:, None, None]) / everything.std((0, 2, 3))[
        :, None, None
    ]
    with pytest.raises(NotYet):
        nb03.check_control_normalised(wrong, images=images, index=index, controls=controls, i=2)
    assert not nb03.check_control_normalised(
        ..., images=images, index=index, controls=controls, i=2
    )


def test_group_accuracy():
    logits = np.array([[3.0, 2.0, 1.0], [0.0, 1.0, 5.0], [1.0, 0.0, 2.0]])
    targets = np.array([1, 2, 0])
    allowed = np.array([[False, True, True], [True, True, True], [True, True, False]])
    hand = float(np.mean(np.where(allowed, logits, -np.inf).argmax(1) == targets))
    assert hand == 1.0
    assert nb03.check_group_accuracy(hand, logits=logits, targets=targets, allowed=allowed)
    plain = float(np.mean(logits.argmax(1) == targets))
    with pytest.raises(NotYet) as e:
        nb03.check_group_accuracy(plain, logits=logits, targets=targets, allowed=allowed)
    assert "1.0" not in str(e.value)
    assert not nb03.check_group_accuracy(..., logits=logits, targets=targets, allowed=allowed)
