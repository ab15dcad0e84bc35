"""``clbench compare``: check finished runs against a committed reference table.

Reference tables live in ``baselines/reference/<benchmark>.csv`` (installed as
``clbench_baselines/reference/``) with the columns :data:`REFERENCE_COLUMNS`; lines starting
with ``#`` are comments (provenance). Values are fractions, as in ``metrics.csv``.

* ``task`` is a task index (from 1) for per-task metrics, ``all`` for run-level ones.
* ``metric``: ``accuracy`` / ``val_accuracy`` (final per-task, ``R[T, i]``), ``mean_accuracy``,
  ``bwt`` (higher is better) and ``forgetting`` (lower is better); definitions in
  :mod:`clbench.results`.
* The check is one-sided, as in continual-learning-baselines: a row **fails** only when the
  measured value is worse than ``value − tol`` (``value + tol`` for lower-is-better metrics;
  both widened by 1e-9 for float rounding).
  Better than ``value + tol`` passes as ``better`` (time to raise the reference).
* A row whose ``source`` starts with ``published`` is a paper's number: shown for context,
  never failing (a CPU run cannot reach it).
* A measured row with no matching run is ``missing`` and fails (CI must not pass because a
  strategy silently stopped running) unless ``allow_missing``.

Runs match rows by strategy and benchmark; several runs of one configuration (seeds) are
averaged; runs of different configurations for the same row are refused as ambiguous.

**Comparability.** A reference measured one setup, declared in a comment line
``# comparable: recipe=tiny; tasks=5; limits=none`` (``recipe=any`` for published rows, whose
training recipe is the paper's; ``limits=train_limit:100,eval_limit:50`` for limited data).
``clbench compare`` refuses a run whose benchmark, recipe, task count or data limits
(its benchmark's ``*_limit`` fields) differ, in one line naming the fields
(:func:`check_comparable`). Without that line, the task count is the largest task a row names
and recipe and limits are not checked.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from clbench import results, tables
from clbench.errors import UsageError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from clbench.tables import Run

REFERENCE_COLUMNS = ("strategy", "benchmark", "task", "metric", "value", "tol", "source")
RUN_LEVEL = "all"
# metric -> True when higher is better. Anything else in a reference is refused: a silent
# wrong direction would turn the check upside down.
DIRECTION = {
    "accuracy": True,
    "val_accuracy": True,
    "mean_accuracy": True,
    "bwt": True,
    "forgetting": False,
}
PER_TASK = ("accuracy", "val_accuracy")
PUBLISHED = "published"
EPS = 1e-9

PASS, BETTER, FAIL, MISSING, CONTEXT = "pass", "better", "FAIL", "missing", "published"
SETUP_PREFIX = "comparable:"
ANY = "any"


@dataclass(frozen=True)
class ReferenceRow:
    strategy: str
    benchmark: str
    task: str  # "1", "2", … or "all"
    metric: str
    value: float
    tol: float
    source: str

    @property
    def published(self) -> bool:
        return self.source.strip().lower().startswith(PUBLISHED)


@dataclass(frozen=True)
class Outcome:
    row: ReferenceRow
    measured: float | None
    runs: int  # how many runs the measured value averages
    status: str

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.row.value


@dataclass
class Comparison:
    outcomes: list[Outcome]
    unmatched: list[str]  # "strategy/benchmark" of runs no reference row names
    allow_missing: bool = False

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> bool:
        return self.count(FAIL) > 0 or (not self.allow_missing and self.count(MISSING) > 0)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# --------------------------------------------------------------------------- reading
def reference_path(spec: str | Path) -> Path | Traversable:
    """A reference file: a path, or a benchmark name resolved to the packaged table."""
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec)
    if "/" not in name and "\\" not in name:
        packaged = resources.files("clbench_baselines") / "reference" / f"{name.removesuffix('.csv')}.csv"
        if packaged.is_file():
            return packaged
    raise UsageError(f"reference table {spec} not found (give a CSV path or a benchmark name with a packaged table)")


def read_reference(spec: str | Path) -> list[ReferenceRow]:
    return parse_reference(_reference_text(spec), str(spec))


def _reference_text(spec: str | Path) -> str:
    source = reference_path(spec)
    try:
        return source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read reference table {spec}: {exc.strerror or exc}") from None


def parse_reference(text: str, where: str = "reference") -> list[ReferenceRow]:
    # Comment lines carry provenance (command, commit, device, date); csv has no comment syntax.
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) != REFERENCE_COLUMNS:
        raise UsageError(f"{where}: columns are {reader.fieldnames}, expected {','.join(REFERENCE_COLUMNS)}")
    rows = []
    for n, raw in enumerate(reader, 2):
        if None in raw or any(raw[c] is None for c in REFERENCE_COLUMNS):
            raise UsageError(f"{where}: data row {n - 1} does not have {len(REFERENCE_COLUMNS)} fields")
        metric, task = raw["metric"].strip(), raw["task"].strip()
        if metric not in DIRECTION:
            raise UsageError(f"{where}: unknown metric {metric!r}; known: {', '.join(DIRECTION)}")
        if metric in PER_TASK and not task.isdigit():
            raise UsageError(f"{where}: metric {metric} needs a task number, got task {task!r}")
        if metric not in PER_TASK and task != RUN_LEVEL:
            raise UsageError(f"{where}: metric {metric} is run-level; its task must be {RUN_LEVEL!r}, not {task!r}")
        try:
            value, tol = float(raw["value"]), float(raw["tol"])
        except ValueError:
            raise UsageError(f"{where}: value/tol of data row {n - 1} are not numbers") from None
        if not tol >= 0:
            raise UsageError(f"{where}: tol must be >= 0 (data row {n - 1})")
        rows.append(
            ReferenceRow(raw["strategy"].strip(), raw["benchmark"].strip(), task, metric, value, tol, raw["source"])
        )
    return rows


@dataclass(frozen=True)
class Setup:
    """What a reference measured; None = not declared (not checked)."""

    recipe: str | None = None
    tasks: int | None = None
    limits: dict[str, int] | None = None  # benchmark ``*_limit`` fields set; {} = full data


def parse_setup(text: str, rows: Sequence[ReferenceRow], where: str = "reference") -> Setup:
    """The ``# comparable: recipe=…; tasks=…; limits=…`` line of a reference, or what its rows
    imply (task count only). Raises ``UsageError`` on a malformed line."""
    for line in text.splitlines():
        body = line.lstrip().removeprefix("#").strip()
        if line.lstrip().startswith("#") and body.startswith(SETUP_PREFIX):
            return _setup_fields(body.removeprefix(SETUP_PREFIX), where)
    numbered = [int(r.task) for r in rows if r.task.isdigit()]
    return Setup(tasks=max(numbered) if numbered else None)


def _setup_fields(body: str, where: str) -> Setup:
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(";"))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in ("recipe", "tasks", "limits"):
            raise UsageError(f"{where}: '# {SETUP_PREFIX}' takes recipe=NAME|any; tasks=N; limits=none|FIELD:N,…, "
                             f"not {part!r}")  # fmt: skip
        fields[name.strip()] = value.strip()
    try:
        tasks = None if fields.get("tasks", ANY) == ANY else int(fields["tasks"])
        limits = None
        if fields.get("limits", ANY) != ANY:
            pairs = [] if fields["limits"] == "none" else [p.split(":") for p in fields["limits"].split(",")]
            limits = {name.strip(): int(value) for name, value in pairs}
    except ValueError:
        raise UsageError(f"{where}: '# {SETUP_PREFIX}' has a malformed tasks or limits value") from None
    recipe = fields.get("recipe", ANY)
    return Setup(recipe=None if recipe == ANY else recipe, tasks=tasks, limits=limits)


def run_setup(run: Run) -> Setup:
    """The same three facts of a finished run: recipe, tasks learned, data limits set."""
    bench = run.config.get(run.benchmark, {})
    limits = {k: v for k, v in bench.items() if k.endswith("_limit") and v is not None}
    return Setup(recipe=run.recipe, tasks=run.tasks_done, limits=limits)


def check_comparable(runs: Sequence[Run], rows: Sequence[ReferenceRow], setup: Setup, where: str) -> None:
    """Refuse (``UsageError``, one line naming the fields) runs that did not measure what the
    reference measured: another benchmark, recipe, task count or data limits."""
    benchmarks = sorted({r.benchmark for r in rows})
    problems: dict[str, list[str]] = {}
    for run in runs:
        found = []
        if run.benchmark not in benchmarks:
            found.append(f"benchmark {run.benchmark} (reference: {', '.join(benchmarks) or 'none'})")
        else:
            mine = run_setup(run)
            if setup.recipe is not None and mine.recipe != setup.recipe:
                found.append(f"recipe {mine.recipe} (reference: {setup.recipe})")
            if setup.tasks is not None and mine.tasks != setup.tasks:
                found.append(f"tasks {mine.tasks} (reference: {setup.tasks})")
            if setup.limits is not None and mine.limits != setup.limits:
                found.append(f"data limits {_limits(mine.limits)} (reference: {_limits(setup.limits)})")
        if found:
            problems.setdefault("; ".join(found), []).append(str(run.path))
    if problems:
        what, paths = next(iter(problems.items()))
        more = sum(len(p) for p in problems.values()) - 1
        others = f" and {more} more run(s)" if more else ""
        raise UsageError(
            f"not comparable with reference {where}: {paths[0]}{others}: {what}; "
            "rerun with the settings in the reference's header"
        )


def _limits(limits: dict[str, int] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((limits or {}).items())) or "none"


# ------------------------------------------------------------------------- measuring
def measured_values(run: Run) -> dict[tuple[str, str], float]:
    """``(metric, task)`` → value for every metric a reference row may name."""
    values: dict[tuple[str, str], float] = {}
    for metric in PER_TASK:
        matrix = results.accuracy_matrix(run.metrics, metric)
        if len(matrix):
            for task, value in results.final_accuracies(matrix).items():
                values[(metric, str(int(task)))] = float(value)
    stats = results.summarize(run.metrics)
    values[("mean_accuracy", RUN_LEVEL)] = stats["mean_accuracy"]
    values[("forgetting", RUN_LEVEL)] = stats["forgetting"]
    values[("bwt", RUN_LEVEL)] = stats["bwt"]
    return {k: v for k, v in values.items() if not math.isnan(v)}


def _judge(row: ReferenceRow, measured: float | None) -> str:
    if row.published:
        return CONTEXT
    if measured is None:
        return MISSING
    higher = DIRECTION[row.metric]
    # EPS absorbs float rounding (a mean that is 0.8000000000000002), never a real difference.
    margin = row.tol + EPS
    worse = measured < row.value - margin if higher else measured > row.value + margin
    if worse:
        return FAIL
    better = measured > row.value + margin if higher else measured < row.value - margin
    return BETTER if better else PASS


def compare(runs: Sequence[Run], reference: Sequence[ReferenceRow], allow_missing: bool = False) -> Comparison:
    groups = tables.group_runs(runs)
    labels = tables.group_labels(runs)
    by_pair: dict[tuple[str, str], list[Run]] = {}
    configs: dict[tuple[str, str], list[str]] = {}
    for key, members in groups.items():
        by_pair.setdefault(key[:2], []).extend(members)
        configs.setdefault(key[:2], []).append(labels[key])
    named = {(r.strategy, r.benchmark) for r in reference}
    for pair, found in configs.items():
        if len(found) > 1 and pair in named:
            raise UsageError(
                f"runs of {pair[0]} on {pair[1]} have {len(found)} different configurations ({'; '.join(found)}); "
                "a reference row needs the runs of one configuration (seeds may differ)"
            )
    measured = {pair: [measured_values(r) for r in members] for pair, members in by_pair.items()}
    outcomes = []
    for row in reference:
        found = [m.get((row.metric, row.task)) for m in measured.get((row.strategy, row.benchmark), [])]
        per_run = [v for v in found if v is not None]
        value = sum(per_run) / len(per_run) if per_run else None
        outcomes.append(Outcome(row, value, len(per_run), _judge(row, value)))
    unmatched = sorted(f"{s}/{b}" for s, b in by_pair if (s, b) not in named)
    return Comparison(outcomes, unmatched, allow_missing)


# ------------------------------------------------------------------------ rendering
def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def to_frame_rows(comparison: Comparison) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and the numbered sources the ``src`` column points to."""
    sources: list[str] = []
    rows = []
    for o in comparison.outcomes:
        if o.row.source not in sources:
            sources.append(o.row.source)
        rows.append(
            [
                o.row.strategy,
                o.row.benchmark,
                o.row.task,
                o.row.metric,
                _number(o.row.value),
                _number(o.measured),
                _number(o.delta, signed=True),
                _number(o.row.tol),
                o.status,
                str(o.runs),
                str(sources.index(o.row.source) + 1),
            ]
        )
    header = ["strategy", "benchmark", "task", "metric", "reference", "measured", "delta", "tol", "status", "runs"]
    return [*header, "src"], rows, sources


