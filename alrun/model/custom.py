"""The user's own network (`model=custom model._target_=pkg.module.Net`), made MC-Dropout-ready.

The factory is called with the extra keys (`++model.key=value`) and, when its signature takes
them, `n_classes`, `input_shape` and `dropout` (model.dropout). Its dropout layers become
seeded ones (alrun.model.dropout.SeededDropout), so masks come from the job's generators and BatchBALD's
consistent masks work through any module; a dropout subclass with its own forward (locked or
variational dropout) is kept as written, drawing from torch's global generator, which the loop
seeds per step. BatchNorm runs in eval mode while sampling (alrun.model.dropout.mc_mode). Whether the
samples repeat and vary is checked on the job's inputs by alrun.model.mc_probe, which also refuses a
network without dropout for heuristics that need MC samples. How MC inference runs it:

* an ``nn.Sequential``: split at its first dropout layer, as the built-ins (exact);
* `model.head=B` (optionally with `model.trunk=A`): the model's own forward runs once per item, and the
  input of submodule B is repeated T times (a forward pre-hook), so everything before B runs once; every
  dropout layer must lie inside B, and the MC probe checks that this equals T full passes;
* otherwise the whole network runs T times (exact, slower), which the log says once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from alrun.config import components
from alrun.config.schema import ModelSpec
from alrun.core.errors import ModelError
from alrun.core.seeding import derived_seed, generator
from alrun.model.dropout import _seeded_dropouts, stochastic_layers

log = logging.getLogger("alrun")

# the attribute of a model that names the submodule whose input MC inference repeats T times
MC_HEAD = "_alrun_mc_head"
_PROBE_ITEMS = 2


def mc_head(model: nn.Module) -> nn.Module | None:
    """The submodule whose input MC inference repeats T times (`model.head`), or None."""
    name = getattr(model, MC_HEAD, None)
    return model.get_submodule(name) if name else None


def repeat_at(head: nn.Module, n_samples: int) -> torch.utils.hooks.RemovableHandle:
    """Make `head` see each input row T times ([B, ...] -> [B * T, ...], T consecutive rows per item);
    remove the returned handle to undo."""

    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        repeated = x.unsqueeze(1).expand(x.shape[0], n_samples, *x.shape[1:]).reshape(-1, *x.shape[1:])
        return (repeated, *args[1:])

    return head.register_forward_pre_hook(hook)


def build_custom_model(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int, seed: int) -> nn.Module:
    """The user's model for inputs [*input_shape] and `n_classes` classes, seeded, checked and MC-ready.

    Every failure (import, a raise in the factory, a wrong return value, a trunk / head that does not fit)
    is one ModelError / ConfigError sentence naming `model._target_`.
    """
    key, path = "model._target_", spec.target or ""
    factory = components.locate(key, path)
    offered = {"n_classes": n_classes, "input_shape": tuple(input_shape), "dropout": spec.dropout}
    with torch.random.fork_rng(devices=[]):  # the user's init draws from torch's RNG: seed it, leave it as it was
        torch.manual_seed(derived_seed(seed, "model/init"))
        model = components.call(key, path, factory, spec.args, offered, error=ModelError)
    if not isinstance(model, nn.Module):
        raise ModelError(f"`{key}={path}` returned a {type(model).__name__}, but a torch.nn.Module was expected.")
    if spec.weights_path:
        load_weights(model, spec.weights_path, path)
    kept: list[str] = []
    _seeded_dropouts(model, kept)
    if kept:
        log.info("model %s: kept %s as written (a dropout subclass with its own forward); its masks come from "
                 "torch's global generator, which alrun seeds per step.", components.short_name(path, spec.args),
                 ", ".join(f"{name} ({type(model.get_submodule(name)).__name__})" for name in kept))
    # a network without dropout is refused later, by the MC probe (alrun.model.mc_probe), for heuristics that need
    # MC samples only
    probe = torch.randn((_PROBE_ITEMS, *input_shape), generator=generator(seed, "model/probe"))
    _check_output(model, probe, n_classes, path)
    if spec.head is not None:
        _set_split(model, spec, probe, n_classes, path)
    elif not isinstance(model, nn.Sequential):
        log.info("model %s: no model.trunk/model.head given, so MC-Dropout runs the whole network T times per "
                 "item (exact, slower); name the submodule holding its dropout with model.head=NAME (e.g. fc) to "
                 "run the rest once.", components.short_name(path, spec.args))
    return model


def load_weights(model: nn.Module, weights_path: str, path: str) -> None:
    """Load a local state dict into the user's model; one sentence when it does not fit."""
    file = Path(weights_path).expanduser()
    if not file.is_file():
        raise ModelError(f"`model.weights_path={weights_path}` is not a file: give a state dict saved with "
                         "torch.save(model.state_dict(), PATH).")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"`model.weights_path={weights_path}` does not fit `model._target_={path}`: "
                         f"{message}.") from None


