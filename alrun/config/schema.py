"""The run's schema as plain dataclasses, built from a mapping and validated before any work.

Nothing here imports Hydra: the CLI turns the composed config into a plain dict and calls
:func:`run_spec_from_dict`, and library users can build a :class:`RunSpec` directly.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any

from alrun.config import components
from alrun.config.components import CUSTOM
from alrun.core.errors import ConfigError

# the names come from the one registry (alrun.config.components); `custom` is the user's own (`_target_`)
HEURISTICS = components.names("heuristic")
# the settings a heuristic takes beside `name` (configs/heuristic/<name>.yaml): key -> (check, what is allowed)
HEURISTIC_PARAMS: dict[str, dict[str, tuple]] = {
    name: {key: (s.check, s.allowed) for key, s in components.settings("heuristic", name).items()}
    for name in HEURISTICS if components.settings("heuristic", name)
}
MODELS = components.names("model")
BACKBONES = components.names("backbone")
DATASETS = components.names("dataset")
MISSING_VALUE = components.MISSING
OPTIMIZERS = ("adam", "sgd")
EPOCH_SCHEDULES = ("fixed", "min_updates", "early_stopping")
STOP_ON = ("nll", "accuracy")
# heuristics that score the disagreement between MC-Dropout samples: with one sample, or no dropout, every
# candidate scores the same (0), and the "acquisition" is a tie-break
NEEDS_MC_SAMPLES = ("bald", "variation_ratios", "mean_std", "batchbald", "power_bald", "softmax_bald",
                    "softrank_bald")


@dataclass(frozen=True)
class DatasetSpec:
    """Which data to read and how much of it to keep."""

    name: str = "digits"
    root: str | None = None
    download: bool = False
    max_train: int | None = None  # cap on the pool (seeded subsample, same for every seed)
    max_test: int | None = None
    image_size: int | None = None  # resize images to this square size (ImageFolder, MIO-TCD)
    test_fraction: float = 0.25  # held-out share when the data set has no test split
    cache: bool = True  # cache decoded image arrays beside the data
    cache_dir: str | None = None  # where that cache goes when the data folder is not writable
    # `dataset=custom`: the dotted path of the user's data function or class (`_target_`) and its extra keys
    target: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """The network: a deterministic trunk and a head that holds the dropout layers."""

    name: str = "auto"
    dropout: float = 0.5
    hidden: int = 128
    pretrained: bool = False
    weights_path: str | None = None
    # a pretrained image trunk (alrun.model.backbones) under an MLP head; None: the network of `name` alone
    backbone: str | None = None
    finetune: bool = False  # with a backbone: train it too, instead of the head alone on cached features
    feature_size: int = 128  # the backbone's input size in px (images are resized inside feature extraction)
    feature_cache: str | None = None  # folder for the frozen backbone's features (None: computed, not stored)
    # `model=custom`: the dotted path of the user's nn.Module class or factory (`_target_`) and its extra keys
    target: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    # a custom non-Sequential model: the submodule holding every dropout layer (`head`; the trunk is everything
    # that runs before it, or the submodule `trunk` names), so MC sampling runs the trunk once and the head T
    # times (None: T full passes)
    trunk: str | None = None
    head: str | None = None


@dataclass(frozen=True)
class TrainSpec:
    """How the model is fitted at every step (from its initial weights)."""

    epochs: int = 50
    schedule: str = "fixed"  # fixed: `epochs` epochs; min_updates: at least `min_updates` gradient steps
    min_updates: int = 0
    # early_stopping: at most `epochs` epochs (or enough for `min_updates` steps), stopped `patience` epochs
    # after the best validation score but not before `min_updates` steps; the best epoch's weights are kept (never
    # those of an epoch before `min_updates` steps); the validation set (`validation_size` labels, drawn once
    # per seed) is never acquired
    validation_size: int = 0
    patience: int = 10
    # early_stopping: the validation score watched, "nll" (lower is better) or "accuracy" (the BatchBALD code's)
    stop_on: str = "nll"
    # the length of an epoch: null, one pass over the labelled set (its size in samples); N, N samples drawn
    # with replacement from the labelled set, so that `epochs`, `min_updates` and `patience` mean the same
    # amount of training at 20 labels as at 20,000 (the BatchBALD code's 5,056)
    epoch_samples: int | None = None
    # early_stopping only: score the validation set every `eval_every` gradient steps instead of after every epoch;
    # `patience` then counts those checks, and epochs_trained / epochs_run in steps.csv count checks too
    eval_every: int | None = None
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0

    @property
    def n_validation(self) -> int:
        """Labels held out for validation: `validation_size` under early_stopping, none under the other schedules
        (so `train.schedule=fixed` alone turns a scale's early stopping off)."""
        return self.validation_size if self.schedule == "early_stopping" else 0


@dataclass(frozen=True)
class RunSpec:
    """Everything one active-learning job needs; derived from `seed`, every random choice is fixed."""

    seed: int = 0
    heuristic: str = "bald"
    heuristic_params: dict[str, Any] = field(default_factory=dict)
    query_size: int = 20
    initial_labelled: int = 20
    initial_balanced: bool = False  # the initial labels: equal counts per class (by the oracle's labels)
    max_labelled: int = 200
    pool_fraction: float = 1.0
    mc_samples: int = 20
    label_noise: float = 0.0  # the paper's lambda: share of training labels corrupted
    imbalance_classes: int = 0  # the paper's Delta: classes that keep only `imbalance_keep` of their items
    imbalance_keep: float = 0.25
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    device: str = "auto"
    amp: bool = True  # mixed precision on GPU only
    inference_batch_size: int = 512
    deterministic: bool = False  # torch's deterministic algorithms and cuDNN settings (bit-for-bit GPU runs)
    # torch's CPU threads for the job: a count, or "auto" (the cores the launcher gives the job, alrun.launch.threads)
    threads: int | str = "auto"

    def __post_init__(self) -> None:
        validate(self)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"`{key}={value}` is not allowed: {allowed}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(spec: RunSpec) -> None:
    """Check every value that does not depend on the data; raise ConfigError with one sentence."""
    _check(_is_int(spec.seed), "seed", spec.seed, "it must be an integer")
    _check(spec.heuristic in HEURISTICS, "heuristic", spec.heuristic, f"choose one of {', '.join(HEURISTICS)}")
    allowed = HEURISTIC_PARAMS.get(spec.heuristic, {})
    for key, value in spec.heuristic_params.items():
        # a custom heuristic takes any extra key (passed to it); alrun's own keys are still checked
        _check(key in allowed or spec.heuristic == CUSTOM, f"heuristic.{key}", value,
               f"{spec.heuristic} takes {', '.join(allowed) if allowed else 'no settings'}")
        if key in allowed:
            _check(allowed[key][0](value), f"heuristic.{key}", value, f"it must be {allowed[key][1]}")
    if spec.heuristic == CUSTOM:
        _check("_target_" in spec.heuristic_params and allowed["_target_"][0](spec.heuristic_params["_target_"]),
               "heuristic._target_", spec.heuristic_params.get("_target_", MISSING_VALUE),
               f"heuristic=custom needs {allowed['_target_'][1]}")
    m = spec.model
    _check_target("model", m)
    _check_target("dataset", spec.dataset)
    _check(m.name == CUSTOM or (m.trunk is None and m.head is None), "model.trunk", m.trunk,
           "model.trunk and model.head name the halves of a custom model (model=custom)")
    # the head alone splits the network: the trunk is whatever runs before it; a trunk alone says nothing of
    # where the dropout starts
    _check(m.trunk is None or m.head is not None, "model.trunk", m.trunk,
           "name the head that holds the dropout layers instead, e.g. model.head=fc (the trunk is everything "
           "that runs before it)")
    for key in ("trunk", "head"):
        value = getattr(m, key)
        _check(value is None or (isinstance(value, str) and all(p.isidentifier() for p in value.split("."))),
               f"model.{key}", value, "it must be the name of a submodule, e.g. features, or null")
    _check(_is_int(spec.query_size) and spec.query_size >= 1, "query_size", spec.query_size,
           "it must be an integer of at least 1")
    _check(_is_int(spec.initial_labelled) and spec.initial_labelled >= 1, "initial_labelled",
           spec.initial_labelled, "it must be an integer of at least 1")
    _check(_is_int(spec.max_labelled) and spec.max_labelled >= spec.initial_labelled, "max_labelled",
           spec.max_labelled, f"it must be an integer of at least initial_labelled ({spec.initial_labelled})")
    _check(isinstance(spec.pool_fraction, (int, float)) and 0 < spec.pool_fraction <= 1, "pool_fraction",
           spec.pool_fraction, "it must lie in (0, 1]")
    _check(_is_int(spec.mc_samples) and spec.mc_samples >= 1, "mc_samples", spec.mc_samples,
           "it must be an integer of at least 1")
    _check(spec.heuristic not in NEEDS_MC_SAMPLES or spec.mc_samples >= 2, "mc_samples", spec.mc_samples,
           f"{spec.heuristic} scores the disagreement between MC-Dropout samples, so it needs at least 2")
    _check(isinstance(spec.initial_balanced, bool), "initial_balanced", spec.initial_balanced,
           "it must be true or false")
    _check(isinstance(spec.label_noise, (int, float)) and 0 <= spec.label_noise < 1, "lambda",
           spec.label_noise, "the share of corrupted labels must lie in [0, 1)")
    _check(_is_int(spec.imbalance_classes) and spec.imbalance_classes >= 0, "delta", spec.imbalance_classes,
           "it must be a non-negative integer (the number of reduced classes)")
    _check(isinstance(spec.imbalance_keep, (int, float)) and 0 < spec.imbalance_keep <= 1,
           "imbalance_keep", spec.imbalance_keep, "it must lie in (0, 1]")
    _check(spec.device == "auto" or spec.device == "cpu" or spec.device.startswith("cuda"), "device",
           spec.device, "use auto, cpu, cuda or cuda:N")
    _check(_is_int(spec.inference_batch_size) and spec.inference_batch_size >= 1, "inference_batch_size",
           spec.inference_batch_size, "it must be a positive integer")
    _check(isinstance(spec.deterministic, bool), "deterministic", spec.deterministic, "it must be true or false")
    _check(spec.threads == "auto" or (_is_int(spec.threads) and spec.threads >= 1), "threads", spec.threads,
           "use auto or a number of threads of at least 1")
    m, t, d = spec.model, spec.train, spec.dataset
    _check(m.name in MODELS, "model.name", m.name, f"choose one of {', '.join(MODELS)}")
    _check(isinstance(m.dropout, (int, float)) and 0 <= m.dropout < 1, "model.dropout", m.dropout,
           "it must lie in [0, 1)")
    _check(spec.heuristic not in NEEDS_MC_SAMPLES or m.dropout > 0, "model.dropout", m.dropout,
           f"{spec.heuristic} scores the disagreement between MC-Dropout samples, which needs dropout above 0")
    _check(_is_int(m.hidden) and m.hidden >= 1, "model.hidden", m.hidden, "it must be a positive integer")
    _check(m.backbone is None or m.backbone in BACKBONES, "model.backbone", m.backbone,
           f"choose one of {', '.join(BACKBONES)} or null")
    _check(m.backbone is None or m.name in ("auto", "mlp"), "model.name", m.name,
           "with `model.backbone` set the head is an MLP, so use mlp or auto")
    _check(isinstance(m.finetune, bool), "model.finetune", m.finetune, "it must be true or false")
    _check(_is_int(m.feature_size) and m.feature_size >= 32, "model.feature_size", m.feature_size,
           "it must be an integer of at least 32 (px)")
    _check(_is_int(t.epochs) and t.epochs >= 1, "epochs", t.epochs, "it must be an integer of at least 1")
    _check(t.schedule in EPOCH_SCHEDULES, "train.schedule", t.schedule,
           f"choose one of {', '.join(EPOCH_SCHEDULES)}")
    _check(_is_int(t.min_updates) and t.min_updates >= 0, "train.min_updates", t.min_updates,
           "it must be a non-negative integer")
    _check(_is_int(t.validation_size) and t.validation_size >= 0, "train.validation_size", t.validation_size,
           "it must be a non-negative integer")
    _check(t.schedule != "early_stopping" or t.validation_size >= 1, "train.validation_size", t.validation_size,
           "train.schedule=early_stopping needs a validation set of at least 1 label")
    _check(_is_int(t.patience) and t.patience >= 1, "train.patience", t.patience,
           "it must be an integer of at least 1 (epochs)")
    _check(t.stop_on in STOP_ON, "train.stop_on", t.stop_on, f"choose one of {', '.join(STOP_ON)}")
    _check(t.epoch_samples is None or (_is_int(t.epoch_samples) and t.epoch_samples >= 1), "train.epoch_samples",
           t.epoch_samples, "it must be a positive integer (samples drawn per epoch) or null (one pass over the "
           "labelled set)")
    _check(t.eval_every is None or (_is_int(t.eval_every) and t.eval_every >= 1), "train.eval_every", t.eval_every,
           "it must be a positive integer (gradient steps between validation checks) or null (after every epoch)")
    _check(_is_int(t.batch_size) and t.batch_size >= 1, "train.batch_size", t.batch_size,
           "it must be a positive integer")
    _check(t.optimizer in OPTIMIZERS, "train.optimizer", t.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
    _check(isinstance(t.lr, (int, float)) and t.lr > 0 and math.isfinite(t.lr), "train.lr", t.lr,
           "it must be a positive number")
    for key in ("max_train", "max_test", "image_size"):
        value = getattr(d, key)
        _check(value is None or (_is_int(value) and value >= 1), f"dataset.{key}", value,
               "it must be a positive integer or null")
    _check(0 < d.test_fraction < 1, "dataset.test_fraction", d.test_fraction, "it must lie in (0, 1)")
    _check(d.name in DATASETS, "dataset.name", d.name, f"choose one of {', '.join(DATASETS)}")


def _check_target(group: str, spec: Any) -> None:
    """`_target_` and extra keys belong to `<group>=custom`, which needs a `_target_`."""
    if spec.name == CUSTOM:
        _check(isinstance(spec.target, str) and spec.target not in ("", MISSING_VALUE), f"{group}._target_",
               spec.target if spec.target is not None else MISSING_VALUE,
               f"{group}=custom needs the dotted path of your class or function, e.g. {group}._target_="
               + ("mypkg.nets.Net" if group == "model" else "mypkg.data.load"))
    else:
        _check(spec.target is None, f"{group}._target_", spec.target,
               f"it is read only with {group}=custom (now {group}.name={spec.name})")


def check_against_data(spec: RunSpec, n_pool: int, n_classes: int) -> None:
    """Checks that need the data set's size; still before any training."""
    n_validation = spec.train.n_validation
    _check(spec.initial_labelled + n_validation < n_pool, "initial_labelled", spec.initial_labelled,
           f"the pool holds only {n_pool} items" + (f", {n_validation} of them for validation" if n_validation else ""))
    _check(spec.query_size <= n_pool - spec.initial_labelled - n_validation, "query_size", spec.query_size,
           f"the pool has {n_pool - spec.initial_labelled - n_validation} unlabelled items after the initial labels"
           + (" and the validation set" if n_validation else ""))
    _check(spec.imbalance_classes <= n_classes, "delta", spec.imbalance_classes,
           f"the data set has {n_classes} classes")


def _with_target(values: dict[str, Any], cls: type) -> dict[str, Any]:
    """A group's config with `_target_` as `target`; with `name=custom` the keys alrun does not know
    (added with `++group.key=value`) become `args`, passed to the user's component."""
    values = dict(values)
    if "_target_" in values:
        values["target"] = values.pop("_target_")
    if values.get("name") == CUSTOM:
        known = {f.name for f in fields(cls)}
        extra = {k: values.pop(k) for k in list(values) if k not in known}
        values["args"] = {**(values.get("args") or {}), **extra}
    return values


# RunSpec's fields as the config names them (the paper's lambda and delta); fields filled from a group's other
# keys (heuristic_params, args, target) are no setting a user types
CONFIG_NAMES = {"label_noise": "lambda", "imbalance_classes": "delta", "target": "_target_", "heuristic_params": None,
                "args": None}
# root keys of the config that steer the CLI and the report, not the job (popped before RunSpec is built)
NOT_JOB_KEYS = ("study", "report", "scale_name", "data_dir", "grid", "pool_limit", "tracker")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        names = {CONFIG_NAMES.get(k, k) for k in known} - {None}
        if cls is RunSpec:
            names |= {"epochs", *NOT_JOB_KEYS}
        key = unknown[0]
        near = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
        hint = f"did you mean `{prefix}{near[0]}`?" if near else f"use one of {', '.join(sorted(names))}."
        raise ConfigError(f"unknown setting `{prefix}{key}`: {hint}")
    return cls(**values)


def run_spec_from_dict(cfg: dict[str, Any]) -> RunSpec:
    """Build a validated RunSpec from the composed config (a plain nested dict).

    The config's user-facing names follow the paper: `lambda` is the label-noise share, `delta`
    the number of reduced classes, `epochs` the training length; `heuristic` is a mapping with a
    `name` and optional parameters.
    """
    cfg = dict(cfg)
    heuristic = dict(cfg.pop("heuristic", {}) or {})
    train = dict(cfg.pop("train", {}) or {})
    if "epochs" in cfg:
        train["epochs"] = cfg.pop("epochs")
    dataset = dict(cfg.pop("dataset", {}) or {})
    model = dict(cfg.pop("model", {}) or {})
    top = {
        "seed": cfg.pop("seed", 0),
        "heuristic": heuristic.pop("name", "bald"),
        "heuristic_params": heuristic,
        "label_noise": cfg.pop("lambda", 0.0),
        "imbalance_classes": cfg.pop("delta", 0),
    }
    # keys that steer the CLI and the report, not the job
    for key in NOT_JOB_KEYS:
        cfg.pop(key, None)
    top.update(cfg)
    return _build(
        RunSpec,
        {
            **top,
            "dataset": _build(DatasetSpec, _with_target(dataset, DatasetSpec), "dataset."),
            "model": _build(ModelSpec, _with_target(model, ModelSpec), "model."),
            "train": _build(TrainSpec, train, "train."),
        },
        "",
    )
