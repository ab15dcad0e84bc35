"""Comparison tables over finished runs: per run, or mean ± std over seeds; Markdown, CSV, LaTeX.

A *group* is the set of runs that share strategy, benchmark and resolved configuration
(``config.toml``) apart from the seed: the runs whose spread is seed noise and nothing else.
Numbers come from ``metrics.csv`` through the definitions in :mod:`clbench.results` (final
per-task accuracy, its unweighted mean, forgetting, BWT); model size and parameters are the
strategy's own records after the last task; wall time comes from ``summary.json``.

The std is the sample standard deviation (``n − 1``) over the runs of a group, so it is
undefined (shown blank) for a single run.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import experiment, results
from clbench.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("md", "csv", "latex")
KEY_COLUMNS = ("strategy", "benchmark", "config")

# Notes every table carries; the size note depends on the strategies in it (:func:`table_notes`).
FOOTNOTES = (
    "Accuracy: task-aware top-1 (%) on each task's test split after the last task, R[T, i]; "
    "mean = unweighted mean over tasks (the CPG paper's Avg). "
    "forgetting / bwt (%): definitions in docs/results.md (forgetting = best earlier accuracy − final; "
    "bwt = final − accuracy right after learning).",
    "± = sample std (n − 1) over seeds, among runs with the same strategy, benchmark and config.toml "
    "apart from the seed; n = number of such runs.",
    "wall_s: wall-clock seconds of the whole run (training, pruning, evaluation), from summary.json.",
)


def table_notes(table: Table) -> list[str]:
    """The notes under ``table``: its task names, the general notes, and how each of its
    strategies counts its size, as the strategy declared it (``Strategy.kind``; clbench.accounting)."""
    from clbench.accounting import size_notes

    size = size_notes(table.accounting, "paper_mb" in table.values) if "size_mb" in table.values else []
    return [*task_note(table), *FOOTNOTES[:2], *size, *FOOTNOTES[2:]]


# ------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One run directory, loaded (finished or not: see :attr:`finished`)."""

    path: Path
    strategy: str
    benchmark: str
    seed: int
    config: dict[str, Any]  # config.toml without run.seed: the experiment (clbench.experiment)
    metrics: pd.DataFrame = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)
    full_config: dict[str, Any] = field(default_factory=dict, repr=False)  # config.toml as written
    task_names: dict[int, str] = field(default_factory=dict, repr=False)  # tasks.csv; {} for older runs

    @property
    def recipe(self) -> str:
        return str(self.config.get("run", {}).get("recipe", "?"))

    @property
    def finished(self) -> bool:
        """True when the run wrote ``summary.json`` (its last step); interrupted or failed runs did not."""
        return (self.path / results.SUMMARY_FILE).is_file()

    @property
    def tasks_done(self) -> int:
        """Tasks whose results are in ``metrics.csv``."""
        return int(self.metrics["trained_task"].max())

    @property
    def config_id(self) -> str:
        """Short hash of the config without the seed (stable across Python versions)."""
        return experiment.experiment_id(self.config)

    @property
    def group_key(self) -> tuple[str, str, str]:
        # An unfinished run never pools with finished ones, even of the same experiment.
        return (self.strategy, self.benchmark, self.config_id + ("" if self.finished else "-unfinished"))


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Run directories named by ``paths``: a run directory itself, or a folder holding runs
    anywhere below it (so ``clbench table runs/`` works). Order kept; a run named twice is listed
    twice here and counted once by :func:`select_runs`."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / results.METRICS_FILE).is_file() or not path.is_dir():
            found.append(path)  # load_metrics reports a missing path in one clear line
            continue
        below = sorted(p.parent for p in path.rglob(results.METRICS_FILE))
        if not below:
            raise UsageError(
                f"{path} is not a clbench run directory: {results.METRICS_FILE} not found there or below it"
            )
        found.extend(below)
    return found


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    metrics = results.load_metrics(run_dir)
    if metrics.empty:
        raise UsageError(f"{run_dir / results.METRICS_FILE} holds no rows (did the run stop before task 1?)")
    config: dict[str, Any] = {}
    config_path = run_dir / results.CONFIG_FILE
    if config_path.is_file():
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{config_path} is not valid TOML: {exc}") from None
    first = metrics.iloc[0]
    return Run(
        path=run_dir,
        strategy=str(first["strategy"]),
        benchmark=str(first["benchmark"]),
        seed=int(first["seed"]),
        config=experiment.experiment_config(config),  # the one thing that may differ inside a group
        metrics=metrics,
        summary=results.load_summary(run_dir),
        full_config=config,
        task_names=results.load_task_names(run_dir),
    )


