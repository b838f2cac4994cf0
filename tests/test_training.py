"""Models, splits, tensors and the training loop, on tiny generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cellutils import catalog, evaluate, models, splits, torchdata, train

# ------------------------------------------------------------------------------------ models


@pytest.mark.parametrize(
    "arch", ["efficientnet_b0", "mobilenet_v2", "resnet18", "densenet161", "efficientnet_lite0"]
)
def test_builders_take_n_channels_and_embed(arch):
    m = models.build(arch, n_classes=5, in_channels=6, pretrained=False, dropout=0.3)
    x = torch.randn(2, 6, 32, 32)
    m.eval()
    assert m(x).shape == (2, 5)
    assert m.embed(x).shape == (2, m.n_features)
    assert models.first_conv(m)[2].in_channels == 6


def test_pretrained_stem_is_the_scaled_mean_of_the_rgb_filters():
    rgb = models.build("efficientnet_lite0", 3, 3, pretrained=True)
    six = models.build("efficientnet_lite0", 3, 6, pretrained=True)
    w3 = models.first_conv(rgb)[2].weight.detach()
    w6 = models.first_conv(six)[2].weight.detach()
    expected = w3.mean(1, keepdim=True).expand(-1, 6, -1, -1) * 0.5
    assert torch.allclose(w6, expected)
    # a grey image in 6 identical channels gives the stem the same response as in RGB
    grey = torch.rand(1, 1, 16, 16)
    conv3, conv6 = models.first_conv(rgb)[2], models.first_conv(six)[2]
    assert torch.allclose(
        conv3(grey.expand(-1, 3, -1, -1)), conv6(grey.expand(-1, 6, -1, -1)), atol=1e-5
    )
    assert (
        six.info["imagenet"]
        and not models.build("resnet18", 3, 6, pretrained=False).info["imagenet"]
    )


def test_pretrained_true_without_cached_weights_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="efficientnet_lite0"):
        models.build("efficientnet_b3", 3, 6, pretrained=True)
    m = models.build("resnet18", 3, 6, pretrained="auto")  # falls back, says so
    assert not m.info["imagenet"]


def test_report_heads():
    m = models.rxrx1_efficientnet_b3(11, 6, pretrained=False)
    assert isinstance(m.head[0], nn.Dropout) and m.head[0].p == 0.3 and m.head[1].out_features == 11
    d = models.cell_lines_densenet161(9, 3, pretrained=False)
    assert d.head[0].p == 0.5 and d.head[1].out_features == 9


# ------------------------------------------------------------------------------------ splits


def _frame(n_wells=12, per_well=4, n_classes=3):
    rows = [
        {"well": f"W{w:02d}", "plate": f"P{w % 2}", "label": f"c{w % n_classes}", "site": s}
        for w in range(n_wells)
        for s in range(per_well)
    ]
    return pd.DataFrame(rows)


def test_group_split_keeps_groups_apart_and_random_split_does_not():
    df = _frame()
    tr, va = splits.group_split(df, "well", 0.25, stratify="label", seed=1)
    assert not set(tr.well) & set(va.well) and len(tr) + len(va) == len(df)
    splits.check_disjoint(tr, va, "well")
    tr, va = splits.random_split(df, 0.25, stratify="label", seed=1)
    assert splits.overlap(tr, va, "well") > 0
    with pytest.raises(splits.LeakError, match="both sides"):
        splits.check_disjoint(tr, va, "well")


def test_oversampling_after_split_never_copies_into_validation():
    df = pd.DataFrame({"label": ["a"] * 20 + ["b"] * 4, "well": range(24)})
    tr, va = splits.random_split(df, 0.25, stratify="label", seed=0)
    tr_os = splits.oversample(tr, "label")
    assert tr_os.label.value_counts().nunique() == 1
    assert not va.index.isin(tr_os.index).any()
    leaky_tr, leaky_va = splits.oversample_then_split(df, "label", 0.25)
    assert leaky_va.index.isin(leaky_tr.index).any()  # report 002's protocol leaks copies
    assert (
        splits.describe(leaky_tr, leaky_va, "label")["val rows that are copies of train rows"] > 0
    )


def test_hold_out_and_bad_arguments():
    df = _frame()
    tr, va = splits.hold_out(df, "plate", ["P1"])
    assert set(va.plate) == {"P1"} and set(tr.plate) == {"P0"}
    with pytest.raises(ValueError, match="has no"):
        splits.hold_out(df, "plate", ["P9"])
    with pytest.raises(KeyError, match="no column"):
        splits.group_split(df, "experiment")


# ------------------------------------------------------------------------------------ tensors


def test_decode_caches_and_stats_use_only_given_rows(tiny, tmp_path):
    index = catalog.read_index("cell_lines", tiny["cell_lines"])
    a = torchdata.decode(index, size=16, data_root=tmp_path)
    b = torchdata.decode(index, size=16, data_root=tmp_path)
    assert isinstance(b, np.memmap) and a.shape == (len(index), 3, 16, 16)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 1
    c = torchdata.decode(index, size=16, cache=False)
    assert np.array_equal(np.asarray(a), c)
    rows = np.arange(5)
    stats = torchdata.ChannelStats.fit(c, rows)
    assert np.allclose(stats.mean, c[rows].astype(float).mean(axis=(0, 2, 3)))
    # the file-decoding dataset gives the same tensors as the cached one
    labels = torchdata.Labels.fit(index.cell_line)
    y = labels.encode(index.cell_line)
    cached = torchdata.ImageDataset(a, np.arange(len(index)), y, stats)
    files = torchdata.FileDataset(index, y, size=16, stats=stats)
    assert torch.allclose(cached[3][0], files[3][0]) and cached[3][1] == files[3][1]


def test_augmentations_treat_all_channels_alike():
    torch.manual_seed(0)
    x = torch.arange(8 * 8, dtype=torch.float32).reshape(1, 8, 8).repeat(6, 1, 1)
    for kind in ("dihedral", "flips_rotation_jitter", "strong"):
        aug = torchdata.augmentation(kind, size=8)
        out = aug(x)
        assert out.shape == x.shape
        if kind == "dihedral":  # geometric only: every channel moved the same way
            assert all(torch.equal(out[0], out[c]) for c in range(6))
    assert torchdata.augmentation("none") is None
    with pytest.raises(ValueError):
        torchdata.augmentation("wild")


def test_labels_refuse_unknown_classes():
    labels = torchdata.Labels.fit(pd.Series(["b", "a"]))
    assert labels.classes == ["a", "b"] and list(labels.encode(pd.Series(["b"]))) == [1]
    with pytest.raises(ValueError, match="not seen"):
        labels.encode(pd.Series(["c"]))


# ------------------------------------------------------------------------------------ training


class _Tiny(nn.Module):
    def __init__(self, n_classes=2):
        super().__init__()
        torch.manual_seed(0)  # the same initial weights every time (seed before building)
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(4, n_classes)
        self.info = {"n_classes": n_classes}

    def forward(self, x):
        return self.head(self.backbone(x))

    def embed(self, x):
        return self.backbone(x)


def _toy(n=64, seed=0):
    """Class 1 images are brighter: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.8
    return torch.utils.data.TensorDataset(x, y)


