"""One registry of components (models, data sets, heuristics, backbones) and the user's own ones.

A built-in is one line here (its name, the dotted path of its builder, the settings it takes) plus
a YAML file under configs/; the config is validated from this table, so no list of names is kept
anywhere else. Builders are named by dotted path and imported when first used, so this module
imports nothing of alrun beside its errors (config.py reads it without an import cycle).

A user's component is `<group>=custom <group>._target_=pkg.module.Name` (Hydra's `_target_`
convention): :func:`locate` imports it by dotted path inside each job (so every launcher works,
also those whose workers start fresh), :func:`call` calls it with the extra keys and what alrun
offers that its signature takes, and :func:`provenance` records where the code came from.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import inspect
import math
import pkgutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alrun.core.errors import AlrunError, ConfigError

CUSTOM = "custom"
KINDS = ("model", "dataset", "heuristic", "backbone")
MISSING = "???"  # OmegaConf's mandatory value, left by configs/<group>/custom.yaml until the user sets it


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Setting:
    """A setting a component takes beside alrun's own keys: a check and, for the error, what is allowed."""

    check: Callable[[Any], bool]
    allowed: str


@dataclass(frozen=True)
class Component:
    """A registered component: `target` is its builder as "package.module:attr" (None: no builder of
    its own, e.g. model `auto` or the user's `custom`); `settings` are the keys it takes."""

    kind: str
    name: str
    target: str | None
    settings: Mapping[str, Setting] = field(default_factory=dict)
    # heuristics: scorer (probs -> scores), batch (BatchBALD), stochastic (a drawn batch), selector (embeddings ->
    # a batch: CoreSet, BADGE, TypiClust, ProbCover), custom (the user's)
    role: str = ""
    summary: str = ""


_REGISTRY: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
_RESOLVED: dict[tuple[str, str], Callable[..., Any]] = {}


def register(kind: str, name: str, target: str | None, settings: Mapping[str, Setting] | None = None,
             role: str = "", summary: str = "") -> Component:
    """Add a built-in (one line per component below); returns it."""
    component = Component(kind, name, target, dict(settings or {}), role, summary)
    _REGISTRY[kind][name] = component
    return component


# ---------------------------------------------------------------- the built-ins: one line each
_BETA = {"beta": Setting(lambda v: _is_number(v) and v >= 0, "a number of at least 0")}
_MEMORY = {"max_memory_mb": Setting(lambda v: _is_number(v) and v > 0, "a positive number (MiB)")}
_POSITIVE_INT = Setting(lambda v: _is_int(v) and v >= 1, "a positive integer")
# what a selector measures distances on (alrun.acquire.acquisition.EMBEDDING_SOURCES)
_SELECTOR = {**_MEMORY, "embedding": Setting(
    lambda v: v in ("head", "input"),
    "head (the input of the model's last nn.Linear layer: what it learned) or input (the model's own input, "
    "flattened: on a frozen backbone its pretrained features)")}

register("model", "auto", None, summary="an MLP for feature vectors, the Gal CNN for images")
register("model", "mlp", "alrun.model.builders:build_mlp", summary="two hidden layers with dropout")
register("model", "gal_cnn", "alrun.model.builders:build_gal_cnn", summary="the CNN of Gal et al. (2017)")
register("model", "vgg16", "alrun.model.builders:build_vgg16", summary="torchvision's VGG-16, fine-tuned")
register("model", CUSTOM, None, summary="yours: model._target_=pkg.module.Net")

register("dataset", "digits", "alrun.data.sources:load_digits")
register("dataset", "npz", "alrun.data.sources:load_npz")
register("dataset", "cifar10", "alrun.data.cifar:load_cifar10")
register("dataset", "cifar100", "alrun.data.cifar:load_cifar100")
register("dataset", "mnist", "alrun.data.mnist:load_mnist")
register("dataset", "fashion_mnist", "alrun.data.mnist:load_fashion_mnist")
register("dataset", "imagefolder", "alrun.data.imagefolder:load_imagefolder")
register("dataset", "miotcd", "alrun.data.imagefolder:load_miotcd")
register("dataset", CUSTOM, None, summary="yours: dataset._target_=pkg.module.load")

