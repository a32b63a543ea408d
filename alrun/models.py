"""Model builders. Every built-in model is an ``nn.Sequential`` whose dropout layers draw their masks from
an explicit generator, so that it splits into a deterministic trunk and a stochastic head. A user's
model (`model=custom`, alrun.custom_model) gets the same seeded layers for any dropout kind.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from alrun import components
from alrun.components import CUSTOM
from alrun.config import ModelSpec
from alrun.errors import ModelError
from alrun.seeding import derived_seed


def keep_mask(
    shape: tuple[int, ...],
    keep: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """A dropout keep-mask of `shape`: 1 with probability `keep`, else 0.

    On the CPU each entry is an integer draw compared with a threshold, several draws per 64-bit
    random word: 8-bit draws when keep is a multiple of 1/256 (p = 0.5, 0.25 ...: exact), else
    16-bit draws, which round keep to a multiple of 2**-16 (within 8e-6). Several times faster
    than ``bernoulli_`` (one double per entry), which made mask drawing the largest cost of MC
    inference on small heads. On other devices ``bernoulli_``, which is fast there.
    `out`: a flat buffer of at least that many elements (and `dtype`) to write the mask into.
    """
    numel = math.prod(shape)
    mask = torch.empty(shape, dtype=dtype, device=device) if out is None else out.view(-1)[:numel].view(shape)
    if torch.device(device).type != "cpu":
        return mask.bernoulli_(keep, generator=generator)
    if float(keep * 256).is_integer():
        draw_dtype, per_word, threshold, top = torch.uint8, 8, int(keep * 256), 255  # draws uniform on [0, 255]
    else:
        draw_dtype, per_word, threshold, top = torch.int16, 4, round(keep * 65536) - 32768, 32767  # [-32768, 32767]
    if threshold > top:
        return mask.fill_(1.0)
    words = torch.empty(-(-numel // per_word), dtype=torch.int64).random_(-(2**63), None, generator=generator)
    draws = words.view(draw_dtype)[:numel].view(shape)
    return torch.lt(draws, threshold, out=mask)


def scaled_keep_mask(
    shape: tuple[int, ...], keep: float, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """An inverted-dropout mask of `shape`: 1/keep with probability `keep`, else 0 (see :func:`keep_mask`)."""
    return keep_mask(shape, keep, generator, dtype, device).mul_(1.0 / keep)


class SeededDropout(nn.Dropout):
    """Dropout whose masks come from `self.generator` (None: torch's global generator).

    With `shared_mask_samples = T` set, the input is read as [B * T, ...] (T consecutive rows per
    item) and one mask per sample t is shared by every item: "consistent" MC dropout. The masks
    are drawn on the first call and reused until :meth:`reset_shared_masks`, so a whole pool
    processed in chunks sees the same T masks.
    """

    def __init__(self, p: float = 0.5, channelwise: bool = False, alpha: bool = False) -> None:
        super().__init__(p)
        self.generator: torch.Generator | None = None
        self.shared_mask_samples: int | None = None
        self._shared_masks: torch.Tensor | None = None
        # Dropout1d/2d/3d and FeatureAlphaDropout: one draw per (item, channel), broadcast over the rest
        self.channelwise = channelwise
        # AlphaDropout: dropped units take SELU's negative saturation, then an affine map keeps mean and variance
        self.alpha = alpha

    def extra_repr(self) -> str:
        return super().extra_repr() + (", channelwise=True" if self.channelwise else "") + (
            ", alpha=True" if self.alpha else "")

    def _item_mask_shape(self, item: tuple[int, ...]) -> tuple[int, ...]:
        """The mask's shape for one item of shape `item`: all of it, or its channels (dim 0) alone."""
        return (item[0], *([1] * (len(item) - 1))) if self.channelwise and len(item) > 1 else item

    def _combine(self, x: torch.Tensor, mask01: torch.Tensor) -> torch.Tensor:
        """x with the 0/1 keep-mask applied (broadcast) as torch's dropout of this kind applies it."""
        keep = 1.0 - self.p
        if self.alpha:  # the same affine map as torch's alpha_dropout
            a = 1.0 / math.sqrt((_SELU_SATURATION**2 * self.p + 1.0) * keep)
            return (x * mask01 + _SELU_SATURATION * (mask01 - 1.0 + self.p)) * a
        return x * mask01 * (1.0 / keep)

    def _general_forward(self, x: torch.Tensor) -> torch.Tensor:
        """forward for channel-wise and alpha dropout (element-wise dropout keeps its tuned paths)."""
        if self.shared_mask_samples is None:
            mask = keep_mask((x.shape[0], *self._item_mask_shape(tuple(x.shape[1:]))), 1.0 - self.p,
                             self.generator, x.dtype, x.device)
            return self._combine(x, mask)
        t = self.shared_mask_samples
        x_btd = x.view(-1, t, *x.shape[1:])
        if self._shared_masks is None:  # [1, T, ...]: one mask per sample t, shared by every item
            self._shared_masks = keep_mask((1, t, *self._item_mask_shape(tuple(x.shape[1:]))), 1.0 - self.p,
                                           self.generator, x.dtype, x.device)
        return self._combine(x_btd, self._shared_masks).view_as(x)

    def reset_shared_masks(self) -> None:
        self._shared_masks = None

    def _mask(self, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        return scaled_keep_mask(shape, 1.0 - self.p, self.generator, x.dtype, x.device)

    def _shared(self, t: int, x_item_shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        """The T shared masks [1, T, ...], drawn on first use."""
        if self._shared_masks is None:
            self._shared_masks = self._mask((1, t, *x_item_shape), x)
        return self._shared_masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.channelwise or self.alpha:
            return self._general_forward(x)
        if self.shared_mask_samples is None:
            return x * self._mask(tuple(x.shape), x)
        t = self.shared_mask_samples
        x_btd = x.view(-1, t, *x.shape[1:])
        return (x_btd * self._shared(t, tuple(x.shape[1:]), x)).view_as(x)

    def forward_repeated(self, x: torch.Tensor, n_samples: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, ...] -> [B * T, ...]: `forward` of x repeated T times (T consecutive rows per item).

        The same masks and values as repeating first, without materialising the repeated input:
        the mask is drawn at the output's size and multiplied by the broadcast input. `out`: a flat
        buffer (at least B * T * item elements, x's dtype and device) the result is written into,
        so that a caller can reuse one across chunks; not used while autograd records.
        """
        b, item = x.shape[0], tuple(x.shape[1:])
        shape = (b, n_samples, *item)
        if not self.training or self.p == 0.0 or self.channelwise or self.alpha:
            repeated = x.unsqueeze(1).expand(shape).reshape(b * n_samples, *item)
            return self.forward(repeated) if self.training and self.p > 0.0 else repeated
        if torch.is_grad_enabled() and x.requires_grad:
            masks = self._shared(n_samples, item, x) if self.shared_mask_samples is not None else self._mask(shape, x)
            return (x.unsqueeze(1) * masks).view(b * n_samples, *item)
        if self.shared_mask_samples is not None:
            target = torch.empty(shape, dtype=x.dtype, device=x.device) if out is None else \
                out.view(-1)[: math.prod(shape)].view(shape)
            result = torch.mul(x.unsqueeze(1), self._shared(n_samples, item, x), out=target)
        else:
            keep = 1.0 - self.p
            mask = keep_mask(shape, keep, self.generator, x.dtype, x.device, out=out)
            result = mask.mul_(x.unsqueeze(1) * (1.0 / keep))  # m * (x / keep): the same values as x * (m / keep)
        return result.view(b * n_samples, *item)


# torch's dropout kinds -> (channelwise, alpha) of the SeededDropout that replaces them
_DROPOUT_KINDS: dict[type, tuple[bool, bool]] = {
    nn.Dropout: (False, False),
    nn.Dropout1d: (True, False),
    nn.Dropout2d: (True, False),
    nn.Dropout3d: (True, False),
    nn.AlphaDropout: (False, True),
    nn.FeatureAlphaDropout: (True, True),
}
_SELU_SATURATION = 1.7580993408473766  # -SELU's scale * alpha, as in torch's alpha_dropout


def own_forward(layer: nn.Module) -> bool:
    """Whether a dropout layer is a subclass of a torch dropout kind with a forward of its own (a locked or
    variational dropout, say), which a SeededDropout would not reproduce."""
    kind = next((k for k in type(layer).__mro__ if k in _DROPOUT_KINDS), None)
    return kind is not None and type(layer).forward is not kind.forward


def _seeded_dropouts(module: nn.Module, kept: list[str] | None = None, prefix: str = "") -> nn.Module:
    """Replace every dropout layer inside `module` (nn.Dropout, Dropout1d/2d/3d, AlphaDropout,
    FeatureAlphaDropout, and their subclasses that keep torch's forward) by a SeededDropout of the same
    kind and p (in place). A subclass with a forward of its own is kept as written (its masks come from
    torch's global generator, which the loop seeds per step; see alrun.seeding.seed_global), and its
    dotted name is appended to `kept`."""
    for name, child in module.named_children():
        kind = next((k for k in type(child).__mro__ if k in _DROPOUT_KINDS), None)
        if kind is not None and not isinstance(child, SeededDropout) and own_forward(child):
            if kept is not None:
                kept.append(prefix + name)
        elif kind is not None and not isinstance(child, SeededDropout):
            channelwise, alpha = _DROPOUT_KINDS[kind]
            setattr(module, name, SeededDropout(child.p, channelwise=channelwise, alpha=alpha))
        else:
            _seeded_dropouts(child, kept, f"{prefix}{name}.")
    return module


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
    from alrun.backbones import IMAGENET, torchvision_net

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

    Built-ins come from the registry (alrun.components); `model=custom` from the user's `_target_`
    (:func:`alrun.custom_model.build_custom_model`). Initial weights are drawn from a generator
    derived from `seed` (inside a forked RNG scope, so the global torch RNG is left as it was).
    `pixel_stats`: the data's statistics, passed to the built-in `vgg16` (ImageNet normalisation).
    """
    if spec.backbone is not None:
        return backbone_model(spec, input_shape, n_classes, seed)
    if spec.name == CUSTOM:
        from alrun.custom_model import build_custom_model

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
    :func:`alrun.features.featurize`), so the model is the head alone. Fine-tuned, it is
    Sequential(FeatureTrunk, *head) on images, with the same initial head for the same seed
    (the head is drawn first). `trunk` replaces the registry's backbone (tests).
    """
    from alrun.backbones import FEATURE_DIMS, build_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "model/init"))
        if not spec.finetune:
            if len(input_shape) != 1:
                raise ModelError(f"`model.backbone={spec.backbone}` with `model.finetune=false` trains on features, "
                                 f"but got inputs of shape {list(input_shape)}: pass the data through "
                                 "alrun.features.featurize first.")
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


def dropout_layers(model: nn.Module) -> list[SeededDropout]:
    """Every SeededDropout inside `model`."""
    return [m for m in model.modules() if isinstance(m, SeededDropout)]


def stochastic_layers(model: nn.Module) -> list[nn.Dropout]:
    """Every dropout module inside `model`: alrun's seeded ones and subclasses kept with their own forward."""
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


def set_dropout_generator(model: nn.Module, gen: torch.Generator | None) -> None:
    for layer in dropout_layers(model):
        layer.generator = gen


def mc_mode(model: nn.Module) -> None:
    """Eval mode (BatchNorm uses running statistics) with dropout layers active."""
    model.eval()
    for layer in model.modules():
        if isinstance(layer, nn.Dropout):
            layer.train()
