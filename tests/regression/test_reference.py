"""Regression against the committed reference tables (baselines/reference/*.csv).

Parametrized over the reference files (STYLE §2.7): for the offline default benchmark
(digits) it runs every strategy the table names with a fixed seed on the CPU and checks the
runs with ``clbench compare`` (one-sided: a row fails only below ``value − tol``). Tables that
hold only published rows (cifar100_20) are checked to parse and never fail; their runs belong
to a scheduled GPU job. A deliberately weakened strategy (``--finetune.lr 0``) must fail.

This module runs in the default ``python -m pytest`` (the marker is for selecting it, not for
deselecting it). Regenerate the digits table after an *intended* change of results with::

    python tests/regression/test_reference.py   # rewrites baselines/reference/digits.csv
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import pytest
from regression_kit import REPO, inside, outcomes, provenance_lines, reference_rows

from clbench import compare
from clbench.cli import main

pytestmark = pytest.mark.regression

REFERENCES = sorted((REPO / "baselines" / "reference").glob("*.csv"))
BENCHMARK, RECIPE, SEED = "digits", "tiny", 0
# individual first: its goals.csv is the accuracy goal of pae and cpg (as in the CPG recipe).
STRATEGIES = ("individual", "finetune", "packnet", "pae", "cpg")
# Tolerances (fractions). On one machine a fixed-seed CPU run is bit-for-bit (delta 0). Another
# CPU or BLAS build may reorder float sums and flip a borderline test image: a digits task has
# 89-91 test images (one image = 1.1 points), so per-task accuracy may drop 3 images (0.035),
# the 5-task mean 2 points (0.02) before it counts as a regression. Isolation strategies must
# keep forgetting at exactly 0 (tol 0): any leak through BN, biases or masks fails.
TOL_TASK, TOL_MEAN, TOL_FORGETTING = 0.035, 0.02, 0.0
ISOLATION = ("individual", "packnet", "pae", "cpg")


def run_argv(strategy: str, out: Path, goals: Path | None = None, *extra: str) -> list[str]:
    argv = ["run", "--strategy", strategy, "--benchmark", BENCHMARK, "--recipe", RECIPE, "--seed", str(SEED)]
    # Pinned to the CPU: on a GPU machine "auto" would pick CUDA and other numbers.
    argv += ["--device", "cpu", "--quiet", "--out", str(out)]
    if strategy in ("pae", "cpg") and goals is not None:
        argv += [f"--{strategy}.goals-file", str(goals)]
    return argv + list(extra)


def run_strategies(folder: Path, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, Path]:
    """Run each strategy once (fixed seed, CPU) under ``folder``; the run directory of each."""
    out: dict[str, Path] = {}
    with inside(folder), contextlib.redirect_stdout(io.StringIO()):
        for strategy in strategies:
            goals = out["individual"] / "goals.csv" if "individual" in out else None
            out[strategy] = folder / strategy
            code = main(run_argv(strategy, out[strategy], goals))
            if code != 0:
                raise RuntimeError(f"clbench {' '.join(run_argv(strategy, out[strategy], goals))} exited {code}")
    return out


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return run_strategies(tmp_path_factory.mktemp("regression"))


@pytest.mark.parametrize("reference", REFERENCES, ids=[p.stem for p in REFERENCES])
def test_reference(reference: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    rows = compare.read_reference(reference)
    measured = [r for r in rows if not r.published]
    if not measured:
        # Published numbers only: shown for context, never failing, even with no run at all.
        assert main(["compare", "--reference", str(reference)]) == 0
        assert capsys.readouterr().out.count("| published") == len(rows)
        return
    if {r.benchmark for r in measured} != {BENCHMARK}:
        pytest.skip(f"{reference.name}: measured rows for a benchmark other than {BENCHMARK} need the GPU job")
    runs = request.getfixturevalue("digits_runs")
    strategies = {r.strategy for r in measured}
    assert strategies <= set(runs), f"{reference.name} names strategies this test does not run: {strategies}"
    code = main(["compare", *(str(runs[s]) for s in sorted(strategies)), "--reference", str(reference)])
    out = capsys.readouterr().out
    assert code == 0, f"regression against {reference.name}:\n{out}"
    assert "missing" not in {o.status for o in outcomes(runs, reference)}


def test_weakened_strategy_fails(digits_runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Negative control: finetune that cannot learn (lr 0) must be caught as a regression."""
    weak = tmp_path / "finetune-lr0"
    with inside(tmp_path), contextlib.redirect_stdout(io.StringIO()):
        assert main(run_argv("finetune", weak, None, "--finetune.lr", "0")) == 0
    reference = REPO / "baselines" / "reference" / f"{BENCHMARK}.csv"
    code = main(["compare", str(weak), "--reference", str(reference), "--allow-missing"])
    out = capsys.readouterr().out
    assert code == 1, out
    statuses = {(o.row.metric, o.status) for o in outcomes({"finetune": weak}, reference)}
    assert ("mean_accuracy", "FAIL") in statuses
    # And the same reference passes the healthy run.
    assert main(["compare", str(digits_runs["finetune"]), "--reference", str(reference), "--allow-missing"]) == 0


# ------------------------------------------------------------------ regeneration
def write_digits_reference(path: Path) -> None:
    """Run every strategy and write the digits reference table with its provenance header."""
    from clbench import results

    with tempfile.TemporaryDirectory() as folder:
        runs = run_strategies(Path(folder))
        source = f"measured: {{strategy}} --recipe {RECIPE} --seed {SEED} --device cpu (see header)"
        lines = reference_rows(runs, BENCHMARK, (TOL_TASK, TOL_MEAN, TOL_FORGETTING), ISOLATION, source)
    header = [
        f"# Reference table for {BENCHMARK} (the offline default): measured by this project, checked in CI by",
        "# tests/regression/test_reference.py; regenerate with `python tests/regression/test_reference.py`.",
        "# Columns: strategy,benchmark,task,metric,value,tol,source (docs/results.md, 'Reports and regression').",
        f"# comparable: recipe={RECIPE}; tasks=5; limits=none",
        "# Values are fractions as in metrics.csv: accuracy = final task-aware top-1 on the task's test split.",
        "# Command (in an empty folder; strategies in this order, pae/cpg read the individual run's goals.csv):",
        f"#   clbench run --strategy S --benchmark {BENCHMARK} --recipe {RECIPE} --seed {SEED} --device cpu --quiet "
        "--out S [--S.goals-file individual/goals.csv]",
        f"#   for S in {' '.join(STRATEGIES)}",
        *provenance_lines(SEED),
        f"# Tolerance (one-sided): per-task accuracy {TOL_TASK} (3 of ~90 test images), mean {TOL_MEAN}, "
        f"forgetting {TOL_FORGETTING} for isolation strategies (must stay exactly 0).",
        "# Same seed on the same CPU is bit-for-bit (delta 0); the tolerance absorbs other CPUs / BLAS builds only.",
    ]
    text = "\n".join([*header, ",".join(compare.REFERENCE_COLUMNS), *lines]) + "\n"
    results.atomic_write_text(path, text)


if __name__ == "__main__":
    target = REPO / "baselines" / "reference" / f"{BENCHMARK}.csv"
    write_digits_reference(target)
    print(f"wrote {target}", file=sys.stderr)
