"""`individual` and `finetune_previous` publish the accuracy goals PAE and CPG read, keyed by
what produced them (clbench.goals)."""

from __future__ import annotations

import pytest

from clbench import goals as goalfiles
from clbench.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIGITS_TASKS = ["digits_01", "digits_23", "digits_45", "digits_67", "digits_89"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["individual", "finetune_previous"])
def test_goal_baselines_write_the_goals_file(strategy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/goals/ is relative to the working directory
    out = tmp_path / "run"
    argv = ["run", "--strategy", strategy, "--benchmark", "digits", "--recipe", "tiny", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    [published] = (tmp_path / "runs" / "goals" / "digits").glob(f"{strategy}-tiny-5t-*-s0.csv")
    goals = goalfiles.read(published)
    assert list(goals.values) == DIGITS_TASKS
    assert all(0.5 < g <= 1.0 for g in goals.values.values())
    assert goals.key.producer == strategy and goals.key.recipe == "tiny" and goals.seeds == (0,)
    assert (out / "goals.csv").read_text() == published.read_text()
