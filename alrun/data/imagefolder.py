"""Image trees in torchvision's ImageFolder layout, `train/<class>/*` and optionally `test/<class>/*`,
and the MIO-TCD classification set, which ships in that layout.

Files are listed by torchvision (`make_dataset`, its image extensions), decoded with PIL as RGB and
resized to `dataset.image_size` on a small thread pool (PIL decodes without the GIL), and the arrays
are cached beside the data (alrun.data.image_cache). Only the files the run keeps (`max_train`,
`max_test`) are decoded. Without a labelled `test/<class>/` tree a seeded, stratified test split is
held out of `train/`, and the run's log says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from alrun.config.schema import DatasetSpec
from alrun.core.errors import ConfigError, DataError
from alrun.core.seeding import generator
from alrun.data.arrays import DATA_SEED, ImageArrays, as_rgb, cap_indices, data_root, images_to_bundle
from alrun.data.bundle import DataBundle
from alrun.data.image_cache import cache_dirs, cache_lock, files_key, read_cache, write_cache
from alrun.data.pathologies import stratified_split

MIOTCD_CLASSES = (
    "articulated_truck", "bicycle", "bus", "car", "motorcycle", "non-motorized_vehicle", "pedestrian",
    "pickup_truck", "single_unit_truck", "work_van", "background",
)
MIOTCD_HOW = ("get MIO-TCD-Classification from the MIO-TCD challenge (http://podoce.dinf.usherbrooke.ca/challenge/"
              "dataset/) and extract it so that `dataset.root` holds train/<class>/")


@dataclass
class ImageTree:
    """The files of an image tree: (path, class index) pairs; test is None when no labelled test tree exists."""

    class_names: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]] | None
    flat: bool = False  # class folders at the top of the root, no train/ (the test split is held out of them)
    repeats: int = 0  # folders and files reached again through links, left out (each file counts once)


def _class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders (hidden ones, e.g. `.ipynb_checkpoints`, are not classes)."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _is_flat(root: Path) -> bool:
    """Whether `root` holds class folders of images at its top (torchvision's own ImageFolder layout,
    root/<class>/*), with no train/ folder."""
    if not root.is_dir() or (root / "train").is_dir():
        return False
    classes = _class_folders(root)
    return bool(classes) and "test" not in classes and any(
        list_images(root, {name: i for i, name in enumerate(classes)})[0])


def list_images(folder: Path, class_to_idx: dict[str, int]) -> tuple[list[tuple[str, int]], int]:
    """(path, class index) of every image file under FOLDER/<class>/, in torchvision's `make_dataset` order, each
    file once: links are followed (a linked folder of images counts), but a folder reached again through a link
    (a loop such as `cat/loop -> .`) is not walked again, and a file reached again through a link is not listed
    again. Also returns how many such repeats were left out."""
    items: list[tuple[str, int]] = []
    repeats = 0
    for name in sorted(class_to_idx):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        walked: list[tuple[str, list[str]]] = []
        seen_dirs: set[str] = set()
        for root, dirs, files in os.walk(class_dir, followlinks=True):
            real = os.path.realpath(root)
            if real in seen_dirs:  # reached again through a link: walked once already
                repeats += 1
                dirs[:] = []
                continue
            seen_dirs.add(real)
            walked.append((root, files))
        seen_files: set[str] = set()
        for root, files in sorted(walked):  # torchvision's order: sorted walk, sorted names
            for fname in sorted(files):
                path = os.path.join(root, fname)
                if not has_file_allowed_extension(path, IMG_EXTENSIONS):
                    continue
                real = os.path.realpath(path)
                if real in seen_files:
                    repeats += 1
                    continue
                seen_files.add(real)
                items.append((path, class_to_idx[name]))
    return items, repeats


def scan_tree(root: Path, title: str, how: str, expected_classes: tuple[str, ...] | None = None) -> ImageTree:
    """List the image files below `root`; DataError (saying `how` to get the data) when missing or incomplete.

    A flat tree (`root/<class>/*`, no train/) is read as train/ without a test/ tree: the caller holds out a
    seeded stratified test split and says so (`ImageTree.flat`)."""
    flat = _is_flat(root)
    train_dir, test_dir = (root, None) if flat else (root / "train", root / "test")
    classes = _class_folders(train_dir) if train_dir.is_dir() else []
    top = _class_folders(root) if root.is_dir() and not train_dir.is_dir() else []
    if not classes and top:  # folders at the top that are not a flat tree: say what was found there
        raise DataError(f"{title} not read: {root} holds the folders {', '.join(top[:10])}"
                        f"{' ...' if len(top) > 10 else ''} at its top but no train/ folder, and "
                        + ("a test/ folder beside class folders is neither layout" if "test" in top
                           else "none of them holds image files") + "; put every class folder directly under it "
                        "(a seeded test split is then held out) or in train/<class>/ (and test/<class>/).")
    if not classes:
        raise DataError(f"{title} not found: looked for image files in train/<class>/ folders under {root}; {how}.")
    if expected_classes is not None and set(classes) != set(expected_classes):
        missing = sorted(set(expected_classes) - set(classes))
        extra = sorted(set(classes) - set(expected_classes))
        what = (f"the class folders {', '.join(missing)} are missing" if missing
                else f"it holds class folders that {title} does not have ({', '.join(extra)})")
        raise DataError(f"{title} is incomplete in {train_dir}: {what}; {how}.")
    class_to_idx = {name: i for i, name in enumerate(classes)}
    train, repeats = list_images(train_dir, class_to_idx)
    empty = sorted(set(classes) - {classes[label] for _, label in train})
    if empty:
        raise DataError(f"{title} is incomplete in {train_dir}: the class folders {', '.join(empty)} hold no image "
                        f"files ({' '.join(IMG_EXTENSIONS)}); {how}.")
    test = None
    test_classes = _class_folders(test_dir) if test_dir is not None and test_dir.is_dir() else []
    if test_classes:
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(f"The test/ folder in {root} has classes that train/ lacks ({', '.join(unknown)}); "
                            "give every test class a train/ folder too.")
        test_items, test_repeats = list_images(test_dir, class_to_idx)
        test, repeats = test_items or None, repeats + test_repeats
    return ImageTree(classes, train, test, flat, repeats)


def decode_image(path: str, image_size: int | None) -> np.ndarray:
    """One image file as uint8 [H, W, 3] (RGB; 16-bit grayscale scaled to 8 bits), resized to image_size x
    image_size when given; DataError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            if image_size is not None:
                img.draft(None, (image_size, image_size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when much larger
            rgb = as_rgb(img, f"The image file {path}")
        if image_size is not None and rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # PIL raises many kinds (UnidentifiedImageError, truncated-file OSError, ...)
        raise DataError(f"The image file {path} cannot be decoded ({type(exc).__name__}: {exc}); "
                        "replace or delete it.") from None


def decode_images(paths: list[str], image_size: int | None, workers: int | None = None) -> np.ndarray:
    """Image files as uint8 [N, H, W, 3]; without `image_size` all images must share one size."""
    workers = workers or min(8, os.cpu_count() or 1)

    def attempt(path: str) -> np.ndarray | str:  # the array, or why the file cannot be decoded
        try:
            return decode_image(path, image_size)
        except DataError:
            return _why_not_decoded(path)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(attempt, paths, chunksize=64))
    bad = [(path, why) for path, why in zip(paths, images, strict=True) if isinstance(why, str)]
    if bad:  # every one of them at once: one fix and one re-run, not one per file
        raise DataError(corrupt_images_sentence(bad))
    if not images:
        return np.zeros((0, image_size or 0, image_size or 0, 3), dtype=np.uint8)
    first = images[0].shape
    for path, image in zip(paths, images, strict=True):
        if image.shape != first:
            raise DataError(f"The images differ in size ({paths[0]} is {first[1]}x{first[0]}, {path} is "
                            f"{image.shape[1]}x{image.shape[0]}): set `dataset.image_size=N` to resize them to NxN.")
    return np.stack(images)


def _why_not_decoded(path: str) -> str:
    try:
        with Image.open(path) as img:
            img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
        return type(exc).__name__
    return "unreadable"


def corrupt_images_sentence(bad: list[tuple[str, str]]) -> str:
    """One sentence naming every image file that cannot be decoded, relative to the folder they share."""
    if len(bad) == 1:
        return f"The image file {bad[0][0]} cannot be decoded ({bad[0][1]}); replace or delete it."
    folder = Path(os.path.commonpath([str(Path(p).parent) for p, _ in bad]))
    names = "; ".join(f"{Path(p).relative_to(folder)} ({why})" for p, why in bad)
    return f"{len(bad)} image files under {folder} cannot be decoded: {names}; replace or delete them."


def read_image_tree(spec: DatasetSpec, title: str, how: str,
                    expected_classes: tuple[str, ...] | None = None) -> ImageArrays:
    """Decode (or read from the cache) the images of `spec.root` that the run keeps."""
    root = data_root(spec)
    tree = scan_tree(root, title, how, expected_classes)
    notes = []
    if tree.repeats:
        notes.append(f"{spec.name}: {tree.repeats} folders or files under {root} are reached again through links "
                     "(a link loop, or a second link to one file): each image file counts once")
    train, test = tree.train, tree.test
    if test is None:
        labels = np.array([label for _, label in train])
        tr, te = stratified_split(labels, spec.test_fraction, generator(DATA_SEED, f"{spec.name}/split"))
        train, test = [train[i] for i in tr], [train[i] for i in te]
        where = ("holds its class folders at the top (no train/ or test/), so a seeded stratified test split of "
                 f"{len(te)} of its {len(labels)} images" if tree.flat else
                 f"has no labelled test/<class>/ images, so a seeded stratified test split of {len(te)} of "
                 f"{len(labels)} train/ images")
        notes.append(f"{spec.name}: {root} {where} (dataset.test_fraction={spec.test_fraction}) is held out")
    # decode only what the run keeps; load_dataset's caps then find nothing more to cut
    tr, te = cap_indices(len(train), len(test), spec)
    kept = (tr if len(tr) < len(train) else None, te if len(te) < len(test) else None)
    train, test = [train[i] for i in tr], [test[i] for i in te]
    train_paths, test_paths = [p for p, _ in train], [p for p, _ in test]
    size = spec.image_size
    settings = f"size={size}|classes={','.join(tree.class_names)}"
    key = files_key(root, [train_paths, test_paths], settings)
    # one cache slot per (data set, size, selection rule): a changed tree overwrites its slot
    rule = f"{tree.test is None}|{spec.test_fraction}|{spec.max_train}|{spec.max_test}"
    filename = f"{spec.name}-{size or 'native'}px-{hashlib.sha256(rule.encode()).hexdigest()[:10]}.npz"
    dirs = cache_dirs(root, spec.cache_dir)
    # parallel jobs on a cold cache: one decodes, the others wait and read what it wrote
    with cache_lock(dirs, filename) if spec.cache else contextlib.nullcontext(False):
        cached = read_cache(dirs, filename, key) if spec.cache else None
        if cached is not None:
            arrays, path = cached
            x_train, x_test = arrays["x_train"], arrays["x_test"]
            notes.append(f"{spec.name}: read {len(x_train) + len(x_test)} decoded images from the cache {path} "
                         "(the image files are unchanged since it was written)")
        else:
            tic = time.perf_counter()
            # train and test in one call: every corrupt file of the tree is named in one sentence
            x_all = decode_images(train_paths + test_paths, size)
            x_train, x_test = x_all[: len(train_paths)], x_all[len(train_paths):]
            seconds = time.perf_counter() - tic
            written = write_cache(dirs, filename, key, {"x_train": x_train, "x_test": x_test}) if spec.cache else None
            done = f"{spec.name}: decoded {len(x_train) + len(x_test)} images from {root} in {seconds:.1f} s"
            if written is not None:
                notes.append(f"{done} and cached them in {written}")
            elif spec.cache:
                notes.append(f"{done}; no cache could be written in {' or '.join(map(str, dirs))}")
            else:
                notes.append(f"{done} (dataset.cache=false)")
    y_train = np.array([label for _, label in train], dtype=np.int64)
    y_test = np.array([label for _, label in test], dtype=np.int64)
    return ImageArrays(x_train, y_train, x_test, y_test, tree.class_names, notes, *kept)


def load_imagefolder(spec: DatasetSpec) -> DataBundle:
    """Any `train/<class>/*` (+ optional `test/<class>/*`) tree of image files, as RGB images."""
    how = ("put the images in train/<class>/ (and optionally test/<class>/) folders there, "
           "or point `dataset.root` at such a folder")
    return images_to_bundle(read_image_tree(spec, "Image folder", how), spec)


def load_miotcd(spec: DatasetSpec) -> DataBundle:
    """MIO-TCD classification: 11 classes of traffic images of varying size, resized to `dataset.image_size`.

    It ships no labelled test split (its test/ images are unlabelled), so one is held out of train/.
    """
    if spec.image_size is None:
        raise ConfigError("`dataset.image_size=None` is not allowed for miotcd: its images vary in size, so give "
                          "a size N to resize them to NxN (its config uses 64).")
    return images_to_bundle(read_image_tree(spec, "MIO-TCD", MIOTCD_HOW, MIOTCD_CLASSES), spec)
