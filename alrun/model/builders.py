"""Model builders. Every built-in model is an ``nn.Sequential`` whose dropout layers draw their masks from
an explicit generator, so that it splits into a deterministic trunk and a stochastic head. A user's
model (`model=custom`, alrun.model.custom) gets the same seeded layers for any dropout kind.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from alrun.config import components
from alrun.config.components import CUSTOM
from alrun.config.schema import ModelSpec
from alrun.core.errors import ModelError
from alrun.core.seeding import derived_seed
from alrun.model.dropout import (  # noqa: F401 - where callers found them before alrun.model.dropout
    _DROPOUT_KINDS,
    SeededDropout,
    _seeded_dropouts,
    dropout_layers,
    keep_mask,
    mc_mode,
    own_forward,
    scaled_keep_mask,
    set_dropout_generator,
    stochastic_layers,
)


def mlp(in_features: int, n_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Two hidden layers with dropout after each: feature vectors or cached backbone features."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(),
        SeededDropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(),
        SeededDropout(dropout),
        nn.Linear(hidden, n_classes),
    )


def gal_cnn(in_channels: int, image_size: int, n_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """The CNN of Gal, Islam & Ghahramani (2017): conv-relu-conv-relu-pool-dropout-dense-relu-dropout-dense."""
    side = (image_size - 3 - 3) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 4), nn.ReLU(),
        nn.Conv2d(32, 32, 4), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        SeededDropout(dropout / 2),
        nn.Linear(32 * side * side, hidden), nn.ReLU(),
        SeededDropout(dropout),
        nn.Linear(hidden, n_classes),
    )


VGG16_HIDDEN = 4096  # the width of torchvision's VGG-16 classifier, the only one its ImageNet weights fit


class InputAffine(nn.Module):
    """x * scale + shift with fixed per-channel scale and shift [1, C, 1, 1] (buffers, not trained).

    In front of a pretrained network it turns the data set's standardised images into the
    normalisation its weights were trained with; deterministic, so it is part of the MC trunk.
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("shift", shift.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


class _VGGAvgPool(nn.AdaptiveAvgPool2d):
    """VGG-16's adaptive average pool to 7x7, computed as a copy where that is what it does.

    On 32 px images the pool gets [B, 512, 1, 1] and copies each value to 7x7 cells; at 224 px it
    gets 7x7 and is the identity. Computed so, its backward is a sum rather than CUDA's adaptive-pool
    kernel, which has no deterministic implementation (`deterministic=true` would warn); the same
    values either way. A subclass, so :func:`fold_for_inference` still folds it into fc6.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = tuple(self.output_size) if isinstance(self.output_size, (tuple, list)) else (self.output_size,) * 2
        if x.dim() == 4 and tuple(x.shape[-2:]) == out:
            return x
        if x.dim() == 4 and x.shape[-2:] == (1, 1) and None not in out:
            return x.expand(*x.shape[:-2], *out)
        return super().forward(x)


def vgg16(n_classes: int, spec: ModelSpec, pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
          in_channels: int = 3) -> nn.Sequential:
    """torchvision's VGG-16 as a flat Sequential; the last layer is replaced for `n_classes`.

    With `pretrained`, ImageNet weights come from torchvision's weights API (its usual cache) or
    from `weights_path` (a local state-dict file, for machines without network access).

    `model.dropout` is the p of the classifier's two dropout layers (torchvision's 0.5 at the
    default) and `model.hidden` the width of its two hidden layers (fc6, fc7). ImageNet weights
    exist for width 4096 only: with another width fc6 and fc7 are new layers (torchvision's VGG
    initialisation, from the seeded RNG) and only the convolutions keep their pretrained weights.

    With ImageNet weights the network starts with an :class:`InputAffine` that maps the data
    set's standardised images (`pixel_stats`: the (mean, std) per channel the standardisation
    removed, in [0, 1] pixel units) to ImageNet's mean and std, which the weights expect; grey
    images (`in_channels=1`) to the mean of ImageNet's three channels. Without `pixel_stats`
    (vectors, or a loader that does not record them) the data set's own standardisation stands in.
    """
    from alrun.model.backbones import IMAGENET, torchvision_net

    net = torchvision_net("vgg16", spec)
    fc6, _, _, fc7, _, _, last = list(net.classifier.children())
    if spec.hidden != VGG16_HIDDEN:
        fc6, fc7 = nn.Linear(fc6.in_features, spec.hidden), nn.Linear(spec.hidden, spec.hidden)
        for layer in (fc6, fc7):  # torchvision's VGG initialisation
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.constant_(layer.bias, 0)
    classifier = [fc6, nn.ReLU(True), SeededDropout(spec.dropout), fc7, nn.ReLU(True), SeededDropout(spec.dropout),
                  nn.Linear(spec.hidden, n_classes)]
    front: list[nn.Module] = []
    if (spec.pretrained or spec.weights_path) and pixel_stats is None:
        logging.getLogger("alrun").warning(
            "model.name=vgg16 has ImageNet weights, but the data carry no pixel statistics (feature arrays, not "
            "uint8 images), so their own standardisation stands in for ImageNet's mean and std.")
    if (spec.pretrained or spec.weights_path) and pixel_stats is not None:
        mean, std = (torch.tensor(s, dtype=torch.float32) for s in pixel_stats)
        target_mean, target_std = (torch.tensor(s, dtype=torch.float32) for s in IMAGENET)
        if in_channels == 1:  # a grey image enters as R = G = B (see vgg16_for_input)
            target_mean, target_std = target_mean.mean(dim=0, keepdim=True), target_std.mean(dim=0, keepdim=True)
        shape = (1, -1, 1, 1)
        # x = (p - mean) / std, so (p - t_mean) / t_std = x * std / t_std + (mean - t_mean) / t_std
        front.append(InputAffine((std / target_std).view(shape), ((mean - target_mean) / target_std).view(shape)))
    return nn.Sequential(*front, net.features, _VGGAvgPool(net.avgpool.output_size), nn.Flatten(), *classifier)


def vgg16_for_input(model: nn.Sequential, in_channels: int, side: int) -> nn.Sequential:
    """Fit :func:`vgg16` to grayscale and to images under 32 px (MNIST's 28x28), which its five 2x2
    poolings would shrink to nothing.

    One channel: the first convolution's weights summed over its RGB inputs, which is exactly the
    network on the gray image repeated in R, G and B (pretrained weights stay meaningful). Under 32 px:
    a bilinear upsampling to 32x32 in front, inside the deterministic trunk.
    """
    if in_channels == 1:
        features = next(m for m in model if isinstance(m, nn.Sequential))  # after an InputAffine, if any
        first = features[0]
        gray = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding)
        with torch.no_grad():
            gray.weight.copy_(first.weight.sum(dim=1, keepdim=True))
            gray.bias.copy_(first.bias)
        features[0] = gray
    if side < 32:
        model = nn.Sequential(nn.Upsample(size=(32, 32), mode="bilinear", align_corners=False), *model)
    return model


def resolve_name(spec: ModelSpec, input_shape: tuple[int, ...]) -> str:
    """`auto` picks an MLP for feature vectors and the Gal CNN for images; with a backbone, `<backbone>+mlp`;
    `custom`: a short readable name of the user's model (its class or function name and extra keys)."""
    if spec.backbone is not None:
        return f"{spec.backbone}+mlp" + ("/finetune" if spec.finetune else "")
    if spec.name == CUSTOM:
        return components.short_name(spec.target or "", spec.args)
    if spec.name != "auto":
        return spec.name
    return "mlp" if len(input_shape) == 1 else "gal_cnn"


def build_mlp(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """The registry's `mlp`: :func:`mlp` on flattened inputs."""
    in_features = int(torch.tensor(input_shape).prod())
    model = mlp(in_features, n_classes, spec.hidden, spec.dropout)
    return nn.Sequential(nn.Flatten(), *model) if len(input_shape) > 1 else model


def build_gal_cnn(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """The registry's `gal_cnn`: :func:`gal_cnn` for square images of at least 8 px."""
    channels, height, width = input_shape
    if height != width or height < 8:
        raise ModelError(f"`model.name=gal_cnn` needs square images of at least 8 px, not {height}x{width}.")
    return gal_cnn(channels, height, n_classes, spec.hidden, spec.dropout)


def build_vgg16(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int,
                pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> nn.Sequential:
    """The registry's `vgg16`: :func:`vgg16` fitted to grey or small images.

    `pixel_stats`: the data's `DataBundle.pixel_stats`, which a pretrained VGG-16 needs to bring the
    images to ImageNet's normalisation (see :func:`vgg16`).
    """
    if input_shape[0] not in (1, 3):
        raise ModelError(f"`model.name=vgg16` needs 1- or 3-channel images, not {input_shape[0]} channels.")
    return vgg16_for_input(vgg16(n_classes, spec, pixel_stats, input_shape[0]), input_shape[0],
                           min(input_shape[1:]))


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int, seed: int,
                pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> nn.Module:
    """Build the model named by `spec` for inputs of `input_shape` ([D] or [C, H, W]).

    Built-ins come from the registry (alrun.config.components); `model=custom` from the user's `_target_`
    (:func:`alrun.model.custom.build_custom_model`). Initial weights are drawn from a generator
    derived from `seed` (inside a forked RNG scope, so the global torch RNG is left as it was).
    `pixel_stats`: the data's statistics, passed to the built-in `vgg16` (ImageNet normalisation).
    """
    if spec.backbone is not None:
        return backbone_model(spec, input_shape, n_classes, seed)
    if spec.name == CUSTOM:
        from alrun.model.custom import build_custom_model

        return build_custom_model(spec, input_shape, n_classes, seed)
    name = resolve_name(spec, input_shape)
    if name != "mlp" and len(input_shape) != 3:
        raise ModelError(
            f"`model.name={name}` needs images, but the data set holds vectors of shape {list(input_shape)}."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "model/init"))
        build = components.builder("model", name)
        if name == "vgg16":  # the only built-in that converts the data's normalisation to its weights'
            return build(spec, input_shape, n_classes, pixel_stats)
        return build(spec, input_shape, n_classes)


def backbone_model(
    spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int, seed: int, trunk: nn.Module | None = None
) -> nn.Sequential:
    """The dropout MLP head on `spec.backbone`.

    Frozen (`finetune=false`), the data already holds the backbone's features [D] (see
    :func:`alrun.model.features.featurize`), so the model is the head alone. Fine-tuned, it is
    Sequential(FeatureTrunk, *head) on images, with the same initial head for the same seed
    (the head is drawn first). `trunk` replaces the registry's backbone (tests).
    """
    from alrun.model.backbones import FEATURE_DIMS, build_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "model/init"))
        if not spec.finetune:
            if len(input_shape) != 1:
                raise ModelError(f"`model.backbone={spec.backbone}` with `model.finetune=false` trains on features, "
                                 f"but got inputs of shape {list(input_shape)}: pass the data through "
                                 "alrun.model.features.featurize first.")
            return mlp(input_shape[0], n_classes, spec.hidden, spec.dropout)
        out_features = trunk.out_features if trunk is not None else FEATURE_DIMS[spec.backbone]
        head = mlp(out_features, n_classes, spec.hidden, spec.dropout)
        trunk = trunk if trunk is not None else build_backbone(spec)
    return nn.Sequential(trunk, *head)


class _PoolFlattenLinear(nn.Module):
    """Linear(Flatten(AdaptiveAvgPool2d(x))), computed with a folded weight when x is 1x1.

    The pool then only copies each channel to all oh x ow cells, so the Linear equals one on the
    channels alone whose weight sums the copies' columns: VGG-16 on 32x32 images reads a 512-input
    weight (8 MB) instead of the 25088-input one (411 MB). Exact up to float summation order.
    """

    def __init__(self, pool: nn.AdaptiveAvgPool2d, linear: nn.Linear) -> None:
        super().__init__()
        self.pool, self.linear = pool, linear
        self._folded: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2:] != (1, 1):
            return self.linear(self.pool(x).flatten(1))
        if self._folded is None:
            weight = self.linear.weight
            self._folded = weight.view(weight.shape[0], x.shape[1], -1).sum(dim=2)
        return nn.functional.linear(x.flatten(1), self._folded, self.linear.bias)


