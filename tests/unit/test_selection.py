"""--select val (clbench.selection) on hand-made runs where validation and test disagree."""

from __future__ import annotations

from pathlib import Path

import pytest

from clbench import results, selection, tables
from clbench.cli import main


def make_run(path: Path, val: list[float], test: list[float], *, strategy="finetune", seed=0, lr=0.05) -> Path:
    """A finished two-task run: ``val``/``test`` = final accuracy per task (task 1 learned first)."""
    path.mkdir(parents=True)
    key = results.RunKey(f"digits-{strategy}-{path.name}", strategy, "digits", seed)
    metrics = results.MetricsWriter(path / results.METRICS_FILE, key)
    metrics.add(1, 1, "accuracy", 1.0)
    metrics.add(1, 1, "val_accuracy", 1.0)  # not final: must not count
    for i, (v, t) in enumerate(zip(val, test, strict=True), 1):
        metrics.add(2, i, "accuracy", t)
        metrics.add(2, i, "val_accuracy", v)
    metrics.flush()
    (path / results.CONFIG_FILE).write_text(
        f'[run]\nstrategy = "{strategy}"\nbenchmark = "digits"\nrecipe = "tiny"\nseed = {seed}\n\n'
        f"[{strategy}]\nlr = {lr}\n\n[digits]\nclasses_per_task = 2\n"
    )
    (path / results.SUMMARY_FILE).write_text('{"wall_seconds": 1.0}')
    return path


@pytest.fixture
def grid(tmp_path):
    # lr 0.01: better on validation (0.9 vs 0.8), worse on test (0.6 vs 0.95).
    for seed, (v, t) in enumerate([(0.9, 0.6), (0.92, 0.7)]):
        make_run(tmp_path / f"lr0.01-s{seed}", [v, v], [t, t], seed=seed, lr=0.01)
    for seed, (v, t) in enumerate([(0.8, 0.95), (0.82, 0.97)]):
        make_run(tmp_path / f"lr0.05-s{seed}", [v, v], [t, t], seed=seed, lr=0.05)
    make_run(tmp_path / "packnet-s0", [0.5, 0.5], [0.5, 0.5], strategy="packnet")
    # Another benchmark setting is another experiment, never a competing setting.
    other = make_run(tmp_path / "five-s0", [0.99, 0.99], [0.1, 0.1], lr=0.05)
    config = other / results.CONFIG_FILE
    config.write_text(config.read_text().replace("classes_per_task = 2", "classes_per_task = 5"))
    return tmp_path


def test_picks_the_best_validation_setting_and_reports_its_test_accuracy(grid):
    choices = selection.select_on_validation(tables.load_runs([grid]))
    by = {(c.strategy, len(c.runs), c.chosen): c for c in choices}
    assert len(choices) == 3
    best = by[("finetune", 2, "lr=0.01")]
    assert best.settings == 2 and best.val == pytest.approx(0.91)
    table = selection.choice_table([best])
    assert table.frame["mean"][0] == pytest.approx(65.0)  # test of lr=0.01, not lr=0.05's 96
    assert table.std["mean"][0] == pytest.approx(7.0710678)  # sample std of 60 and 70
    assert ("packnet", 1, "(one setting)") in by


def test_cli_select_val_prints_chosen_values(grid, capsys):
    assert main(["table", str(grid), "--select", "val", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "lr=0.01" in out and "lr=0.05" not in out.split("\n", 1)[1].split("classes")[0]
    assert main(["table", str(grid), "--select", "val"]) == 0
    assert "test split takes no part" in capsys.readouterr().out


def test_unfinished_runs_take_no_part(grid, capsys):
    (grid / "lr0.01-s0" / results.SUMMARY_FILE).unlink()
    (grid / "lr0.01-s1" / results.SUMMARY_FILE).unlink()
    choices = selection.select_on_validation(tables.load_runs([grid]))
    assert {c.chosen for c in choices if c.strategy == "finetune" and len(c.runs) == 2} == {"(one setting)"}
    assert "2 unfinished" in capsys.readouterr().err