def load_runs(paths: Iterable[Path]) -> list[Run]:
    return [load_run(p) for p in find_run_dirs(paths)]


def select_runs(runs: Sequence[Run], include_unfinished: bool = False) -> tuple[list[Run], list[str]]:
    """The runs a table may count, and one note per run left out.

    * A directory named twice counts once (silently: it is the same run).
    * Unfinished runs (interrupted, or stopped by an error: no ``summary.json``) are left out
      unless ``include_unfinished``; then they form rows of their own, marked ``[unfinished]``.
    * Two runs of the same experiment with the same seed are not two samples: the first listed
      is kept (directory order, which is start-time order for default run names), the other is
      left out with a note naming both.
    """
    kept: list[Run] = []
    notes: list[str] = []
    seen_dirs: set[Path] = set()
    seen_seeds: dict[tuple[tuple[str, str, str], int], Run] = {}
    for run in runs:
        where = run.path.resolve()
        if where in seen_dirs:
            continue
        seen_dirs.add(where)
        if not run.finished and not include_unfinished:
            notes.append(
                f"left out {run.path}: unfinished (no {results.SUMMARY_FILE}; {run.tasks_done} task(s) recorded); "
                "--include-unfinished shows it"
            )
            continue
        first = seen_seeds.setdefault((run.group_key, run.seed), run)
        if first is not run:
            notes.append(
                f"left out {run.path}: seed {run.seed} of the same experiment is already counted from "
                f"{first.path} (a repeated seed is one sample, not two)"
            )
            continue
        kept.append(run)
    return kept, notes


def select_or_refuse(runs: Sequence[Run], include_unfinished: bool = False) -> tuple[list[Run], list[str]]:
    """:func:`select_runs`, raising ``UsageError`` when it leaves nothing to show."""
    kept, notes = select_runs(runs, include_unfinished)
    if runs and not kept:
        unfinished = sum(not r.finished for r in runs)
        raise UsageError(
            f"no finished runs among the {len(runs)} given ({unfinished} unfinished); "
            "finish one with clbench run --resume RUN_DIR, or pass --include-unfinished"
        )
    return kept, notes


