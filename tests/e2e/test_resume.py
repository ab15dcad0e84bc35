"""Crashes, interrupts and damaged checkpoints lose nothing: a resumed run ends with the same
table as an uninterrupted one with the same seed (CPU, bit for bit)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clbench import results
from clbench.cli import main

pytestmark = pytest.mark.slow
ARGS = ["--strategy", "cpg", "--recipe", "tiny", "--cpg.goals", "self", "--seed", "4", "--quiet", "--device", "cpu"]


def _table(run_dir: Path) -> list[tuple]:
    """Every measured value except timings, in row order."""
    frame = results.load_metrics(run_dir)
    frame = frame[~frame["metric"].str.startswith("seconds_")].fillna({"value": -1.0})  # NaN != NaN
    return list(frame[["trained_task", "eval_task", "metric", "value"]].itertuples(index=False))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    return out


def _start(out: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "clbench.cli", "run", *ARGS, "--out", str(out)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("after_task", [0, 2])
def test_sigkill_mid_task_then_resume_gives_the_same_table(uninterrupted, tmp_path, after_task):
    out = tmp_path / "run"
    proc = _start(out, tmp_path)
    marker = out / "checkpoints" / f"task-{after_task:03d}.pt.sha256" if after_task else out / "config.toml"
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: as a power cut or the OOM killer
    proc.communicate()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert _table(out) == _table(uninterrupted)


_KILL_AFTER_PHASE = """
import os, signal, sys
from clbench import journal
from clbench.cli import main

write = journal.PhaseJournal._write

def write_then_die(self, ordinal, payload):
    write(self, ordinal, payload)
    if (self.task, ordinal) == ({task}, {ordinal}):
        os.kill(os.getpid(), signal.SIGKILL)  # right after the phase record is safely on disk

journal.PhaseJournal._write = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def _run_killed_after_phase(out: Path, cwd: Path, task: int, ordinal: int, args: list[str] = ARGS) -> None:
    code = _KILL_AFTER_PHASE.format(task=task, ordinal=ordinal)
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", *args, "--out", str(out)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr


# CPG's phases on this recipe. Task 1: train = 1, grow = 2, compact = 3 holding prune 0.5 = 4 and
# prune 0.8 = 5 (neither meets the goal, so task 1 keeps all its weights). Later tasks own no free
# weights: train = 1, grow = 2, compact = 3.
@pytest.mark.parametrize(
    ("task", "ordinal", "phase"),
    [(1, 4, "prune 0.5"), (1, 3, "compact"), (3, 1, "train")],
)
def test_sigkill_after_a_phase_resumes_from_that_phase(uninterrupted, tmp_path, capsys, task, ordinal, phase):
    out = tmp_path / "run"
    _run_killed_after_phase(out, tmp_path, task, ordinal)
    assert not (out / "checkpoints" / f"task-{task:03d}.pt").exists()  # killed inside the task
    assert main(["run", "--resume", str(out)]) == 0
    assert f"resuming task {task} after its phase {phase!r}" in capsys.readouterr().err
    assert _table(out) == _table(uninterrupted)
    assert not list((out / "checkpoints").glob("*-phase-*"))  # finished tasks keep no phase files


@pytest.fixture(scope="module")
def growing_args(tmp_path_factory) -> list[str]:
    """CPG with unreachable goals (1.0): task 5 misses its goal, grows to x1.5, trains again,
    and, the last task at the maximum width with its goal missed, is not pruned (upstream's
    capacity rule) but retrained: train = 1, grow = 2, train = 3, grow = 4, compact = 5,
    retrain = 6 (tasks 1-4 reach 100 % and do not grow)."""
    goals = tmp_path_factory.mktemp("goals") / "goals.csv"
    rows = [f"digits_{a}{a + 1},1.0,test" for a in range(0, 10, 2)]
    goals.write_text("\n".join(["task,goal,source", *rows]) + "\n")
    base = [a for a in ARGS if a not in ("--cpg.goals", "self")]
    return [*base, "--cpg.goals-file", str(goals), "--cpg.max-width", "1.5"]


