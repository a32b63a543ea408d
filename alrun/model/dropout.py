"""alrun's seeded dropout: masks drawn from an explicit generator, so that MC samples are reproducible and
a model splits into a deterministic trunk and a stochastic head; the helpers that find, replace and switch
dropout layers. A leaf of alrun.model (torch only)."""

from __future__ import annotations

import math

import torch
from torch import nn


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
    torch's global generator, which the loop seeds per step; see alrun.core.seeding.seed_global), and its
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
