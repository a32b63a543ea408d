"""How good are a frozen backbone's features, under each input normalisation? A linear probe.

    python -m benchmarks.probe_backbone --root ../data/cifar10-jpg          # CIFAR-10 as JPEG files

Loads an image folder (train/<class>/*, test/<class>/*) with the seeded caps of a run
(`dataset.max_train=10000 dataset.max_test=2000`), draws a seeded random subset, extracts
features with the backbone under ImageNet's normalisation and under TensorFlow's edge-model one
((pixel - 127) / 128), and fits a logistic regression on the standardised features. The test
accuracy says which normalisation the weights expect (alrun.model.backbones.NORMALISATION).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from alrun.config.schema import DatasetSpec, ModelSpec
from alrun.data import load_dataset
from alrun.model.backbones import IMAGENET, INCEPTION, build_backbone
from alrun.model.features import extract_features, input_affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="image folder with train/ and test/")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128, help="backbone input size in px")
    parser.add_argument("--train", type=int, default=1500, help="probe training images")
    parser.add_argument("--test", type=int, default=500, help="probe test images")
    args = parser.parse_args()

    bundle = load_dataset(DatasetSpec(name="imagefolder", root=args.root, max_train=10000, max_test=2000))
    rng = np.random.default_rng(0)
    train_idx = rng.permutation(len(bundle.y_train))[: args.train]
    test_idx = rng.permutation(len(bundle.y_test))[: args.test]
    trunk = build_backbone(ModelSpec(backbone=args.backbone, pretrained=True, feature_size=args.size))
    print(f"{args.backbone} at {args.size} px, linear probe on {args.train} images, tested on {args.test}:")
    for name, normalisation in (("ImageNet mean/std", IMAGENET), ("(pixel - 127) / 128", INCEPTION)):
        affine = input_affine(bundle, normalisation)
        tic = time.perf_counter()
        f_train = extract_features(trunk, bundle.x_train[train_idx], torch.device("cpu"), affine=affine).numpy()
        f_test = extract_features(trunk, bundle.x_test[test_idx], torch.device("cpu"), affine=affine).numpy()
        seconds = time.perf_counter() - tic
        scaler = StandardScaler().fit(f_train)
        probe = LogisticRegression(max_iter=1000, C=0.05).fit(scaler.transform(f_train), bundle.y_train[train_idx])
        accuracy = probe.score(scaler.transform(f_test), bundle.y_test[test_idx])
        print(f"  {name:<22} test accuracy {accuracy:.3f}  ({(args.train + args.test) / seconds:.1f} images/s)")


if __name__ == "__main__":
    main()
