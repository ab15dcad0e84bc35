"""Bad data trees under --data-root: one line naming the file, what the benchmark expects and
the fix, exit 2, and no results written (issue 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import cifar_tree
from PIL import Image

from clbench.datasets.folders import CIFAR100_SUPERCLASSES


def _refused(run_cli, tmp_path: Path, argv: list[str]) -> str:
    out = tmp_path / "run"
    code, err = run_cli(["run", *argv, "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


def test_an_odd_size_image_names_the_expected_size_and_that_no_flag_resizes(tmp_path, run_cli):
    root = cifar_tree(tmp_path / "data")
    odd = root / "train" / CIFAR100_SUPERCLASSES[2] / "c1" / "1.png"
    Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8)).save(odd)
    err = _refused(run_cli, tmp_path, ["--benchmark", "cifar100_20", "--data-root", str(root)])
    assert str(odd) in err and "28x28" in err and "32x32 expected" in err, err
    assert "no flag or config field resizes them" in err and "size=(height" not in err, err


def test_an_odd_size_first_image_is_the_one_named(tmp_path, run_cli):
    root = cifar_tree(tmp_path / "data")
    odd = root / "train" / CIFAR100_SUPERCLASSES[0] / "c0" / "0.png"  # the first file read
    Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8)).save(odd)
    err = _refused(run_cli, tmp_path, ["--benchmark", "cifar100_20", "--data-root", str(root)])
    assert f"{odd} is 28x28" in err, err


def test_a_missing_test_split_is_one_line_with_the_layout_under_verbose(tmp_path, run_cli):
    root = tmp_path / "data"
    (root / "train" / CIFAR100_SUPERCLASSES[0] / "c0").mkdir(parents=True)
    argv = ["--benchmark", "cifar100_20", "--data-root", str(root)]
    err = _refused(run_cli, tmp_path, argv)
    assert "missing test/" in err and "--data-root" in err and "--verbose" in err, err
    code, verbose = run_cli(["run", *argv, "--out", str(tmp_path / "run"), "--quiet", "--verbose"])
    assert code == 2 and "Expected layout:" in verbose and "test/<superclass>/<fine_class>/*.png" in verbose
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------- loader fuzz
# Every benchmark that reads a tree under --data-root, with the tree damaged the ways real
# extractions are: a split missing, a class emptied, another image mode or size, a file that is
# not an image, a symlink loop, a file that cannot be read. Each ends in a successful load or in
# one line, exit 2, and no run directory. (digits reads scikit-learn's bundled copy: no tree.)
# A load that succeeds is not trained on here: training on the checked tasks is what every
# other end-to-end test does.

import shutil  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clbench.errors import ClbenchError  # noqa: E402

FINE_CLASSES = ["a", "b", "c"]


def _folder(base: Path, classes: list[str], per_class: int, suffix: str, size: int = 16) -> None:
    rng = np.random.default_rng(len(str(base)))
    for c in classes:
        (base / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / c / f"{c}_{i}{suffix}")


def fine_grained_tree(root: Path) -> Path:
    from clbench_benchmarks import fine_grained6 as fg

    _folder(root / "imagenet" / "train", ["n01", "n02"], 3, ".JPEG")
    _folder(root / "imagenet" / "val", ["n01", "n02"], 5, ".JPEG")
    for task in fg.TASKS[1:]:
        _folder(root / task / "train", FINE_CLASSES, 10, ".jpg")  # valid_fraction 0.1: one per class
        _folder(root / task / "test", FINE_CLASSES, 2, ".jpg")
    return root


BENCHMARKS = {  # name: (tree builder, extra CLI options)
    "cifar100_20": (lambda root, faces: cifar_tree(root, per_class=1), []),
    "facial4_mini": (lambda root, faces: Path(shutil.copytree(faces, root, symlinks=True)), []),
    "fine_grained6": (lambda root, faces: fine_grained_tree(root), ["--fine_grained6.pretrained", "false"]),
}
DAMAGE = ("remove_dir", "empty_class", "other_mode", "other_size", "not_an_image", "garbage_image",
          "symlink_loop", "dangling_link", "dir_named_like_image")  # fmt: skip


@pytest.fixture(scope="module")
def base_trees(tmp_path_factory, faces) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name) / "data", faces) for name, (build, _) in BENCHMARKS.items()}


def _damage(root: Path, kind: str, pick: int) -> None:
    dirs = sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    folder, image = dirs[pick % len(dirs)], files[pick % len(files)]
    if kind == "remove_dir":
        shutil.rmtree(folder)
    elif kind == "empty_class":
        for p in image.parent.iterdir():
            if p.is_file():
                p.unlink()
    elif kind in ("other_mode", "other_size"):
        with Image.open(image) as im:
            size, fmt = im.size, im.format
        mode, size = ("LA", size) if kind == "other_mode" else ("RGB", (size[0] + 3, size[1] - 1))
        img = Image.new(mode if fmt != "JPEG" or mode != "LA" else "L", size, 128)
        img.save(image, format=fmt)
    elif kind == "not_an_image":
        (folder / "README.txt").write_text("not an image")
    elif kind == "garbage_image":
        image.write_bytes(b"\x89PNG not really")
    elif kind == "symlink_loop":
        (folder / f"loop{pick}").symlink_to(folder.parent if folder != root else root, target_is_directory=True)
    elif kind == "dangling_link":
        (image.parent / f"gone{pick}.jpg").symlink_to(root / "nowhere.jpg")
    elif kind == "dir_named_like_image":
        (image.parent / f"folder{pick}.png").mkdir(exist_ok=True)


def _load(name: str, root: Path) -> None:
    from clbench import config as cfg
    from clbench.manager import load_plugins
    from clbench.taskcheck import check_tasks

    bench_cls = load_plugins().benchmarks.get(name)
    options = {"data_root": str(root), **({"pretrained": False} if name == "fine_grained6" else {})}
    bench = bench_cls(cfg.resolve(bench_cls.Config, name, [options]))
    check_tasks(bench.load_tasks(), bench)  # what a run does before it writes anything


@settings(max_examples=15, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(name=st.sampled_from(sorted(BENCHMARKS)),
       damage=st.lists(st.tuples(st.sampled_from(DAMAGE), st.integers(0, 10**6)), min_size=1, max_size=3))  # fmt: skip
def test_any_damaged_tree_loads_or_is_one_line_exit_2_and_no_results(tmp_path_factory, base_trees, run_cli,
                                                                      name, damage):  # fmt: skip
    work = tmp_path_factory.mktemp("fuzz")
    root = Path(shutil.copytree(base_trees[name], work / "data", symlinks=True))
    for kind, pick in dict(damage).items():  # each kind once
        _damage(root, kind, pick)
    try:
        _load(name, root)
    except ClbenchError:
        out = work / "run"
        code, err = run_cli(["run", "--benchmark", name, "--data-root", str(root), "--out", str(out), "--quiet",
                             "--device", "cpu", *BENCHMARKS[name][1]])  # fmt: skip
        # Warnings (a skipped file, training from scratch) may come first; the error is one line.
        errors = [line for line in err.splitlines() if line.startswith("clbench: error: ")]
        assert code == 2 and len(errors) == 1 and err.endswith(errors[0] + "\n"), (damage, err)
        assert "Traceback" not in err
        assert not out.exists(), damage
