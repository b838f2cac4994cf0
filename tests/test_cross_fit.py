"""Paired out-of-fold predictions: ``splits.cross_folds`` (grouped folds and random folds of the
same sizes) and ``train.cross_fit`` (one model per fold and seed, the frozen backbone run once),
on tiny generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cellutils import models, splits, train


def _pool(n_groups=5, n_classes=4, per=2):
    rows = [
        (f"E{g}", f"s{c}") for g in range(n_groups) for c in range(n_classes) for _ in range(per)
    ]
    return pd.DataFrame(rows, columns=["experiment", "sirna"], index=np.arange(len(rows)) * 3)


def test_leave_one_group_out_and_random_folds_match_fold_by_fold():
    df = _pool()
    f = splits.cross_folds(df, "sirna", "experiment", seed=1)
    assert f.n_folds == 5
    grouped, rows = f.folds("grouped"), f.folds("rows")
    for kind in (grouped, rows):  # every row evaluated exactly once
        assert np.array_equal(np.sort(np.concatenate([ev for _, ev in kind])), np.arange(len(df)))
    for (tr_g, ev_g), (tr_r, _) in zip(grouped, rows, strict=True):
        assert df.experiment.iloc[ev_g].nunique() == 1  # one experiment held out
        assert not set(df.experiment.iloc[tr_g]) & set(df.experiment.iloc[ev_g])
        assert len(tr_g) == len(tr_r)  # the same training size ...
        counts = [df.sirna.iloc[x].value_counts().sort_index() for x in (tr_g, tr_r)]
        pd.testing.assert_series_equal(*counts)  # ... and the same siRNA counts
    mixed = [df.experiment.iloc[ev].nunique() for _, ev in rows]
    assert max(mixed) > 1  # random folds take images of several experiments
    seen = [bool(set(df.experiment.iloc[tr]) & set(df.experiment.iloc[ev])) for tr, ev in rows]
    assert all(seen)  # their evaluation images have experiment-mates in training
    with pytest.raises(ValueError, match="grouped"):
        f.folds("wells")


def test_folds_of_groups_keep_each_group_whole():
    df = _pool(n_groups=6)
    f = splits.cross_folds(df, "sirna", "experiment", n_folds=3)
    assert f.n_folds == 3
    for tr, ev in f.folds("grouped"):
        assert not set(df.experiment.iloc[tr]) & set(df.experiment.iloc[ev])
        assert df.experiment.iloc[ev].nunique() == 2
    with pytest.raises(ValueError, match="between 2 and 6"):
        splits.cross_folds(df, "sirna", "experiment", n_folds=7)
    with pytest.raises(ValueError, match="one experiment"):
        splits.cross_folds(_pool(n_groups=1), "sirna", "experiment")


def _toy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return torch.utils.data.TensorDataset(
        torch.rand(n, 1, 8, 8, generator=g) + 0.8 * y.view(-1, 1, 1, 1), y
    )


def _build():
    return models.Classifier(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), nn.Linear(4, 2), 4, {"arch": "tiny"}
    )


def _cfg(**kw):
    return train.TrainConfig(
        **{"epochs": 8, "batch_size": 8, "lr": 0.05, "optimizer": "adam", "keep": "last",
           "channels_last": False, "device": "cpu", **kw}
    )  # fmt: skip


def test_cross_fit_predicts_each_row_from_a_model_that_did_not_train_on_it(tmp_path, monkeypatch):
    ds = _toy()
    folds = {"a": [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))],
             "b": [(np.arange(10, 30), np.arange(10))]}  # fmt: skip
    trained = []
    real = train.run_seeds

    def spy(name, build, train_ds, eval_sets, *a, **k):
        runs = real(name, build, train_ds, eval_sets, *a, **k)
        logits = np.stack([r.predictions["eval"]["logits"] for r in runs])
        trained.append((name, set(train_ds.indices), eval_sets["eval"].indices, logits))
        return runs

    monkeypatch.setattr(train, "run_seeds", spy)
    out = train.cross_fit("m", _build, ds, folds, _cfg(), tmp_path, ["0", "1"], [0, 1])
    assert [n for n, *_ in trained] == ["m-a-fold0", "m-a-fold1", "m-b-fold0"]
    assert all(not tr & set(ev) for _, tr, ev, _ in trained)
    assert out["a"].shape == (2, 40, 2) and not np.isnan(out["a"]).any()
    assert np.isnan(out["b"][:, 10:]).all() and not np.isnan(out["b"][:, :10]).any()
    for name, _, ev, logits in trained:  # each fold's predictions land on its own rows
        assert np.array_equal(out[name.split("-")[1]][:, ev], logits)
    with pytest.raises(ValueError, match="last epoch"):
        train.cross_fit("m", _build, ds, folds, _cfg(keep="best"), tmp_path, ["0", "1"], [0])


def test_cross_fit_runs_a_frozen_backbone_once_for_every_fold_and_seed(tmp_path, monkeypatch):
    calls = []
    real = train.frozen_features
    monkeypatch.setattr(train, "frozen_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    folds = {"a": [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))]}
    out = train.cross_fit("m", _build, _toy(), folds, _cfg(), tmp_path, ["0", "1"], [0, 1],
                          frozen_backbone=True)["a"]  # fmt: skip
    assert len(calls) == 1 and out.shape == (2, 40, 2)
    assert not np.allclose(out[0], out[1])  # each seed its own head
    again = train.cross_fit("m", _build, _toy(), folds, _cfg(), tmp_path / "b", ["0", "1"], [0],
                            frozen_backbone=True)["a"]  # fmt: skip
    assert np.allclose(again[0], out[0])  # seed 0 starts from the same head every time


def test_fit_heads_takes_the_steps_fit_takes_for_each_fold_and_seed(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)).astype(np.float32), np.arange(30) % 3
    folds = [(np.arange(10, 30), np.arange(10)), (np.arange(20), np.arange(20, 30))]
    cfg = _cfg(epochs=3, lr=0.01, optimizer="adamw", scheduler="cosine")
    out, hist = train.fit_heads(x, y, folds, cfg, [0, 1], dropout=0.0)
    assert len(hist) == 2 * 2 * 3 and set(hist.columns) >= {"fold", "seed", "val_accuracy"}
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    def build():
        return models.Classifier(nn.Identity(), models.dropout_linear(5, 3, 0.0), 5, {})

    for k, (tr, ev) in enumerate(folds):  # the same heads, one at a time through fit
        sub = torch.utils.data.Subset
        runs = train.run_seeds(f"f{k}", build, sub(ds, tr), {"eval": sub(ds, ev)}, cfg, tmp_path,
                               ["a", "b", "c"], [0, 1], monitor_on="eval")  # fmt: skip
        for i, r in enumerate(runs):
            np.testing.assert_allclose(out[i, ev], r.predictions["eval"]["logits"], atol=1e-5)
    assert not np.allclose(out[0], out[1])
