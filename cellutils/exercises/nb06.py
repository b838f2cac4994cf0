"""Checks of notebook 06 (report 003's mask-attention CNN): each recomputes the answer its own
way (a pandas merge, torch's own loss, a reference step on a copy of the model)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from cellutils.exercises import check


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
) -> bool:
    """``training_step(model, x, y, optimizer, loss_fn) -> float``: one forward, loss,
    backward and optimiser step. Run on a copy of ``model`` and compared with a reference step
    on another copy (same dropout draws): the loss it returns and the weights after."""
    if training_step is Ellipsis:
        return check("06.3", ..., None, "")
    mine, ref = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(0)
    got = training_step(mine, x, y, torch.optim.Adam(mine.parameters(), lr=lr), loss_fn)
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    torch.manual_seed(0)
    loss = loss_fn(ref(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    hint = (
        "forward (logits = model(x)), loss = loss_fn(logits, y), optimizer.zero_grad(), "
        "loss.backward(), optimizer.step(); return loss.item()"
    )
    if got is None or not isinstance(got, (int, float)):
        return check("06.3", "no number returned", "the loss", hint)
    moved = max(
        float((a.detach() - b.detach()).abs().max())
        for a, b in zip(mine.parameters(), ref.parameters(), strict=True)
    )
    check("06.3", float(got), float(loss), hint, tol=1e-5)
    return check(
        "06.3 weights",
        moved,
        0.0,
        "the loss is right but the weights after the step differ: call zero_grad before "
        "backward, and step once",
        tol=1e-5,
        explain=f"loss {float(loss):.4f}; the step moved the weights as Adam does",
    )
