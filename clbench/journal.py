"""Phase checkpoints: a task interrupted half-way resumes from its last complete phase.

A task's lifecycle is a sequence of *phases* (``train``, ``grow``, each prune stage of CPG/PAE,
CPG's ``retrain``, PackNet's ``compact`` …), each started through :meth:`Strategy.phase`. After a
phase finishes, the journal writes ``checkpoints/task-NNN-phase-MMM.pt`` (the strategy's model and
extra state, its in-task attributes, the phase's return value, the random-number generators and
the clocks), atomically and with a SHA-256 file beside it, as task checkpoints are written.

Resuming *replays* the interrupted task: the strategy's own code runs again from the task's
beginning, but every phase that has a record is not executed; its saved state is loaded and its
saved return value returned. Because everything between phases is deterministic given the model,
the strategy's attributes and the random state (evaluation, snapshots, growth decisions), the
replay reaches the first missing phase in exactly the state the interrupted run was in.

Phases nest (CPG's ``compact`` contains its prune stages and ``retrain``). While an outer phase
runs, the records of its finished inner phases are kept: a replay runs the outer phase's own code
again and needs the state after each of them (CPG snapshots the best prune stage). Once the outer
phase is recorded they are removed, since a replay skips it whole. All of a task's records are
removed once its task checkpoint exists. Disk: at most one record per open nesting level plus the
finished inner phases of the open outer phase; top-level records (``train``, ``grow`` and
``train`` again per growth step, ``compact``) stay until the task ends.

Size: the task's first top-level record (its *base*) holds the model as a delta against the
previous task's checkpoint (``delta_base = "task-NNN.pt"`` with that file's SHA-256; whole for
task 1, or when that checkpoint is missing or damaged); every later record holds the model as a
delta against the latest base (a top-level record after growth changed the model's shapes becomes
the next base) (clbench.statedelta: unchanged tensors by reference, sparsely changed ones as
changed positions and values, zeros as bits), so finished tasks' weights, pick bits and per-task
state are not written again by any phase. The previous task's checkpoint stays on disk while the
task runs (clbench.checkpoint keeps the last two), the base stays on disk until the task ends
(top-level records are never removed earlier), a CPU copy of its model stays in memory to diff
against, and a record whose base fails its checksum (or whose task checkpoint was rewritten
since) is dropped with every record after it, as any record after a damaged one is. Records
written before deltas existed (no ``delta_base``) load as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench import statedelta
from clbench.checkpoint import CHECKPOINT_DIR, CheckpointError, read_verified, recorded_digest, write_verified

log = logging.getLogger(__name__)

_NAME = re.compile(r"task-(\d{3,})-phase-(\d{3,})\.pt")


def phase_path(run_dir: Path, task: int, ordinal: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"task-{task:03d}-phase-{ordinal:03d}.pt"


def _phase_files(run_dir: Path) -> list[tuple[int, int, Path]]:
    folder = run_dir / CHECKPOINT_DIR
    matches = ((_NAME.fullmatch(p.name), p) for p in folder.glob("task-*-phase-*.pt"))
    return sorted((int(m.group(1)), int(m.group(2)), p) for m, p in matches if m)


def _remove(path: Path) -> None:
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)  # the checksum first: no half-valid pair
    path.unlink(missing_ok=True)


@dataclass
class PhaseJournal:
    """The phase records of one task: those to replay (from an interrupted run) and new ones.

    ``base_payload()`` returns what every record carries besides the phase's own state (run
    identity, clocks); it is called when a record is written.
    """

    run_dir: Path
    task: int
    base_payload: Callable[[], dict[str, Any]]
    replay: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next: int = 0
    _open: list[int] = field(default_factory=list)
    _base: tuple[int, dict[str, Any]] | None = None  # (ordinal, CPU model state) later records diff against
    _no_previous: bool = False  # the previous task's checkpoint was looked for and is not usable

    @classmethod
    def for_task(
        cls, run_dir: Path, task: int, base_payload: Callable[[], dict[str, Any]], reuse: bool = True
    ) -> PhaseJournal:
        """The journal of ``task``: its verified records when ``reuse``; every other phase file
        (of earlier tasks, from a damaged record on, or all of them when not reusing) is removed,
        so no stale state is ever replayed."""
        journal = cls(run_dir, task, base_payload)
        damaged = not reuse
        for file_task, ordinal, path in _phase_files(run_dir):
            if file_task != task or damaged:
                _remove(path)
                continue
            payload = _read_verified(path)
            if payload is not None and "delta_base" in payload:
                base = payload["delta_base"]
                if isinstance(base, str):  # the previous task's checkpoint
                    origin = _task_checkpoint(run_dir, base, payload.get("delta_base_sha256"))
                else:
                    origin = journal.replay.get(int(base))
                payload = _resolved(payload, origin, path)
            if payload is None:
                damaged = True  # later records were made from this one's state: drop them too
                _remove(path)
                continue
            journal.replay[ordinal] = payload
            model = _model_of(payload)
            if model is not None and payload.get("is_base"):
                journal._base = (ordinal, model)  # the latest base in ordinal order is the one in effect
        # A crash between writing an outer phase's record and removing its inner ones leaves
        # records the outer one covers: a replay skips them with it.
        for ordinal, payload in list(journal.replay.items()):
            for inner in [k for k in journal.replay if ordinal < k <= int(payload["last_ordinal"])]:
                del journal.replay[inner]
                _remove(phase_path(run_dir, task, inner))
        if journal.replay:
            log.info("task %d: %d finished phase(s) found; replaying them", task, len(journal.replay))
        return journal

    @property
    def last_replayed(self) -> dict[str, Any] | None:
        return self.replay[max(self.replay)] if self.replay else None

    def begin(self, name: str) -> tuple[int, dict[str, Any] | None]:
        """Open phase ``name``; returns its ordinal and its saved record if it finished before
        (then the caller loads the record and calls :meth:`skip` instead of running it)."""
        self._next += 1
        ordinal = self._next
        saved = self.replay.get(ordinal)
        if saved is not None and saved["phase"] != name:
            raise CheckpointError(
                f"phase checkpoint {phase_path(self.run_dir, self.task, ordinal)} is of phase {saved['phase']!r}, "
                f"but the strategy is now at {name!r}: the saved phases do not belong to this task's flow; "
                f"delete {self.run_dir / CHECKPOINT_DIR}/task-{self.task:03d}-phase-* to restart the task"
            )
        self._open.append(ordinal)
        return ordinal, saved

    def skip(self, ordinal: int, saved: dict[str, Any]) -> None:
        """Close a replayed phase: the phases it contained are skipped with it."""
        self._close(ordinal)
        self._next = int(saved["last_ordinal"])

    def end(self, ordinal: int, payload: dict[str, Any]) -> None:
        """Close phase ``ordinal`` and write its record; the records of the phases inside it are
        no longer needed (a replay skips them with it) and are removed."""
        self._close(ordinal)
        record = {**payload, "last_ordinal": self._next}
        model = _model_of(record)
        # Only a top-level record can be a base (inner ones are removed when their outer phase
        # ends): the task's first, and each after growth changed the model's shapes.
        rebase = model is not None and not self._open
        if model is not None and self._base is not None:
            record["strategy"] = {**record["strategy"], "model": statedelta.encode(model, self._base[1])}
            record["delta_base"] = self._base[0]
            rebase = rebase and statedelta.reshaped(model, self._base[1])
        elif model is not None and (previous := self._previous_task()) is not None:
            # Read now, not kept from the task's start: one model copy in memory, only while encoding.
            name, digest, state = previous
            record["strategy"] = {**record["strategy"], "model": statedelta.encode(model, state)}
            record["delta_base"], record["delta_base_sha256"] = name, digest
        record["is_base"] = rebase
        self._write(ordinal, record)
        if rebase:
            assert model is not None
            self._base = (ordinal, statedelta.cpu_copy(model))
        for file_task, inner, path in _phase_files(self.run_dir):
            if file_task == self.task and ordinal < inner <= self._next:
                _remove(path)

    def saved_phases(self) -> int:
        """How many of this task's phase records are on disk."""
        return sum(1 for file_task, _, _ in _phase_files(self.run_dir) if file_task == self.task)

    def abandon(self, ordinal: int) -> None:
        """Close phase ``ordinal`` after an exception: nothing is recorded."""
        self._close(ordinal)

    def _close(self, ordinal: int) -> None:
        current = self._open.pop()
        assert current == ordinal, "phases must close in the reverse order of opening"

    def clear(self) -> None:
        """Remove this task's records (its task checkpoint now covers them)."""
        for file_task, _, path in _phase_files(self.run_dir):
            if file_task <= self.task:
                _remove(path)

    def _previous_task(self) -> tuple[str, str, dict[str, Any]] | None:
        """(file name, SHA-256, model state) of the previous task's checkpoint, when it verifies;
        looked for once per task (a record before the first base is then stored whole)."""
        if self._no_previous:
            return None
        name = f"task-{self.task - 1:03d}.pt"
        digest = recorded_digest(self.run_dir / CHECKPOINT_DIR / name)
        fallback = "this task's first phase record is stored whole"
        payload = _task_checkpoint(self.run_dir, name, digest, fallback) if digest else None
        model = _model_of(payload) if payload is not None else None
        if model is None or digest is None:
            self._no_previous = True
            return None
        return name, digest, model

    def _write(self, ordinal: int, payload: dict[str, Any]) -> None:
        path = phase_path(self.run_dir, self.task, ordinal)
        path.parent.mkdir(exist_ok=True)
        write_verified(path, {"task": self.task, "ordinal": ordinal, **self.base_payload(), **payload})


