"""Joint multi-task baselines end to end on a tiny synthetic facial4_mini (4 tasks, one verification)."""

from __future__ import annotations

import numpy as np
import pytest

from clbench import results
from clbench.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
