"""Loaders, image cache and array datasets on tiny synthetic data written in the real layouts."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from clbench.datasets import arrays, cache, faces, folders
from clbench.datasets.errors import DataError
from clbench.errors import ClbenchError

# ------------------------------------------------------------------ helpers


def write_image(path: Path, value: int, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> None:
    """A flat image whose pixel value identifies it (PNG is lossless; JPEG only approximately)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def pixel(images: np.ndarray, i: int) -> int:
    return int(images[i, 0, 0, 0])


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def decode_spy(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every image decode (load_images calls cache.decode_image through the module)."""
    calls: list[Path] = []
    real = cache.decode_image

    def spy(path, size, mode):
        calls.append(Path(path))
        return real(path, size, mode)

    monkeypatch.setattr(cache, "decode_image", spy)
    return calls


# ------------------------------------------------------------------ errors


def test_data_error_is_a_clbench_error():
    assert issubclass(DataError, ClbenchError)


# ------------------------------------------------------------------ cache


def test_load_images_shapes_modes_and_resize(tmp_path, cache_dir):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        write_image(p, 10 * i, (6, 10))
    rgb = cache.load_images(paths, None, "RGB", cache_dir)
    assert rgb.shape == (3, 6, 10, 3) and rgb.dtype == np.uint8
    assert [pixel(rgb, i) for i in range(3)] == [0, 10, 20]
    gray = cache.load_images(paths, None, "L", cache_dir)
    assert gray.shape == (3, 6, 10, 1)
    resized = cache.load_images(paths, (4, 5), "RGB", cache_dir)  # (height, width)
    assert resized.shape == (3, 4, 5, 3)
    assert pixel(resized, 2) == 20  # bilinear keeps a flat image flat


def test_resize_matches_pillow_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = cache.load_images([tmp_path / "a.png"], (8, 12), "RGB", cache=False)
    expected = np.asarray(Image.fromarray(arr).resize((12, 8), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[0], expected)


def test_cache_is_memmapped_and_second_load_decodes_nothing(tmp_path, cache_dir, decode_spy):
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for i, p in enumerate(paths):
        write_image(p, i)
    first = cache.load_images(paths, None, "RGB", cache_dir)
    assert len(decode_spy) == 4
    assert isinstance(first, np.memmap) and not first.flags.writeable
    decode_spy.clear()
    second = cache.load_images(paths, None, "RGB", cache_dir)
    assert decode_spy == []
    np.testing.assert_array_equal(first, second)
    files = list((cache_dir / "images").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temp file left behind


def test_cache_key_depends_on_order_size_and_mode(tmp_path, cache_dir, decode_spy):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        write_image(p, 50 * i)
    keys = {
        cache.cache_key(paths, None, "RGB"),
        cache.cache_key(paths[::-1], None, "RGB"),
        cache.cache_key(paths, (4, 4), "RGB"),
        cache.cache_key(paths, None, "L"),
    }
    assert len(keys) == 4
    reversed_ = cache.load_images(paths[::-1], None, "RGB", cache_dir)
    assert [pixel(reversed_, i) for i in range(3)] == [100, 50, 0]


def test_cache_survives_moving_the_data(tmp_path, cache_dir, decode_spy):
    a = tmp_path / "a" / "data"
    for i in range(3):
        write_image(a / "c" / f"{i}.png", i)
    cache.load_images(sorted((a / "c").iterdir()), None, "RGB", cache_dir)
    b = tmp_path / "b" / "data"
    b.parent.mkdir()
    os.rename(a, b)  # keeps modification times, like re-extracting an archive elsewhere
    decode_spy.clear()
    cache.load_images(sorted((b / "c").iterdir()), None, "RGB", cache_dir)
    assert decode_spy == []


def test_cache_invalidates_when_a_file_changes(tmp_path, cache_dir, decode_spy):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        write_image(p, i)
    cache.load_images(paths, None, "RGB", cache_dir)
    write_image(paths[1], 200)
    st_ = paths[1].stat()
    os.utime(paths[1], ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    decode_spy.clear()
    again = cache.load_images(paths, None, "RGB", cache_dir)
    assert len(decode_spy) == 3
    assert pixel(again, 1) == 200


def test_damaged_cache_file_is_rebuilt(tmp_path, cache_dir, decode_spy):
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for i, p in enumerate(paths):
        write_image(p, i + 1)
    cache.load_images(paths, None, "RGB", cache_dir)
    (target,) = (cache_dir / "images").iterdir()
    target.write_bytes(b"not a numpy file")
    decode_spy.clear()
    again = cache.load_images(paths, None, "RGB", cache_dir)
    assert len(decode_spy) == 2 and pixel(again, 1) == 2


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "c"))
    assert cache.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CLBENCH_CACHE")
    assert cache.default_cache_dir() == Path.home() / ".cache" / "clbench"


def test_cache_dir_none_uses_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "env-cache"))
    write_image(tmp_path / "x.png", 1)
    cache.load_images([tmp_path / "x.png"], None, "RGB", None)
    assert len(list((tmp_path / "env-cache" / "images").glob("*.npy"))) == 1


def test_cache_false_writes_nothing(tmp_path, cache_dir):
    write_image(tmp_path / "x.png", 1)
    out = cache.load_images([tmp_path / "x.png"], None, "RGB", cache_dir, cache=False)
    assert out.shape == (1, 8, 8, 3) and not cache_dir.exists()


def test_threaded_decode_matches_serial(tmp_path, cache_dir):
    paths = [tmp_path / f"{i:04d}.png" for i in range(600)]
    for i, p in enumerate(paths):
        write_image(p, i % 256, (4, 4))
    serial = cache.load_images(paths, None, "RGB", workers=1, cache=False)
    threaded = cache.load_images(paths, None, "RGB", cache_dir, workers=3)
    np.testing.assert_array_equal(serial, threaded)


def test_unreadable_image_names_the_file(tmp_path, cache_dir):
    good = tmp_path / "good.png"
    bad = tmp_path / "bad.png"
    write_image(good, 1)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        cache.load_images([good, bad], None, "RGB", cache_dir)
    assert not list((cache_dir / "images").iterdir())  # the temp file was removed


def test_missing_image_names_the_file(tmp_path, cache_dir):
    with pytest.raises(DataError, match=r"nothere\.png"):
        cache.load_images([tmp_path / "nothere.png"], None, "RGB", cache_dir)


def test_images_of_different_sizes_need_a_size(tmp_path, cache_dir):
    write_image(tmp_path / "a.png", 1, (8, 8))
    write_image(tmp_path / "b.png", 1, (9, 8))
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    with pytest.raises(DataError, match=r"differ in size.*b\.png.*size=\(height, width\)"):
        cache.load_images(paths, None, "RGB", cache_dir)
    assert cache.load_images(paths, (8, 8), "RGB", cache_dir).shape == (2, 8, 8, 3)


# ------------------------------------------------------------------ CIFAR-100 super-class layout

# "sea_mammals" is not a CIFAR-100 name, so this tree is not mistaken for a partial CIFAR-100 one.
SUPER = {"fish": ["trout", "aquarium_fish"], "sea_mammals": ["whale", "beaver", "otter"]}


def value_of(split: str, sc: str, fine: str, i: int) -> int:
    """Unique pixel value per image, so order can be checked from the pixels."""
    s = sorted(SUPER)
    return (s.index(sc) * 60 + sorted(SUPER[sc]).index(fine) * 12 + i * 2 + (split == "test")) % 256


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    root = tmp_path / "cifar100"
    for split, n in (("train", 3), ("test", 2)):
        for sc, fines in SUPER.items():
            for fine in fines:
                for i in range(n):
                    write_image(root / split / sc / fine / f"{i + 1:04d}.png", value_of(split, sc, fine, i), (32, 32))
    return root


def test_superclass_split_order_labels_and_pixels(cifar_root, cache_dir):
    train = folders.load_superclass_split(cifar_root, "train", cache_dir=cache_dir)
    assert list(train) == ["fish", "sea_mammals"]
    am = train["sea_mammals"]
    assert am.class_names == ["beaver", "otter", "whale"]
    assert am.images.shape == (9, 32, 32, 3)
    assert am.labels.dtype == np.int64 and am.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    expected = [value_of("train", "sea_mammals", f, i) for f in am.class_names for i in range(3)]
    assert [pixel(am.images, i) for i in range(9)] == expected
    test = folders.load_superclass_split(cifar_root.parent, "test", cache_dir=cache_dir)  # parent accepted
    assert test["fish"].class_names == ["aquarium_fish", "trout"] and len(test["fish"].labels) == 4
    files = folders.superclass_files(cifar_root, "test", superclasses=["fish"])
    assert list(files) == ["fish"] and files["fish"].paths[0].name == "0001.png"


def test_superclass_missing_splits_message(tmp_path):
    with pytest.raises(DataError) as exc:
        folders.load_superclass_split(tmp_path / "nowhere", "train")
    msg = str(exc.value)
    assert "CIFAR-100 super-class data not found under" in msg and str(tmp_path / "nowhere") in msg
    assert "missing train/, test/" in msg
    assert "Expected layout:" in msg and "train/<superclass>/<fine_class>/*.png" in msg


def test_superclass_missing_test_split(cifar_root):
    for p in sorted((cifar_root / "test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (cifar_root / "test").rmdir()
    with pytest.raises(DataError, match=r"missing test/; point --data-root"):
        folders.superclass_files(cifar_root, "train")


def test_superclass_partial_cifar_tree(tmp_path):
    root = tmp_path / "c"
    for sc in folders.CIFAR100_SUPERCLASSES[:7]:  # as if only part 1 of 3 were extracted
        for split in ("train", "test"):
            write_image(root / split / sc / "x" / "0001.png", 1, (32, 32))
    expected = r"partial: 7 of 20 super-classes; missing insects, large_carnivores, .* and 7 more \(the three"
    with pytest.raises(DataError, match=expected):
        folders.superclass_files(root, "train")


def test_superclass_requested_but_absent(cifar_root):
    with pytest.raises(DataError, match=r"missing train/people/, test/people/"):
        folders.superclass_files(cifar_root, "train", superclasses=["fish", "people"])


def test_superclass_train_test_class_mismatch(cifar_root):
    write_image(cifar_root / "test" / "fish" / "shark" / "0001.png", 1, (32, 32))
    with pytest.raises(DataError, match=r"super-class fish has classes"):
        folders.superclass_files(cifar_root, "train")


def test_empty_class_folder(cifar_root):
    (cifar_root / "train" / "fish" / "ray").mkdir()
    (cifar_root / "test" / "fish" / "ray").mkdir()
    with pytest.raises(DataError, match=r"no images in class folder .*ray"):
        folders.superclass_files(cifar_root, "train")


# ------------------------------------------------------------------ torchvision CIFAR-100 pickles


def write_cifar_python(root: Path, cifar_root: Path | None = None) -> None:
    """A tiny cifar-100-python set; with ``cifar_root``, the same images as that PNG tree."""
    fine_names = ["whale", "trout", "beaver", "aquarium_fish", "otter"]  # not alphabetical on purpose
    coarse_names = ["sea_mammals", "fish"]  # not alphabetical on purpose
    coarse_of = {"whale": 0, "trout": 1, "beaver": 0, "aquarium_fish": 1, "otter": 0}
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, f)
    for split, n in (("train", 3), ("test", 2)):
        # Interleave classes so the loader must regroup them (dataset order kept within a class).
        order = [(fine, i) for i in range(n) for fine in fine_names]
        data = np.zeros((len(order), 3072), dtype=np.uint8)
        for row, (fine, i) in enumerate(order):
            sc = coarse_names[coarse_of[fine]]
            img = np.full((32, 32, 3), value_of(split, sc, fine, i), dtype=np.uint8)
            img[0, 1] = (7, 8, 9)  # distinguishes channels to check the CHW -> HWC conversion
            data[row] = img.transpose(2, 0, 1).reshape(-1)
            if cifar_root is not None:
                path = cifar_root / split / sc / fine / f"{i + 1:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
        blob = {
            "data": data,
            "fine_labels": [fine_names.index(f) for f, _ in order],
            "coarse_labels": [coarse_of[f] for f, _ in order],
        }
        with open(folder / split, "wb") as f:
            pickle.dump(blob, f)


def test_cifar_python_matches_superclass_folders(tmp_path, cache_dir):
    png_root = tmp_path / "png"
    write_cifar_python(tmp_path / "tv", png_root)
    for split in ("train", "test"):
        from_pickle = folders.load_cifar100_python(tmp_path / "tv", split)
        from_png = folders.load_superclass_split(png_root, split, cache_dir=cache_dir)
        assert list(from_pickle) == list(from_png) == ["fish", "sea_mammals"]
        for sc in from_png:
            assert from_pickle[sc].class_names == from_png[sc].class_names
            np.testing.assert_array_equal(from_pickle[sc].labels, from_png[sc].labels)
            np.testing.assert_array_equal(from_pickle[sc].images, from_png[sc].images)
    assert from_pickle["sea_mammals"].images[0, 0, 1].tolist() == [7, 8, 9]
    # The cifar-100-python folder itself is accepted as root.
    assert list(folders.load_cifar100_python(tmp_path / "tv" / "cifar-100-python", "test")) == list(from_png)


def test_cifar_python_missing(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-100 python files not found under .*missing cifar-100-python/"):
        folders.load_cifar100_python(tmp_path, "train")


def test_cifar_python_download_passthrough(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            write_cifar_python(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    out = folders.load_cifar100_python(tmp_path, "train", download=True)
    assert calls == [(str(tmp_path), True, True)]
    assert out["fish"].class_names == ["aquarium_fish", "trout"]


def test_cifar_python_malformed(tmp_path):
    write_cifar_python(tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read CIFAR-100 file .*train"):
        folders.load_cifar100_python(tmp_path, "train")


# ------------------------------------------------------------------ validation split


def test_split_validation_stratified_and_deterministic():
    labels = np.repeat(np.arange(5), 100)
    tr, va = arrays.split_validation(labels, 0.1, seed=3)
    assert np.bincount(labels[va]).tolist() == [10] * 5
    assert np.bincount(labels[tr]).tolist() == [90] * 5
    tr2, va2 = arrays.split_validation(labels, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    _, va3 = arrays.split_validation(labels, 0.1, seed=4)
    assert not np.array_equal(va, va3)
    assert tr.dtype == va.dtype == np.int64


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_validation_partitions_and_keeps_a_training_sample(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    tr, va = arrays.split_validation(labels, fraction, seed)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(labels)))
    for c, n in enumerate(counts):
        n_val = int((labels[va] == c).sum())
        assert n_val == min(round(fraction * n), n - 1)


def test_split_validation_rejects_bad_fraction():
    with pytest.raises(ValueError):
        arrays.split_validation([0, 1], 1.0, 0)


# ------------------------------------------------------------------ FER2013


@pytest.fixture
def fer_root(tmp_path: Path) -> Path:
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for k, emo in enumerate(folders.FER2013_EMOTIONS):
            for i in range(n):
                write_image(tmp_path / "fer2013" / split / emo / f"{usage[split]}_{k}{i}.jpg", 30 * k, (48, 48), "L")
    return tmp_path


def test_fer2013(fer_root, cache_dir):
    train = folders.load_fer2013(fer_root, "train", cache_dir=cache_dir)
    assert train.images.shape == (14, 48, 48, 1)
    assert train.class_names == list(folders.FER2013_EMOTIONS)
    assert np.bincount(train.labels).tolist() == [2] * 7
    assert abs(pixel(train.images, 13) - 180) <= 2  # JPEG is lossy
    assert len(folders.fer2013_files(fer_root / "fer2013", "val").paths) == 7  # fer2013/ itself accepted


def test_fer2013_missing(tmp_path):
    with pytest.raises(DataError) as exc:
        folders.fer2013_files(tmp_path, "train")
    assert f"FER2013 images not found under {tmp_path}: missing fer2013/" in str(exc.value)
    assert "fer2013/train/<emotion>/Training_<id>.jpg" in str(exc.value)


def test_fer2013_missing_split_and_emotion(fer_root):
    import shutil

    shutil.rmtree(fer_root / "fer2013" / "test")
    with pytest.raises(DataError, match=r"missing fer2013/test/"):
        folders.fer2013_files(fer_root, "test")
    shutil.rmtree(fer_root / "fer2013" / "val" / "sad")
    with pytest.raises(DataError, match=r"missing fer2013/val/sad/"):
        folders.fer2013_files(fer_root, "val")


# ------------------------------------------------------------------ LFW

PEOPLE = {"Ann_A": 3, "Bob_B": 2, "Cid_C": 1, "Dee_D": 2, "Eve_E": 4, "Fay_F": 1}
PAIRS_TXT = """2\t1
Ann_A\t1\t2
Ann_A\t1\tCid_C\t1
Dee_D\t1\t2
Dee_D\t2\tFay_F\t1
"""


@pytest.fixture
def lfw_root(tmp_path: Path) -> Path:
    for k, (name, n) in enumerate(PEOPLE.items()):
        for i in range(n):
            write_image(tmp_path / "lfw" / name / f"{name}_{i + 1:04d}.jpg", 20 * k, (16, 16), "L")
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    return tmp_path


def test_lfw_pairs(lfw_root):
    pairs = faces.load_lfw_pairs(lfw_root)
    assert len(pairs) == 4 and [len(f) for f in pairs.folds] == [2, 2]
    first = pairs.fold(1)[0]
    assert first.same and first.path_a == lfw_root / "lfw" / "Ann_A" / "Ann_A_0001.jpg"
    assert first.path_b.name == "Ann_A_0002.jpg"
    second = pairs.fold(1)[1]
    assert not second.same and second.path_b.name == "Cid_C_0001.jpg"
    assert pairs.identities(2) == {"Dee_D", "Fay_F"}
    with pytest.raises(ValueError):
        pairs.fold(0)
    paths, idx, same = pairs.fold_arrays(2)
    assert [p.name for p in paths] == ["Dee_D_0001.jpg", "Dee_D_0002.jpg", "Fay_F_0001.jpg"]
    assert idx.tolist() == [[0, 1], [1, 2]] and same.tolist() == [True, False]


def test_lfw_pairs_root_may_be_the_lfw_folder(lfw_root):
    pairs = faces.load_lfw_pairs(lfw_root / "lfw", lfw_root / "pairs.txt")
    assert pairs.lfw_dir == lfw_root / "lfw"


def test_lfw_training_set_unrestricted(lfw_root):
    pairs = faces.load_lfw_pairs(lfw_root)
    # Fold 2 held out: Dee_D and Fay_F excluded; Ann, Bob, Eve have >= 2 images; Cid has 1.
    train = faces.lfw_training_set(pairs, 2)
    assert train.class_names == ["Ann_A", "Bob_B", "Eve_E"]
    assert np.bincount(train.labels).tolist() == [3, 2, 4]
    assert train.paths[0].name == "Ann_A_0001.jpg"
    assert faces.lfw_training_set(pairs, 2, min_images=4).class_names == ["Eve_E"]
    assert faces.lfw_training_set(pairs, 1).class_names == ["Bob_B", "Dee_D", "Eve_E"]


def test_lfw_pairs_errors(lfw_root, tmp_path):
    (lfw_root / "pairs.txt").write_text("2\t1\nAnn_A\t1\t2\n")
    with pytest.raises(DataError, match=r"expected 4 pair lines, found 1"):
        faces.load_lfw_pairs(lfw_root)
    (lfw_root / "pairs.txt").write_text(PAIRS_TXT.replace("Ann_A\t1\tCid_C\t1", "Ann_A\t1\tCid_C"))
    with pytest.raises(DataError, match=r"line 3: expected 'name1 i name2 j'"):
        faces.load_lfw_pairs(lfw_root)
    (lfw_root / "pairs.txt").write_text(PAIRS_TXT.replace("Ann_A\t1\t2", "Ann_A\t1\t9"))
    with pytest.raises(DataError, match=r"1 image\(s\) referenced by pairs in .* not found: .*Ann_A_0009\.jpg"):
        faces.load_lfw_pairs(lfw_root)
    (lfw_root / "pairs.txt").unlink()
    with pytest.raises(DataError, match=r"LFW pairs file not found under .*missing pairs\.txt"):
        faces.load_lfw_pairs(lfw_root)


def test_lfw_missing_images(tmp_path):
    with pytest.raises(DataError) as exc:
        faces.load_lfw_pairs(tmp_path)
    assert f"LFW images not found under {tmp_path}: missing lfw/" in str(exc.value)
    assert "lfw/<Person_Name>/<Person_Name>_0001.jpg" in str(exc.value)


def test_lfw_gender(lfw_root):
    (lfw_root / "lfw-gender.csv").write_text("image,gender\nAnn_A/Ann_A_0001.jpg,female\nBob_B/Bob_B_0002.jpg,male\n")
    g = faces.load_lfw_gender(lfw_root)
    assert g.class_names == ["male", "female"] and g.labels.tolist() == [1, 0]
    assert g.paths[1] == lfw_root / "lfw" / "Bob_B" / "Bob_B_0002.jpg"
    (lfw_root / "lfw-gender.csv").write_text("image,gender\nAnn_A/Ann_A_0001.jpg,other\n")
    with pytest.raises(DataError, match=r"line 2: gender must be male or female"):
        faces.load_lfw_gender(lfw_root)
    (lfw_root / "lfw-gender.csv").write_text("image,gender\nZed/Zed_0001.jpg,male\n")
    with pytest.raises(DataError, match=r"not found: .*Zed_0001\.jpg"):
        faces.load_lfw_gender(lfw_root)


# ------------------------------------------------------------------ UTKFace

UTK_NAMES = [
    "1_0_0_20161219140623097.jpg.chip.jpg",
    "26_1_2_20170116174525125.jpg.chip.jpg",
    "61_0_4_20170109142408075.jpg.chip.jpg",
    "24_0_1_20170116220224657 .jpg.chip.jpg",  # stray space in the date: labels still clean
    "39_1_20170116174525125.jpg.chip.jpg",  # race missing: malformed
    "61_1_20170109150557335.jpg.chip.jpg",  # race missing: malformed
    "x_1_0_20170109150557335.jpg.chip.jpg",  # age not a number: malformed
]


def test_utkface_labels_and_malformed_names(tmp_path, caplog):
    for i, name in enumerate(UTK_NAMES):
        write_image(tmp_path / "UTKFace" / name, i, (8, 8))
    with caplog.at_level(logging.WARNING, logger="clbench.datasets.faces"):
        utk = faces.load_utkface(tmp_path)
    assert utk.malformed == 3 and len(utk.malformed_names) == 3
    assert "skipped 3 UTKFace file(s) with malformed names" in caplog.text
    assert [p.name for p in utk.paths] == sorted(UTK_NAMES[:4])
    by_name = {p.name: (a, g, r) for p, a, g, r in zip(utk.paths, utk.age, utk.gender, utk.race, strict=True)}
    assert by_name["26_1_2_20170116174525125.jpg.chip.jpg"] == (26, 1, 2)
    assert by_name["24_0_1_20170116220224657 .jpg.chip.jpg"] == (24, 0, 1)
    assert utk.gender_task().class_names == ["male", "female"]
    age = utk.age_task()
    assert age.class_names[age.labels[utk.paths.index(tmp_path / "UTKFace" / UTK_NAMES[2])]] == "60+"


def test_utkface_missing(tmp_path):
    with pytest.raises(DataError, match=r"UTKFace images not found under .*missing UTKFace/"):
        faces.load_utkface(tmp_path)


@pytest.mark.parametrize(
    ("age", "group"),
    [(0, "0-2"), (2, "0-2"), (3, "0-2"), (4, "4-6"), (7, "4-6"), (8, "8-13"), (14, "8-13"), (15, "15-20"),
     (22, "15-20"), (23, "25-32"), (32, "25-32"), (35, "25-32"), (36, "38-43"), (45, "38-43"), (46, "48-53"),
     (56, "48-53"), (57, "60+"), (60, "60+"), (116, "60+")],
)  # fmt: skip
def test_adience_age_group(age, group):
    assert faces.ADIENCE_AGE_GROUPS[faces.adience_age_group(age)] == group


def test_adience_age_group_is_nearest_group_with_ties_to_younger():
    lows = [0, 4, 8, 15, 25, 38, 48, 60]
    highs = [2, 6, 13, 20, 32, 43, 53, 10**6]
    for age in range(0, 100):
        dist = [0 if lo <= age <= hi else min(abs(age - lo), abs(age - hi)) for lo, hi in zip(lows, highs, strict=True)]
        assert faces.adience_age_group(age) == dist.index(min(dist))
    np.testing.assert_array_equal(faces.adience_age_group(np.array([3, 23, 70])), [0, 4, 7])


# ------------------------------------------------------------------ array datasets


def test_array_dataset_sample_and_targets():
    images = np.zeros((4, 5, 6, 3), dtype=np.uint8)
    images[1, :, :, 0] = 255
    ds = arrays.ArrayDataset(images, np.array([0, 1, 1, 2]))
    assert ds.targets == [0, 1, 1, 2] and all(type(t) is int for t in ds.targets)
    x, y = ds[1]
    assert x.shape == (3, 5, 6) and x.dtype == torch.float32 and y == 1
    assert x[0].eq(1.0).all() and x[1].eq(0.0).all()


def test_array_dataset_normalisation_and_uint8_transform():
    images = np.zeros((2, 4, 4, 1), dtype=np.uint8)
    images[0, :, 0, 0] = 255  # left column white
    ds = arrays.ArrayDataset(images, [0, 1], transform=v2.RandomHorizontalFlip(p=1.0), mean=[0.5], std=[0.25])
    x, _ = ds[0]
    assert x[0, :, 3].eq((1.0 - 0.5) / 0.25).all()  # flipped to the right, then normalised
    assert x[0, :, 0].eq((0.0 - 0.5) / 0.25).all()
    seen = []
    ds2 = arrays.ArrayDataset(images, [0, 1], transform=lambda t: seen.append(t.dtype) or t)
    ds2[0]
    assert seen == [torch.uint8]


def test_array_dataset_float_transform_is_not_rescaled():
    images = np.full((1, 2, 2, 1), 255, dtype=np.uint8)
    ds = arrays.ArrayDataset(images, [0], transform=v2.ToDtype(torch.float32, scale=True))
    assert ds[0][0].eq(1.0).all()


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    mean, std = arrays.channel_stats(images)
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(0) / 255)
    np.testing.assert_allclose(std, images.reshape(-1, 3).std(0) / 255)


def test_dataloader_and_memmap_pickling(tmp_path, cache_dir):
    paths = [tmp_path / f"{i}.png" for i in range(6)]
    for i, p in enumerate(paths):
        write_image(p, 40 * i, (8, 8))
    images = cache.load_images(paths, None, "RGB", cache_dir)
    ds = arrays.ArrayDataset(images[2:5], [0, 1, 2])
    clone = pickle.loads(pickle.dumps(ds))
    assert isinstance(clone.images, np.memmap)  # re-mapped, not copied
    assert len(pickle.dumps(ds)) < images[2:5].nbytes
    torch.testing.assert_close(clone[1][0], ds[1][0])
    assert round(float(clone[0][0][0, 0, 0]) * 255) == 80
    xb, yb = next(iter(DataLoader(ds, batch_size=3)))
    assert xb.shape == (3, 3, 8, 8) and yb.tolist() == [0, 1, 2]


def test_pair_dataset():
    images = np.stack([np.full((4, 4, 1), v, dtype=np.uint8) for v in (0, 100, 200)])
    ds = arrays.PairDataset(images, np.array([[0, 1], [2, 2]]), [False, True])
    a, b, same = ds[1]
    assert a.shape == (1, 4, 4) and torch.equal(a, b) and same is True
    assert ds.targets == [0, 1] and len(ds) == 2
    xa, xb, s = next(iter(DataLoader(ds, batch_size=2)))
    assert xa.shape == (2, 1, 4, 4) and s.tolist() == [False, True]
    with pytest.raises(ValueError, match="out of range"):
        arrays.PairDataset(images, np.array([[0, 3]]), [True])


def test_scan_image_folder_enters_a_symlink_loop_once(tmp_path):
    """A link back to a parent used to list the class's images once per level of the loop."""
    for cls in ("a", "b"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        Image.new("L", (4, 4)).save(tmp_path / cls / "x.png")
        Image.new("L", (4, 4)).save(tmp_path / cls / "sub" / "y.png")
    os.symlink(tmp_path / "a", tmp_path / "a" / "sub" / "loop")
    found = folders.scan_image_folder(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in found.paths]
    assert names == ["a/x.png", "a/sub/y.png", "b/x.png", "b/sub/y.png"]  # torchvision order
