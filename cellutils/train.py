"""One training loop for every notebook: ``fit(model, train_ds, val_ds, TrainConfig(...), run)``.

- optimisers: AdamW, Adam, SGD; schedulers: cosine, OneCycle, StepLR, none (stepped per batch
  for OneCycle, per epoch otherwise)
- loss: cross-entropy with label smoothing and optional class weights ("balanced")
- mixed precision on CUDA (bfloat16 autocast on CPU is off: it is slower there), channels_last
- per-epoch history, the best epoch by a chosen metric on a validation set (or the last epoch),
  early stopping; ``run_experiment`` refuses to select on a set named "test"
- resume: every epoch writes ``{name}-last.pt`` (state dicts and RNG states, loaded with
  ``weights_only=True``) and ``{name}-last.json`` (history, counters, config); ``fit`` on the
  same run folder continues after the last finished epoch (``Checkpoints``)
- the pieces a lesson writes out by hand: ``make_loader``, ``make_loss``, ``train_epoch``,
  ``validate``; ``fit`` is those in a loop, with checkpoints
- deterministic for a seed on CPU (and with deterministic algorithms on CUDA)

A batch is ``(inputs, target)``; ``inputs`` is a tensor or a tuple of tensors passed to the
model as separate arguments (multi-input models).
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cellutils import evaluate
from cellutils.paths import atomic_write_bytes
from cellutils.runtime import pick_device, seed_everything


@dataclass
class TrainConfig:
    """Everything a report specifies about training, in one place."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adam | sgd
    scheduler: str | None = "cosine"  # cosine | onecycle | step | None
    max_lr: float | None = None  # OneCycle peak (default: lr)
    step_size: int = 5  # StepLR
    gamma: float = 0.5  # StepLR
    label_smoothing: float = 0.0
    class_weights: str | None = None  # None | "balanced"
    monitor: str = "accuracy"  # a validation metric (higher is better) or "loss"
    keep: str = "best"  # "best": the epoch best by ``monitor``; "last": the last epoch run
    stop_after: int | None = None  # run only this many of the ``epochs`` scheduled (report 003)
    patience: int | None = None  # early stopping: epochs without improvement
    amp: bool | str = "auto"  # mixed precision: "auto" = on CUDA only
    channels_last: bool = True
    num_workers: int = 0
    seed: int = 0
    device: str | None = None  # None: cuda, then mps, then cpu
    max_batches: int | None = None  # cap batches per epoch (smoke tests)
    extra: dict = field(default_factory=dict)  # free-form notes stored with the history


@dataclass
class FitResult:
    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best: dict
    run_dir: Path
    seconds: float
    resumed_from: int
    watched: np.ndarray | None = None  # (epochs, n) labels predicted on the watched set

    def summary(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            **{f"best_{k}": v for k, v in self.best.items()},
            "epochs_run": int(self.history.epoch.max()) if len(self.history) else 0,
            "train_seconds": round(self.seconds, 1),
            "resumed_from_epoch": self.resumed_from,
        }


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _scheduler(cfg: TrainConfig, opt, steps_per_epoch: int):
    if cfg.scheduler is None or cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.max_lr or cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch
        )
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


def class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """sklearn's "balanced" weights, n / (k * count); classes absent from training get 0."""
    present = np.unique(targets)
    w = np.zeros(n_classes, dtype=np.float32)
    w[present] = compute_class_weight("balanced", classes=present, y=targets)
    return torch.from_numpy(w)


def _targets(ds: Dataset) -> np.ndarray:
    t = getattr(ds, "targets", None)
    if t is None:
        t = np.array([ds[i][1] for i in range(len(ds))])
    return np.asarray(t)


def _to(x, device, channels_last: bool):
    if isinstance(x, (tuple, list)):
        return tuple(_to(v, device, channels_last) for v in x)
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _forward(model, x):
    return model(*x) if isinstance(x, tuple) else model(x)


