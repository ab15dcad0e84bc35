"""fine_grained6, facial4 and the lazily decoded image dataset, on tiny trees in the real layouts."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clbench import config as cfg
from clbench.datasets.errors import DataError
from clbench.datasets.faces import ADIENCE_AGE_GROUPS, GENDER_NAMES
from clbench.datasets.lazy import ImageFileDataset
from clbench.errors import UsageError
from clbench.verification import PairSplit
from clbench_benchmarks import facial4 as f4
from clbench_benchmarks import fine_grained6 as fg

RNG = np.random.default_rng(0)


def _image(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def _folder(base: Path, classes: list[str], per_class: int, suffix: str = ".jpg") -> None:
    for c in classes:
        for i in range(per_class):
            _image(base / c / f"{c}_{i}{suffix}")


# ------------------------------------------------------------------------- lazy dataset


def test_image_file_dataset_decodes_on_access_and_keeps_targets(tmp_path):
    paths = [_image(tmp_path / "a" / "x.jpg"), _image(tmp_path / "b" / "y.png", mode="L")]
    ds = ImageFileDataset(paths, np.array([1, 0]))
    assert ds.root == str(tmp_path) + "/" and ds.paths == [str(p) for p in paths]
    assert ds.targets == [1, 0] and isinstance(ds.targets[0], int) and len(ds) == 2
    x, y = ds[1]  # greyscale file converted to RGB, scaled to [0, 1]
    assert x.shape == (3, 10, 12) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y == 0
    grey = ImageFileDataset(paths, [1, 0], mode="L")
    assert grey[0][0].shape == (1, 10, 12)
    sub = ds.subset([1], transform=lambda im: torch.zeros(3, 4, 4))
    assert sub.paths == [str(paths[1])] and sub.targets == [0] and sub[0][0].shape == (3, 4, 4)
    clone = pickle.loads(pickle.dumps(ds.subset([1])))  # DataLoader workers receive a pickled copy
    assert clone.paths == sub.paths and clone.targets == [0] and torch.equal(clone[0][0], x)
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImageFileDataset(paths, [0])


def test_image_file_dataset_names_an_unreadable_or_missing_file(tmp_path):
    bad = tmp_path / "c" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"not a jpeg")
    ds = ImageFileDataset([bad, tmp_path / "c" / "gone.jpg"], [0, 0])
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        ds[0]
    with pytest.raises(DataError, match=r"gone\.jpg"):
        ds[1]


# ----------------------------------------------------------------------- fine_grained6

FG_CLASSES = ["a", "b", "c"]


@pytest.fixture
def fine_root(tmp_path: Path) -> Path:
    """Every task: 3 classes, 4 train and 2 test images each; ImageNet: wnid folders, 5 val each."""
    root = tmp_path / "fg"
    wnids = ["n01440764", "n01443537", "n01484850"]
    _folder(root / "imagenet" / "train", wnids, 4, ".JPEG")
    _folder(root / "imagenet" / "val", wnids, 5, ".JPEG")
    for task in fg.TASKS[1:]:
        suffix = ".png" if task == "sketches" else ".jpg"
        _folder(root / task / "train", FG_CLASSES, 4, suffix)
        _folder(root / task / "test", FG_CLASSES, 2, suffix)
    return root


def _fine(root: Path, **kw: object) -> fg.FineGrained6:
    options = {"data_root": str(root), "valid_fraction": 0.25, **kw}
    return fg.FineGrained6(cfg.resolve(fg.FineGrained6Config, "fine_grained6", [options]))


def _names(ds: ImageFileDataset) -> set[str]:
    return set(ds.paths)


def test_fine_grained6_tasks_classes_and_stratified_splits(fine_root, caplog):
    with caplog.at_level(logging.WARNING):
        tasks = _fine(fine_root, pretrained=False).load_tasks()
    assert [t.name for t in tasks] == list(fg.TASKS)
    assert "pretrained = false" in caplog.text and "has 3 classes; the published benchmark has 200" in caplog.text
    assert fg.PRETRAINED_HEADS == {}
    imagenet, *others = tasks
    # ImageNet: all of train/ trains; val/ gives 1 of 5 per class to validation, the rest to test.
    assert imagenet.num_classes == 3 and len(imagenet.train) == 12
    assert sorted(imagenet.valid.targets) == [0, 1, 2] and sorted(imagenet.test.targets) == [0] * 4 + [1] * 4 + [2] * 4
    assert all("/val/" in p for p in imagenet.valid.paths + imagenet.test.paths)
    assert not _names(imagenet.valid) & _names(imagenet.test)
    for task in others:
        assert task.class_names == FG_CLASSES and task.kind == "classification"
        # round(0.25 * 4) = 1 validation image per class, carved from train/, disjoint from it.
        assert sorted(task.valid.targets) == [0, 1, 2] and sorted(task.train.targets) == [0] * 3 + [1] * 3 + [2] * 3
        assert not _names(task.train) & _names(task.valid)
        assert all("/train/" in p for p in task.valid.paths) and len(task.test) == 6
        for p, y in zip(task.train.paths, task.train.targets, strict=True):
            assert Path(p).parent.name == FG_CLASSES[y]


def test_fine_grained6_transforms_give_224_crops(fine_root):
    tasks = {t.name: t for t in _fine(fine_root, pretrained=False, tasks=("imagenet", "cubs_cropped")).load_tasks()}
    for task in tasks.values():
        for split in (task.train, task.valid, task.test):
            x, y = split[0]
            assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and isinstance(y, int)
    assert "Cutout(length=16)" in repr(tasks["cubs_cropped"].train.transform)
    assert "RandomResizedCrop" in repr(tasks["imagenet"].train.transform)
    assert "CenterCrop" in repr(tasks["imagenet"].test.transform)
    assert "CenterCrop" not in repr(tasks["cubs_cropped"].test.transform)  # cropped sets: resize to 224² only
    assert "Cutout" not in repr(fg.transforms(cropped=True, train=True, cutout=0))


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    for _ in range(20):
        out = fg.Cutout(16)(torch.ones(3, 40, 40))
        zero = out[0] == 0
        rows, cols = zero.any(dim=1).sum(), zero.any(dim=0).sum()
        assert 0 < rows <= 16 and 0 < cols <= 16 and int(zero.sum()) == rows * cols
        assert torch.equal(out[0] == 0, out[2] == 0)


def test_fine_grained6_missing_and_partial_roots_name_the_folders(tmp_path, fine_root):
    with pytest.raises(DataError) as err:
        _fine(tmp_path / "nowhere", pretrained=False).load_tasks()
    text = str(err.value)
    assert "imagenet/train/" in text and "imagenet/val/" in text and "sketches/test/" in text
    assert "Expected layout" in text and "cubs_cropped/{train,test}/<class>" in text
    import shutil

    shutil.rmtree(fine_root / "wikiart" / "test")
    with pytest.raises(DataError, match="missing wikiart/test/; point --data-root") as err:
        _fine(fine_root, pretrained=False).load_tasks()
    assert "cubs_cropped/train/," not in str(err.value)
    # Only the selected tasks are needed.
    assert len(_fine(fine_root, pretrained=False, tasks=("flowers",)).load_tasks()) == 1
    shutil.rmtree(fine_root / "flowers" / "test" / "b")
    with pytest.raises(DataError, match="different classes"):
        _fine(fine_root, pretrained=False, tasks=("flowers",)).load_tasks()


def test_fine_grained6_unreadable_image_is_named(fine_root):
    bad = fine_root / "cubs_cropped" / "test" / "a" / "a_0.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    (task,) = _fine(fine_root, pretrained=False, tasks=("cubs_cropped",)).load_tasks()
    with pytest.raises(DataError, match=r"cannot read image .*cubs_cropped/test/a/a_0\.jpg"):
        task.test[task.test.paths.index(str(bad))]


def test_fine_grained6_config_is_checked():
    with pytest.raises(UsageError, match="tasks"):
        fg.FineGrained6Config(tasks=("cubs_cropped", "imagenet"))
    with pytest.raises(UsageError, match="tasks"):
        fg.FineGrained6Config(tasks=("cubs",))
    with pytest.raises(UsageError, match="valid_fraction"):
        fg.FineGrained6Config(valid_fraction=1.0)


def test_fine_grained6_without_weights_says_where_it_looked(fine_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(DataError) as err:
        _fine(fine_root).load_tasks()
    text = str(err.value)
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in text
    assert "--fine_grained6.weights" in text and "--fine_grained6.pretrained false" in text
    with pytest.raises(DataError, match=r"weights file not found: .*nope\.pth"):
        _fine(fine_root, weights=str(tmp_path / "nope.pth")).load_tasks()
    # The explicit opt-out builds a randomly initialised backbone.
    net = _fine(fine_root, pretrained=False).backbone(1.0)
    assert net.out_features == 2048


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision resnet50 state dict (random weights, a 3-class head to match the tiny tree)."""
    from torchvision.models import resnet50

    torch.manual_seed(1)
    state = resnet50(weights=None, num_classes=3).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50-test.pth"
    torch.save(state, path)
    return path, state


