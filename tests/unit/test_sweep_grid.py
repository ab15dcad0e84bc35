"""The sweep grid (clbench.sweep_grid) and bad sweep input: one line, exit 2, before any work."""

from __future__ import annotations

import socket

import pytest

from clbench import sweep_grid
from clbench.cli import main


def test_a_strategy_grid_key_multiplies_only_that_strategy(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        '[sweep]\nstrategies = ["finetune", "packnet"]\nseeds = [0, 1]\n[sweep.grid]\n"finetune.lr" = [0.01, 0.05]\n'
        '[run]\nrecipe = "tiny"\n[packnet]\nprune_ratio = 0.5\n'
    )
    cells = sweep_grid.expand(sweep_grid.load_spec(spec_file, grid=["run.epochs=1"]))
    assert [c.id for c in cells] == [
        "digits-finetune-lr=0.01-epochs=1-s0",
        "digits-finetune-lr=0.01-epochs=1-s1",
        "digits-finetune-lr=0.05-epochs=1-s0",
        "digits-finetune-lr=0.05-epochs=1-s1",
        "digits-packnet-epochs=1-s0",
        "digits-packnet-epochs=1-s1",
    ]
    assert cells[2].layers == {
        "run": {"recipe": "tiny", "epochs": 1, "strategy": "finetune", "benchmark": "digits", "seed": 0},
        "finetune": {"lr": 0.05},
    }
    assert cells[4].layers["packnet"] == {"prune_ratio": 0.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--strategies", "finetune,nope"], "unknown strategy 'nope'; available:"),
        (["--strategies", "finetune", "--grid", "finetune.lrr=0.1"], "unknown finetune option 'lrr'"),
        (["--strategies", "finetune", "--grid", "packnet.lr=0.1"], "'packnet' is neither 'run' nor"),
        (["--strategies", ""], "empty grid: the sweep has no strategies"),
        (["--strategies", "finetune", "--seeds", ""], "empty grid: the sweep has no seeds"),
        (["--strategies", "finetune", "--grid", "finetune.lr="], "empty grid: grid key 'finetune.lr' has no values"),
        (["--strategies", "finetune", "--address", f"127.0.0.1:{_free_port()}"], "cannot reach a Ray cluster"),
        (["--strategies", "finetune", "--cpus-per-run", "0"], "--cpus-per-run must be > 0"),
    ],
)
def test_bad_sweep_gives_one_line_and_exit_2_before_any_work(args, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["sweep", *args, "--out", "sw"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "sw").exists() and not (tmp_path / "runs").exists()


def test_a_directory_holding_another_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text('{"cells": []}')
    assert main(["sweep", "--strategies", "finetune", "--out", str(tmp_path / "sw")]) == 2
    assert "holds another sweep" in capsys.readouterr().err


def test_goal_cells_are_resolved_lowest_seed_first(tmp_path):
    from clbench.cli import _resolved_spec
    from clbench.sweep import CellRunner, SweepOptions, _check_cells

    spec = sweep_grid.load_spec(None, strategies=["cpg", "packnet"], seeds=[1, 0], grid=["cpg.goals=auto,self"])
    runner = CellRunner(resolve=_resolved_spec, run=len, prepare_goals=print)
    goal_cells = _check_cells(sweep_grid.expand(spec), SweepOptions(), runner)
    assert [c.id for c in goal_cells] == ["digits-cpg-goals=auto-s0", "digits-cpg-goals=auto-s1"]


class _TwoNodes:
    """Just enough of the ray module for the storage check: two alive nodes, node b sees nothing."""

    def __init__(self):
        self.asked = []

    def nodes(self):
        return [{"Alive": True, "NodeID": "a" * 56}, {"Alive": True, "NodeID": "b" * 56}, {"Alive": False}]

    def remote(self, **_):
        fake = self

        class Task:
            def options(self, scheduling_strategy):
                self.node = scheduling_strategy.node_id
                return self

            def remote(self, paths):
                fake.asked.append(paths)
                return ("node-b", paths) if self.node.startswith("b") else ("node-a", [])

        return lambda fn: Task()

    def get(self, refs, timeout):
        return refs


def test_a_node_that_cannot_see_the_sweep_directory_stops_the_sweep(tmp_path):
    from clbench.errors import UsageError
    from clbench.sweep import _check_shared_storage

    fake = _TwoNodes()
    with pytest.raises(UsageError, match="node node-b cannot see .*storage-check.*every node mounts"):
        _check_shared_storage(fake, tmp_path)
    assert len(fake.asked) == 2 and not list(tmp_path.iterdir())  # the probe is removed again