def make_loader(
    ds: Dataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, num_workers: int = 0
) -> DataLoader:
    """The ``DataLoader`` ``fit`` uses: shuffled by a generator seeded from (seed, epoch), so an
    epoch's batches are the same on every run and after a resume."""
    g = torch.Generator()
    g.manual_seed(seed * 1000 + epoch)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=num_workers,
        drop_last=False,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _loader(ds: Dataset, cfg: TrainConfig, shuffle: bool, epoch: int = 0) -> DataLoader:
    return make_loader(ds, cfg.batch_size, shuffle, cfg.seed, epoch, cfg.num_workers)


# Per-batch bars only where a loop is long enough to leave one waiting (a full-profile epoch);
# short quick-profile loops would pay a widget per epoch for nothing.
MIN_BAR_BATCHES = 20


@torch.no_grad()
def predict(
    model: nn.Module,
    ds: Dataset,
    batch_size: int = 64,
    device=None,
    embeddings: bool = False,
    channels_last: bool = True,
    amp: bool | str = "auto",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Logits (and, with ``embeddings``, ``model.embed`` outputs) and targets for ``ds``;
    ``progress``: a per-batch bar that disappears when done."""
    device = device or next(model.parameters()).device
    use_amp = device.type == "cuda" if amp == "auto" else bool(amp)
    model.eval()
    logits, embeds, targets = [], [], []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    desc = "embed" if embeddings else "predict"
    progress = progress and len(loader) >= MIN_BAR_BATCHES
    for x, y in tqdm(
        iter(loader),
        desc,
        len(loader),
        leave=False,
        unit="batch",
        disable=not progress or None,
        mininterval=2.0,
    ):
        x = _to(x, device, channels_last)
        with torch.autocast(device.type, enabled=use_amp):
            if embeddings:
                e = model.embed(*x) if isinstance(x, tuple) else model.embed(x)
                out = model.head(e)
                embeds.append(e.float().cpu())
            else:
                out = _forward(model, x)
        logits.append(out.float().cpu())
        targets.append(torch.as_tensor(y))
    out = {"logits": torch.cat(logits).numpy(), "targets": torch.cat(targets).numpy()}
    if embeddings:
        out["embeddings"] = torch.cat(embeds).numpy()
    return out


def _rng_state() -> dict:
    """Every RNG's state as tensors and numbers (checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(obj, path: Path) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike, device="cpu") -> dict:
    """A checkpoint's tensors, loaded safely (``weights_only=True``: no code runs on load)."""
    return torch.load(path, map_location=device, weights_only=True)


@dataclass
class TrainState:
    """Where a training run stands after an epoch: what a resume needs besides the weights."""

    history: list[dict] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    since_best: int = 0
    epoch: int = 0
    stopped: bool = False

    def update(self, row: dict, cfg: TrainConfig) -> bool:
        """Add an epoch's row; return whether it is the epoch to keep (best so far by
        ``cfg.monitor``, or simply the latest with ``keep="last"``); set ``stopped``."""
        self.history.append(row)
        self.epoch = row["epoch"]
        score = -row["val_loss"] if cfg.monitor == "loss" else row[f"val_{cfg.monitor}"]
        improved = score > self.best_score
        self.best_score, self.since_best = (
            (score, 0) if improved else (self.best_score, self.since_best + 1)
        )
        keep = improved or cfg.keep == "last"
        if keep:
            self.best_epoch = self.epoch
        self.stopped = (cfg.patience is not None and self.since_best >= cfg.patience) or (
            cfg.stop_after is not None and self.epoch >= cfg.stop_after
        )
        return keep


class Checkpoints:
    """A run's files in ``run_dir``: ``{name}-last.pt`` + ``.json`` (the resume point: state
    dicts and RNG states; history and counters as JSON), ``{name}-best.pt`` + ``.json`` (the
    kept epoch's weights), ``{name}-history.csv`` and ``{name}-watched.npy`` (labels predicted
    on the watched set each epoch). Tensors are loaded with ``weights_only=True``."""

    def __init__(self, run_dir: str | os.PathLike, name: str, cfg: TrainConfig):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name, self.config = name, json.dumps(asdict(cfg), sort_keys=True, default=str)
        self.last, self.best = self.dir / f"{name}-last.pt", self.dir / f"{name}-best.pt"
        self.history = self.dir / f"{name}-history.csv"
        self.watch = self.dir / f"{name}-watched.npy"
        self.watched: list[np.ndarray] = []

    def _meta(self, path: Path) -> dict:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta["config"] != self.config:
            raise RuntimeError(
                f"{path} was written with another configuration; use a new results folder "
                "(or delete that checkpoint to start over)."
            )
        return meta

    def finished(self, model: nn.Module, device) -> FitResult | None:
        """The finished run in this folder, loaded (not retrained), or None."""
        if not (self.history.exists() and self.best.exists()) or self.last.exists():
            return None
        meta = self._meta(self.best)
        model.load_state_dict(load_weights(self.best, device))
        hist = pd.read_csv(self.history)
        print(f"{self.name}: already trained in {self.dir}; loaded the kept epoch {meta['epoch']}")
        watched = np.load(self.watch) if self.watch.exists() else None
        epoch = meta["epoch"]
        return FitResult(
            model,
            hist,
            epoch,
            _best_row(hist, epoch),
            self.dir,
            0.0,
            int(hist.epoch.max()),
            watched,
        )

    def resume(self, model, opt, sched, scaler, device) -> TrainState:
        """The state after the last finished epoch (weights, optimiser, scheduler, scaler and
        RNGs restored), or a fresh state."""
        if not self.last.exists():
            return TrainState()
        meta = self._meta(self.last)
        ck = load_weights(self.last, device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler") is not None:
            sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        self.watched = [w.numpy() for w in ck["watched"]]
        print(f"{self.name}: resuming after epoch {meta['state']['epoch']} from {self.last}")
        return TrainState(**meta["state"])

    def save(self, model, opt, sched, scaler, state: TrainState, keep: bool) -> None:
        """After an epoch: the resume point, and the kept epoch's weights when ``keep``."""
        if keep:
            _save(model.state_dict(), self.best)
            meta = {"epoch": state.epoch, "config": self.config, "info": getattr(model, "info", {})}
            atomic_write_bytes(
                self.best.with_suffix(".json"),
                json.dumps(meta, default=str).encode(),
                overwrite=True,
            )
        _save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "watched": [torch.from_numpy(w) for w in self.watched],
            },
            self.last,
        )
        meta = {"config": self.config, "state": asdict(state)}
        atomic_write_bytes(
            self.last.with_suffix(".json"), json.dumps(meta, default=float).encode(), overwrite=True
        )

    def finish(self, model, state: TrainState, device, seconds: float, resumed_from: int):
        """Write the history, load the kept epoch's weights, drop the resume point."""
        hist = pd.DataFrame(state.history)
        watched = np.stack(self.watched) if self.watched else None
        if watched is not None:
            buf = io.BytesIO()
            np.save(buf, watched)
            atomic_write_bytes(self.watch, buf.getvalue(), overwrite=True)
        hist.to_csv(self.history, index=False)
        if self.best.exists():
            model.load_state_dict(load_weights(self.best, device))
            self.last.unlink(missing_ok=True)  # finished: the resume point is not needed
            self.last.with_suffix(".json").unlink(missing_ok=True)
        return FitResult(
            model,
            hist,
            state.best_epoch,
            _best_row(hist, state.best_epoch),
            self.dir,
            seconds,
            resumed_from,
            watched,
        )


