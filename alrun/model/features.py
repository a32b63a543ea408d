"""Frozen-backbone features: computed once per data set, cached on disk, then the head's only input.

With `model.backbone` set and `model.finetune=false`, :func:`featurize` replaces a DataBundle's
images [N, C, H, W] by the backbone's features [N, D] (train and test alike), so every
active-learning step trains, and MC-samples, only the dropout MLP head. The features are stored in
`model.feature_cache` under a key made of the data set (name, root, tensor shapes, a hash of
the tensors), the backbone, a hash of its weights, the input size and the arithmetic (device
type, AMP); a change in any of them computes the features anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import torch

from alrun.config.schema import DatasetSpec, RunSpec
from alrun.core.errors import ModelError
from alrun.core.filelock import exclusive
from alrun.core.seeding import derived_seed
from alrun.data.bundle import DataBundle
from alrun.model.backbones import NORMALISATION, FeatureTrunk, Normalisation, build_backbone
from alrun.model.inference import autocast, to_device

log = logging.getLogger("alrun")

CACHE_VERSION = 1
# images per batch on the CPU: 16, 32 and 64 measured alike (benchmarks/bench_backbones.py); more only adds memory
CPU_BATCH = 32

Affine = tuple[torch.Tensor, torch.Tensor]
_GLOBAL_RNG = threading.Lock()  # held while a backbone is built from the seeded global generator


def input_affine(bundle: DataBundle, normalisation: Normalisation) -> Affine | None:
    """(scale, shift), each [1, C, 1, 1]: x * scale + shift turns the bundle's standardised images into
    images in `normalisation` (a backbone's (mean, std), see alrun.model.backbones.NORMALISATION), exactly,
    from `bundle.pixel_stats`; None when those are unknown (the data set's own per-channel
    standardisation then stands in).

    Grey images are compared with the mean of the normalisation's three channels.
    """
    if bundle.pixel_stats is None:
        return None
    mean, std = (torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1) for s in bundle.pixel_stats)
    target_mean, target_std = _target(normalisation, bundle.x_train.shape[1])
    return std / target_std.view(1, -1, 1, 1), (mean - target_mean.view(1, -1, 1, 1)) / target_std.view(1, -1, 1, 1)


def _target(normalisation: Normalisation, channels: int) -> torch.Tensor:
    """[2, C]: the normalisation's mean and std (grey: the mean over its channels)."""
    stats = torch.tensor(normalisation, dtype=torch.float32)
    return stats.mean(dim=1, keepdim=True) if channels == 1 else stats


def to_backbone_normalisation(bundle: DataBundle, backbone: str) -> DataBundle:
    """The bundle with its images in the normalisation `backbone` expects (for fine-tuning); notes say how."""
    normalisation = NORMALISATION[backbone]
    affine = input_affine(bundle, normalisation)
    if affine is None:
        note = (f"images: no pixel statistics from the loader, so the data set's own per-channel "
                f"standardisation stands in for the normalisation {backbone} was trained with")
        return DataBundle(bundle.x_train, bundle.y_train, bundle.x_test, bundle.y_test, bundle.class_names,
                          [*bundle.notes, note])
    scale, shift = affine
    mean, std = _target(normalisation, bundle.x_train.shape[1])
    return DataBundle(bundle.x_train * scale + shift, bundle.y_train, bundle.x_test * scale + shift, bundle.y_test,
                      bundle.class_names, [*bundle.notes, f"images: in the normalisation {backbone} was trained with"],
                      (tuple(mean.tolist()), tuple(std.tolist())))


def extract_features(
    trunk: FeatureTrunk,
    x: torch.Tensor,
    device: torch.device,
    *,
    batch_size: int = CPU_BATCH,
    amp: bool = False,
    affine: Affine | None = None,
) -> torch.Tensor:
    """Features [N, D] (float32, CPU) of images x [N, C, H, W] through the frozen `trunk`.

    Batched under inference_mode; the batch is first mapped by `affine` (see :func:`input_affine`).
    On CUDA: pinned host memory and asynchronous copies, channels_last weights, autocast when `amp`.
    """
    trunk = trunk.to(device=device, memory_format=torch.channels_last).eval()
    if affine is not None:
        affine = (affine[0].to(device), affine[1].to(device))
    chunks = []
    with torch.inference_mode(), autocast(device, amp):
        for start in range(0, x.shape[0], batch_size):
            xb = to_device(x[start : start + batch_size], device)
            if affine is not None:
                xb = xb * affine[0] + affine[1]
            chunks.append(trunk(xb).float())
    if not chunks:
        return torch.empty(0, trunk.out_features)
    return torch.cat(chunks).cpu()


def _update_with_tensor(digest: Any, x: torch.Tensor) -> None:
    digest.update(f"{x.dtype}{list(x.shape)}".encode())
    x = x.detach().cpu().contiguous().reshape(-1)  # 1-d: a byte view of a 0-d tensor is not allowed
    if x.numel():
        digest.update(memoryview(x.view(torch.uint8).numpy()))


def tensor_hash(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (dtype, shape and every byte)."""
    digest = hashlib.blake2b(digest_size=16)
    for x in tensors:
        _update_with_tensor(digest, x)
    return digest.hexdigest()


def weights_hash(module: torch.nn.Module) -> str:
    """A content hash of a module's parameters and buffers (names included)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        _update_with_tensor(digest, value)
    return digest.hexdigest()


def cache_identity(bundle: DataBundle, dataset: DatasetSpec, trunk: FeatureTrunk, compute: str,
                   affine: Affine | None) -> dict[str, Any]:
    """Everything the features depend on, as plain values (stored beside them and compared on read).

    The user's data (`dataset=custom`) adds its `_target_` and arguments.
    """
    custom = {"target": dataset.target, "args": dataset.args} if dataset.target is not None else {}
    return {
        **custom,
        "version": CACHE_VERSION,
        "dataset": dataset.name,
        "root": str(Path(dataset.root).expanduser().resolve()) if dataset.root else None,
        "x_train_shape": list(bundle.x_train.shape),
        "x_test_shape": list(bundle.x_test.shape),
        "data_hash": tensor_hash(bundle.x_train, bundle.x_test, *(affine or ())),
        "backbone": trunk.name,
        "weights_hash": weights_hash(trunk),
        "feature_size": trunk.size,
        "compute": compute,
    }


def cache_path(cache_dir: Path, identity: dict[str, Any]) -> Path:
    """`<dataset>-<backbone>-<size>px-<key>.pt`, the key a hash of the whole identity."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{identity['dataset']}-{identity['backbone']}-{identity['feature_size']}px-{key}.pt"


def _read_cache(path: Path, identity: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: compute again and overwrite it
        log.warning("ignoring the unreadable feature cache %s (%s)", path, exc)
        return None
    if stored.get("identity") != identity:
        return None
    return stored["x_train"], stored["x_test"]


def _write_cache(path: Path, identity: dict[str, Any], f_train: torch.Tensor, f_test: torch.Tensor) -> None:
    """Write to a temporary name and rename, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"identity": identity, "x_train": f_train, "x_test": f_test}, tmp)
    os.replace(tmp, path)


