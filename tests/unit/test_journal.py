"""Phase journal: records, nesting, replay and clean-up (the end-to-end kill-and-resume tests are
in tests/e2e/test_resume.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clbench.checkpoint import CheckpointError
from clbench.journal import PhaseJournal, phase_path


def _journal(run_dir: Path, task: int = 1, reuse: bool = True) -> PhaseJournal:
    return PhaseJournal.for_task(run_dir, task, lambda: {"elapsed": 0.0}, reuse)


def _run(journal: PhaseJournal, name: str, result: object, inner: list[tuple[str, object]] = ()) -> object:
    """One phase as Strategy.phase runs it: replayed when recorded, else run and recorded."""
    ordinal, saved = journal.begin(name)
    if saved is not None:
        journal.skip(ordinal, saved)
        return ("replayed", saved["result"])
    for inner_name, inner_result in inner:
        _run(journal, inner_name, inner_result)
    journal.end(ordinal, {"phase": name, "result": result})
    return result


def _files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("*-phase-*.pt"))


def test_outer_phase_record_replaces_its_inner_ones(tmp_path):
    journal = _journal(tmp_path)
    _run(journal, "train", 1)
    ordinal, _ = journal.begin("compact")
    _run(journal, "prune 0.5", 2)
    _run(journal, "prune 0.8", 3)
    assert _files(tmp_path) == [f"task-001-phase-00{i}.pt" for i in (1, 3, 4)]  # inner ones kept while open
    journal.end(ordinal, {"phase": "compact", "result": None})
    assert _files(tmp_path) == ["task-001-phase-001.pt", "task-001-phase-002.pt"]
    assert journal.saved_phases() == 2


def test_replay_skips_recorded_phases_and_continues_numbering(tmp_path):
    first = _journal(tmp_path)
    _run(first, "train", "fit")
    ordinal, _ = first.begin("compact")
    _run(first, "prune 0.5", "stage 1")  # then the process dies inside compact

    again = _journal(tmp_path)
    assert again.last_replayed["phase"] == "prune 0.5"
    assert _run(again, "train", "new") == ("replayed", "fit")
    ordinal, saved = again.begin("compact")
    assert saved is None  # unfinished: its code runs again ...
    assert _run(again, "prune 0.5", "new") == ("replayed", "stage 1")  # ... with its finished stage skipped
    assert _run(again, "prune 0.8", "stage 2") == "stage 2"
    again.end(ordinal, {"phase": "compact", "result": None})

    third = _journal(tmp_path)
    assert _run(third, "train", "x") == ("replayed", "fit")
    assert _run(third, "compact", "x", inner=[("prune 0.5", "y")]) == ("replayed", None)
    assert third.begin("after")[0] == 5  # the skipped compact's inner ordinals are not reused


def test_a_crash_between_outer_record_and_inner_clean_up_is_tidied(tmp_path, monkeypatch):
    journal = _journal(tmp_path)
    ordinal, _ = journal.begin("compact")
    _run(journal, "prune 0.5", 1)
    monkeypatch.setattr("clbench.journal._remove", lambda path: None)  # dies before removing
    journal.end(ordinal, {"phase": "compact", "result": None})
    monkeypatch.undo()
    assert len(_files(tmp_path)) == 2
    again = _journal(tmp_path)
    assert again.last_replayed["phase"] == "compact"
    assert _files(tmp_path) == ["task-001-phase-001.pt"]


def test_damaged_record_drops_it_and_every_later_one(tmp_path, caplog):
    journal = _journal(tmp_path)
    for name in ("a", "b", "c"):
        _run(journal, name, name)
    damaged = phase_path(tmp_path, 1, 2)
    damaged.write_bytes(damaged.read_bytes()[:-10])
    again = _journal(tmp_path)
    assert sorted(again.replay) == [1]
    assert _files(tmp_path) == ["task-001-phase-001.pt"]
    assert "task-001-phase-002.pt fails its checksum" in caplog.text


def test_records_of_other_tasks_or_changed_settings_are_not_replayed(tmp_path):
    _run(_journal(tmp_path, task=1), "train", 1)
    assert _journal(tmp_path, task=2).replay == {}
    assert _files(tmp_path) == []  # task 1's leftovers are gone (its task checkpoint covers them)
    _run(_journal(tmp_path, task=2), "train", 1)
    assert _journal(tmp_path, task=2, reuse=False).replay == {}
    assert _files(tmp_path) == []


def test_a_different_flow_is_refused(tmp_path):
    _run(_journal(tmp_path), "train", 1)
    with pytest.raises(CheckpointError, match="is of phase 'train', but the strategy is now at 'grow'"):
        _journal(tmp_path).begin("grow")


def test_clear_removes_the_task_records(tmp_path):
    journal = _journal(tmp_path, task=3)
    _run(journal, "train", 1)
    journal.clear()
    assert _files(tmp_path) == []