def test_fine_grained6_loads_weights_and_the_imagenet_head(fine_root, resnet_weights):
    path, state = resnet_weights
    bench = _fine(fine_root, weights=str(path), tasks=("imagenet", "flowers"))
    tasks = bench.load_tasks()
    weight, bias = fg.PRETRAINED_HEADS["imagenet"]
    assert torch.equal(weight, state["fc.weight"]) and torch.equal(bias, state["fc.bias"])
    assert [t.name for t in tasks] == ["imagenet", "flowers"] and "flowers" not in fg.PRETRAINED_HEADS
    net = bench.backbone(1.0)
    assert torch.equal(net.conv1.weight, state["conv1.weight"])
    assert torch.equal(net.layer4[2].bn3.running_var, state["layer4.2.bn3.running_var"])
    # A head whose rows do not match the class folders is refused.
    import shutil

    shutil.copytree(fine_root / "imagenet" / "train" / "n01440764", fine_root / "imagenet" / "train" / "n09999999")
    shutil.copytree(fine_root / "imagenet" / "val" / "n01440764", fine_root / "imagenet" / "val" / "n09999999")
    with pytest.raises(DataError, match="has 3 classes but .* has 4 class folders"):
        _fine(fine_root, weights=str(path), tasks=("imagenet",)).load_tasks()


