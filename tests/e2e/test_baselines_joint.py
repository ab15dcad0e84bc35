"""Joint multi-task baselines end to end on a tiny synthetic facial4_mini (4 tasks, one verification)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clbench import results
from clbench.cli import main
from clbench.datasets.folders import FER2013_EMOTIONS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RNG = np.random.default_rng(0)


def _image(path, size, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = RNG.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The facial4_mini layout with a handful of random images (as tests/unit/test_benchmarks.py)."""
    root = tmp_path_factory.mktemp("faces")
    people = [f"Person_{i:02d}" for i in range(24)]
    for name in people:
        for i in range(1, 4):
            _image(root / "lfw" / name / f"{name}_{i:04d}.jpg", 24, "L")
    lines = ["10 1"]
    for fold in range(10):  # fold k names persons 2k, 2k+1; persons 20..23 are in no pair
        a, b = people[2 * fold : 2 * fold + 2]
        lines += [f"{a} 1 2", f"{a} 1 {b} 2"]
    (root / "lfw-pairs.txt").write_text("\n".join(lines) + "\n")
    for i in range(40):
        _image(root / "UTKFace" / f"{5 + 2 * i}_{i % 2}_0_2017010100000{i:03d}.jpg.chip.jpg", 24, "RGB")
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for emotion in FER2013_EMOTIONS:
            for i in range(n):
                _image(root / "fer2013" / split / emotion / f"{split}_{emotion}_{i}.jpg", 16, "L")
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "extra"),
    [
        ("joint_alternating", []),
        ("joint_mixed", ["--joint_mixed.pseudo-threshold", "0.3", "--joint_mixed.distill-weight", "1.0"]),
        ("joint_dynamic", []),
    ],
)
def test_joint_variants_run_on_facial4_mini(strategy, extra, faces, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--strategy", strategy, "--benchmark", "facial4_mini", "--data-root", str(faces),
            "--epochs", "1", f"--{strategy}.batch-size", "8", f"--{strategy}.lr", "0.001",
            "--facial4_mini.train-limit", "16", "--facial4_mini.eval-limit", "10",
            "--out", str(out), "--quiet", "--device", "cpu", *extra]  # fmt: skip
    assert main(argv) == 0
    metrics = results.load_metrics(out)
    matrix = results.accuracy_matrix(metrics)
    assert matrix.shape == (4, 4)  # a row per step: joint training on tasks 1..t
    assert matrix.notna().values[np.tril_indices(4)].all()
    assert set(metrics[metrics["eval_task"] == 1]["metric"]) >= {"accuracy", "val_accuracy"}  # verification scored
    if strategy == "joint_mixed":
        assert "seconds_teachers" in set(metrics["metric"])  # single-task models trained for pseudo-labels