@pytest.mark.parametrize(("ordinal", "phase"), [(3, "train"), (6, "retrain")])
def test_sigkill_after_growth_or_retrain_resumes_from_there(growing_args, tmp_path, capsys, ordinal, phase):
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(["run", *growing_args, "--out", str(whole)]) == 0
    assert "width_mult" in set(results.load_metrics(whole)["metric"])
    _run_killed_after_phase(out, tmp_path, 5, ordinal, growing_args)
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    assert f"resuming task 5 after its phase {phase!r}" in capsys.readouterr().err
    assert _table(out) == _table(whole)


@pytest.mark.parametrize(("strategy", "ordinal"), [("ewc", 1), ("packnet", 3)])
def test_sigkill_after_a_phase_of_other_strategies(tmp_path, capsys, strategy, ordinal):
    args = ["--strategy", strategy, "--recipe", "tiny", "--seed", "3", "--quiet", "--device", "cpu"]
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(["run", *args, "--out", str(whole)]) == 0
    _run_killed_after_phase(out, tmp_path, 2, ordinal, args)
    assert main(["run", "--resume", str(out)]) == 0
    assert _table(out) == _table(whole)


def test_damaged_phase_record_falls_back_to_the_phase_before(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    _run_killed_after_phase(out, tmp_path, task=1, ordinal=5)
    damaged = out / "checkpoints" / "task-001-phase-005.pt"
    damaged.write_bytes(damaged.read_bytes()[:500])
    assert main(["run", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "task-001-phase-005.pt fails its checksum; the task resumes from the phase before it" in err
    assert "resuming task 1 after its phase 'prune 0.5'" in err
    assert _table(out) == _table(uninterrupted)


def test_changed_settings_restart_the_interrupted_task(tmp_path, capsys):
    out = tmp_path / "run"
    _run_killed_after_phase(out, tmp_path, task=1, ordinal=4)
    assert main(["run", "--resume", str(out), "--cpg.retrain-epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert "task 1 starts again from its beginning" in err and "after its phase" not in err
    assert results.accuracy_matrix(results.load_metrics(out)).shape == (5, 5)


def test_task_checkpoints_only_writes_no_phase_files(tmp_path, monkeypatch):
    from clbench import journal

    written = []
    monkeypatch.setattr(journal.PhaseJournal, "_write", lambda self, ordinal, payload: written.append(ordinal))
    out = tmp_path / "run"
    assert main(["run", *ARGS, "--task-checkpoints-only", "--out", str(out)]) == 0
    assert written == []
    assert "phase_checkpoints = false" in (out / "config.toml").read_text()


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_a_random_point_then_resume_gives_the_same_table(uninterrupted, tmp_path, seed):
    import random

    out = tmp_path / "run"
    proc = _start(out, tmp_path)
    _wait_for(out / "config.toml", proc)  # training has started
    time.sleep(random.Random(seed).uniform(0.0, 2.0))
    proc.send_signal(random.Random(seed).choice([signal.SIGKILL, signal.SIGINT]))
    proc.communicate()
    assert proc.returncode in (0, 130, -signal.SIGKILL), proc.returncode
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert _table(out) == _table(uninterrupted)


def test_sigint_saves_says_how_to_resume_and_resumes(uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, tmp_path)
    _wait_for(out / "checkpoints" / "task-002.pt.sha256", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130
    assert f"clbench run --resume {out}" in err and "Traceback" not in err
    assert not (out / ".clbench.lock").exists()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert _table(out) == _table(uninterrupted)


def test_corrupted_checkpoint_falls_back_to_the_last_good_one(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    newest = out / "checkpoints" / "task-005.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash while copying
    (out / results.SUMMARY_FILE).unlink()  # and no summary: resuming a finished run is a no-op (issue 14)
    assert main(["run", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "task-005.pt fails its checksum; falling back to an earlier one" in err
    assert "resuming" in err and "after task 4 of 5" in err
    assert _table(out) == _table(uninterrupted)


def test_second_run_on_the_same_directory_is_refused(tmp_path, capsys):
    from clbench.runner import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert main(["run", *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is in use by another clbench run" in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing of the refused run


def test_non_finite_loss_stops_keeps_finished_tasks_and_resumes_with_another_setting(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--strategy", "finetune", "--recipe", "tiny", "--seed", "1", "--quiet", "--out", str(out)]
    assert main([*argv, "--finetune.lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "non-finite training loss in task 1 (digits_01), phase train, epoch 1, step" in err
    assert f"clbench run --resume {out}" in err and "Traceback" not in err
    assert main(["run", "--resume", str(out), "--finetune.lr", "0.05", "--quiet"]) == 0
    assert results.accuracy_matrix(results.load_metrics(out)).shape == (5, 5)
    history = (out / "resumes.json").read_text()
    assert "lr = 1e+30" in history  # the settings of the failed part are kept


def _fail_saving_task_3(monkeypatch):
    """Make saving task 3's checkpoint fail as on a full disk; returns the real ``save``."""
    from clbench import checkpoint

    real_save = checkpoint.save

    def failing_save(run_dir, task, payload):
        if task == 3:
            raise OSError(28, "No space left on device")
        return real_save(run_dir, task, payload)

    monkeypatch.setattr(checkpoint, "save", failing_save)
    return real_save


def test_write_failure_later_keeps_finished_results(tmp_path, monkeypatch, capsys):
    from clbench import checkpoint

    real_save = _fail_saving_task_3(monkeypatch)
    out = tmp_path / "run"
    assert main(["run", *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "could not write results of task 3" in err and "No space left on device" in err
    assert (out / "checkpoints" / "task-002.pt").is_file()
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0


def test_unwritable_location_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", *ARGS, "--out", str(blocker / "run")]) == 2
    assert "cannot create results directory" in capsys.readouterr().err


def test_missing_data_leaves_no_partial_result(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--benchmark", "cifar100_20", "--data-root", str(tmp_path / "none"), "--out", str(out)]
    assert main(argv) == 2
    assert "CIFAR-100" in capsys.readouterr().err
    assert not out.exists()


def test_resume_refuses_to_change_identity(uninterrupted, capsys):
    assert main(["run", "--resume", str(uninterrupted), "--seed", "9"]) == 2
    assert "seed is 4; it cannot change to 9" in capsys.readouterr().err


def test_same_seed_same_table_bit_for_bit(uninterrupted, tmp_path):
    again = tmp_path / "again"
    assert main(["run", *ARGS, "--out", str(again)]) == 0
    assert _table(again) == _table(uninterrupted)


FAST = ["--strategy", "finetune", "--recipe", "tiny", "--seed", "2", "--device", "cpu"]


def _stopped_after_task_2(out: Path, monkeypatch) -> None:
    """A finetune run whose task 3 could not be saved: checkpoints of tasks 1 and 2 are kept."""
    from clbench import checkpoint

    real_save = _fail_saving_task_3(monkeypatch)
    assert main(["run", *FAST, "--quiet", "--out", str(out)]) == 2
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert sorted(p.name for p in (out / "checkpoints").glob("task-00?.pt")) == ["task-001.pt", "task-002.pt"]


def test_a_moved_run_directory_keeps_its_run_id_on_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _stopped_after_task_2(out, monkeypatch)
    before = set(results.load_metrics(out)["run_id"])
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    out.rename(moved)
    assert main(["run", "--resume", str(moved), "--quiet"]) == 0
    metrics = results.load_metrics(moved)
    assert set(metrics["run_id"]) == before == {"digits-finetune-run"}
    assert results.accuracy_matrix(metrics).shape == (5, 5)


def test_both_kept_checkpoints_damaged_says_in_one_line_that_it_starts_over(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _stopped_after_task_2(out, monkeypatch)
    capsys.readouterr()
    for name in ("task-001.pt", "task-002.pt"):
        path = out / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert len(lines) == 1, lines
    assert "starting over from task 1" in lines[0] and lines[0].count("fails its checksum") == 2, lines
    assert "task-001.pt" in lines[0] and "task-002.pt" in lines[0]
    metrics = results.load_metrics(out)
    assert results.accuracy_matrix(metrics).shape == (5, 5) and set(metrics["run_id"]) == {"digits-finetune-run"}
