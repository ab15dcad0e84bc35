"""Accuracy goals: the per-task accuracy PAE and CPG must reach before they prune (ALGORITHMS.md §1.7).

Upstream reads one JSON file ``{dataset: acc}`` (``--baseline_acc_file``), written by a separate
baseline script: individual models for CPG (``baseline_cifar100.sh``), the best of five
random-parent finetune sequences ("finetune max") for PAE (``finetune_cifar100.sh``). Nothing
there records *which* run produced the file, so a goal from a short recipe can silently feed a
full-scale run. Here every goal file carries its provenance and is looked up by it.

A goal file is a CSV with the columns ``task,goal,source`` (goal: a fraction in [0, 1]) and,
when clbench wrote it, the provenance columns of :data:`PROVENANCE_COLUMNS` (the same value on
every row). Published goals (``baselines/goals/<benchmark>.csv``) have none and stand for the
benchmark's full-scale recipe.

Keyed goal files live under ``<runs>/goals/<benchmark>/<producer>-<recipe>-<N>t-<data key>-s<seed>.csv``
(:func:`goal_path`): ``data key`` hashes the benchmark's resolved configuration without its
data root, so a run on capped data (``--<benchmark>.train-limit``) never borrows goals measured
on all of it, nor the other way round.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clbench.errors import UsageError
from clbench.results import atomic_write_text

log = logging.getLogger(__name__)

GOAL_COLUMNS = ("task", "goal", "source")
PROVENANCE_COLUMNS = ("producer", "benchmark", "recipe", "tasks", "data_key", "config_key", "seeds")


def config_hash(config: Any, leave_out: Iterable[str] = ()) -> str:
    """Eight hex digits identifying a resolved config dataclass (minus the ``leave_out`` fields)."""
    skip = set(leave_out)
    values = {k: v for k, v in asdict(config).items() if k not in skip}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def data_key(benchmark_config: Any) -> str:
    """The benchmark's data and task set: its resolved config without the fields that only say
    where or how the data is read (``NOT_DATA``: the data root, download switches, caches,
    machine-specific weight paths)."""
    return config_hash(benchmark_config, getattr(benchmark_config, "NOT_DATA", ("data_root",)))


@dataclass(frozen=True)
class GoalKey:
    """What a set of goals was measured on and by: goals are reusable only under the same key."""

    producer: str  # individual | finetune_max | finetune_previous | published
    benchmark: str
    recipe: str
    tasks: int
    data_key: str  # data_key() of the benchmark config
    config_key: str  # config_hash() of the producer's resolved config (schedule, lr, …)

    def stem(self) -> str:
        return f"{self.producer}-{self.recipe}-{self.tasks}t-{self.data_key}-{self.config_key}"

    def differences(self, other: GoalKey, ignore: Iterable[str] = ()) -> list[str]:
        """``field: mine≠theirs`` for every provenance field that differs."""
        return [
            f"{name} {getattr(self, name)}≠{getattr(other, name)}"
            for name in ("producer", "benchmark", "recipe", "tasks", "data_key", "config_key")
            if name not in ignore and getattr(self, name) != getattr(other, name)
        ]


@dataclass
class Goals:
    """Goal per task name (fractions), where they came from, and whether this run trained them."""

    values: dict[str, float]
    path: str
    key: GoalKey | None = None  # None: a file without provenance (hand-written or published)
    seeds: tuple[int, ...] = ()
    trained_now: bool = False
    notes: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """A JSON-ready record for ``environment.json`` and ``summary.json``."""
        return {
            "file": self.path,
            **(asdict(self.key) if self.key else {"producer": None}),
            "seeds": list(self.seeds),
            "trained_now": self.trained_now,
            "notes": list(self.notes),
            "values": dict(self.values),
        }

    @classmethod
    def from_provenance(cls, record: Mapping[str, Any]) -> Goals:
        """Rebuild what :meth:`provenance` wrote (a resumed run keeps the goals it started with)."""
        key = None
        if record.get("producer"):
            key = GoalKey(record["producer"], record["benchmark"], record["recipe"], int(record["tasks"]),
                          record["data_key"], record["config_key"])  # fmt: skip
        values = {str(k): float(v) for k, v in record["values"].items()}
        seeds = tuple(record.get("seeds", ()))
        return cls(values, str(record["file"]), key, seeds, bool(record.get("trained_now")), list(record["notes"]))


# ------------------------------------------------------------------------------ files
def goal_path(goals_dir: Path, key: GoalKey, seed: int) -> Path:
    return goals_dir / key.benchmark / f"{key.stem()}-s{seed}.csv"


def find(goals_dir: Path, key: GoalKey, seed: int) -> Path | None:
    """The keyed goal file for ``key``: the run's own seed first, else the lowest seed found."""
    own = goal_path(goals_dir, key, seed)
    if own.is_file():
        return own
    others = sorted((goals_dir / key.benchmark).glob(f"{key.stem()}-s*.csv"), key=_seed_of)
    return others[0] if others else None


