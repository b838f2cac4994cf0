"""Checks of notebook 08 (report 004's cells and their vote): the vote is recomputed by
``cells.vote``, the step by a reference step on a copy of the network."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cellutils.exercises import Outcome, check, check_step


def check_image_accuracy(
    answer: float, image_keys, logits: np.ndarray, targets: np.ndarray
) -> Outcome:
    """``answer``: the accuracy over images of the majority vote of their cells' predicted
    classes (ties: the class with the higher mean probability), as ``cells.vote`` counts it."""
    from cellutils.cells import vote

    v = vote(image_keys, logits, targets)
    expected = float(np.mean(v.majority_vote == v.target))
    cell_acc = float(np.mean(logits.argmax(1) == targets))
    return check(
        "08.3",
        answer,
        expected,
        "per image: the predicted class (argmax of the logits) of each of its cells, the most "
        "frequent one wins; the image is right when it equals the image's target",
        explain=f"image accuracy by majority vote {expected:.3f} from cell accuracy "
        f"{cell_acc:.3f} over {len(v)} images",
    )


def check_training_step(
    training_step: Callable, model: nn.Module, x: tuple, y: torch.Tensor, lr: float
) -> Outcome:
    """``training_step(model, x, y, optimizer, loss_fn) -> float`` for the three-input network
    (``model(*x)``), compared with a reference step on a copy."""
    return check_step("08.2", training_step, model, x, y, lr)