def _model_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The model state dict a record holds (None for records without one, as in unit tests)."""
    strategy = payload.get("strategy")
    return strategy.get("model") if isinstance(strategy, dict) else None


def _resolved(payload: dict[str, Any], base: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """A delta record with its model rebuilt from its base record (itself already rebuilt: a
    base after growth is stored against the one before), or None (after a warning) when the
    base is gone: then it is treated as damaged."""
    if base is None:
        log.warning(
            "phase checkpoint %s is stored against %s (a phase record's ordinal or the previous task's checkpoint), "
            "which is missing, damaged or rewritten since; the task resumes from the phase before it",
            path,
            payload["delta_base"],
        )
        return None
    try:
        model = statedelta.apply(payload["strategy"]["model"], base["strategy"]["model"])
    except (KeyError, ValueError) as exc:  # a delta that does not fit its base: damaged
        log.warning("phase checkpoint %s does not fit its base %s (%s); the task resumes from the phase before it",
                    path, payload["delta_base"], exc)  # fmt: skip
        return None
    return {**payload, "strategy": {**payload["strategy"], "model": model}}


def _task_checkpoint(
    run_dir: Path, name: str, digest: str | None, fallback: str = "phase records stored against it are dropped"
) -> dict[str, Any] | None:
    """Task checkpoint ``name`` when it verifies and is still the one with SHA-256 ``digest``
    (``fallback``: what the warning about a damaged one says happens instead)."""
    path = run_dir / CHECKPOINT_DIR / name
    if digest is None or recorded_digest(path) != digest:
        return None  # gone, or rewritten since (a task run again): records made against it are stale
    return read_verified(path, "checkpoint", fallback)


def _read_verified(path: Path) -> dict[str, Any] | None:
    return read_verified(path, "phase checkpoint", "the task resumes from the phase before it")