def _seed_of(path: Path) -> int:
    tail = path.stem.rsplit("-s", 1)[-1]
    return int(tail) if tail.isdigit() else 1 << 30


def available(goals_dir: Path, benchmark: str) -> list[str]:
    """Stems of the keyed goal files for ``benchmark`` (for error messages)."""
    folder = goals_dir / benchmark
    return sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []


def write(path: Path, values: Mapping[str, float], source: str, key: GoalKey | None, seeds: Iterable[int]) -> None:
    """Write a goal file atomically (provenance columns only when ``key`` is given)."""
    header = list(GOAL_COLUMNS) + (list(PROVENANCE_COLUMNS) if key else [])
    seeds_text = " ".join(str(s) for s in seeds)
    lines = [",".join(header)]
    for task, goal in values.items():
        row = [task, repr(float(goal)), source]
        if key:
            row += [key.producer, key.benchmark, key.recipe, str(key.tasks), key.data_key, key.config_key, seeds_text]
        lines.append(",".join(_cell(v) for v in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")


def _cell(value: str) -> str:
    return f'"{value}"' if "," in value or '"' in value else value


def read(where: Path | str) -> Goals:
    """Read a goal file: a path, or ``package/name`` inside an installed package.

    Raises:
        UsageError: missing file, missing columns, a goal that is no number or outside [0, 1].
    """
    try:
        text = _read_text(where)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"goals file {where} cannot be read as UTF-8 CSV ({exc.__class__.__name__})") from None
    if text is None:
        raise UsageError(f"goals file {where} does not exist")
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or any(column not in rows[0] for column in ("task", "goal")):
        raise UsageError(f"goals file {where} needs the columns {','.join(GOAL_COLUMNS)}")
    values: dict[str, float] = {}
    for row in rows:
        try:
            goal = float(row["goal"])
        except (TypeError, ValueError):
            raise UsageError(f"goals file {where}: goal {row['goal']!r} of task {row['task']!r} is no number") from None
        if not 0.0 <= goal <= 1.0:  # also refuses nan
            raise UsageError(f"goals file {where}: goal of task {row['task']!r} must be a fraction in [0, 1]")
        if row["task"] in values:
            raise UsageError(f"goals file {where} lists task {row['task']!r} twice; keep one row per task")
        values[row["task"]] = goal
    first = rows[0]
    key, seeds = None, ()
    if all(first.get(c) for c in PROVENANCE_COLUMNS[:-1]):
        try:
            key = GoalKey(
                first["producer"], first["benchmark"], first["recipe"], int(first["tasks"]),
                first["data_key"], first["config_key"],
            )  # fmt: skip
            seeds = tuple(int(s) for s in (first.get("seeds") or "").split())
        except ValueError:
            raise UsageError(f"goals file {where}: the provenance columns tasks/seeds must be whole numbers") from None
    return Goals(values, str(where), key, seeds)


def _read_text(where: Path | str) -> str | None:
    if isinstance(where, Path):
        return where.read_text(encoding="utf-8") if where.is_file() else None
    package, _, name = where.partition("/")
    resource = resources.files(package).joinpath(name)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def published(benchmark: str) -> Goals | None:
    """The goals the papers publish for ``benchmark`` (``baselines/goals/``), if any."""
    where = f"clbench_baselines/goals/{benchmark}.csv"
    return read(where) if _read_text(where) is not None else None


def missing_tasks(goals: Goals, task_names: Iterable[str]) -> list[str]:
    return [name for name in task_names if name not in goals.values]