def group_runs(runs: Sequence[Run]) -> dict[tuple[str, str, str], list[Run]]:
    """Runs by (strategy, benchmark, config id), in order of first appearance; each directory once."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    seen: set[Path] = set()
    for run in runs:
        where = run.path.resolve()
        if where in seen:
            continue  # the same directory twice is one run, not two seeds: std would be wrong
        seen.add(where)
        groups.setdefault(run.group_key, []).append(run)
    return groups


def group_labels(runs: Sequence[Run]) -> dict[tuple[str, str, str], str]:
    """A readable name per group, from its own configuration only (:func:`clbench.experiment.label`):
    the recipe and every field that differs from it, plus ``[unfinished]`` for unfinished runs.
    Two groups that would still read the same get their config id appended."""
    groups = group_runs(runs)
    labels = {}
    for key, members in groups.items():
        run = members[0]
        config = {**run.full_config, "run": {"strategy": run.strategy, "benchmark": run.benchmark,
                                             **run.full_config.get("run", {})}}  # fmt: skip
        labels[key] = experiment.label(config) + ("" if run.finished else " [unfinished]")
    counts: dict[tuple[str, str, str], int] = {}
    for key, label in labels.items():
        counts[(key[0], key[1], label)] = counts.get((key[0], key[1], label), 0) + 1
    for key, label in labels.items():
        if counts[(key[0], key[1], label)] > 1:
            labels[key] = f"{label} [{key[2].removesuffix('-unfinished')}]"
    return labels


# ------------------------------------------------------------------------- records
def run_record(run: Run) -> dict[str, Any]:
    """The numbers of one run: final per-task accuracy (%) as T1…Tn, mean, forgetting, BWT,
    parameters, size and wall time."""
    matrix = results.accuracy_matrix(run.metrics)
    record: dict[str, Any] = {}
    for task, acc in results.final_accuracies(matrix).items():
        record[f"T{int(task)}"] = 100 * float(acc)
    stats = results.summarize(run.metrics)
    record["mean"] = 100 * stats["mean_accuracy"]
    record["forgetting"] = 100 * stats["forgetting"]
    record["bwt"] = 100 * stats["bwt"]
    for metric, column in (("parameters", "params"), ("model_size_mb", "size_mb"), ("paper_size_mb", "paper_mb")):
        rows = run.metrics[run.metrics["metric"] == metric]
        record[column] = float(rows.sort_values("trained_task")["value"].iloc[-1]) if len(rows) else math.nan
    if math.isnan(record["paper_mb"]):
        del record["paper_mb"]  # only the packing strategies record it
    record["wall_s"] = float(run.summary.get("wall_seconds", math.nan))
    return record


def _task_sort_key(column: str) -> tuple[int, int]:
    return (0, int(column[1:])) if column[:1] == "T" and column[1:].isdigit() else (1, 0)


def _value_columns(records: Iterable[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    tasks = sorted((n for n in names if _task_sort_key(n)[0] == 0), key=_task_sort_key)
    return tasks + [n for n in names if _task_sort_key(n)[0] == 1]


@dataclass
class Table:
    """A comparison table: key columns, value columns and (for seed groups) their std."""

    frame: pd.DataFrame  # key columns, n/seeds, then value columns (mean over the group)
    values: list[str]  # the value columns, in order
    std: pd.DataFrame | None = None  # same value columns: std over the group (NaN for n = 1)
    keys: list[str] = field(default_factory=list)
    task_names: dict[str, str] = field(default_factory=dict)  # "T3" -> "aquatic_mammals"
    accounting: dict[str, dict[str, str]] = field(default_factory=dict)  # strategy -> accounting.record()


def task_names(runs: Sequence[Run]) -> dict[str, str]:
    """``T<i>`` → the task's name (from ``tasks.csv``) where every run that names task i agrees."""
    names: dict[str, set[str]] = {}
    for run in runs:
        for index, name in run.task_names.items():
            names.setdefault(f"T{index}", set()).add(name)
    found = {column: next(iter(seen)) for column, seen in names.items() if len(seen) == 1}
    return dict(sorted(found.items(), key=lambda item: _task_sort_key(item[0])))


def run_accounting(runs: Sequence[Run]) -> dict[str, dict[str, str]]:
    """How each strategy among ``runs`` counts its size: as its run recorded it, else as the
    installed strategy declares it, else the default count (kind "other")."""
    from clbench import accounting

    found: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.strategy not in found:
            declared = accounting.recorded(run.path) or _installed_accounting(run.strategy)
            found[run.strategy] = declared or {"kind": "other", "size_note": accounting.KINDS["other"]}
    return found


def _installed_accounting(strategy: str) -> dict[str, str] | None:
    """The accounting of an installed strategy (None when it is not installed). Here, not in
    clbench.accounting: loading the plugins belongs to the layers above the strategy's."""
    from clbench import accounting

    plugins = experiment.installed_plugins()
    if plugins is None or strategy not in plugins.strategies:
        return None
    return accounting.record(plugins.strategies.get(strategy))


def task_note(table: Table) -> list[str]:
    """The footnote naming the task columns (none when no run recorded names)."""
    if not table.task_names:
        return []
    return ["Tasks: " + ", ".join(f"{column} = {name}" for column, name in table.task_names.items()) + "."]


