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


def _state(seed: int, width: int = 64) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "frozen": torch.arange(width * 8, dtype=torch.float32),  # an earlier task's: never changes
        "mine": torch.randn(width, generator=g),
        "owner": torch.ones(width * 8, dtype=torch.uint8),
        "_extra_state": {"width": width},
    }


def _model_record(name: str, state: dict) -> dict:
    return {"phase": name, "result": None, "strategy": {"model": state, "extra": {}}}


def test_records_after_the_base_store_deltas_and_replay_bit_for_bit(tmp_path):
    """Issue 13: finished tasks' state is written once per task (in the base record), later
    records hold what changed; replay rebuilds every record's model exactly, across a growth
    (new shapes: a new base, itself stored against the old one)."""
    import torch

    from clbench.checkpoint import read_verified

    journal = _journal(tmp_path)
    states = {1: _state(1), 2: _state(2), 4: _state(4, width=96)}
    states[2]["owner"][:5] = 0  # a prune released five weights
    states[3] = {**states[2], "mine": states[2]["mine"].clone()}
    states[3]["mine"][0] = -0.0 if float(states[2]["mine"][0]) == 0.0 else 0.0  # one value changed
    ordinal, _ = journal.begin("train")
    journal.end(ordinal, _model_record("train", states[1]))
    outer, _ = journal.begin("compact")
    for i, name in ((3, "prune 0.5"), (4, "grow")):  # an inner record, then (inside) a reshaped one
        o, _ = journal.begin(name)
        journal.end(o, _model_record(name, states[i]))
    journal.end(outer, _model_record("compact", states[2]))
    grown, _ = journal.begin("train")
    journal.end(grown, _model_record("train", states[4]))  # top-level and reshaped: the next base
    stored = {o: read_verified(phase_path(tmp_path, 1, o), "phase", "")["strategy"]["model"] for o in (1, 2, 5)}
    assert isinstance(stored[1]["frozen"], torch.Tensor)  # the base holds everything
    assert stored[2]["frozen"] == {"__clbench_delta__": "same"}  # written once per task
    assert stored[2]["owner"]["__clbench_delta__"] == "sparse_zeros"  # released owner entries: zeros as bits
    assert isinstance(stored[5]["mine"], torch.Tensor)  # new shape: whole

    again = _journal(tmp_path)
    assert sorted(again.replay) == [1, 2, 5]
    for o, expected in ((1, states[1]), (2, states[2]), (5, states[4])):
        model = again.replay[o]["strategy"]["model"]
        assert model.keys() == expected.keys() and model["_extra_state"] == expected["_extra_state"]
        for key in ("frozen", "mine", "owner"):
            assert model[key].dtype == expected[key].dtype
            assert torch.equal(model[key].view(-1).view(torch.uint8), expected[key].view(-1).view(torch.uint8))
    # A record stored after the resume diffs against the base in effect (the grown one).
    for name in ("train", "compact", "train"):
        o, saved = again.begin(name)
        again.skip(o, saved)
    o, _ = again.begin("compact")
    again.end(o, _model_record("compact", states[4]))
    assert read_verified(phase_path(tmp_path, 1, o), "phase", "")["delta_base"] == 5


def test_a_delta_record_whose_base_is_damaged_is_dropped_with_the_rest(tmp_path):
    journal = _journal(tmp_path)
    for name, seed in (("train", 1), ("compact", 2)):
        o, _ = journal.begin(name)
        journal.end(o, _model_record(name, _state(seed)))
    phase_path(tmp_path, 1, 1).write_bytes(b"damaged")
    again = _journal(tmp_path)
    assert again.replay == {} and _files(tmp_path) == []


def test_a_task_first_record_diffs_against_the_previous_task_checkpoint(tmp_path, caplog):
    """Issue 13: finished tasks' weights are in the previous task's checkpoint already, so the
    task's first record stores only what the task changed; a rewritten checkpoint makes it stale."""
    import torch

    from clbench import checkpoint
    from clbench.checkpoint import read_verified

    previous = _state(1)
    checkpoint.save(tmp_path, 1, {"strategy": {"model": previous, "extra": {}}})
    trained = {**previous, "mine": previous["mine"] + 1.0}
    pruned = {**trained, "mine": trained["mine"].clone(), "owner": trained["owner"].clone()}
    pruned["mine"][:10], pruned["owner"][:10] = 0.0, 0
    journal = _journal(tmp_path, task=2)
    for name, state in (("train", trained), ("compact", pruned)):
        o, _ = journal.begin(name)
        journal.end(o, _model_record(name, state))
    first, second = (read_verified(phase_path(tmp_path, 2, o), "phase", "") for o in (1, 2))
    assert first["delta_base"] == "task-001.pt" and first["is_base"]
    assert first["strategy"]["model"]["frozen"] == {"__clbench_delta__": "same"}  # not written again
    assert second["delta_base"] == 1

    again = _journal(tmp_path, task=2)
    for o, expected in ((1, trained), (2, pruned)):
        model = again.replay[o]["strategy"]["model"]
        for key in ("frozen", "mine", "owner"):
            assert torch.equal(model[key].view(-1).view(torch.uint8), expected[key].view(-1).view(torch.uint8))

    checkpoint.save(tmp_path, 1, {"strategy": {"model": _state(7), "extra": {}}})  # task 1 run again
    stale = _journal(tmp_path, task=2)
    assert stale.replay == {} and _files(tmp_path) == []
    assert "rewritten since" in caplog.text


def test_a_record_that_does_not_fit_its_base_is_dropped_not_raised(tmp_path, caplog):
    """A delta whose base has other shapes (a corrupt pairing that still verifies) must not make
    every resume crash: it is treated as a damaged record."""
    import torch

    from clbench import checkpoint

    checkpoint.save(tmp_path, 1, {"strategy": {"model": _state(1), "extra": {}}})
    journal = _journal(tmp_path, task=2)
    o, _ = journal.begin("train")
    trained = {**_state(1), "mine": _state(1)["mine"].clone()}
    trained["mine"][0] += 1.0  # one changed entry: stored sparse against the checkpoint's tensor
    journal.end(o, _model_record("train", trained))
    checkpoint.save(tmp_path, 1, {"strategy": {"model": {**_state(1), "mine": torch.zeros(3)}, "extra": {}}})
    record = phase_path(tmp_path, 2, 1)
    payload = torch.load(record, weights_only=False)
    payload["delta_base_sha256"] = (tmp_path / "checkpoints" / "task-001.pt.sha256").read_text().strip()
    checkpoint.write_verified(record, {k: v for k, v in payload.items() if k != "format"})
    again = _journal(tmp_path, task=2)
    assert again.replay == {} and "does not fit its base" in caplog.text
