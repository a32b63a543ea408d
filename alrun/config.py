"""The run's schema as plain dataclasses, built from a mapping and validated before any work.

Nothing here imports Hydra: the CLI turns the composed config into a plain dict and calls
:func:`run_spec_from_dict`, and library users can build a :class:`RunSpec` directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from alrun.errors import ConfigError

HEURISTICS = (
    "random",
    "entropy",
    "bald",
    "margin",
    "least_confidence",
    "variation_ratios",
    "mean_std",
    # batch-aware (alrun.batch)
    "batchbald",
    "power_bald",
    "power_entropy",
    "softmax_bald",
    "softrank_bald",
)
# the settings a heuristic takes beside `name` (configs/heuristic/<name>.yaml): key -> (check, what is allowed)
_BETA = {"beta": (lambda v: _is_number(v) and v >= 0, "a number of at least 0")}
HEURISTIC_PARAMS: dict[str, dict[str, tuple]] = {
    "batchbald": {
        "num_samples": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
        "max_memory_mb": (lambda v: _is_number(v) and v > 0, "a positive number (MiB)"),
    },
    "power_bald": _BETA,
    "power_entropy": _BETA,
    "softmax_bald": _BETA,
    "softrank_bald": _BETA,
}
MODELS = ("auto", "mlp", "gal_cnn", "vgg16")
BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "vgg16")  # alrun.backbones.BUILDERS
OPTIMIZERS = ("adam", "sgd")
EPOCH_SCHEDULES = ("fixed", "min_updates")


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


@dataclass(frozen=True)
class ModelSpec:
    """The network: a deterministic trunk and a head that holds the dropout layers."""

    name: str = "auto"
    dropout: float = 0.5
    hidden: int = 128
    pretrained: bool = False
    weights_path: str | None = None
    # a pretrained image trunk (alrun.backbones) under an MLP head; None: the network of `name` alone
    backbone: str | None = None
    finetune: bool = False  # with a backbone: train it too, instead of the head alone on cached features
    feature_size: int = 128  # the backbone's input size in px (images are resized inside feature extraction)
    feature_cache: str | None = None  # folder for the frozen backbone's features (None: computed, not stored)


@dataclass(frozen=True)
class TrainSpec:
    """How the model is fitted at every step (from its initial weights)."""

    epochs: int = 50
    schedule: str = "fixed"  # fixed: `epochs` epochs; min_updates: at least `min_updates` gradient steps
    min_updates: int = 0
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    """Everything one active-learning job needs; derived from `seed`, every random choice is fixed."""

    seed: int = 0
    heuristic: str = "bald"
    heuristic_params: dict[str, Any] = field(default_factory=dict)
    query_size: int = 20
    initial_labelled: int = 20
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
        _check(key in allowed, f"heuristic.{key}", value,
               f"{spec.heuristic} takes {', '.join(allowed) if allowed else 'no settings'}")
        _check(allowed[key][0](value), f"heuristic.{key}", value, f"it must be {allowed[key][1]}")
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
    m, t, d = spec.model, spec.train, spec.dataset
    _check(m.name in MODELS, "model.name", m.name, f"choose one of {', '.join(MODELS)}")
    _check(isinstance(m.dropout, (int, float)) and 0 <= m.dropout < 1, "model.dropout", m.dropout,
           "it must lie in [0, 1)")
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


def check_against_data(spec: RunSpec, n_pool: int, n_classes: int) -> None:
    """Checks that need the data set's size; still before any training."""
    _check(spec.initial_labelled < n_pool, "initial_labelled", spec.initial_labelled,
           f"the pool holds only {n_pool} items")
    _check(spec.query_size <= n_pool - spec.initial_labelled, "query_size", spec.query_size,
           f"the pool has {n_pool - spec.initial_labelled} unlabelled items after the initial labels")
    _check(spec.imbalance_classes <= n_classes, "delta", spec.imbalance_classes,
           f"the data set has {n_classes} classes")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"`{key}` is not a known setting: use one of {', '.join(sorted(known))}.")
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
    for key in ("study", "report", "scale_name", "data_dir", "grid", "pool_limit", "tracker"):
        cfg.pop(key, None)
    top.update(cfg)
    return _build(
        RunSpec,
        {
            **top,
            "dataset": _build(DatasetSpec, dataset, "dataset."),
            "model": _build(ModelSpec, model, "model."),
            "train": _build(TrainSpec, train, "train."),
        },
        "",
    )
