"""The checks of notebooks 06-08: a right answer passes, a wrong one raises ``NotYet`` with a
hint but not the answer, and the student stub (``...``) is "not answered yet"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cellutils import exercises
from cellutils.exercises import nb06, nb07, nb08


def _split():
    train = pd.DataFrame({"Metadata_Well": ["A01", "A01", "B02", "C03"]})
    evaluation = pd.DataFrame({"Metadata_Well": ["A01", "D04", "C03", "E05"]})
    return train, evaluation


def test_sibling_share():
    train, ev = _split()
    assert nb06.check_sibling_share(0.5, train, ev)
    with pytest.raises(exercises.NotYet) as err:
        nb06.check_sibling_share(0.25, train, ev)
    assert "0.5" not in str(err.value) and "Hint" in str(err.value)
    assert not nb06.check_sibling_share(..., train, ev)
    assert exercises.answer("06.1") == 0.5


def test_smoothed_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])
    k, s = 4, 0.1
    target = torch.full_like(logits, s / k)
    target[torch.arange(6), y] += 1 - s
    mine = float(-(target * torch.log_softmax(logits, 1)).sum(1).mean())
    assert nb06.check_smoothed_loss(mine, logits, y, s)
    with pytest.raises(exercises.NotYet):
        nb06.check_smoothed_loss(float(nn.functional.cross_entropy(logits, y)), logits, y, s)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 3))


def test_training_step_right_wrong_and_stub():
    x, y = torch.randn(5, 2, 4), torch.tensor([0, 1, 2, 0, 1])

    def right(model, x, y, optimizer, loss_fn):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def no_step(model, x, y, optimizer, loss_fn):
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss.item()

    assert nb06.check_training_step(right, _net(), x, y, lr=0.01)
    with pytest.raises(exercises.NotYet, match="weights after the step differ"):
        nb06.check_training_step(no_step, _net(), x, y, lr=0.01)
    assert not nb06.check_training_step(..., _net(), x, y, lr=0.01)


def test_multi_input_step():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(3, 2), nn.Linear(2, 2)

        def forward(self, u, v):
            return self.a(u) + self.b(v)

    x, y = (torch.randn(4, 3), torch.randn(4, 2)), torch.tensor([0, 1, 1, 0])

    def right(model, x, y, optimizer, loss_fn):
        loss = loss_fn(model(*x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    assert nb08.check_training_step(right, Two(), x, y, lr=0.1)


def test_nearest_centroid_and_neighbour_in_same_well():
    rng = np.random.default_rng(0)
    x_tr, y_tr = rng.normal(size=(12, 3)), np.repeat([0, 1, 2], 4)
    x_tr[y_tr == 1] += 3
    x_ev, y_ev = x_tr[::2] + 0.01, y_tr[::2]
    centroids = np.stack([x_tr[y_tr == c].mean(0) for c in range(3)])
    acc = float(np.mean(((x_ev[:, None] - centroids) ** 2).sum(-1).argmin(1) == y_ev))
    assert nb07.check_nearest_centroid(acc, x_tr, y_tr, x_ev, y_ev)
    with pytest.raises(exercises.NotYet):
        nb07.check_nearest_centroid(acc - 0.5, x_tr, y_tr, x_ev, y_ev)
    train = pd.DataFrame({"Metadata_Well": [f"W{i % 4}" for i in range(12)]})
    ev = pd.DataFrame({"Metadata_Well": [f"W{i % 4}" for i in range(0, 12, 2)]})
    assert nb07.check_neighbour_in_same_well(1.0, x_tr, train, x_ev, ev)  # each finds itself


def test_majority_vote_accuracy():
    keys = np.array(["a", "a", "a", "b", "b", "c"])
    logits = np.eye(3)[[0, 0, 1, 2, 2, 1]] * 5.0
    targets = np.array([0, 0, 0, 1, 1, 1])
    assert nb08.check_image_accuracy(2 / 3, keys, logits, targets)  # a right, b wrong, c right
    with pytest.raises(exercises.NotYet):
        nb08.check_image_accuracy(0.5, keys, logits, targets)  # the cell accuracy
