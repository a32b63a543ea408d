"""Five odd inputs, each written in its true on-disk format (or the user's own code) in tmp_path: each runs right
or stops with one sentence (issue 30)."""

from __future__ import annotations

import logging
import os
import textwrap

import numpy as np
import pytest
from PIL import Image

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data import load_dataset
from tests.fixtures_data import write_image_tree, write_npz


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


def test_npz_whose_splits_have_different_feature_counts_is_one_sentence(tmp_path):
    path = tmp_path / "data.npz"
    arrays = write_npz(path, images=False)
    arrays["x_test"] = arrays["x_test"][:, :8]  # 12 features in train, 8 in test
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="npz", root=str(path)))
    message = str(info.value)
    assert one_sentence(message) and "x_train items have shape [12] but x_test items [8]" in message


def test_custom_tensor_datasets_with_one_hot_labels_are_one_sentence(tmp_path, monkeypatch):
    (tmp_path / "onehot_data.py").write_text(textwrap.dedent('''
        import torch
        from torch.utils.data import TensorDataset

        def load():
            g = torch.Generator().manual_seed(0)
            y = torch.arange(30) % 3
            one_hot = torch.nn.functional.one_hot(y, 3).float()
            make = lambda n: TensorDataset(torch.randn(n, 5, generator=g), one_hot[:n])
            return make(30), make(15)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="custom", target="onehot_data.load"))
    message = str(info.value)
    assert one_sentence(message) and "item 0 of the train set has a label of shape [3] (one-hot?)" in message
    assert "labels.argmax(1)" in message


def test_an_image_folder_with_a_link_loop_counts_each_file_once(tmp_path, caplog):
    root = tmp_path / "tree"
    written = write_image_tree(root, n_train_per_class=6, n_test_per_class=3, formats=("png",))
    os.symlink(".", root / "train" / "cat" / "loop")  # train/cat/loop -> train/cat: a loop
    os.symlink(root / "train" / "dog" / "0000.png", root / "train" / "dog" / "again.png")  # a file linked twice
    with caplog.at_level(logging.INFO):
        bundle = load_dataset(DatasetSpec(name="imagefolder", root=str(root)))
    assert len(bundle.y_train) == len(written["train"]) == 18 and len(bundle.y_test) == 9
    assert any("reached again through links" in note for note in bundle.notes)


def test_16_bit_grayscale_pngs_are_scaled_not_clipped(tmp_path):
    """Pillow's convert('RGB') clips a 16-bit PNG's values at 255 (almost every pixel white); alrun scales them:
    each image's 8-bit pixels are round(v * 255 / 65535) of its 16-bit ones."""
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    wide = {}
    for part, n in (("train", 6), ("test", 3)):
        for label, name in enumerate(("a", "b")):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.integers(0, 20000, size=(8, 8)) + 40000 * label).astype(np.uint16)
                Image.fromarray(pixels).save(folder / f"{i}.png")  # a 16-bit grayscale PNG (mode I;16)
                wide[(part, name, i)] = pixels
    with Image.open(root / "train" / "a" / "0.png") as img:
        assert img.mode.startswith("I")  # truly 16-bit on disk
    from alrun.data.imagefolder import decode_image

    got = decode_image(str(root / "train" / "b" / "1.png"), None)
    expected = ((wide[("train", "b", 1)].astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    assert got.shape == (8, 8, 3) and (got == expected[:, :, None]).all()
    assert 150 < got.mean() < 240  # class b: 40000..60000 of 65535, not 255 everywhere
    bundle = load_dataset(DatasetSpec(name="imagefolder", root=str(root)))
    x = bundle.x_train.reshape(len(bundle.y_train), -1).mean(dim=1)
    assert x[bundle.y_train == 0].max() < x[bundle.y_train == 1].min()  # the classes stay apart


def test_test_items_copied_from_the_pool_are_one_warning_with_the_count(tmp_path, caplog):
    path = tmp_path / "data.npz"
    arrays = write_npz(path, images=False, n_train=60, n_test=30)
    arrays["x_test"][:7] = arrays["x_train"][10:17]  # 7 of 30 test items copy training items
    np.savez(path, **arrays)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        load_dataset(DatasetSpec(name="npz", root=str(path)))
    lines = [r.getMessage() for r in caplog.records if "exact copies" in r.getMessage()]
    assert len(lines) == 1 and "7 of 30 test items are exact copies of training-pool items" in lines[0]
    caplog.clear()
    write_npz(path, images=False)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        load_dataset(DatasetSpec(name="npz", root=str(path)))
    assert not [r for r in caplog.records if "exact copies" in r.getMessage()]