def make_loss(cfg: TrainConfig, train_ds: Dataset, model: nn.Module, device) -> nn.Module:
    """Cross-entropy with the report's label smoothing and, with ``class_weights="balanced"``,
    weights from the training targets."""
    weight = None
    if cfg.class_weights == "balanced":
        targets = _targets(train_ds)
        n_classes = getattr(model, "info", {}).get("n_classes", int(targets.max()) + 1)
        weight = class_weights(targets, n_classes).to(device)
    elif cfg.class_weights is not None:
        raise ValueError(f"class_weights must be None or 'balanced', not {cfg.class_weights!r}")
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def train_epoch(model, loader, loss_fn, opt, sched, scaler, cfg, device, progress=False) -> dict:
    """One pass over ``loader``: forward, loss, backward, optimiser step per batch (OneCycle
    steps per batch). Returns the mean training loss and accuracy over the rows seen."""
    use_amp = scaler.is_enabled() or (cfg.amp is True)
    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    batches = min(len(loader), cfg.max_batches or len(loader))
    bar = progress and batches >= MIN_BAR_BATCHES
    # iterate one iterator: tqdm.auto calls iter() on what it wraps, and each iter() of a
    # DataLoader draws a new shuffle from its generator (the bar would change the batches)
    batch_iter = tqdm(
        iter(loader),
        "batches",
        batches,
        leave=False,
        unit="batch",
        disable=not bar or None,
        mininterval=2.0,
    )
    for b, (x, y) in enumerate(batch_iter):
        if b >= batches:
            break
        x, y = _to(x, device, cfg.channels_last), y.to(device)
        with torch.autocast(device.type, enabled=use_amp):
            out = _forward(model, x)
            loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if sched is not None and cfg.scheduler == "onecycle":
            sched.step()
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return {"train_loss": loss_sum / max(n, 1), "train_accuracy": correct / max(n, 1)}