def test_fine_grained6_finds_weights_in_the_hub_cache(fine_root, resnet_weights, tmp_path, monkeypatch):
    path, _ = resnet_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    folder = tmp_path / "th" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "resnet50-11ad3fa6.pth").symlink_to(path)  # IMAGENET1K_V2: used only without V1
    (folder / "resnet50-0676ba61.pth").symlink_to(path)
    assert _fine(fine_root).weights_file() == folder / "resnet50-0676ba61.pth"
    (folder / "resnet50-0676ba61.pth").unlink()
    assert _fine(fine_root).weights_file() == folder / "resnet50-11ad3fa6.pth"


def _resolve_recipes(benchmark: type) -> None:
    from clbench.manager import load_plugins

    strategies = load_plugins().strategies
    for recipe in benchmark.recipes.values():
        for name in strategies.names():
            strategy = strategies.get(name)
            fields = cfg.fields_of(strategy.Config)
            common = {k: v for k, v in recipe.get("*", {}).items() if k in fields}
            cfg.resolve(strategy.Config, name, [common, recipe.get(name, {})])


@pytest.mark.parametrize("bench_cls", [fg.FineGrained6, f4.Facial4])
def test_recipes_resolve_for_every_strategy(bench_cls):
    assert bench_cls.default_recipe in bench_cls.recipes and "small" in bench_cls.recipes
    _resolve_recipes(bench_cls)


# ----------------------------------------------------------------------------- facial4

ADIENCE_HEADER = (
    "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"
)
# (age, gender) per row; every fold repeats them: 4 faces with a gender, 4 with one of the 8 groups.
ADIENCE_ROWS = [("(25, 32)", "m"), ("(8, 12)", "f"), ("(60, 100)", "u"), ("35", "f"), ("(38, 48)", ""), ("(0, 2)", "m")]