def render(comparison: Comparison, fmt: str = "md") -> str:
    header, rows, sources = to_frame_rows(comparison)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*header[:-1], "source"])
        for row, outcome in zip(rows, comparison.outcomes, strict=True):
            writer.writerow([*row[:-1], outcome.row.source])
        return buffer.getvalue().rstrip("\n")
    from tabulate import tabulate

    align = ("left",) * 4 + ("right",) * 4 + ("left", "right", "right")
    text = tabulate(rows, headers=header, tablefmt="pipe", colalign=align, disable_numparse=True)
    notes = [f"{i}. {s}" for i, s in enumerate(sources, 1)]
    return text + "\n\nSources (src):\n" + "\n".join(notes) + "\n\n" + summary_line(comparison)


def summary_line(comparison: Comparison) -> str:
    c = comparison
    parts = [
        f"{c.count(PASS)} pass",
        f"{c.count(BETTER)} better",
        f"{c.count(FAIL)} FAIL",
        f"{c.count(MISSING)} missing" + (" (allowed)" if c.allow_missing and c.count(MISSING) else ""),
        f"{c.count(CONTEXT)} published (context, never fail)",
    ]
    verdict = "REGRESSION" if c.failed else "ok"
    line = f"compare: {len(c.outcomes)} reference rows: {', '.join(parts)} -> {verdict}"
    if c.count(BETTER):
        line += "\ncompare: rows marked 'better' beat reference + tol: consider raising the reference"
    if c.unmatched:
        line += f"\ncompare: runs with no reference row (not checked): {', '.join(c.unmatched)}"
    return line


def compare_main(run_dirs: Sequence[Path], reference: str, allow_missing: bool = False, fmt: str = "md") -> int:
    """The ``clbench compare`` command: print the diff table; 0 all pass, 1 regression/missing."""
    text = _reference_text(reference)
    rows = parse_reference(text, str(reference))
    runs = tables.load_runs(run_dirs) if run_dirs else []
    unfinished = [str(r.path) for r in runs if not r.finished]
    if unfinished:
        # A run that stopped early would be compared on the tasks it reached: refuse instead.
        raise UsageError(f"unfinished run(s) (no {results.SUMMARY_FILE}): {', '.join(unfinished)}")
    runs, notes = tables.select_runs(runs)  # a repeated seed is one sample
    for note in notes:
        print(f"clbench: note: {note}", file=sys.stderr)
    check_comparable(runs, rows, parse_setup(text, rows, str(reference)), str(reference))
    comparison = compare(runs, rows, allow_missing=allow_missing)
    print(render(comparison, fmt))
    if fmt == "csv":  # keep stdout pure CSV; the verdict goes to stderr
        print(summary_line(comparison), file=sys.stderr)
    return comparison.exit_code
