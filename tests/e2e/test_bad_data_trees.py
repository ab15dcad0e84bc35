"""Bad data trees under --data-root: one line naming the file, what the benchmark expects and
the fix, exit 2, and no results written (issue 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clbench.datasets.folders import CIFAR100_SUPERCLASSES


def cifar_tree(root: Path, size: int = 32, per_class: int = 2) -> Path:
    """A complete cifar2png super-class tree of random ``size``x``size`` PNGs."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for superclass in CIFAR100_SUPERCLASSES:
            for c in range(5):
                folder = root / split / superclass / f"c{c}"
                folder.mkdir(parents=True)
                for i in range(per_class):
                    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


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
