"""cifar100_20 and facial4_mini definitions on tiny synthetic data in their real layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clbench.cli import main
from clbench.datasets.errors import DataError
from clbench.datasets.folders import CIFAR100_SUPERCLASSES, FER2013_EMOTIONS
from clbench_benchmarks.cifar100_20 import Cifar100_20, Cifar100_20Config
from clbench_benchmarks.facial4_mini import Facial4Mini, Facial4MiniConfig

RNG = np.random.default_rng(0)


def _png(path, size=32, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = RNG.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


@pytest.fixture(scope="module")
def cifar_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    for superclass in CIFAR100_SUPERCLASSES:
        for c in range(5):
            for split, n in (("train", 10), ("test", 2)):
                for i in range(n):
                    _png(root / split / superclass / f"{superclass}_c{c}" / f"{i:04d}.png")
    return root


def test_cifar100_20_tasks_classes_and_validation(cifar_tree):
    tasks = Cifar100_20(Cifar100_20Config(data_root=str(cifar_tree), valid_fraction=0.2)).load_tasks()
    assert [t.name for t in tasks] == list(CIFAR100_SUPERCLASSES)
    first = tasks[0]
    assert first.num_classes == 5 and first.kind == "classification"
    assert (len(first.train), len(first.valid), len(first.test)) == (40, 10, 10)
    assert sorted(set(first.valid.targets)) == [0, 1, 2, 3, 4]  # stratified
    x, y = first.train[0]
    assert tuple(x.shape) == (3, 32, 32) and 0 <= y < 5


def test_cifar100_20_num_tasks_and_train_limit(cifar_tree):
    config = Cifar100_20Config(data_root=str(cifar_tree), num_tasks=3, train_limit=20)
    tasks = Cifar100_20(config).load_tasks()
    assert len(tasks) == 3 and all(len(t.train) == 20 for t in tasks)


def test_cifar100_20_missing_data_names_the_layout(tmp_path):
    with pytest.raises(DataError) as info:
        Cifar100_20(Cifar100_20Config(data_root=str(tmp_path))).load_tasks()
    message = str(info.value)
    assert str(tmp_path) in message and "train/<superclass>/<class>/*.png" in message


def _faces_tree(root):
    people = [f"Person_{i:02d}" for i in range(48)]
    for name in people:
        for i in range(1, 4):
            _png(root / "lfw" / name / f"{name}_{i:04d}.jpg", 24, "L")
    lines = ["10 1"]
    for fold in range(10):  # fold k uses persons 4k..4k+3; persons 40..47 are in no pair
        a, b, c, d = people[4 * fold : 4 * fold + 4]
        lines += [f"{a} 1 2", f"{c} 1 {d} 2"]
        del b
    (root / "lfw-pairs.txt").write_text("\n".join(lines) + "\n")
    for i in range(40):
        _png(root / "UTKFace" / f"{5 + 2 * i}_{i % 2}_0_2017010100000{i:03d}.jpg.chip.jpg", 24)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for emotion in FER2013_EMOTIONS:
            for i in range(n):
                _png(root / "fer2013" / split / emotion / f"{split}_{emotion}_{i}.jpg", 16, "L")
    return root


def test_facial4_mini_task_kinds_and_protocol(tmp_path):
    root = _faces_tree(tmp_path)
    tasks = Facial4Mini(Facial4MiniConfig(data_root=str(root))).load_tasks()
    assert [t.name for t in tasks] == ["face_verification", "gender", "expression", "age"]
    fv, gender, expression, age = tasks
    assert fv.kind == "verification" and gender.kind == expression.kind == age.kind == "classification"
    # Training identities: everyone outside the validation (9) and test (10) folds with >= 2 images.
    assert fv.num_classes == 48 - 6  # folds 9 and 10 name 3 people each
    assert list(fv.valid.eval_folds) == [9] and list(fv.test.eval_folds) == [10]
    assert fv.test.threshold_source(10) == [9]
    assert gender.num_classes == 2 and expression.num_classes == 7 and age.num_classes == 8
    x, _ = expression.train[0]
    assert tuple(x.shape) == (3, 64, 64)  # greyscale replicated, resized


def test_facial4_mini_missing_root_shows_layout(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    with pytest.raises(DataError) as info:
        Facial4Mini(Facial4MiniConfig(data_root=str(tmp_path))).load_tasks()
    message = str(info.value)
    assert "lfw/" in message and "fer2013/" in message and "UTKFace/ " not in message
    assert "fer2013/{train,val,test}/<emotion>/*.jpg" in message


@pytest.mark.slow
def test_facial4_mini_runs_cpg_end_to_end(tmp_path):
    root = _faces_tree(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["run", "--strategy", "cpg", "--benchmark", "facial4_mini", "--data-root", str(root), "--epochs", "1",
            "--cpg.goals", "self", "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    from clbench import results

    metrics = results.load_metrics(out)
    matrix = results.accuracy_matrix(metrics)
    assert matrix.shape == (4, 4)
    for task in matrix.columns:  # isolation: nothing changes after a task is learned
        assert matrix.loc[task:, task].nunique() == 1
    assert "val_accuracy" in set(metrics["metric"])


def test_facial4_mini_limits_limit_every_task_kind(tmp_path):
    """Issue 14: --facial4_mini.train-limit held for classification but not for the verification
    task, whose 42 identities each kept one image (42 > 14); the triplet task is built from the
    limited expression images."""
    root = _faces_tree(tmp_path)
    config = Facial4MiniConfig(data_root=str(root), train_limit=14, eval_limit=14, expression_similarity=True)
    tasks = Facial4Mini(config).load_tasks()
    assert {t.kind for t in tasks} == {"verification", "classification", "triplet"}
    for task in tasks:
        assert len(task.train) <= 14, f"{task.name}: {len(task.train)} training items under a limit of 14"
        if task.kind != "verification":
            assert len(task.valid) <= 14 and len(task.test) <= 14, task.name


def test_stratified_subset_is_at_most_the_limit_and_keeps_classes():
    import numpy as np

    from clbench.datasets.arrays import stratified_subset

    labels = np.repeat(np.arange(50), 3)  # more classes than the limit
    assert len(stratified_subset(labels, 20, 0)) == 20
    labels = np.repeat(np.arange(5), [30, 30, 30, 7, 3])  # rounding per class
    for limit in range(10, 100, 7):
        keep = stratified_subset(labels, limit, 0)
        assert len(keep) <= limit and set(labels[keep]) == set(range(5))
        assert list(keep) == sorted(set(keep.tolist()))


def test_digits_arrays_read_without_sklearn_equal_load_digits():
    import numpy as np
    from sklearn.datasets import load_digits

    from clbench_benchmarks.digits import load_digits_arrays

    images, target = load_digits_arrays()
    digits = load_digits()
    assert images.dtype == digits.images.dtype and np.array_equal(images, digits.images)
    assert target.dtype == digits.target.dtype and np.array_equal(target, digits.target)
