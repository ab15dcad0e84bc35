"""Shared fixtures. Real data lives in ../shared/data beside the checkout (see its README).

Its archives are extracted once per session into a temporary folder, or, when ``CLBENCH_CACHE``
is set, once for good into ``$CLBENCH_CACHE/extracted/<name>-<checksum>`` so later runs reuse
them. Override the data folder with ``CLBENCH_SHARED_DATA``. Nothing is extracted into the
checkout. Tests that need it skip, naming the folder, when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import realdata
from realdata import CIFAR_PARTS, SHARED_DATA  # tests/ is on sys.path (rootdir conftest)

Extract = Callable[[str, list[str]], Path]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep image caches written by tests out of the user's ~/.cache.
    if "CLBENCH_CACHE" not in os.environ:
        monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "clbench-cache"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core runner OpenMP spin-waits
    made the layer tests 5x slower; the setting is restored for the rest of the session."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _image(rng, path: Path, size: int, mode: str) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


@pytest.fixture(scope="session")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The facial4_mini layout with a handful of random images: 24 LFW identities of 3 images
    (fold k pairs persons 2k and 2k+1; persons 20..23 are in no pair), 40 UTKFace images, and
    FER2013 with 3 / 2 / 2 images per emotion in train / val / test."""
    import numpy as np

    from clbench.datasets.folders import FER2013_EMOTIONS

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("faces")
    people = [f"Person_{i:02d}" for i in range(24)]
    for name in people:
        for i in range(1, 4):
            _image(rng, root / "lfw" / name / f"{name}_{i:04d}.jpg", 24, "L")
    lines = ["10 1"]
    for fold in range(10):
        a, b = people[2 * fold : 2 * fold + 2]
        lines += [f"{a} 1 2", f"{a} 1 {b} 2"]
    (root / "lfw-pairs.txt").write_text("\n".join(lines) + "\n")
    for i in range(40):
        _image(rng, root / "UTKFace" / f"{5 + 2 * i}_{i % 2}_0_2017010100000{i:03d}.jpg.chip.jpg", 24, "RGB")
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for emotion in FER2013_EMOTIONS:
            for i in range(n):
                _image(rng, root / "fer2013" / split / emotion / f"{split}_{emotion}_{i}.jpg", 16, "L")
    return root


def _run_cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from clbench.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(argv) -> (exit code, stderr)``: the CLI in-process, stdout discarded."""
    return _run_cli


def cifar_tree(root: Path, size: int = 32, per_class: int = 2) -> Path:
    """A complete cifar2png super-class tree (20 super-classes x 5 classes, train and test) of
    random ``size`` x ``size`` RGB PNGs."""
    import numpy as np

    from clbench.datasets.folders import CIFAR100_SUPERCLASSES

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for superclass in CIFAR100_SUPERCLASSES:
            for c in range(5):
                for i in range(per_class):
                    _image(rng, root / split / superclass / f"c{c}" / f"{i}.png", size, "RGB")
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CLBENCH_SHARED_DATA to its folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def extract(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Extract:
    """``extract(name, archives)``: a folder holding the archives' contents, extracted once."""
    done: dict[str, Path] = {}
    env_cache = os.environ.get("CLBENCH_CACHE")

    def _extract(name: str, archives: list[str]) -> Path:
        if name not in done:
            try:
                done[name] = realdata.extract(
                    name, [shared_data / a for a in archives], cache=Path(env_cache) if env_cache else None,
                    dest=None if env_cache else tmp_path_factory.mktemp(name),
                )  # fmt: skip
            except FileNotFoundError as missing:
                pytest.skip(str(missing))
        return done[name]

    return _extract


@pytest.fixture(scope="session")
def cifar_root(extract: Extract) -> Path:
    return extract("cifar100", CIFAR_PARTS)
