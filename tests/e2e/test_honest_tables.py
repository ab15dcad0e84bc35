"""Issue 14 on real runs: Ctrl-C then rerun gives a table of one run; ``--resume`` of a finished
run changes no byte; a resumed run keeps its original command in environment.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from clbench import checkpoint, results, tables
from clbench.cli import main

ARGS = ["run", "--recipe", "tiny", "--device", "cpu", "--quiet"]  # finetune on digits: a few seconds


def _interrupt_at_task(monkeypatch: pytest.MonkeyPatch, task: int) -> None:
    real_save = checkpoint.save

    def save(run_dir, index, payload):
        if index == task:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real_save(run_dir, index, payload)

    monkeypatch.setattr(checkpoint, "save", save)


@pytest.fixture(scope="module")
def ctrl_c_then_rerun(tmp_path_factory) -> Path:
    """In an empty folder: the command, Ctrl-C during task 3, then the same command again."""
    folder = tmp_path_factory.mktemp("ctrl_c")
    before = Path.cwd()
    os.chdir(folder)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", ["clbench", *ARGS])
            _interrupt_at_task(mp, 3)
            assert main(ARGS) == 130
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", ["clbench", *ARGS])
            assert main(ARGS) == 0
    finally:
        os.chdir(before)
    return folder / "runs"


def test_ctrl_c_then_rerun_table_shows_the_one_finished_run(ctrl_c_then_rerun, capsys):
    runs = tables.load_runs([ctrl_c_then_rerun / "digits"])
    assert len(runs) == 2 and sum(r.finished for r in runs) == 1
    finished = next(r for r in runs if r.finished)
    capsys.readouterr()
    assert main(["table", str(ctrl_c_then_rerun / "digits"), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    header, row, *more = out.strip().splitlines()
    assert not more, out
    row = dict(zip(header.split(","), row.split(","), strict=True))
    assert (row["n"], row["seeds"], row["mean_std"]) == ("1", "0", "")
    assert float(row["mean"]) == pytest.approx(100 * results.summarize(finished.metrics)["mean_accuracy"])
    assert err.count("\n") == 1 and "unfinished" in err and "task(s) recorded" in err


def test_resume_of_a_finished_run_changes_no_byte(ctrl_c_then_rerun, capsys):
    run_dir = next(r.path for r in tables.load_runs([ctrl_c_then_rerun / "digits"]) if r.finished)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_resume_keeps_the_original_command_and_records_its_own(ctrl_c_then_rerun, monkeypatch):
    run_dir = next(r.path for r in tables.load_runs([ctrl_c_then_rerun / "digits"]) if not r.finished)
    argv = ["clbench", "run", "--resume", str(run_dir), "--quiet"]
    monkeypatch.setattr(sys, "argv", argv)
    assert main(argv[1:]) == 0
    environment = json.loads((run_dir / results.ENVIRONMENT_FILE).read_text())
    assert environment["argv"] == ["clbench", *ARGS]
    (resume,) = json.loads((run_dir / "resumes.json").read_text())
    assert resume["environment"]["argv"] == argv and resume["from_task"] == 3


def test_runner_writes_the_task_names(ctrl_c_then_rerun):
    for run in tables.load_runs([ctrl_c_then_rerun / "digits"]):
        assert run.task_names == {1: "digits_01", 2: "digits_23", 3: "digits_45", 4: "digits_67", 5: "digits_89"}
