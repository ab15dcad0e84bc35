"""`individual` and `finetune_previous` publish the accuracy goals PAE and CPG read."""

from __future__ import annotations

import csv

import pytest

from clbench.cli import main
from clbench.isolation import read_goals

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIGITS_TASKS = ["digits_01", "digits_23", "digits_45", "digits_67", "digits_89"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["individual", "finetune_previous"])
def test_goal_baselines_write_the_goals_file(strategy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/goals/ is relative to the working directory
    out = tmp_path / "run"
    argv = ["run", "--strategy", strategy, "--benchmark", "digits", "--recipe", "tiny", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    published = tmp_path / "runs" / "goals" / "digits.csv"
    rows = list(csv.DictReader(published.read_text().splitlines()))
    assert [r["task"] for r in rows] == DIGITS_TASKS
    assert all(0.5 < float(r["goal"]) <= 1.0 for r in rows)
    assert rows[0]["source"] == f"{strategy} run {out.name}"
    assert (out / "goals.csv").read_text() == published.read_text()
    # What PAE/CPG look up first.
    assert set(read_goals("digits", None, tmp_path / "runs" / "goals", strategy)) == set(DIGITS_TASKS)