def validate(model, val_ds, cfg, device, use_amp: bool, progress: bool = False):
    """Predictions on the watched set and their metrics (``val_`` prefixed, with the loss)."""
    pred = predict(
        model,
        val_ds,
        cfg.batch_size * 2,
        device,
        channels_last=cfg.channels_last,
        amp=use_amp,
        progress=progress,
    )
    val = evaluate.classification_metrics(pred["targets"], pred["logits"])
    logits, targets = torch.from_numpy(pred["logits"]), torch.from_numpy(pred["targets"])
    loss = float(nn.functional.cross_entropy(logits, targets))
    return pred, {"val_loss": loss, **{f"val_{k}": v for k, v in val.items()}}


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    name: str = "model",
    progress: bool = True,
) -> FitResult:
    """Train ``model``, keep the best epoch by ``cfg.monitor`` (or the last), return it loaded
    with those weights. Resumes after the last finished epoch in ``run_dir``; a finished run
    there is loaded, not retrained (files: :class:`Checkpoints`)."""
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {cfg.keep!r}")
    ckpt = Checkpoints(run_dir, name, cfg)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device, verbose=False)
    use_amp = device.type == "cuda" if cfg.amp == "auto" else bool(cfg.amp)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = make_loss(cfg, train_ds, model, device)
    opt = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    steps = min(math.ceil(len(train_ds) / cfg.batch_size), cfg.max_batches or math.inf)
    sched = _scheduler(cfg, opt, int(steps))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")
    if (done := ckpt.finished(model, device)) is not None:
        return done
    state = ckpt.resume(model, opt, sched, scaler, device)
    resumed_from, t0 = state.epoch, time.perf_counter()
    epochs = range(state.epoch + 1, cfg.epochs + 1) if not state.stopped else range(0)
    for epoch in tqdm(epochs, desc=name, disable=not progress, unit="epoch", mininterval=1.0):
        t_epoch = time.perf_counter()
        loader = _loader(train_ds, cfg, True, epoch)
        row = {"epoch": epoch}
        row |= train_epoch(model, loader, loss_fn, opt, sched, scaler, cfg, device, progress)
        if sched is not None and cfg.scheduler != "onecycle":
            sched.step()
        row["lr"] = opt.param_groups[0]["lr"]  # after the epoch's scheduler steps
        pred, val = validate(model, val_ds, cfg, device, use_amp, progress)
        row |= {**val, "seconds": time.perf_counter() - t_epoch}
        ckpt.watched.append(pred["logits"].argmax(1).astype(np.int32))
        keep = state.update(row, cfg)
        ckpt.save(model, opt, sched, scaler, state, keep)
        if state.stopped:
            print(
                f"{name}: stopped after epoch {epoch} of {cfg.epochs} scheduled "
                f"(kept epoch {state.best_epoch})"
            )
            break
    return ckpt.finish(model, state, device, time.perf_counter() - t0, resumed_from)