def per_run_table(runs: Sequence[Run]) -> Table:
    """One row per run."""
    import pandas as pd

    labels = group_labels(runs)
    records = [run_record(run) for run in runs]
    values = _value_columns(records)
    rows = [
        {"strategy": r.strategy, "benchmark": r.benchmark, "config": labels[r.group_key], "seed": r.seed, **rec}
        for r, rec in zip(runs, records, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=[*KEY_COLUMNS, "seed", *values])
    return Table(
        frame=frame, values=values, keys=[*KEY_COLUMNS, "seed"], task_names=task_names(runs),
        accounting=run_accounting(runs),
    )  # fmt: skip


def seed_table(runs: Sequence[Run]) -> Table:
    """One row per group of runs that differ only in their seed: mean and std of every value."""
    import pandas as pd

    labels = group_labels(runs)
    groups = group_runs(runs)
    per_group = {key: [run_record(r) for r in members] for key, members in groups.items()}
    values = _value_columns(rec for recs in per_group.values() for rec in recs)
    mean_rows, std_rows = [], []
    for key, members in groups.items():
        block = pd.DataFrame(per_group[key], columns=values, dtype=float)
        head = {
            "strategy": key[0],
            "benchmark": key[1],
            "config": labels[key],
            "n": len(members),
            "seeds": " ".join(str(s) for s in sorted(r.seed for r in members)),
        }
        # skipna: a column one run lacks (a task it never reached) still averages the others.
        mean_rows.append({**head, **block.mean(skipna=True).to_dict()})
        std_rows.append(block.std(ddof=1, skipna=True).to_dict() if len(block) > 1 else dict.fromkeys(values))
    keys = [*KEY_COLUMNS, "n", "seeds"]
    frame = pd.DataFrame(mean_rows, columns=[*keys, *values])
    std = pd.DataFrame(std_rows, columns=values, dtype=float)
    return Table(
        frame=frame, values=values, std=std, keys=keys, task_names=task_names(runs), accounting=run_accounting(runs)
    )


# ------------------------------------------------------------------------ rendering
def _format_number(column: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "params":
        return f"{value:,.0f}"
    if column in ("size_mb", "paper_mb"):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if column == "wall_s":
        return f"{value:.1f}"
    return f"{value:.2f}"


def formatted_rows(table: Table, pm: str) -> list[list[str]]:
    """Formatted rows: keys as text, values as ``mean ± std`` (std only where it is defined)."""
    rows = []
    for i, row in table.frame.reset_index(drop=True).iterrows():
        cells = [str(row[k]) for k in table.keys]
        for column in table.values:
            text = _format_number(column, row[column])
            if table.std is not None and text:
                spread = table.std.iloc[i][column]
                if spread is not None and not math.isnan(spread):
                    text += f"{pm}{_format_number(column, spread)}"
            cells.append(text)
        rows.append(cells)
    return rows


def to_markdown(table: Table, footnotes: bool = True) -> str:
    from tabulate import tabulate

    header = [*table.keys, *table.values]
    numeric = ("left",) * len(table.keys) + ("right",) * len(table.values)
    text = tabulate(
        formatted_rows(table, " ± "), headers=header, tablefmt="pipe", colalign=numeric, disable_numparse=True
    )
    if footnotes:
        notes = table_notes(table)
        text += "\n\n" + "\n".join(f"{i}. {note}" for i, note in enumerate(notes, 1))
    return text


def to_csv(table: Table) -> str:
    """Machine-readable: raw numbers, the std of a value ``X`` in column ``X_std``."""
    frame = table.frame.copy()
    if table.std is not None:
        for column in table.values:
            frame.insert(frame.columns.get_loc(column) + 1, f"{column}_std", table.std[column].to_numpy())
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.6g")


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "…": r"\dots{}",
    "±": r"$\pm$",
    "−": "-",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table, footnotes: bool = True) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); footnotes as comments above it."""
    header = [*table.keys, *table.values]
    spec = "l" * len(table.keys) + "r" * len(table.values)
    lines = []
    if footnotes:
        lines += [f"% {latex_escape(note)}" for note in table_notes(table)]
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(latex_escape, header)) + r" \\"]
    lines.append(r"\midrule")
    for cells in formatted_rows(table, " ± "):
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def render(table: Table, fmt: str, footnotes: bool = True) -> str:
    if fmt == "md":
        return to_markdown(table, footnotes)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "latex":
        return to_latex(table, footnotes)
    raise UsageError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