def _cfg(**kw):
    return train.TrainConfig(
        **{
            "epochs": 6,
            "batch_size": 16,
            "lr": 0.05,
            "optimizer": "adam",
            "scheduler": "cosine",
            "channels_last": False,
            "device": "cpu",
            **kw,
        }
    )


def test_fit_learns_keeps_best_and_is_deterministic(tmp_path):
    r1 = train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "a", progress=False)
    r2 = train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "b", progress=False)
    assert r1.best["accuracy"] >= 0.9
    assert r1.best_epoch == r1.history.val_accuracy.idxmax() + 1
    pd.testing.assert_frame_equal(
        r1.history.drop(columns="seconds"), r2.history.drop(columns="seconds")
    )
    assert (tmp_path / "a" / "model-best.pt").exists()
    assert not (tmp_path / "a" / "model-last.pt").exists()  # removed once finished
    again = train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "a", progress=False)
    assert again.seconds == 0.0 and again.best_epoch == r1.best_epoch  # loaded, not retrained
    with pytest.raises(RuntimeError, match="another configuration"):
        train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(lr=0.1), tmp_path / "a", progress=False)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    full = train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "full", progress=False)
    calls = {"n": 0}
    real_predict = train.predict

    def crash_in_epoch_4(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_predict(*a, **k)

    monkeypatch.setattr(train, "predict", crash_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "cut", progress=False)
    monkeypatch.setattr(train, "predict", real_predict)
    assert (tmp_path / "cut" / "model-last.pt").exists()
    resumed = train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path / "cut", progress=False)
    assert resumed.resumed_from == 3
    cols = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]
    pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols], atol=1e-6)


