"""The results store: one tidy long table per run and the views derived from it.

``metrics.csv`` is canonical, with exactly the columns in :data:`COLUMNS`. ``trained_task`` is
the index (from 1) of the last task learned when the evaluation happened; ``eval_task`` the
task evaluated (for per-task records such as sparsity, the task they describe).

Definitions, with ``R[t, i]`` the accuracy on task i after learning task t and T tasks:

* **mean accuracy** — the unweighted mean over tasks of the final accuracies ``R[T, i]``
  (the CPG paper's "Avg"; *not* Avalanche's stream accuracy, which pools samples and lets the
  largest test set dominate);
* **forgetting** of task i < T — ``max over t in [i, T) of R[t, i] − R[T, i]`` (FACIL / Mammoth:
  the drop from the best accuracy the task ever had); the reported value is its mean over i < T;
* **backward transfer (BWT)** — ``mean over i < T of R[T, i] − R[i, i]`` (Lopez-Paz & Ranzato,
  NeurIPS 2017); negative means forgetting. Parameter isolation gives exactly 0 for both.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("run_id", "strategy", "benchmark", "seed", "trained_task", "eval_task", "metric", "value")
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.toml"
SUMMARY_FILE = "summary.json"
ENVIRONMENT_FILE = "environment.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_mode() -> int:
    """0666 less the process umask, the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@dataclass(frozen=True)
class RunKey:
    run_id: str
    strategy: str
    benchmark: str
    seed: int


