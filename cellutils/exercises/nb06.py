"""Checks of notebook 06 (report 003's mask-attention CNN): each recomputes the answer its own
way (a pandas merge, torch's own loss, a reference step on a copy of the model)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from cellutils.exercises import Outcome, check, check_step


def check_sibling_share(
    answer: float, train: pd.DataFrame, evaluation: pd.DataFrame, group: str = "Metadata_Well"
) -> bool:
    """``answer``: the share of evaluation images whose ``group`` (well) also has images in
    ``train`` -- how much of the evaluation set a model has seen the well of."""
    seen = train[[group]].drop_duplicates().assign(_seen=True)
    merged = evaluation[[group]].merge(seen, on=group, how="left")
    expected = float(merged["_seen"].fillna(False).astype(bool).mean())
    return check(
        "06.1",
        answer,
        expected,
        f"for each evaluation image, ask whether its {group} occurs among the training rows' "
        f"{group} values; the share is the mean of those True/False answers",
        explain=f"{expected:.0%} of the evaluation images have a sibling site in training",
    )


def check_smoothed_loss(
    answer: float, logits: torch.Tensor, targets: torch.Tensor, smoothing: float
) -> bool:
    """``answer``: the mean cross-entropy of ``logits`` against ``targets`` smoothed by
    ``smoothing`` (the report's 0.1), computed by hand."""
    expected = float(nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing))
    plain = float(nn.functional.cross_entropy(logits, targets))
    return check(
        "06.2",
        answer,
        expected,
        "the smoothed target puts 1 - s + s/K on the true class and s/K on each other class; "
        "the loss is -sum(target * log_softmax(logits)) per image, then the mean over images",
        tol=1e-4,
        explain=f"smoothed loss {expected:.4f} (plain cross-entropy {plain:.4f})",
    )


def check_training_step(
    training_step: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float
) -> Outcome:
    """``training_step(model, x, y, optimizer, loss_fn) -> float``: one forward, loss,
    backward and Adam step, compared with a reference step on a copy of ``model``."""
    return check_step("06.3", training_step, model, x, y, lr)