def test_onecycle_step_early_stopping_and_class_weights(tmp_path):
    r = train.fit(
        _Tiny(),
        _toy(),
        _toy(32, 1),
        _cfg(scheduler="onecycle", max_lr=0.05, epochs=3),
        tmp_path / "oc",
        progress=False,
    )
    assert r.history.lr.iloc[-1] < 0.05 / 10  # annealed at the end of the cycle
    r = train.fit(
        _Tiny(),
        _toy(),
        _toy(32, 1),
        _cfg(scheduler="step", step_size=1, gamma=0.5, epochs=30, patience=2, monitor="loss"),
        tmp_path / "es",
        progress=False,
    )
    assert len(r.history) < 30
    w = train.class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[2] == 0 and w[1] == 3 * w[0]


def test_keep_last_stop_after_and_no_selection_on_test(tmp_path):
    sets = {"val": _toy(32, 1), "test": _toy(32, 2)}
    with pytest.raises(splits.LeakError, match="chosen on 'test'"):
        train.run_experiment(
            "m",
            _Tiny(),
            _toy(),
            sets,
            _cfg(),
            tmp_path / "a",
            ["0", "1"],
            monitor_on="test",
            progress=False,
        )
    e = train.run_experiment(
        "m",
        _Tiny(),
        _toy(),
        sets,
        _cfg(keep="last", stop_after=4),
        tmp_path / "b",
        ["0", "1"],
        monitor_on="test",
        progress=False,
    )
    assert e.selected_on is None and e.fit.best_epoch == 4 == len(e.fit.history)
    assert e.fit.history.lr.iloc[-1] > 0  # the cosine schedule ran over 6 epochs, stopped at 4
    assert e.fit.watched.shape == (4, 32)  # the watched set's predictions, per epoch
    assert (e.fit.watched[-1] == e.labels("test")).all()
    best = train.run_experiment(
        "m", _Tiny(), _toy(), sets, _cfg(), tmp_path / "c", ["0", "1"], progress=False
    )
    assert best.selected_on == "val"


def test_frozen_features_train_the_head_on_each_image_once(tmp_path):
    images = np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32)
    images[5:] += 0.8
    targets = np.array([0] * 5 + [1] * 5)
    rows = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6])  # oversampled: two copies
    tr = torchdata.ImageDataset(images, rows, targets[rows])
    model = models.Classifier(_Tiny().backbone, nn.Linear(4, 2), 4, {"arch": "tiny"})
    probe, sets = train.frozen_features(model, {"train": tr, "val": _toy(8, 3)})
    assert len(sets["train"]) == 12 and sets["train"].x.shape == (12, 4)
    assert torch.equal(sets["train"].x[10], sets["train"].x[5])
    assert probe.head is model.head and probe.info["frozen_backbone"]
    r = train.fit(
        probe, sets["train"], sets["train"], _cfg(epochs=30, lr=0.1), tmp_path, progress=False
    )
    assert r.best["accuracy"] >= 0.9


def test_run_seeds_same_start_per_seed_and_one_frozen_pass(tmp_path, monkeypatch):
    calls = []
    real = train.frozen_features
    monkeypatch.setattr(train, "frozen_features", lambda *a, **k: calls.append(1) or real(*a, **k))

    def build():
        return models.Classifier(
            nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), nn.Linear(4, 2), 4, {"arch": "tiny"}
        )

    runs = train.run_seeds(
        "m",
        build,
        _toy(),
        {"val": _toy(32, 1)},
        _cfg(epochs=2),
        tmp_path,
        ["0", "1"],
        [0, 1],
        frozen_backbone=True,
    )
    assert [r.name for r in runs] == ["m-seed0", "m-seed1"] and len(calls) == 1
    assert not torch.equal(runs[0].fit.model.head.weight, runs[1].fit.model.head.weight)
    again = train.run_seeds(
        "m",
        build,
        _toy(),
        {"val": _toy(32, 1)},
        _cfg(epochs=2),
        tmp_path / "b",
        ["0", "1"],
        [0],
        frozen_backbone=True,
    )
    assert torch.equal(again[0].fit.model.head.weight, runs[0].fit.model.head.weight)