register("heuristic", "random", "alrun.acquire.heuristics:random", role="scorer")
register("heuristic", "entropy", "alrun.acquire.heuristics:entropy", role="scorer")
register("heuristic", "bald", "alrun.acquire.heuristics:bald", role="scorer")
register("heuristic", "margin", "alrun.acquire.heuristics:margin", role="scorer")
register("heuristic", "least_confidence", "alrun.acquire.heuristics:least_confidence", role="scorer")
register("heuristic", "variation_ratios", "alrun.acquire.heuristics:variation_ratios", role="scorer")
register("heuristic", "mean_std", "alrun.acquire.heuristics:mean_std", role="scorer")
register("heuristic", "batchbald", "alrun.acquire.batch:batchbald", role="batch", settings={
    "num_samples": _POSITIVE_INT, **_MEMORY,
})
register("heuristic", "power_bald", "alrun.acquire.batch:power_bald", _BETA, role="stochastic")
register("heuristic", "power_entropy", "alrun.acquire.batch:power_entropy", _BETA, role="stochastic")
register("heuristic", "softmax_bald", "alrun.acquire.batch:softmax_bald", _BETA, role="stochastic")
register("heuristic", "softrank_bald", "alrun.acquire.batch:softrank_bald", _BETA, role="stochastic")
# selectors read the model's embeddings (alrun.acquire.embeddings) from one pass with dropout off, not MC samples
register("heuristic", "coreset", "alrun.acquire.diversity:coreset", _SELECTOR, role="selector")
register("heuristic", "badge", "alrun.acquire.diversity:badge", _SELECTOR, role="selector")
register("heuristic", "typiclust", "alrun.acquire.diversity:typiclust", role="selector", settings={
    "n_neighbours": _POSITIVE_INT, "max_clusters": _POSITIVE_INT, **_SELECTOR,
})
register("heuristic", "probcover", "alrun.acquire.diversity:probcover", role="selector", settings={
    "radius": Setting(lambda v: v is None or (_is_number(v) and v > 0), "a number above 0, or null (chosen by purity)"),
    "purity": Setting(lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    **_SELECTOR,
})
register("heuristic", CUSTOM, None, role="custom", settings={
    "_target_": Setting(lambda v: isinstance(v, str) and v not in ("", MISSING),
                        "the dotted path of your scorer, e.g. heuristic._target_=mypkg.acq.score"),
    "batch": Setting(lambda v: isinstance(v, bool), "true (a batch selector) or false (a scorer)"),
}, summary="yours: heuristic._target_=pkg.module.score")

register("backbone", "efficientnet_lite0", "alrun.model.backbones:efficientnet_lite0")
register("backbone", "resnet18", "alrun.model.backbones:resnet18")
register("backbone", "resnet50", "alrun.model.backbones:resnet50")
register("backbone", "vgg16", "alrun.model.backbones:vgg16")
# ----------------------------------------------------------------


def names(kind: str, role: str | None = None) -> tuple[str, ...]:
    """The registered names of `kind` (in registration order), optionally of one heuristic role."""
    return tuple(n for n, c in _REGISTRY[kind].items() if role is None or c.role == role)


def get(kind: str, name: str) -> Component:
    """The component `name` of `kind`; ConfigError naming the allowed ones when there is none."""
    if name not in _REGISTRY[kind]:
        raise ConfigError(f"`{kind}.name={name}` is not allowed: choose one of {', '.join(names(kind))}.")
    return _REGISTRY[kind][name]


def settings(kind: str, name: str) -> Mapping[str, Setting]:
    """The settings `name` takes beside alrun's own keys (empty when unknown)."""
    component = _REGISTRY[kind].get(name)
    return component.settings if component else {}


def builder(kind: str, name: str) -> Callable[..., Any]:
    """The built-in's builder, imported on first use."""
    key = (kind, name)
    if key not in _RESOLVED:
        target = get(kind, name).target
        if target is None:
            raise ConfigError(f"`{kind}.name={name}` has no builder of its own.")
        module, _, attr = target.partition(":")
        _RESOLVED[key] = getattr(importlib.import_module(module), attr)
    return _RESOLVED[key]


class Builders(Mapping):
    """A read-only view name -> builder of the built-ins of one kind (and role) that have a builder;
    builders are imported on first access, so modules can expose their part of the registry
    (e.g. `alrun.data.SOURCES`) without importing each other."""

    def __init__(self, kind: str, role: str | None = None) -> None:
        self.kind, self.role = kind, role

    def _names(self) -> list[str]:
        return [n for n in names(self.kind, self.role) if _REGISTRY[self.kind][n].target is not None]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._names():
            raise KeyError(name)
        return builder(self.kind, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


# ---------------------------------------------------------------- the user's components


def locate(key: str, path: Any) -> Any:
    """Import the object named by the dotted `path` (`pkg.module.Name`, or `pkg.module:Name`) given as `key`.

    Every failure is one sentence naming the key, the path and what is wrong (ConfigError).
    """
    if not isinstance(path, str) or path.strip() in ("", MISSING):
        raise ConfigError(f"`{key}` is required: give the dotted path of your class or function, "
                          f"e.g. {key}=mypkg.module.Name.")
    parts = path.replace(":", ".").split(".")
    if not all(p.isidentifier() for p in parts):
        raise ConfigError(f"`{key}={path}` is not a dotted path: write it as pkg.module.Name.")
    module = None
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise ConfigError(f"`{key}={path}` cannot be imported: importing {module_name} raised "
                              f"{type(exc).__name__}: {exc}.") from None
        except Exception as exc:  # the user's module itself fails (syntax error, missing dependency, ...)
            raise ConfigError(f"`{key}={path}` cannot be imported: importing {module_name} raised "
                              f"{type(exc).__name__}: {exc}.") from None
        break
    if module is None:
        raise ConfigError(f"`{key}={path}` cannot be imported: there is no module {parts[0]} on the Python path "
                          "(install your package, e.g. pip install -e ., or add its folder to PYTHONPATH).")
    obj = module
    for j, attr in enumerate(parts[i:]):
        if not hasattr(obj, attr):
            owner = ".".join(parts[: i + j])
            known = [a for a in dir(obj) if not a.startswith("_")]
            if hasattr(obj, "__path__"):  # a package: its submodules are candidates too
                known += [m.name for m in pkgutil.iter_modules(obj.__path__)]
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f" (did you mean {owner}.{close[0]}?)" if close else ""
            what = "module or attribute" if hasattr(obj, "__path__") else "attribute"
            raise ConfigError(f"`{key}={path}` cannot be found: {owner} has no {what} {attr}{hint}.")
        obj = getattr(obj, attr)
    if inspect.ismodule(obj):
        raise ConfigError(f"`{key}={path}` names a module, not a class or function: add the name, "
                          f"e.g. {key}={path}.Name.")
    if not callable(obj):
        raise ConfigError(f"`{key}={path}` is a {type(obj).__name__}, not a class or function.")
    return obj


def accepted(obj: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `offered` that `obj` names as parameters (a `**kwargs` catch-all does not count:
    it often forwards to a base class that would not take them)."""
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    return {k: v for k, v in offered.items() if k in parameters and parameters[k].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def call(key: str, path: str, obj: Callable[..., Any], args: Mapping[str, Any], offered: Mapping[str, Any],
         error: type[AlrunError] = ConfigError, positional: tuple = ()) -> Any:
    """`obj(*positional, **args, **<what of offered its signature takes>)`; a raise becomes one sentence.

    `args` are the user's extra keys (`++group.key=value`); they win over what alrun offers.
    """
    kwargs = {**accepted(obj, {k: v for k, v in offered.items() if k not in args}), **args}
    try:
        return obj(*positional, **kwargs)
    except AlrunError:
        raise
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in ("generator",)) or "no arguments"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        raise error(f"`{key}={path}` raised {type(exc).__name__} ({message}) when called with {shown}.") from None


def short_name(path: str, args: Mapping[str, Any] | None = None) -> str:
    """A readable name for tables: the last part of the dotted path, with the extra keys, e.g. `Net(width=64)`."""
    name = path.replace(":", ".").rsplit(".", 1)[-1]
    if args:
        name += "(" + ", ".join(f"{k}={args[k]}" for k in sorted(args)) + ")"
    return name


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_origin(obj: Any) -> dict[str, Any]:
    """Where `obj`'s code comes from: module, the installed distribution and its version when there is
    one, and always the SHA-256 of the module's file (an editable install keeps its version while its
    code changes)."""
    module_name = getattr(obj, "__module__", None) or ""
    info: dict[str, Any] = {"module": module_name}
    top = module_name.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # a broken metadata entry of some other package must not stop the job
        dists = []
    if dists:
        info["package"] = dists[0]
        try:
            info["version"] = importlib.metadata.version(dists[0])
        except importlib.metadata.PackageNotFoundError:
            pass
    elif top == "alrun":
        from alrun.core.version import __version__

        info["package"], info["version"] = "alrun", __version__
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None) if module is not None else None
    if source and Path(source).is_file():
        info["file"] = str(Path(source).resolve())
        info["sha256"] = file_sha256(Path(source))
    return info


def describe(kind: str, name: str, target: str | None = None, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The job.json record of one component: its name, dotted path, arguments and code origin."""
    if name == CUSTOM:
        obj = locate(f"{kind}._target_", target)
        record: dict[str, Any] = {"name": short_name(target or "", args), "target": target, "args": dict(args or {})}
    else:
        component = get(kind, name)
        record = {"name": name, "target": component.target, "args": dict(args or {})}
        if component.target is None:
            return record
        obj = builder(kind, name)
    record.update(code_origin(obj))
    return record


def heuristic_parts(name: str, params: Mapping[str, Any]) -> tuple[str | None, dict[str, Any], bool]:
    """A custom heuristic's (dotted path, extra keys, whether it is a batch selector) from its settings."""
    if name != CUSTOM:
        return None, dict(params), False
    extra = {k: v for k, v in params.items() if k not in ("_target_", "batch")}
    return params.get("_target_"), extra, bool(params.get("batch", False))


def chosen_name(kind: str, name: str, args: Mapping[str, Any], choices: Mapping[str, Any] | None,
                overridden: Iterable[str] = ()) -> str | None:
    """The name of a custom component chosen through a config file of the user's, for tables.

    `alrun --config-dir conf heuristic=mymargin` with conf/heuristic/mymargin.yaml holding `name: custom`
    and a `_target_` is named `mymargin` (Hydra's choice for the group, in `choices`), with the extra keys
    set on the command line (`overridden`: keys such as `heuristic.factor`), e.g. `mymargin(factor=2)`.
    None for a built-in, for `<kind>=custom`, and when the command line sets `<kind>._target_` itself.
    """
    choice = (choices or {}).get(kind)
    overridden = set(overridden)
    if name != CUSTOM or not isinstance(choice, str) or choice in ("", CUSTOM) or f"{kind}._target_" in overridden:
        return None
    shown = {k: v for k, v in args.items() if f"{kind}.{k}" in overridden}
    return choice + ("(" + ", ".join(f"{k}={shown[k]}" for k in sorted(shown)) + ")" if shown else "")


def readable_names(spec: Any, choices: Mapping[str, Any] | None = None, overridden: Iterable[str] = ()
                   ) -> dict[str, str]:
    """Names of the job's data set and heuristic for summary.csv: a built-in's name; a custom one's config
    name when chosen through a config file (see :func:`chosen_name`), else its short name."""
    target, extra, _ = heuristic_parts(spec.heuristic, spec.heuristic_params)
    d = spec.dataset
    heuristic = chosen_name("heuristic", spec.heuristic, extra, choices, overridden)
    dataset = chosen_name("dataset", d.name, d.args, choices, overridden)
    return {
        "heuristic": heuristic or (short_name(target, extra) if target else spec.heuristic),
        "dataset": dataset or (short_name(d.target or "", d.args) if d.name == CUSTOM else d.name),
    }


def job_components(spec: Any) -> dict[str, dict[str, Any]]:
    """Every component of a job (a RunSpec) as job.json records; imports the user's ones, so a wrong
    `_target_` stops the job here, before any data is read (ConfigError)."""
    m, d = spec.model, spec.dataset
    target, extra, batch = heuristic_parts(spec.heuristic, spec.heuristic_params)
    records = {
        "model": describe("model", m.name, m.target, m.args),
        "dataset": describe("dataset", d.name, d.target, d.args),
        "heuristic": describe("heuristic", spec.heuristic, target, extra),
    }
    if spec.heuristic == CUSTOM:
        records["heuristic"]["batch"] = batch
    if m.backbone is not None:
        records["backbone"] = describe("backbone", m.backbone)
    return records
