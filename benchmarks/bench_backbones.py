"""Feature extraction speed of a frozen backbone: images per second, as `alrun.model.features` runs it.

    python -m benchmarks.bench_backbones                      # EfficientNet-Lite0, 128 px, 256 images
    python -m benchmarks.bench_backbones --size 224 --batches 16,32

Images are random 32x32 RGB (CIFAR-sized), resized inside the trunk, as in a real run. Each
setting (batch size, memory layout) is timed in interleaved rounds and the best round is kept,
so load from other processes falls on all settings alike; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from alrun.config.schema import ModelSpec
from alrun.data.bundle import DataBundle, standardise_images
from alrun.model.backbones import build_backbone
from alrun.model.features import extract_features, input_affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128, help="backbone input size in px")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", default="16,32,64", help="batch sizes to compare")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    x, stats = standardise_images(pixels)
    bundle = DataBundle(x, np.zeros(len(x), dtype=np.int64), x[:1], np.zeros(1, dtype=np.int64), ["a"],
                        pixel_stats=stats)
    trunk = build_backbone(ModelSpec(backbone=args.backbone, pretrained=True, feature_size=args.size))
    affine = input_affine(bundle, trunk.normalisation)
    nchw = build_backbone(ModelSpec(backbone=args.backbone, pretrained=True, feature_size=args.size)).net

    def channels_last(batch: int) -> None:  # what a run does
        extract_features(trunk, x, device, batch_size=batch, affine=affine)

    def contiguous(batch: int) -> None:  # the same in the default NCHW layout, for contrast (CPU)
        with torch.inference_mode():
            for start in range(0, len(x), batch):
                xb = x[start : start + batch] * affine[0] + affine[1]
                nchw(F.interpolate(xb, size=(args.size, args.size), mode="bilinear", align_corners=False))

    runs = {}
    for batch in (int(b) for b in args.batches.split(",")):
        runs[f"channels_last, batch {batch}"] = partial(channels_last, batch)
        if device.type == "cpu":
            runs[f"NCHW, batch {batch}"] = partial(contiguous, batch)
    first = {}
    for name, fn in runs.items():  # the first call includes oneDNN's set-up for each new shape
        tic = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - tic
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeats):
        for name, fn in runs.items():
            tic = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - tic)

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{args.backbone} at {args.size} px on {device} ({torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores, load average {load}), {args.images} images of 32x32, best of {args.repeats}:")
    print("| setting | images/s (best round) | first call, s |")
    print("|---|---:|---:|")
    for name in runs:
        print(f"| {name} | {args.images / best[name]:.1f} | {first[name]:.1f} |")


if __name__ == "__main__":
    main()
