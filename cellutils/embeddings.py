"""Frozen-backbone embeddings and the classical classifiers fitted on them (report 003).

>>> avail = available_backbones(["resnet50", "efficientnet_lite0"])  # what this machine has
>>> feats = {n: extract(images, stats, arch, pre) for n, (arch, pre) in avail.items()}
>>> classical_scores(feats, index, {"random": (train, test)}, "Metadata_pert_iname")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cellutils import models
from cellutils.runtime import pick_device
from cellutils.torchdata import ChannelStats, positions


def available_backbones(
    archs: Sequence[str], control: str = "resnet18", verbose: bool = True
) -> dict[str, tuple[str, bool]]:
    """{display name: (arch, ImageNet?)} for the ``archs`` whose ImageNet weights exist here,
    plus ``control`` with random weights (does ImageNet pretraining help at all?)."""
    out: dict[str, tuple[str, bool]] = {}
    for arch in archs:
        has = (
            models.lite0_weights_file() is not None
            if arch == "efficientnet_lite0"
            else models.cached_weights_file(arch).exists()
        )
        if has:
            out[f"{arch} (ImageNet)"] = (arch, True)
        elif verbose:
            print(
                f"{arch}: no ImageNet weights on this machine, skipped "
                f"(see models.resolve_pretrained for how to add them)"
            )
    out[f"{control} (random init)"] = (control, False)
    return out


@torch.no_grad()
def extract(
    images: np.ndarray,
    stats: ChannelStats,
    arch: str,
    pretrained: bool,
    batch_size: int = 64,
    device=None,
) -> np.ndarray:
    """The frozen backbone's penultimate activations for every image, (N, features)."""
    device = device or pick_device(verbose=False)
    net, _, _ = models.backbone(arch, images.shape[1], pretrained)
    net.eval().to(device)
    norm = stats.transform()
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, f"embed ({arch})", unit="batch", leave=False, mininterval=2.0):
        x = torch.from_numpy(np.asarray(images[start : start + batch_size], dtype=np.float32))
        x = norm(x).to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out.append(net(x).float().cpu())
    return torch.cat(out).numpy()


def classifiers(seed: int = 0) -> dict:
    """The report's three: Ridge, random forest, Bernoulli naive Bayes (on standardised
    features; BernoulliNB sees above/below the mean)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import RidgeClassifier
    from sklearn.naive_bayes import BernoulliNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "ridge": make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)),
        "random forest": RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1),
        "Bernoulli naive Bayes": make_pipeline(StandardScaler(), BernoulliNB(binarize=0.0)),
    }


def classical_scores(
    feats: dict[str, np.ndarray],
    index: pd.DataFrame,
    protocols: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    label: str,
    seed: int = 0,
) -> pd.DataFrame:
    """Train and test accuracy of every classifier on every embedding under every split."""
    rows = []
    for protocol, (train, test) in protocols.items():
        tr, te = positions(index, train), positions(index, test)
        ytr, yte = train[label].astype(str).to_numpy(), test[label].astype(str).to_numpy()
        for backbone, x in feats.items():
            for name, clf in classifiers(seed).items():
                clf.fit(x[tr], ytr)
                rows.append(
                    {
                        "protocol": protocol,
                        "backbone": backbone,
                        "classifier": name,
                        "train_accuracy": float((clf.predict(x[tr]) == ytr).mean()),
                        "test_accuracy": float((clf.predict(x[te]) == yte).mean()),
                        "chance": 1 / len(set(ytr)),
                    }
                )
    return pd.DataFrame(rows)


def site_embeddings(
    images: np.ndarray,
    index: pd.DataFrame,
    metadata: Sequence[str],
    backbone: str = "efficientnet_lite0",
) -> pd.DataFrame:
    """One row per site: its ``metadata`` columns and the frozen ImageNet backbone's features
    (``CNN_0`` ...; the random-init control when no ImageNet weights are here), ready for
    ``features.make_profiles`` like per-cell features."""
    from cellutils.torchdata import ChannelStats as Stats

    name, (arch, pretrained) = next(iter(available_backbones([backbone], verbose=False).items()))
    stats = Stats.fit(images, np.arange(len(images)))
    emb = extract(images, stats, arch, pretrained)
    table = pd.DataFrame(emb, columns=[f"CNN_{i}" for i in range(emb.shape[1])])
    table.attrs["backbone"] = name
    return pd.concat([index[list(metadata)].reset_index(drop=True), table], axis=1)