def test_control_normalised_removes_a_plate_gain():
    rng = np.random.default_rng(0)
    index = pd.DataFrame(
        {
            "experiment": ["e"] * 8,
            "plate": [1] * 4 + [2] * 4,
            "control": [True, True, False, False] * 2,
        }
    )
    images = rng.random((8, 2, 4, 4)).astype(np.float32) + 1
    images[4:] *= 3.0  # plate 2 is three times brighter
    norm = torchdata.ControlNormalised(images, index, index.control)
    assert norm.shape == images.shape and norm[[0, 1]].shape == (2, 2, 4, 4)
    np.testing.assert_allclose(
        norm[4], (images[4] - norm.mean[4][:, None, None]) / norm.std[4][:, None, None], rtol=1e-5
    )
    assert abs(norm[2].mean() - norm[6].mean()) < abs(images[2].mean() - images[6].mean())
    with pytest.raises(ValueError, match="no control images"):
        torchdata.ControlNormalised(images, index, [False] * 8)


def test_metrics_and_metrics_json(tmp_path):
    y = np.array([0, 0, 0, 1])
    m = evaluate.classification_metrics(y, np.array([0, 0, 0, 0]))
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.5
    logits = np.eye(7)[[0, 1, 2, 3]] + 0.01
    assert evaluate.classification_metrics(y, logits)["top5_accuracy"] == 1.0
    path = evaluate.write_metrics(
        tmp_path,
        "nb",
        "000",
        "t",
        {"acc": 0.5},
        [evaluate.result_row("p", m, True)],
        "p",
        "synthetic",
        "smoke",
    )
    with pytest.raises(FileExistsError):
        evaluate.write_metrics(tmp_path, "nb", "000", "t", {}, [], "p", "synthetic", "smoke")
    assert path.exists()


# ------------------------------------------------------------------ reports 002-004 building blocks


def test_mask_attention_uses_the_mask_to_gate_the_image():
    from cellutils import models

    torch.manual_seed(0)
    m = models.mask_attention_cnn(4).eval()
    x = torch.randn(2, 2, 32, 32)
    blank = x.clone()
    blank[:, 1] = 0
    assert m(x).shape == (2, 4) and not torch.allclose(m(x), m(blank))
    assert m.embed(x).shape == (2, 128)


def test_multi_input_network_and_freezing():
    from cellutils import models

    net = models.MultiInputCellNet(5, 12, pretrained=False, arch="resnet18").eval()
    out = net(torch.randn(3, 4, 32, 32), torch.randn(3, 4, 32, 32), torch.randn(3, 12))
    assert out.shape == (3, 5) and net.embed(
        torch.randn(3, 4, 32, 32), torch.randn(3, 4, 32, 32), torch.randn(3, 12)
    ).shape == (3, 256)
    clf = models.freeze_backbone(models.build("resnet18", 3, 1, pretrained=False))
    trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)


def test_cell_crops_and_vote():
    from cellutils import cells

    masks = np.zeros((40, 40), np.int32)
    masks[5:15, 5:12] = 1
    masks[20:36, 22:30] = 2
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32) * 100
    flows = np.random.default_rng(1).normal(size=(2, 40, 40)).astype(np.float32)
    m, f = cells.crop_cells(image, masks, flows, 16, [2, 1])
    assert m.shape == (2, 4, 16, 16) and f.shape == (2, 4, 16, 16)
    assert m[:, 0].max() == 1.0 and m[:, 0].min() == -1.0  # this cell's mask, scaled to [-1, 1]
    other, _ = cells.crop_cells(image[::-1].copy(), masks, flows, 16, [2, 1])
    assert np.allclose(other, m)  # the report's inputs: masks and flows only, no raw image
    mi, fi = cells.crop_cells(image, masks, flows, 16, [2, 1], with_image=True)
    assert len(np.unique(mi[:, 0])) > 10 and np.allclose(
        fi[:, :3], f[:, :3]
    )  # image behind a switch
    logits = np.array([[3, 0], [3, 0], [0, 3], [0, 1], [0, 1]], np.float32)
    v = cells.vote(["a", "a", "a", "b", "b"], logits, np.array([0, 0, 0, 1, 1])).set_index("image")
    assert v.loc["a", "majority_vote"] == 0 and v.loc["b", "majority_vote"] == 1
    assert v.loc["a", "cells"] == 3