def _best_row(hist: pd.DataFrame, epoch: int) -> dict:
    if not len(hist) or epoch not in set(hist.epoch):
        return {}
    row = hist.loc[hist.epoch == epoch].iloc[0]
    return {k.removeprefix("val_"): float(v) for k, v in row.items() if k.startswith("val_")}


@dataclass
class Experiment:
    """One trained model and its predictions/metrics on each evaluation set."""

    name: str
    fit: FitResult
    classes: list[str]
    predictions: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, dict]
    selected_on: str | None  # the set the kept epoch was chosen on; None: the last epoch

    def labels(self, split: str) -> np.ndarray:
        """Predicted labels on one evaluation set."""
        return self.predictions[split]["logits"].argmax(1)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics).T.rename_axis(self.name)


def run_experiment(
    name: str,
    model: nn.Module,
    train_ds: Dataset,
    eval_sets: dict[str, Dataset],
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    classes: list[str],
    embeddings: bool = True,
    progress: bool = True,
    monitor_on: str = "val",
) -> Experiment:
    """``fit`` on ``train_ds``, watching ``eval_sets[monitor_on]`` each epoch (the kept epoch is
    chosen on it when ``cfg.keep == "best"``), then predict every evaluation set and save
    ``{name}-{set}-predictions.npz`` (logits, targets, embeddings, class names).

    Choosing an epoch on a set named "test" raises ``LeakError``: carve a validation set from
    the training side, or keep the last epoch (``keep="last"``), which only *watches* it."""
    from cellutils.splits import LeakError

    selected_on = monitor_on if cfg.keep == "best" else None
    if selected_on and "test" in selected_on.lower():
        raise LeakError(
            f"{name}: the kept epoch would be chosen on {monitor_on!r}. Choose it on "
            "a validation split carved from training, or use keep='last'."
        )
    result = fit(model, train_ds, eval_sets[monitor_on], cfg, run_dir, name, progress)
    preds, metrics = {}, {}
    for split, ds in eval_sets.items():
        p = predict(
            result.model,
            ds,
            cfg.batch_size * 2,
            embeddings=embeddings,
            channels_last=cfg.channels_last,
        )
        preds[split] = p
        metrics[split] = evaluate.classification_metrics(p["targets"], p["logits"])
        buf = io.BytesIO()
        np.savez_compressed(buf, classes=np.array(classes), **p)
        atomic_write_bytes(
            Path(run_dir) / f"{name}-{split}-predictions.npz", buf.getvalue(), overwrite=True
        )
    return Experiment(name, result, list(classes), preds, metrics, selected_on)


class _Features(torch.utils.data.Dataset):
    """Precomputed embeddings and targets, as a dataset."""

    def __init__(self, x: np.ndarray, targets: np.ndarray):
        self.x, self.targets = torch.from_numpy(np.asarray(x, np.float32)), np.asarray(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], int(self.targets[i])


def frozen_features(
    model: nn.Module, datasets: dict[str, Dataset], batch_size: int = 64
) -> tuple[nn.Module, dict[str, Dataset]]:
    """A frozen backbone, run once: each dataset becomes its embeddings (each distinct image
    embedded once, so oversampled copies cost nothing; no augmentation), and the model becomes
    a probe, its own head on an identity backbone. ``fit`` then trains the head only —
    a pretrained backbone's quick stand-in for fine-tuning, in CPU seconds."""
    import copy

    model.eval()
    out = {}
    for name, ds in datasets.items():
        rows = getattr(ds, "rows", None)
        if rows is None:
            p = predict(model, ds, batch_size, embeddings=True)
            out[name] = _Features(p["embeddings"], p["targets"])
            continue
        uniq, inv = np.unique(rows, return_inverse=True)
        once = copy.copy(ds)
        once.rows, once.targets, once.augment = uniq, np.zeros(len(uniq), np.int64), None
        emb = predict(model, once, batch_size, embeddings=True)["embeddings"]
        out[name] = _Features(emb[inv], ds.targets)
    return probe(model), out


def probe(model: nn.Module) -> nn.Module:
    """``model``'s head on an identity backbone: what trains on ``frozen_features``' output
    (features depend on the backbone only, so several seeds' heads can share them)."""
    info = {**getattr(model, "info", {}), "frozen_backbone": True}
    return type(model)(nn.Identity(), model.head, model.n_features, info)


