"""Image-folder layouts: CIFAR-100 super-classes (cifar2png), torchvision's CIFAR-100 pickles, FER2013.

Every loader orders classes and files the way torchvision's ``ImageFolder`` does (sorted names),
which is how the original CPG code reads the cifar2png tree, so label ``k`` means the same class
here as there. Two levels per loader: ``*_files`` functions only list files (cheap, no decoding);
``load_*`` functions decode them through :func:`clbench.datasets.cache.load_images`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from clbench.datasets.cache import load_images
from clbench.datasets.errors import DataError, missing_data_error

#: File suffixes read as images (torchvision's IMG_EXTENSIONS, lower case).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: The 20 CIFAR-100 super-classes in ImageFolder (alphabetical) order, which is also the CPG task order.
CIFAR100_SUPERCLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

#: FER2013 emotions in ImageFolder (alphabetical) order: label k is FER2013_EMOTIONS[k].
FER2013_EMOTIONS: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
)  # fmt: skip

#: FER2013 splits: train = Usage "Training", val = "PublicTest", test = "PrivateTest".
FER2013_SPLITS: tuple[str, ...] = ("train", "val", "test")

CifarSplit = Literal["train", "test"]

_CIFAR_LAYOUT = """\
  {root}/
    train/<superclass>/<fine_class>/*.png   e.g. train/aquatic_mammals/beaver/0001.png
    test/<superclass>/<fine_class>/*.png    (20 super-classes x 5 fine classes)
  (the layout written by `cifar2png cifar100superclass`; or pass the folder holding
  torchvision's cifar-100-python/ to load_cifar100_python)"""

_FER_LAYOUT = """\
  {root}/
    fer2013/train/<emotion>/Training_<id>.jpg    emotions: angry disgust fear happy
    fer2013/val/<emotion>/PublicTest_<id>.jpg              neutral sad surprise
    fer2013/test/<emotion>/PrivateTest_<id>.jpg"""


# Said when a tree mixes image sizes: what the data should be, and that no option resizes it.
_CIFAR_SIZE_HINT = (
    "CIFAR-100 images are 32x32 RGB (cifar100_20 expects that size) and no flag or config field "
    "resizes them: replace or remove the odd file"
)
_FER_SIZE_HINT = (
    "FER2013 images are 48x48 grayscale and load_fer2013 has no resizing option: replace or remove "
    "the odd file (facial4_mini resizes FER2013 images itself, to 64x64)"
)


class LabelledFiles(NamedTuple):
    """Image files with integer labels; ``class_names[k]`` names label k."""

    paths: list[Path]
    labels: np.ndarray  # int64, shape (N,)
    class_names: list[str]


class LabelledImages(NamedTuple):
    """Decoded images (N×H×W×C uint8, often a read-only memmap) with integer labels."""

    images: np.ndarray
    labels: np.ndarray  # int64, shape (N,)
    class_names: list[str]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan_image_folder(folder: Path) -> LabelledFiles:
    """List ``folder/<class>/**/<image>`` in ImageFolder order: classes sorted, then files sorted.

    Raises:
        DataError: ``folder`` is missing, has no class folders, or a class folder has no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    classes = _subdirs(folder)
    if not classes:
        raise DataError(f"no class folders in {folder} (expected {folder}/<class>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        found = []
        # Sorted walk as in torchvision.datasets.folder.make_dataset (files may sit in subfolders),
        # following links but entering each real directory once: a symlink loop is not a reason
        # to list the same images again and again.
        seen: set[str] = set()
        listed = []
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames.sort()
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            listed.append((dirpath, filenames))
        for dirpath, filenames in sorted(listed):
            found.extend(Path(dirpath, f) for f in sorted(filenames) if _is_image(f))
        if not found:
            raise DataError(f"no images in class folder {folder / name}")
        paths.extend(found)
        labels.extend([k] * len(found))
    return LabelledFiles(paths, np.asarray(labels, dtype=np.int64), classes)


def _resolve_root(root: Path, marker: str, nested: str) -> Path:
    """``root`` if it holds ``marker``, else ``root/nested`` if that does; else ``root`` (to report)."""
    root = Path(root).expanduser()
    if not (root / marker).exists() and (root / nested / marker).exists():
        return root / nested
    return root


# ---------------------------------------------------------------- CIFAR-100 super-class layout


def superclass_files(
    root: Path, split: CifarSplit, superclasses: Sequence[str] | None = None
) -> dict[str, LabelledFiles]:
    """List the cifar2png ``cifar100superclass`` tree: one entry per super-class (= task).

    ``root`` holds ``train/`` and ``test/`` (a ``root/cifar100/`` folder is also accepted).
    Labels are local to each super-class (0..4 for CIFAR-100), fine classes in alphabetical order.

    Args:
        superclasses: super-classes to list, in the order to return them; None lists every folder
            of ``split`` (alphabetical) and rejects a partial CIFAR-100 tree.

    Raises:
        DataError: the root, a split, a super-class or a class folder is missing or empty, or train
            and test disagree on the classes of a super-class.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = _resolve_root(root, "train", "cifar100")
    missing = [f"{s}/" for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        layout = _CIFAR_LAYOUT.format(root=root)
        raise missing_data_error("CIFAR-100 super-class data", root, missing, layout)
    found = {s: set(_subdirs(root / s)) for s in ("train", "test")}
    if superclasses is None:
        names = sorted(found["train"] | found["test"])
        known = set(CIFAR100_SUPERCLASSES)
        if set(names) < known:
            # Only some of the CIFAR-100 super-classes: an archive part was probably not extracted.
            raise DataError(
                f"CIFAR-100 super-class data under {root} is partial: {len(names)} of 20 "
                f"super-classes; missing {_shorten(sorted(known - set(names)))} "
                "(the three archive parts extract into one tree)"
            )
    else:
        names = list(superclasses)
    missing = [f"{s}/{c}/" for s in ("train", "test") for c in names if c not in found[s]]
    if missing:
        layout = _CIFAR_LAYOUT.format(root=root)
        raise missing_data_error("CIFAR-100 super-classes", root, [_shorten(missing)], layout)
    out: dict[str, LabelledFiles] = {}
    for name in names:
        files = scan_image_folder(root / split / name)
        other = "test" if split == "train" else "train"
        other_classes = _subdirs(root / other / name)
        if other_classes != files.class_names:
            raise DataError(
                f"super-class {name} has classes {files.class_names} in {split}/ but "
                f"{other_classes} in {other}/ under {root}"
            )
        out[name] = files
    return out


def load_superclass_split(
    root: Path,
    split: CifarSplit,
    *,
    superclasses: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    cache: bool = True,
) -> dict[str, LabelledImages]:
    """Decode one split of the super-class tree: {super-class: (N×32×32×3 uint8, labels, classes)}.

    With the real data: 20 super-classes, 2,500 train / 500 test images each. One cache file per
    split; each super-class gets a slice of it (a view, no copy). See :func:`superclass_files`.
    """
    files = superclass_files(root, split, superclasses)
    all_paths = [p for f in files.values() for p in f.paths]
    images = load_images(
        all_paths, None, "RGB", cache_dir, cache=cache, expected=(32, 32), resize_hint=_CIFAR_SIZE_HINT
    )
    out: dict[str, LabelledImages] = {}
    start = 0
    for name, f in files.items():
        stop = start + len(f.paths)
        out[name] = LabelledImages(images[start:stop], f.labels, f.class_names)
        start = stop
    return out


def _shorten(items: list[str], limit: int = 6) -> str:
    head = ", ".join(items[:limit])
    return head if len(items) <= limit else f"{head} and {len(items) - limit} more"


# ---------------------------------------------------------------- torchvision CIFAR-100 pickles


def _find_cifar_python(root: Path) -> Path | None:
    """The ``cifar-100-python`` folder at or under ``root`` (searched two levels deep)."""
    root = Path(root).expanduser()
    candidates = [root, root / "cifar-100-python"]
    if root.is_dir():
        candidates += sorted(root.glob("*/cifar-100-python"))
    for c in candidates:
        if (c / "meta").is_file() and (c / "train").is_file():
            return c
    return None


def _unpickle(path: Path) -> dict[str, Any]:
    # latin1 as torchvision does: the official files were pickled by Python 2.
    # Note: pickle runs code on load; only point this at the official CIFAR-100 files.
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read CIFAR-100 file {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"cannot read CIFAR-100 file {path}: not a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def load_cifar100_python(root: Path, split: CifarSplit, *, download: bool = False) -> dict[str, LabelledImages]:
    """Read torchvision's ``cifar-100-python/{train,test,meta}`` into the super-class structure.

    Same result layout as :func:`load_superclass_split`: super-classes (coarse labels) and their
    fine classes in alphabetical order, local labels, and images in the order cifar2png writes
    them (dataset order within a fine class). Nothing is cached: the pickles hold raw pixels.

    Args:
        root: the folder given to ``torchvision.datasets.CIFAR100`` (or ``cifar-100-python``).
        download: fetch through ``torchvision.datasets.CIFAR100(root, download=True)`` first
            (needs network; only used when the files are not found).

    Raises:
        DataError: the files are not found (and ``download`` is False) or are malformed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = _find_cifar_python(root)
    if folder is None and download:
        from torchvision.datasets import CIFAR100  # lazy: torchvision only when downloading

        CIFAR100(str(root), train=split == "train", download=True)
        folder = _find_cifar_python(root)
    if folder is None or not (folder / split).is_file():
        root = Path(root).expanduser()
        layout = f"  {root}/\n    cifar-100-python/\n      meta\n      train\n      test"
        raise missing_data_error("CIFAR-100 python files", root, ["cifar-100-python/"], layout)
    meta = _unpickle(folder / "meta")
    data = _unpickle(folder / split)
    try:
        fine_names = [str(n) for n in meta["fine_label_names"]]
        coarse_names = [str(n) for n in meta["coarse_label_names"]]
        fine = np.asarray(data["fine_labels"], dtype=np.int64)
        coarse = np.asarray(data["coarse_labels"], dtype=np.int64)
        # Rows are 3072 bytes, channel-major (1024 R, 1024 G, 1024 B), as torchvision reshapes them.
        pixels = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    except (KeyError, ValueError) as exc:
        raise DataError(f"malformed CIFAR-100 files in {folder}: {exc}") from exc
    if not len(pixels) == len(fine) == len(coarse):
        raise DataError(f"malformed CIFAR-100 files in {folder}: label and image counts differ")
    images = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    out: dict[str, LabelledImages] = {}
    for c in sorted(range(len(coarse_names)), key=lambda i: coarse_names[i]):
        in_coarse = np.flatnonzero(coarse == c)
        fine_ids = sorted(set(fine[in_coarse].tolist()), key=lambda i: fine_names[i])
        if not fine_ids:
            continue
        local = {f: k for k, f in enumerate(fine_ids)}
        # Stable sort by local class keeps dataset order within a class, as cifar2png numbers files.
        order = in_coarse[np.argsort([local[f] for f in fine[in_coarse].tolist()], kind="stable")]
        labels = np.asarray([local[f] for f in fine[order].tolist()], dtype=np.int64)
        out[coarse_names[c]] = LabelledImages(images[order], labels, [fine_names[f] for f in fine_ids])
    return out


# ---------------------------------------------------------------- FER2013


def fer2013_files(root: Path, split: str) -> LabelledFiles:
    """List ``{root}/fer2013/{split}/<emotion>/*.jpg`` (``root`` may also be the fer2013 folder).

    Labels index :data:`FER2013_EMOTIONS`. Real counts: train 28,709, val 3,589, test 3,589.

    Raises:
        DataError: a split folder or an emotion folder is missing or empty.
    """
    if split not in FER2013_SPLITS:
        raise ValueError(f"split must be one of {FER2013_SPLITS}, not {split!r}")
    root = Path(root).expanduser()
    base = root if (root / split).is_dir() and not (root / "fer2013").is_dir() else root / "fer2013"
    layout = _FER_LAYOUT.format(root=root)
    if not base.is_dir():
        raise missing_data_error("FER2013 images", root, ["fer2013/"], layout)
    missing = [f"fer2013/{s}/" for s in FER2013_SPLITS if not (base / s).is_dir()]
    if f"fer2013/{split}/" in missing:
        raise missing_data_error("FER2013 images", root, missing, layout)
    lacking = [f"fer2013/{split}/{e}/" for e in FER2013_EMOTIONS if not (base / split / e).is_dir()]
    if lacking:
        raise missing_data_error("FER2013 emotions", root, lacking, layout)
    files = scan_image_folder(base / split)
    if files.class_names != list(FER2013_EMOTIONS):
        extra = sorted(set(files.class_names) - set(FER2013_EMOTIONS))
        raise DataError(f"unexpected folders in {base / split}: {', '.join(extra)}")
    return files


def load_fer2013(root: Path, split: str, *, cache_dir: Path | None = None, cache: bool = True) -> LabelledImages:
    """Decode one FER2013 split as N×48×48×1 grayscale uint8 (see :func:`fer2013_files`)."""
    files = fer2013_files(root, split)
    images = load_images(files.paths, None, "L", cache_dir, cache=cache, expected=(48, 48), resize_hint=_FER_SIZE_HINT)
    return LabelledImages(images, files.labels, files.class_names)