def _forward(model: nn.Module, x: torch.Tensor, path: str, what: str) -> torch.Tensor:
    model.eval()  # deterministic: dropout off, BatchNorm on its running statistics
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        raise ModelError(f"`model._target_={path}` fails on {what} of shape {list(x.shape)}: "
                         f"{type(exc).__name__} ({message}).") from None
    finally:
        model.train()
    return out


def _check_output(model: nn.Module, probe: torch.Tensor, n_classes: int, path: str) -> None:
    """The model maps a batch [B, *input_shape] to logits [B, n_classes]."""
    out = _forward(model, probe, path, "a batch of the data")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (probe.shape[0], n_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"`model._target_={path}` returns {got} for a batch of {probe.shape[0]} items, but logits "
                         f"[{probe.shape[0]}, {n_classes}] (one per class) were expected.")


def _set_split(model: nn.Module, spec: ModelSpec, probe: torch.Tensor, n_classes: int, path: str) -> None:
    """Check `model.head` (and `model.trunk` when given) and record the head for MC inference.

    With the head alone the trunk is everything the forward runs before it (a torchvision ResNet's `fc`, a
    VGG's `classifier`); the head must run once per forward and hold every dropout layer, and the MC probe
    (alrun.model.mc_probe.check_split) checks on the job's inputs that sampling there equals T full passes.
    """
    halves = {}
    for key in ("trunk", "head") if spec.trunk is not None else ("head",):
        name = getattr(spec, key)
        try:
            halves[key] = model.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children()) or "none"
            raise ModelError(f"`model.{key}={name}` is not a submodule of `model._target_={path}` "
                             f"(its children: {children}).") from None
    trunk, head = halves.get("trunk"), halves["head"]
    if head is model:
        raise ModelError(f"`model.head={spec.head}` is the whole of `model._target_={path}`: name the submodule "
                         "holding its dropout layers (its children: "
                         f"{', '.join(n for n, _ in model.named_children()) or 'none'}).")
    outside = set(map(id, stochastic_layers(model))) - set(map(id, stochastic_layers(head)))
    if outside:
        where = "in model.trunk" if trunk is not None and stochastic_layers(trunk) else "outside model.head"
        raise ModelError(f"`model.head={spec.head}` must hold every dropout layer of `model._target_={path}`, but "
                         f"{len(outside)} lie {where}: MC sampling repeats only the head's input.")
    order: list[str] = []
    handles = [head.register_forward_pre_hook(lambda *_: order.append("head"))]
    if trunk is not None:
        handles.append(trunk.register_forward_hook(lambda *_: order.append("trunk")))
    try:
        _forward(model, probe, path, "a batch of the data")
    finally:
        for handle in handles:
            handle.remove()
    if trunk is None and order != ["head"]:
        raise ModelError(f"`model.head={spec.head}` must run once in the forward of `model._target_={path}`, but "
                         f"it ran {len(order)} times: name the one submodule that holds every dropout layer.")
    if trunk is not None and order != ["trunk", "head"]:
        raise ModelError(f"`model.trunk={spec.trunk}` and `model.head={spec.head}` must each run once, the trunk "
                         f"first, in the forward of `model._target_={path}`, but they ran as {order or 'never'}.")
    handle = repeat_at(head, 2)
    try:
        out = _forward(model, probe, path, "a batch with the head's input repeated")
    finally:
        handle.remove()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (probe.shape[0] * 2, n_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"`model.head={spec.head}`: with its input repeated T times the forward of "
                         f"`model._target_={path}` returns {got}, not [B * T, {n_classes}], so it cannot be "
                         "sampled there; move the reshaping into the head or drop model.trunk/head.")
    setattr(model, MC_HEAD, spec.head)