def run_seeds(
    name: str,
    build,
    train_ds: Dataset,
    eval_sets: dict[str, Dataset],
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    classes: list[str],
    seeds: range | list[int],
    frozen_backbone: bool = False,
    monitor_on: str = "val",
) -> list[Experiment]:
    """``run_experiment`` once per seed, as ``{name}-seed{s}``. Each seed is set just before
    ``build()`` makes the model, so two protocols of one seed start from the same weights. With
    ``frozen_backbone`` the backbone runs once over the data (``frozen_features``) and every
    seed trains its own head on those features."""
    from dataclasses import replace

    runs, frozen = [], None
    for s in seeds:
        seed_everything(s)
        model, t_ds, sets = build(), train_ds, dict(eval_sets)
        if frozen_backbone:
            if frozen is None:
                frozen = frozen_features(model, {"train": train_ds, **eval_sets})[1]
            model, sets = probe(model), dict(frozen)
            t_ds = sets.pop("train")
        runs.append(
            run_experiment(
                f"{name}-seed{s}",
                model,
                t_ds,
                sets,
                replace(cfg, seed=s),
                run_dir,
                classes,
                monitor_on=monitor_on,
            )
        )
    return runs


def fit_heads(
    x: np.ndarray,
    targets: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    seeds: range | list[int],
    dropout: float,
    n_classes: int | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Dropout + linear heads on frozen features ``x``, one per (fold, seed), trained side by
    side: ``fit``'s steps for that head (``cfg``'s optimiser and per-epoch schedule, batch
    size, the batches ``make_loader`` draws for seed and epoch, label smoothing, the last
    epoch kept) as one batched loop, without checkpoints. Each head's loss is its own and
    the optimisers' updates are elementwise, so the heads do not interact; seed ``s`` starts
    from the same weights in every fold. Returns the out-of-fold logits (seeds, rows,
    classes) and each head's per-epoch history (fold, seed, epoch, losses, accuracies)."""
    if cfg.class_weights is not None or cfg.scheduler == "onecycle":
        raise ValueError("fit_heads: no class weights or OneCycle; train with run_seeds")
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(targets))
    n_classes, seeds = n_classes or int(yt.max()) + 1, list(seeds)
    out = np.full((len(seeds), len(xt), n_classes), np.nan, np.float32)
    hist = []
    for n_train in sorted({len(tr) for tr, _ in folds}):  # heads of one training size together
        heads = [(k, s) for k, (tr, _) in enumerate(folds) if len(tr) == n_train for s in seeds]
        w, b = [], []
        for _, s in heads:  # nn.Linear's initialisation, drawn after the seed is set
            seed_everything(s)
            lin = nn.Linear(xt.shape[1], n_classes)
            w.append(lin.weight.detach().T), b.append(lin.bias.detach()[None])
        w, b = nn.Parameter(torch.stack(w)), nn.Parameter(torch.stack(b))
        opt = _optimizer(cfg, [w, b])
        steps = min(math.ceil(n_train / cfg.batch_size), cfg.max_batches or math.inf)
        sched = _scheduler(cfg, opt, int(steps))
        for epoch in range(1, cfg.epochs + 1):
            perms = []
            for k, s in heads:  # the order make_loader shuffles these rows in (its generator:
                g = torch.Generator().manual_seed(s * 1000 + epoch)  # the iterator's base seed,
                torch.empty((), dtype=torch.int64).random_(generator=g)  # then the permutation)
                perms.append(torch.as_tensor(folds[k][0])[torch.randperm(n_train, generator=g)])
            perms = torch.stack(perms)
            loss_sum, hits = torch.zeros(len(heads)), torch.zeros(len(heads))
            for j in range(int(steps)):
                rows = perms[:, j * cfg.batch_size : (j + 1) * cfg.batch_size]
                xb = nn.functional.dropout(xt[rows], dropout, training=True)
                logits = torch.baddbmm(b, xb, w)
                per = nn.functional.cross_entropy(logits.transpose(1, 2), yt[rows],
                    reduction="none", label_smoothing=cfg.label_smoothing).mean(1)  # fmt: skip
                opt.zero_grad(set_to_none=True)
                per.sum().backward()
                opt.step()
                loss_sum += per.detach() * rows.shape[1]
                hits += (logits.argmax(-1) == yt[rows]).sum(1)
            if sched is not None:
                sched.step()
            with torch.no_grad():
                for h, (k, s) in enumerate(heads):
                    ev = folds[k][1]
                    lg = xt[ev] @ w[h] + b[h]
                    seen = min(n_train, steps * cfg.batch_size)
                    hist.append({"fold": k, "seed": s, "epoch": epoch,
                                 "train_loss": float(loss_sum[h]) / seen,
                                 "train_accuracy": float(hits[h]) / seen,
                                 "val_loss": float(nn.functional.cross_entropy(lg, yt[ev])),
                                 "val_accuracy": float((lg.argmax(1) == yt[ev]).float().mean()),
                                 })  # fmt: skip
                    if epoch == cfg.epochs:
                        out[seeds.index(s), ev] = lg.numpy()
    return out, pd.DataFrame(hist)


