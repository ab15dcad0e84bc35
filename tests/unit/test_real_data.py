"""The loaders on the real archives in ../shared/data (skipped when that folder is absent).

The archives are extracted by the ``extract`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clbench.datasets import arrays, cache, faces, folders

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$CLBENCH_CACHE`` when set (warm across runs), else a session folder (never ~/.cache)."""
    env_cache = os.environ.get("CLBENCH_CACHE")
    return Path(env_cache) if env_cache else tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="session")
def lfw_root(extract: Callable[[str, list[str]], Path], shared_data: Path) -> Path:
    return extract("lfw", ["lfw-mini64.tgz"])


@pytest.fixture(scope="session")
def lfw_pairs(lfw_root: Path, shared_data: Path) -> faces.LFWPairs:
    if not (shared_data / "lfw-pairs.txt").is_file():
        pytest.skip(f"lfw-pairs.txt not found in {shared_data}")
    return faces.load_lfw_pairs(lfw_root, shared_data / "lfw-pairs.txt")


# ------------------------------------------------------------------ CIFAR-100


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar100_superclass_tasks(cifar_root, image_cache, split):
    tasks = folders.load_superclass_split(cifar_root, split, cache_dir=image_cache)
    assert tuple(tasks) == folders.CIFAR100_SUPERCLASSES  # also the CPG task order
    per_task = 2500 if split == "train" else 500
    for name, task in tasks.items():
        assert task.images.shape == (per_task, 32, 32, 3), name
        assert len(task.class_names) == 5, name
        assert np.bincount(task.labels).tolist() == [per_task // 5] * 5, name
    assert tasks["aquatic_mammals"].class_names == ["beaver", "dolphin", "otter", "seal", "whale"]
    assert tasks["vehicles_2"].class_names == ["lawn_mower", "rocket", "streetcar", "tank", "tractor"]
    if split == "train":
        # The README: pixel statistics match CIFAR-100's known train mean/std.
        mean, std = arrays.channel_stats(np.concatenate([t.images for t in tasks.values()]))
        np.testing.assert_allclose(mean, [0.5071, 0.4865, 0.4409], atol=0.01)
        np.testing.assert_allclose(std, [0.2673, 0.2564, 0.2762], atol=0.01)


# ------------------------------------------------------------------ LFW


def test_lfw_pairs_folds(lfw_pairs):
    assert len(lfw_pairs) == 6000 and len(lfw_pairs.folds) == 10
    for k in range(1, 11):
        fold = lfw_pairs.fold(k)
        assert [p.same for p in fold] == [True] * 300 + [False] * 300
    # The folds are identity-disjoint, which the unrestricted protocol relies on.
    ids = [lfw_pairs.identities(k) for k in range(1, 11)]
    assert all(not (ids[i] & ids[j]) for i in range(10) for j in range(i + 1, 10))


@pytest.mark.parametrize(("min_images", "identities", "images"), [(2, 1505, 7829), (4, 557, 5671)])
def test_lfw_fold10_training_set(lfw_pairs, min_images, identities, images):
    train = faces.lfw_training_set(lfw_pairs, 10, min_images=min_images)
    assert len(train.class_names) == identities and len(train.paths) == images
    assert train.labels.max() == identities - 1


def test_lfw_fold10_images_decode(lfw_pairs, image_cache):
    paths, idx, same = lfw_pairs.fold_arrays(10)
    images = cache.load_images(paths, None, "L", image_cache)
    assert images.shape == (len(paths), 64, 64, 1) and idx.shape == (600, 2) and same.sum() == 300


def test_lfw_gender(lfw_root, shared_data):
    if not (shared_data / "lfw-gender.csv").is_file():
        pytest.skip(f"lfw-gender.csv not found in {shared_data}")
    g = faces.load_lfw_gender(lfw_root, shared_data / "lfw-gender.csv")
    assert len(g.paths) == 5244
    assert np.bincount(g.labels).tolist() == [4169, 1075]  # male, female


# ------------------------------------------------------------------ UTKFace


def test_utkface(extract, image_cache):
    root = extract("utkface", ["utkface-mini64.tar.gz"])
    assert len(list((root / "UTKFace").iterdir())) == 23707
    utk = faces.load_utkface(root)
    assert utk.malformed == 3 and len(utk.paths) == 23704
    assert np.bincount(utk.gender).tolist() == [12390, 11314]  # male, female
    assert np.bincount(utk.race).tolist() == [10078, 4525, 3434, 3975, 1692]
    assert utk.age.min() >= 1 and utk.age.max() <= 116
    assert np.bincount(utk.age_task().labels, minlength=8).tolist() == [1894, 738, 1018, 1967, 9489, 2987, 2473, 3138]
    sample = cache.load_images(utk.paths[::50], None, "RGB", image_cache)
    assert sample.shape[1:] == (64, 64, 3)


# ------------------------------------------------------------------ FER2013

FER_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4965, 4830, 3171],
    "val": [467, 56, 496, 895, 607, 653, 415],
    "test": [491, 55, 528, 879, 626, 594, 416],
}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fer2013(extract, image_cache, split):
    root = extract("fer2013", ["fer2013-images.tar.gz"])
    fer = folders.load_fer2013(root, split, cache_dir=image_cache)
    assert fer.class_names == list(folders.FER2013_EMOTIONS)
    assert np.bincount(fer.labels).tolist() == FER_COUNTS[split]
    assert fer.images.shape == (sum(FER_COUNTS[split]), 48, 48, 1)
    assert {"train": 28709, "val": 3589, "test": 3589}[split] == len(fer.labels)