def _compute_features(bundle: DataBundle, spec: RunSpec, trunk: FeatureTrunk, device: torch.device,
                      affine: Affine | None, amp: bool, notes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The trunk's features of the train and test images: ([N, D], [N_test, D]); says how fast in `notes`."""
    model = spec.model
    n = len(bundle.x_train) + len(bundle.x_test)
    log.info("computing %s features of %d images at %d px on %s", model.backbone, n, model.feature_size, device)
    batch_size = spec.inference_batch_size if device.type == "cuda" else min(CPU_BATCH, spec.inference_batch_size)
    tic = time.perf_counter()
    f_train = extract_features(trunk, bundle.x_train, device, batch_size=batch_size, amp=amp, affine=affine)
    f_test = extract_features(trunk, bundle.x_test, device, batch_size=batch_size, amp=amp, affine=affine)
    seconds = time.perf_counter() - tic
    notes.append(f"features: computed {model.backbone} features {list(f_train.shape[1:])} of {n} images at "
                 f"{model.feature_size} px on {device} in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} images/s)")
    return f_train, f_test


def featurize(bundle: DataBundle, spec: RunSpec, device: torch.device) -> DataBundle:
    """The bundle as the model sees it.

    No backbone: unchanged. A fine-tuned backbone: images in ImageNet normalisation. A frozen
    backbone: x_train / x_test replaced by its features [N, D], read from the cache when there is
    one; `notes` say which, with the extraction speed when features were computed.
    """
    model = spec.model
    if model.backbone is None:
        return bundle
    shape = tuple(bundle.x_train.shape)
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise ModelError(f"`model.backbone={model.backbone}` needs images with 1 or 3 channels, but the data set "
                         f"holds items of shape {list(shape[1:])}.")
    if model.finetune:
        return to_backbone_normalisation(bundle, model.backbone)
    # random weights (pretrained=false) are the same for every job: a fixed seed, not the job's. torchvision
    # initialises from the global generator, so it is forked, seeded and restored, one thread at a time
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(0, "backbone/init"))
        trunk = build_backbone(model)
    affine = input_affine(bundle, trunk.normalisation)
    amp = spec.amp and device.type == "cuda"
    compute = f"{device.type}-{'amp' if amp else 'fp32'}"
    notes = list(bundle.notes)
    if affine is None:
        notes.append(f"features: no pixel statistics from the loader, so the data set's own per-channel "
                     f"standardisation stands in for the normalisation {model.backbone} was trained with")
    if not model.feature_cache:
        f_train, f_test = _compute_features(bundle, spec, trunk, device, affine, amp, notes)
        notes.append("features: not stored (model.feature_cache is null)")
        return DataBundle(f_train, bundle.y_train, f_test, bundle.y_test, bundle.class_names, notes)
    identity = cache_identity(bundle, spec.dataset, trunk, compute, affine)
    path = cache_path(Path(model.feature_cache).expanduser(), identity)
    # the jobs of a sweep start together: one computes, the others wait here and read its cache
    with exclusive(path.with_name(f"{path.name}.lock"), f"{model.backbone} features"):
        cached = _read_cache(path, identity) if path.is_file() else None
        if cached is not None:
            notes.append(f"features: read {model.backbone} features {list(cached[0].shape[1:])} from the cache {path}")
            return DataBundle(cached[0], bundle.y_train, cached[1], bundle.y_test, bundle.class_names, notes)
        f_train, f_test = _compute_features(bundle, spec, trunk, device, affine, amp, notes)
        _write_cache(path, identity, f_train, f_test)
    notes.append(f"features: wrote the cache {path}")
    return DataBundle(f_train, bundle.y_train, f_test, bundle.y_test, bundle.class_names, notes)