def _adience_fold(base: Path, k: int, images: str = "aligned") -> None:
    lines = [ADIENCE_HEADER]
    for i, (age, gender) in enumerate(ADIENCE_ROWS):
        user, original, face = f"{k}{i}@N0{k}", f"{1000 + i}_a1b2_o.jpg", str(10 * k + i)
        lines.append(f"{user}\t{original}\t{face}\t{age}\t{gender}\t1\t2\t300\t300\t0\t0\t50")
        _image(base / images / user / f"{f4.ADIENCE_PREFIX[images]}.{face}.{original}")
    (base / f"fold_{k}_data.txt").write_text("\n".join(lines) + "\n")


def _lfw(base: Path) -> None:
    """Ten people with two images; pairs.txt '10 1': fold k = one matched, one mismatched pair."""
    names = [f"Person_{chr(65 + k)}" for k in range(10)]
    for name in names:
        for i in (1, 2):
            _image(base / "lfw" / name / f"{name}_{i:04d}.jpg")
    lines = ["10\t1"]
    for k, name in enumerate(names):
        lines += [f"{name}\t1\t2", f"{name}\t1\t{names[(k + 1) % 10]}\t2"]
    (base / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def face_root(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    _folder(root / "vggface2" / "train", [f"n{i:06d}" for i in range(23)], 2)  # 20 held out + 3 train
    _lfw(root)
    for k in range(5):
        _adience_fold(root / "adience", k)
    _folder(root / "expression" / "train", ["anger", "happy", "sad"], 4)
    _folder(root / "expression" / "val", ["anger", "happy", "sad"], 2)
    return root


def _facial(root: Path, **kw: object) -> f4.Facial4:
    options = {"data_root": str(root), "valid_identities": 20, "valid_pairs_per_fold": 2,
               "expression_valid_fraction": 0.25, **kw}  # fmt: skip
    return f4.Facial4(cfg.resolve(f4.Facial4Config, "facial4", [options]))


def test_read_adience_fold_parses_the_released_format(tmp_path):
    _adience_fold(tmp_path, 3)
    fold = f4.read_adience_fold(tmp_path / "fold_3_data.txt", tmp_path / "aligned", "landmark_aligned_face")
    assert fold.age.tolist() == [4, 2, 7, -1, -1, 0]  # "35" and "(38, 48)" are off the 8 groups
    assert fold.gender.tolist() == [0, 1, -1, 1, -1, 0]  # u and blank have no gender label
    assert fold.off_grid_ages == 2
    assert fold.paths[0] == tmp_path / "aligned" / "30@N03" / "landmark_aligned_face.30.1000_a1b2_o.jpg"
    assert all(p.is_file() for p in fold.paths)
    assert [f4.adience_age_label(s) for s in ("( 0, 2)", "(15, 20)", "(48, 53)", "(38, 43)", "None", "")] == [
        0, 3, 6, 5, -1, -1,
    ]  # fmt: skip
    assert ADIENCE_AGE_GROUPS[f4.adience_age_label("(60, 100)")] == "60+"
    bad = tmp_path / "fold_9_data.txt"
    bad.write_text("user_id\tage\n")
    with pytest.raises(DataError, match="lacks column"):
        f4.read_adience_fold(bad, tmp_path, "x")
    bad.write_text(ADIENCE_HEADER + "\nu1\timg.jpg\n")
    with pytest.raises(DataError, match="line 2"):
        f4.read_adience_fold(bad, tmp_path, "x")


def test_facial4_tasks_classes_and_splits(face_root):
    tasks = _facial(face_root).load_tasks()
    assert [t.name for t in tasks] == ["face_verification", "gender", "emotion", "age0"]
    verification, gender, emotion, age = tasks
    assert verification.kind == "verification" and verification.head == "cosine"
    # 3 identities train (labels 0..2, contiguous); 20 are held out for validation pairs.
    assert verification.num_classes == 3 and sorted(verification.train.targets) == [0, 0, 1, 1, 2, 2]
    train_ids = {Path(p).parent.name for p in verification.train.paths}
    assert train_ids == set(verification.class_names)
    valid: PairSplit = verification.valid
    assert len(valid) == 20 and list(valid.eval_folds) == list(range(1, 11))
    assert valid.same.tolist() == [True, False] * 10
    assert valid.folds.tolist() == [k for k in range(1, 11) for _ in (0, 1)]
    ids = [{Path(valid.images.path(int(i))).parent.name for i in valid.pairs[valid.folds == k].ravel()}
           for k in range(1, 11)]  # fmt: skip
    assert all(not a & b for i, a in enumerate(ids) for b in ids[i + 1 :])  # identity-disjoint folds
    assert not set().union(*ids) & train_ids
    for m, s in zip(valid.pairs, valid.same, strict=True):
        same_person = Path(valid.images.path(int(m[0]))).parent == Path(valid.images.path(int(m[1]))).parent
        assert same_person == s and m[0] != m[1]
    # LFW: all ten folds evaluated, each fold's threshold from the other nine.
    test: PairSplit = verification.test
    assert len(test) == 20 and list(test.eval_folds) == list(range(1, 11)) and len(test.images) == 20
    assert test.threshold_source(1) == list(range(2, 11)) and test.same.sum() == 10
    # Adience: fold 0 tests, fold 1 validates, folds 2-4 train; 4 gendered and 4 aged faces per fold.
    assert gender.class_names == list(GENDER_NAMES) and age.class_names == list(ADIENCE_AGE_GROUPS)
    assert (len(gender.train), len(gender.valid), len(gender.test)) == (12, 4, 4)
    assert sorted(gender.test.targets) == [0, 0, 1, 1] and sorted(age.test.targets) == [0, 2, 4, 7]
    assert (len(age.train), len(age.valid), len(age.test)) == (12, 4, 4)
    # Expression: val/ is the test set, validation is 1 per class of train/.
    assert emotion.class_names == ["anger", "happy", "sad"] and len(emotion.test) == 6
    assert sorted(emotion.valid.targets) == [0, 1, 2] and len(emotion.train) == 9
    assert not set(emotion.train.paths) & set(emotion.valid.paths)


def test_facial4_inputs_are_112_and_normalised(face_root):
    tasks = _facial(face_root).load_tasks()
    samples = [tasks[0].train[0], tasks[0].valid.images[0], tasks[0].test.images[0]]
    samples += [t.train[0] for t in tasks[1:]] + [t.test[0] for t in tasks[1:]]
    for x, _ in samples:
        assert x.shape == (3, 112, 112) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    lazy = _facial(face_root, cache_images=False, image_size=64, adience_test_fold=4).load_tasks()
    assert lazy[3].name == "age4" and isinstance(lazy[3].train, ImageFileDataset)
    assert all("@N00/" in p for p in lazy[3].valid.paths)  # fold 0 validates when fold 4 tests
    assert all("@N04/" in p for p in lazy[3].test.paths) and lazy[1].test[0][0].shape == (3, 64, 64)
    net = _facial(face_root, image_size=64).backbone(1.0)
    assert net.out_features == 512 and net(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_facial4_missing_and_partial_roots_name_the_folders(tmp_path, face_root):
    with pytest.raises(DataError) as err:
        _facial(tmp_path / "nowhere").load_tasks()
    text = str(err.value)
    for part in ("vggface2/train/", "lfw/pairs.txt", "adience/fold_4_data.txt", "expression/val/", "Expected layout"):
        assert part in text
    (face_root / "adience" / "fold_2_data.txt").unlink()
    with pytest.raises(DataError, match="missing adience/fold_2_data.txt; point --data-root"):
        _facial(face_root).load_tasks()
    with pytest.raises(DataError, match="missing adience/faces/, adience/fold_2_data.txt"):
        _facial(face_root, adience_images="faces").load_tasks()


def test_facial4_missing_adience_image_is_named(face_root):
    gone = next((face_root / "adience" / "aligned").rglob("*.jpg"))
    gone.unlink()
    with pytest.raises(DataError, match=f"not found: {gone}"):
        _facial(face_root).load_tasks()


def test_facial4_config_is_checked(face_root):
    with pytest.raises(UsageError, match="adience_valid_fold"):
        f4.Facial4Config(adience_test_fold=2, adience_valid_fold=2)
    with pytest.raises(UsageError, match="valid_identities"):
        f4.Facial4Config(valid_identities=5)
    assert f4.Facial4Config(adience_test_fold=4).valid_fold == 0
    with pytest.raises(DataError, match="identities with >= 2 images"):
        _facial(face_root, valid_identities=23).load_tasks()