class MetricsWriter:
    """Accumulates metric rows and rewrites ``metrics.csv`` atomically after each task."""

    def __init__(self, path: Path, key: RunKey, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.path = path
        self.key = key
        self.rows: list[dict[str, Any]] = list(rows)

    def add(self, trained_task: int, eval_task: int, metric: str, value: float) -> dict[str, Any]:
        row = {
            "run_id": self.key.run_id,
            "strategy": self.key.strategy,
            "benchmark": self.key.benchmark,
            "seed": self.key.seed,
            "trained_task": trained_task,
            "eval_task": eval_task,
            "metric": metric,
            "value": float(value),
        }
        self.rows.append(row)
        return row

    def flush(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({**row, "value": repr(row["value"])})
        atomic_write_text(self.path, buffer.getvalue())


# --------------------------------------------------------------------------- loading
def load_metrics(run_dir: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a clbench run directory: {METRICS_FILE} not found there")
    frame = pd.read_csv(path)
    if tuple(frame.columns) != COLUMNS:
        raise UsageError(f"{path} has columns {list(frame.columns)}, expected {list(COLUMNS)}")
    _check_unique(frame, path)
    return frame


KEY_COLUMNS = COLUMNS[:-1]  # every column but ``value``: one row per key


def _check_unique(frame: pd.DataFrame, path: Path) -> None:
    """Refuse rows that repeat a key (a file appended to twice, or two runs merged): averaging
    them would hide the error. The message names the first repeated keys."""
    repeated = frame[frame.duplicated(list(KEY_COLUMNS), keep="first")]
    if repeated.empty:
        return
    keys = repeated.drop_duplicates(list(KEY_COLUMNS))
    shown = "; ".join(
        f"trained_task={r.trained_task} eval_task={r.eval_task} metric={r.metric} run_id={r.run_id}"
        for r in keys.head(3).itertuples(index=False)
    )
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    raise UsageError(
        f"{path} repeats {len(keys)} key(s) ({', '.join(KEY_COLUMNS)}): {shown}{more}; "
        "each key must appear once: remove the duplicate rows or rerun into a fresh --out"
    )


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# ------------------------------------------------------------------------ task names
TASKS_FILE = "tasks.csv"
TASK_COLUMNS_FILE = ("task", "name", "kind", "classes")


def write_tasks(run_dir: Path, tasks: Iterable[tuple[int, str, str, int]]) -> None:
    """Write ``tasks.csv`` beside ``metrics.csv``: one row per task, ``task`` (from 1, as
    ``eval_task``), ``name`` (``aquatic_mammals``, ``gender`` …), ``kind`` and ``classes``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TASK_COLUMNS_FILE)
    writer.writerows(tasks)
    atomic_write_text(Path(run_dir) / TASKS_FILE, buffer.getvalue())


def load_task_names(run_dir: Path) -> dict[int, str]:
    """Task number → name from ``tasks.csv``; empty for runs made before it existed (or with a
    damaged file), which then show T1…Tn only."""
    path = Path(run_dir) / TASKS_FILE
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return {int(row["task"]): row["name"] for row in csv.DictReader(handle)}
    except (OSError, KeyError, ValueError, csv.Error):
        return {}


# ----------------------------------------------------------------------------- views
def accuracy_matrix(metrics: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``R[t, i]``: rows = trained_task, columns = eval_task (NaN where i > t)."""
    rows = metrics[metrics["metric"] == metric]
    matrix = rows.pivot_table(index="trained_task", columns="eval_task", values="value", aggfunc="mean")
    return matrix.sort_index().sort_index(axis=1)


def final_accuracies(matrix: pd.DataFrame) -> pd.Series:
    """Accuracy of every task after the last task learned."""
    return matrix.iloc[-1].dropna() if len(matrix) else matrix.sum()


def mean_accuracy(matrix: pd.DataFrame) -> float:
    final = final_accuracies(matrix)
    return float(final.mean()) if len(final) else math.nan


def forgetting(matrix: pd.DataFrame) -> pd.Series:
    """Per-task forgetting (see module docstring) for every task but the last."""
    last = matrix.index.max()
    values = {}
    for task in matrix.columns:
        earlier = matrix.loc[(matrix.index >= task) & (matrix.index < last), task].dropna()
        if len(earlier):
            values[task] = float(earlier.max() - matrix.loc[last, task])
    import pandas as pd

    return pd.Series(values, dtype=float)


def backward_transfer(matrix: pd.DataFrame) -> float:
    last = matrix.index.max()
    diffs = [
        matrix.loc[last, task] - matrix.loc[task, task]
        for task in matrix.columns
        if task < last and task in matrix.index
    ]
    return float(sum(diffs) / len(diffs)) if diffs else math.nan


def summarize(metrics: pd.DataFrame) -> dict[str, float]:
    matrix = accuracy_matrix(metrics)
    forgets = forgetting(matrix)
    return {
        "mean_accuracy": mean_accuracy(matrix),
        "forgetting": float(forgets.mean()) if len(forgets) else math.nan,
        "bwt": backward_transfer(matrix),
        "tasks": float(len(matrix.columns)),
    }


def comparison_table(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per run: final per-task accuracy (%), mean, forgetting, BWT, size and wall time."""
    import pandas as pd

    records = []
    for run_dir in run_dirs:
        metrics = load_metrics(Path(run_dir))
        summary = load_summary(Path(run_dir))
        matrix = accuracy_matrix(metrics)
        first = metrics.iloc[0]
        record: dict[str, Any] = {
            "strategy": first["strategy"],
            "benchmark": first["benchmark"],
            "seed": int(first["seed"]),
        }
        for task, acc in final_accuracies(matrix).items():
            record[f"T{int(task)}"] = 100 * acc
        stats = summarize(metrics)
        record["mean"] = 100 * stats["mean_accuracy"]
        record["forgetting"] = 100 * stats["forgetting"]
        record["bwt"] = 100 * stats["bwt"]
        size = metrics[metrics["metric"] == "model_size_mb"]
        if len(size):
            record["size_mb"] = float(size.sort_values("trained_task")["value"].iloc[-1])
        if "wall_seconds" in summary:
            record["wall_s"] = float(summary["wall_seconds"])
        records.append(record)
    return pd.DataFrame.from_records(records)


TASK_COLUMNS = (
    "sparsity",
    "owned_fraction",
    "free_fraction",
    "picked_fraction",
    "width_mult",
    "model_size_mb",
    "paper_size_mb",
    "seconds_task",
)


def task_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per task: its accuracy when learned and at the end, and what was recorded when
    it was learned (those of :data:`TASK_COLUMNS` the strategy reports)."""
    matrix = accuracy_matrix(metrics)
    own = metrics[(metrics["eval_task"] == metrics["trained_task"]) & metrics["metric"].isin(TASK_COLUMNS)]
    records = own.pivot_table(index="eval_task", columns="metric", values="value", aggfunc="mean")
    table = records.reindex(columns=[c for c in TASK_COLUMNS if c in records.columns])
    table.insert(0, "final_accuracy", final_accuracies(matrix))
    table.insert(0, "accuracy_when_learned", [matrix.loc[t, t] for t in table.index])
    table.index = table.index.astype(int)
    table.index.name = "task"
    return table


def to_markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")