def fold_for_inference(trunk: nn.Sequential) -> nn.Sequential:
    """The trunk with each AdaptiveAvgPool2d -> Flatten -> Linear run as :class:`_PoolFlattenLinear`.

    For inference only: the folded weight is computed on the first 1x1 input and kept by the
    returned trunk, so fold again after the weights change. The model itself is left as it is.
    """
    children = list(trunk.children())
    out: list[nn.Module] = []
    i = 0
    while i < len(children):
        a, b, c = (children[i : i + 3] + [None, None])[:3]
        if (isinstance(a, nn.AdaptiveAvgPool2d) and isinstance(b, nn.Flatten) and b.start_dim == 1
                and b.end_dim == -1 and isinstance(c, nn.Linear)):
            out.append(_PoolFlattenLinear(a, c))
            i += 3
        else:
            out.append(a)
            i += 1
    return nn.Sequential(*out)


def split_at_first_dropout(model: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """(trunk, head): the children before the first one holding a dropout layer, and the rest.

    At MC inference the trunk is deterministic, so it runs once per input and only the head runs
    T times. When the first child already holds dropout the trunk is empty (T full passes).
    """
    children = list(model.children())
    cut = len(children)
    for i, child in enumerate(children):
        if any(isinstance(m, nn.Dropout) for m in child.modules()):
            cut = i
            break
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])
