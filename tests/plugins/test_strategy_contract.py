"""Every registered strategy must run the offline default end to end (how a plugin earns trust)."""

from __future__ import annotations

import pytest

from clbench import results
from clbench.cli import main
from clbench.manager import load_plugins

STRATEGIES = load_plugins().strategies.names()
PACKING = {"packnet", "pae", "cpg"}


def test_first_party_strategies_are_registered():
    assert {"finetune", "individual", "packnet", "pae", "cpg"} <= set(STRATEGIES)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_runs_the_offline_default(strategy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/goals/ written by `individual` stays in the temp dir
    out = tmp_path / "run"
    argv = ["run", "--strategy", strategy, "--recipe", "tiny", "--out", str(out), "--quiet", "--seed", "3"]
    if strategy in {"pae", "cpg"}:
        argv += [f"--{strategy}.goals", "self"]
    assert main(argv) == 0
    metrics = results.load_metrics(out)
    matrix = results.accuracy_matrix(metrics)
    assert matrix.shape == (5, 5)
    assert min(matrix.loc[t, t] for t in matrix.index) > 0.6
    if strategy in PACKING:
        # Parameter isolation: every task keeps exactly the accuracy it finished with.
        for task in matrix.columns:
            assert matrix.loc[task:, task].nunique() == 1, matrix
        table = results.task_table(metrics)
        assert (table["sparsity"] > 0).all()
        assert table["model_size_mb"].notna().all()
