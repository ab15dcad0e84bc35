"""Helpers shared by the regression modules: run clbench in a folder, compare, write references."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from clbench import compare, results, tables
from clbench.cli import main

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run with ``folder`` as the working directory: the individual baseline publishes
    runs/goals/... relative to it, which must stay out of the checkout."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_quietly(folder: Path, argv: Sequence[str]) -> None:
    """``clbench *argv`` inside ``folder``; RuntimeError naming the command when it fails."""
    with inside(folder), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    if code != 0:
        raise RuntimeError(f"clbench {' '.join(argv)} exited {code}")


def outcomes(runs: dict[str, Path], reference: Path) -> list[compare.Outcome]:
    loaded = tables.load_runs(list(runs.values()))
    rows = compare.read_reference(reference)
    return compare.compare(loaded, rows, allow_missing=True).outcomes


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" (working tree had uncommitted changes)" if dirty.stdout.strip() else "")


def provenance_lines(seed: int) -> list[str]:
    """``# Commit``, ``# Device`` and ``# Seed/Date`` header lines of a reference file."""
    import torch

    cpu = platform.processor() or platform.machine()
    return [
        f"# Commit: {git_commit()}",
        f"# Device: cpu ({cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, {platform.system()})",
        f"# Seed: {seed}. Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
    ]


def reference_rows(
    runs: dict[str, Path], benchmark: str, tolerances: tuple[float, float, float], isolation: Sequence[str], source: str
) -> list[str]:
    """CSV rows (``compare.REFERENCE_COLUMNS``) of each run's final per-task accuracy, mean and,
    for the strategies in ``isolation``, forgetting. ``tolerances``: per task, mean, forgetting."""
    tol_task, tol_mean, tol_forgetting = tolerances
    lines = []

    def row(strategy: str, task: object, metric: str, value: float, tol: float, where: str) -> str:
        # Rounded: a mean such as 0.33699999999999997 would otherwise be written out in full.
        return f"{strategy},{benchmark},{task},{metric},{round(value, 6)!r},{tol},{where}"

    for strategy, path in runs.items():
        run = tables.load_run(path)
        where = source.format(strategy=strategy)
        for task, value in results.final_accuracies(results.accuracy_matrix(run.metrics)).items():
            lines.append(row(strategy, int(task), "accuracy", value, tol_task, where))
        stats = results.summarize(run.metrics)
        lines.append(row(strategy, "all", "mean_accuracy", stats["mean_accuracy"], tol_mean, where))
        if strategy in isolation:
            lines.append(row(strategy, "all", "forgetting", stats["forgetting"], tol_forgetting, where))
    return lines