def cross_fit(
    name: str,
    build,
    rows_ds: Dataset,
    folds: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    classes: list[str],
    seeds: range | list[int],
    frozen_backbone: bool = False,
) -> dict[str, np.ndarray]:
    """Out-of-fold logits of each set of folds, ``{kind: (seeds, rows, classes)}`` (NaN where a
    row is in no eval fold): for each ``(train, eval)`` pair of row positions of ``rows_ds``,
    ``run_seeds`` trains on the train rows (``{name}-{kind}-fold{k}``, the last epoch kept,
    the eval rows only watched) and predicts the eval rows. With ``frozen_backbone`` the
    backbone runs once over all rows and every head of every fold trains on those features
    (one normalisation for all folds: ``rows_ds``'s); a dropout + linear head is trained by
    ``fit_heads``, all folds and seeds at once (history: ``{name}-{kind}-history.csv``)."""
    if cfg.keep != "last":
        raise ValueError("cross_fit keeps the last epoch: nothing is chosen on a fold's eval rows")
    if frozen_backbone:
        template, feats = frozen_features(build(), {"rows": rows_ds})
        rows_ds = feats["rows"]
        head = list(template.head.children()) if isinstance(template.head, nn.Sequential) else []
        if [type(m) for m in head] == [nn.Dropout, nn.Linear] and cfg.class_weights is None:
            out = {}  # the head alone: every fold and seed trained side by side (fit_heads)
            for kind, pairs in folds.items():
                x, y = rows_ds.x.numpy(), rows_ds.targets
                out[kind], hist = fit_heads(x, y, pairs, cfg, seeds, head[0].p, len(classes))
                hist.to_csv(Path(run_dir) / f"{name}-{kind}-history.csv", index=False)
            return out

        def build():  # a fresh head per seed (drawn after run_seeds sets the seed)
            import copy

            head = copy.deepcopy(template.head)
            for m in head.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            return type(template)(nn.Identity(), head, template.n_features, template.info)

    out = {}
    for kind, pairs in folds.items():
        hist = []
        for k, (tr, ev) in enumerate(pairs):
            runs = run_seeds(
                f"{name}-{kind}-fold{k}",
                build,
                torch.utils.data.Subset(rows_ds, tr),
                {"eval": torch.utils.data.Subset(rows_ds, ev)},
                cfg,
                run_dir,
                classes,
                seeds,
                monitor_on="eval",
            )
            logits = np.stack([r.predictions["eval"]["logits"] for r in runs])
            if kind not in out:
                out[kind] = np.full((len(runs), len(rows_ds), logits.shape[-1]), np.nan, np.float32)
            out[kind][:, ev] = logits
            hist += [r.fit.history.assign(fold=k, seed=s) for r, s in zip(runs, seeds, strict=True)]
        pd.concat(hist).to_csv(Path(run_dir) / f"{name}-{kind}-history.csv", index=False)
    return out
