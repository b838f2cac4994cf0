"""Checks for the notebooks' exercises. Each recomputes the answer its own way from the
notebook's objects and says whether the student's answer is right, with a hint when it is not.
Students run them after their own code; the tests run them after the solutions.

:func:`check` is the one comparison every exercise ends in: a hint first, the answer only on
request (:func:`answer`), and ``...`` (the student build's stub) as "not answered yet". Each
notebook's own checks are in ``cellutils.exercises.nbNN``; the functions below are shared.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


class NotYet(AssertionError):
    """The answer is not right yet; the message says what to look at (never the answer)."""


class Outcome(int):
    """What a check returns: true when right. Shows nothing as a cell's last value (a notebook
    prints the check's own sentence, not "True")."""

    def __repr__(self) -> str:
        return repr(bool(self))

    def _ipython_display_(self) -> None:
        pass


_EXPECTED: dict[str, object] = {}  # key -> the expected value of the last check, for answer()


def _ok(message: str) -> None:
    print(f"correct: {message}")


def _same(answer, expected, tol: float) -> bool:
    """Whether ``answer`` equals ``expected``: numbers within ``tol``, sets as sets, arrays and
    pandas objects element-wise (numbers within ``tol``), anything else by ``==``."""
    if isinstance(expected, (pd.DataFrame, pd.Series)):
        try:
            other = type(expected)(answer) if not isinstance(answer, type(expected)) else answer
            pd.testing.assert_frame_equal(
                pd.DataFrame(other), pd.DataFrame(expected), check_dtype=False, atol=tol
            )
            return True
        except (AssertionError, ValueError, TypeError):
            return False
    if isinstance(expected, (set, frozenset)):
        try:
            return set(answer) == set(expected)
        except TypeError:
            return False
    if isinstance(expected, np.ndarray) or isinstance(answer, np.ndarray):
        a, e = np.asarray(answer), np.asarray(expected)
        if a.shape != e.shape:
            return False
        if np.issubdtype(e.dtype, np.number) and np.issubdtype(a.dtype, np.number):
            return bool(np.allclose(a, e, atol=tol, rtol=0, equal_nan=True))
        return bool(np.array_equal(a, e))
    if isinstance(expected, (int, float, np.number)) and not isinstance(expected, bool):
        try:
            return bool(np.isclose(float(answer), float(expected), atol=tol, rtol=0))
        except (TypeError, ValueError):
            return False
    if isinstance(expected, (list, tuple)):
        try:
            return len(answer) == len(expected) and all(
                _same(a, e, tol) for a, e in zip(answer, expected, strict=True)
            )
        except TypeError:
            return False
    return bool(answer == expected)


def check(
    key: str, answer, expected, hint: str, *, tol: float = 1e-6, explain: str = ""
) -> Outcome:
    """Compare a student's ``answer`` with ``expected`` (computed independently by the caller).

    ``...`` (the stub of the student version) is "not answered yet": a note, no error, so Run
    All goes on. A wrong answer raises :class:`NotYet` with ``hint`` only; the expected value is
    shown by :func:`answer` on request. Returns True when right."""
    _EXPECTED[key] = expected
    if answer is Ellipsis:
        print(f"exercise {key}: not answered yet (replace the ... in the cell above)")
        return Outcome(False)
    if not _same(answer, expected, tol):
        raise NotYet(
            f"exercise {key}: not yet. Hint: {hint}\n"
            f"(to see the expected answer: exercises.answer({key!r}))"
        )
    _ok(f"exercise {key}" + (f": {explain}" if explain else ""))
    return Outcome(True)


def answer(key: str):
    """The expected answer of exercise ``key`` (its last check must have run), printed and
    returned: the answer on request, after the hint."""
    if key not in _EXPECTED:
        raise KeyError(f"exercise {key!r} has not been checked yet: run its check cell first")
    value = _EXPECTED[key]
    print(f"exercise {key}: expected {value!r}")
    return value


def check_shared_groups(
    answer: Iterable, train: pd.DataFrame, evaluation: pd.DataFrame, column: str
) -> bool:
    """``answer``: the values of ``column`` (experiments, wells, ...) that have rows both in
    ``train`` and in ``evaluation`` -- the leak of a split that does not group by them."""
    merged = train[[column]].drop_duplicates().merge(evaluation[[column]].drop_duplicates())
    truth = set(merged[column])
    share = evaluation[column].isin(truth).mean()
    return check(
        f"shared {column}",
        answer if answer is Ellipsis else set(answer),
        truth,
        f"the {column} values present on both sides: compare the training rows' values with "
        "the evaluation rows' values",
        explain=f"{len(truth)} of {evaluation[column].nunique()} evaluation {column} values "
        f"are also in training ({share:.0%} of the evaluation rows)"
        + ("; this split leaks" if truth else "; nothing shared: grouped as it should be"),
    )


def check_baselines(
    chance: float, majority: float, train: pd.DataFrame, evaluation: pd.DataFrame, label: str
) -> bool:
    """``chance``: 1 / number of classes a model trained on ``train`` can predict;
    ``majority``: the accuracy on ``evaluation`` of always predicting ``train``'s most common
    class."""
    counts = train.groupby(label).size()
    want_chance = 1 / len(counts)
    top = counts.idxmax()
    want_majority = float(np.mean(evaluation[label].to_numpy() == top))
    ok = check("chance", chance, want_chance, "1 / the number of classes seen in training")
    return ok and check(
        "majority",
        majority,
        want_majority,
        "take the most common class of the *training* rows and score it on the evaluation rows",
        explain=f"chance {want_chance:.3f}, majority ({top}) {want_majority:.3f}",
    )


def check_step(key: str, training_step, model, x, y, lr: float) -> Outcome:
    """``training_step(model, x, y, optimizer, loss_fn) -> float``: one forward, loss,
    backward and optimiser step, returning the loss. Run on a copy of ``model`` with Adam and
    compared with a reference step on another copy (same dropout draws): the loss returned and
    the weights after. ``x`` may be a tuple (a multi-input model: ``model(*x)``)."""
    import copy

    import torch
    from torch import nn

    if training_step is Ellipsis:
        return check(key, ..., None, "")
    hint = (
        "forward (logits = model(x), or model(*x) for several inputs), loss = loss_fn(logits, "
        "y), optimizer.zero_grad(), loss.backward(), optimizer.step(); return loss.item()"
    )
    mine, ref = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    loss_fn = nn.CrossEntropyLoss()
    trainable = [p for p in mine.parameters() if p.requires_grad]
    torch.manual_seed(0)
    got = training_step(mine, x, y, torch.optim.Adam(trainable, lr=lr), loss_fn)
    opt = torch.optim.Adam([p for p in ref.parameters() if p.requires_grad], lr=lr)
    torch.manual_seed(0)
    loss = loss_fn(ref(*x) if isinstance(x, (tuple, list)) else ref(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if not isinstance(got, (int, float)):
        return check(key, "no number returned", "the loss", hint)
    check(key, float(got), loss.item(), hint, tol=1e-5)
    moved = max(
        float((a.detach() - b.detach()).abs().max())
        for a, b in zip(mine.parameters(), ref.parameters(), strict=True)
    )
    return check(
        f"{key} weights",
        moved,
        0.0,
        "the loss is right but the weights after the step differ: call zero_grad before "
        "backward, and step once",
        tol=1e-5,
        explain=f"loss {loss.item():.4f}; the step moved the weights as the reference did",
    )