def test_cell_crops_on_disk_read_like_crops_in_memory(tmp_path):
    from cellutils import cells

    rng = np.random.default_rng(0)
    m, f = rng.random((5, 4, 12, 12)), rng.random((5, 4, 12, 12))
    writer = cells._CropWriter(tmp_path / "crops", 12)
    writer.add(m[:2], f[:2])
    writer.add(m[2:], f[2:])
    mm, ff = writer.close()
    assert isinstance(mm, np.memmap) and mm.shape == (5, 4, 12, 12)
    table = pd.DataFrame({"x": range(5)})
    on_disk = cells.CellSet(table, mm, ff, 12)
    in_memory = cells.CellSet(table, m.astype(np.float16), f.astype(np.float16), 12)
    for a, b in zip(on_disk.crops(3), in_memory.crops(3), strict=True):
        assert torch.equal(a, b)
    assert cells.CellSet(table, mm, ff, 20).crops(0)[0].shape == (4, 20, 20)  # resized on read


def test_embeddings_and_classical_scores():
    from cellutils import embeddings

    rng = np.random.default_rng(0)
    index = pd.DataFrame({"label": ["a", "b"] * 20})
    images = rng.random((40, 1, 32, 32)).astype(np.float32)
    images[index.label == "b"] += 1.0  # class b is brighter
    stats = torchdata.ChannelStats.fit(images, range(40))
    avail = embeddings.available_backbones(["efficientnet_lite0"], verbose=False)
    assert "resnet18 (random init)" in avail
    feats = {
        n: embeddings.extract(images, stats, a, p, batch_size=16) for n, (a, p) in avail.items()
    }
    tr, te = index.iloc[:30], index.iloc[30:]
    scores = embeddings.classical_scores(feats, index, {"split": (tr, te)}, "label")
    assert set(scores.classifier) == {"ridge", "random forest", "Bernoulli naive Bayes"}
    assert scores.test_accuracy.max() == 1.0


def test_checkpoints_hold_tensors_and_json_only(tmp_path, monkeypatch):
    """Checkpoints load with ``weights_only=True`` (no pickled code), the resume point included."""
    calls = {"n": 0}
    real_predict = train.predict

    def crash_in_epoch_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_predict(*a, **k)

    monkeypatch.setattr(train, "predict", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.fit(_Tiny(), _toy(), _toy(32, 1), _cfg(), tmp_path, progress=False)
    for name in ("model-last.pt", "model-best.pt"):
        assert torch.load(tmp_path / name, weights_only=True)
    assert (tmp_path / "model-last.json").exists() and (tmp_path / "model-best.json").exists()


def _loop_from_notebook() -> dict:
    """The function ``train_by_hand`` of notebook 04's cell tagged ``training-loop`` (its
    imports and definitions only, not the calls on the notebook's own objects)."""
    import ast

    import nbformat

    from cellutils.notebooks import notebooks_dir

    nb = nbformat.read(notebooks_dir() / "04_cell_lines_densenet.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "training-loop" in c.metadata.get("tags", [])]
    tree = ast.parse(cell.source)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    assert len(cell.source.splitlines()) <= 40, "the whole loop fits on one screen"
    ns: dict = {}
    exec(compile(ast.Module(keep, []), "training-loop", "exec"), ns)
    return ns


@pytest.mark.parametrize("optimizer", ["adamw"])
def test_the_notebook_training_loop_gives_the_history_of_fit(tmp_path, optimizer):
    """The loop a student reads in notebook 04 is the loop ``train.fit`` runs: same seed, data,
    optimiser, loss and schedule give the same history."""
    train_by_hand = _loop_from_notebook()["train_by_hand"]
    cfg = _cfg(optimizer=optimizer, weight_decay=0.01, epochs=4, keep="last")
    by_fit = train.fit(_Tiny(), _toy(), _toy(32, 1), cfg, tmp_path, progress=False).history
    by_hand = train_by_hand(_Tiny(), _toy(), _toy(32, 1), cfg)
    for col in ("train_loss", "val_accuracy"):
        np.testing.assert_allclose(by_hand[col].to_numpy(), by_fit[col].to_numpy(), atol=1e-6)
    assert list(by_hand.epoch) == [1, 2, 3, 4]


def test_describe_prints_layers_parameters_and_shapes(capsys):
    model = _Tiny(3)
    x, y = torchdata.describe_batch(_toy(16), batch_size=4, channels=["DNA"])
    info = models.describe(model, x)
    out = capsys.readouterr().out
    assert "(4, 1, 8, 8)" in out and "(4, 3)" in out and "DNA" in out
    assert info.total_params == models.count_parameters(model) == 4 * 9 + 4 + 4 * 3 + 3
    item = torchdata.describe_item(_toy(16), 1, channels=["DNA"])
    assert item["target"] == 1 and item["inputs"][0]["shape"] == (1, 8, 8)
