"""Regression at real scale: the cifar100_20 ``cpu`` recipe on a fixed-seed slice of real images.

The digits reference catches a change that breaks learning on digits; this slice catches one that
breaks it on real images at the CPU table's network and schedule (baselines/results/
cifar100_20-cpu.md): the ``cpu`` recipe (VGG16-BN at width 0.25, 2 epochs, three pruning stages,
retrain), the first 2 super-class tasks, 2,000 training images per task (of 2,250; with 1,000 the
recipe's 2 epochs left both individual models at chance), the full 500-image test splits, one torch
thread. ``individual`` trains the goals, then ``cpg`` packs the two tasks against them. The runs are checked with
``clbench compare`` against tests/regression/cifar100_20-cpu-slice.csv; a deliberately broken run
(``--individual.lr 0``) must fail it. It runs in the plain ``python -m pytest`` whenever
../shared/data is there, and skips, naming the folder, when it is not.

Regenerate the reference after an *intended* change of results with::

    python tests/regression/test_cifar_slice.py   # needs ../shared/data
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from regression_kit import outcomes, provenance_lines, reference_rows, run_quietly

from clbench import compare
from clbench.cli import main

pytestmark = [pytest.mark.regression, pytest.mark.realdata, pytest.mark.slow]

REFERENCE = Path(__file__).with_name("cifar100_20-cpu-slice.csv")
BENCHMARK, RECIPE, SEED, TASKS, TRAIN_LIMIT = "cifar100_20", "cpu", 0, 2, 2000
STRATEGIES = ("individual", "cpg")
# A task's test split has 500 images (one image = 0.2 points). On one machine a fixed-seed CPU run
# repeats bit for bit; another CPU or BLAS build reorders float sums, and 2 epochs of training
# amplify that: 5 points per task, 3 on the mean. CPG keeps forgetting at exactly 0. A run that
# does not learn sits at chance (0.20), well below the reference less its tolerance.
TOL_TASK, TOL_MEAN, TOL_FORGETTING = 0.05, 0.03, 0.0


def run_argv(strategy: str, data_root: Path, out: Path, *extra: str) -> list[str]:
    argv = ["run", "--strategy", strategy, "--benchmark", BENCHMARK, "--recipe", RECIPE, "--seed", str(SEED)]
    argv += ["--device", "cpu", "--quiet", "--data-root", str(data_root), "--out", str(out)]
    argv += ["--cifar100_20.num-tasks", str(TASKS), "--cifar100_20.train-limit", str(TRAIN_LIMIT)]
    return argv + list(extra)


def run_slice(folder: Path, data_root: Path) -> dict[str, Path]:
    """individual, then cpg reading its goals.csv; the run directory of each."""
    runs = {name: folder / name for name in STRATEGIES}
    run_quietly(folder, run_argv("individual", data_root, runs["individual"]))
    goals = runs["individual"] / "goals.csv"
    run_quietly(folder, run_argv("cpg", data_root, runs["cpg"], "--cpg.goals-file", str(goals)))
    return runs


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """The reference was measured with one torch thread; another count reorders float sums."""


@pytest.fixture(scope="module")
def slice_runs(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return run_slice(tmp_path_factory.mktemp("cifar-slice"), cifar_root)


def test_slice_matches_reference(slice_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", *(str(p) for p in slice_runs.values()), "--reference", str(REFERENCE)])
    out = capsys.readouterr().out
    assert code == 0, f"regression against {REFERENCE.name}:\n{out}"
    statuses = {o.status for o in outcomes(slice_runs, REFERENCE)}
    assert statuses <= {compare.PASS, compare.BETTER}, statuses


def test_slice_catches_a_run_that_does_not_learn(
    cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weak = tmp_path / "individual"
    # One epoch is enough to stay at chance with lr 0, and saves one.
    run_quietly(tmp_path, run_argv("individual", cifar_root, weak, "--individual.lr", "0", "--individual.epochs", "1"))
    code = main(["compare", str(weak), "--reference", str(REFERENCE), "--allow-missing"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert ("mean_accuracy", "FAIL") in {(o.row.metric, o.status) for o in outcomes({"individual": weak}, REFERENCE)}


def write_reference(path: Path, data_root: Path) -> None:
    """Run the slice and write its reference table with the provenance header."""
    from clbench import results

    with tempfile.TemporaryDirectory() as folder:
        runs = run_slice(Path(folder), data_root)
        source = f"measured: {{strategy}} --recipe {RECIPE} --seed {SEED} --device cpu (see header)"
        lines = reference_rows(runs, BENCHMARK, (TOL_TASK, TOL_MEAN, TOL_FORGETTING), ("cpg",), source)
    header = [
        f"# Reference for the real-data slice of {BENCHMARK}: the `{RECIPE}` recipe on the first {TASKS} tasks,",
        f"# {TRAIN_LIMIT} training images per task. Checked by tests/regression/test_cifar_slice.py; regenerate with",
        "# `python tests/regression/test_cifar_slice.py` (needs ../shared/data).",
        "# Columns: strategy,benchmark,task,metric,value,tol,source (docs/results.md, 'Reports and regression').",
        f"# comparable: recipe={RECIPE}; tasks={TASKS}; limits=train_limit:{TRAIN_LIMIT}",
        "# Command (in an empty folder, individual first; DATA holds cifar100/{train,test}/<superclass>/...):",
        f"#   clbench run --strategy S --benchmark {BENCHMARK} --recipe {RECIPE} --seed {SEED} --device cpu --quiet "
        f"--data-root DATA --out S --cifar100_20.num-tasks {TASKS} --cifar100_20.train-limit {TRAIN_LIMIT} "
        "[--cpg.goals-file individual/goals.csv]",
        *provenance_lines(SEED),
        f"# Tolerance (one-sided): per-task accuracy {TOL_TASK}, mean {TOL_MEAN}, CPG forgetting {TOL_FORGETTING}.",
    ]
    text = "\n".join([*header, ",".join(compare.REFERENCE_COLUMNS), *lines]) + "\n"
    results.atomic_write_text(path, text)


if __name__ == "__main__":
    import os

    import torch

    torch.set_num_threads(1)  # as the test's one_torch_thread fixture
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/realdata.py, as conftest uses it
    import realdata

    cache = os.environ.get("CLBENCH_CACHE")
    with tempfile.TemporaryDirectory() as data:
        archives = [realdata.SHARED_DATA / part for part in realdata.CIFAR_PARTS]
        root = realdata.extract("cifar100", archives, Path(data), Path(cache) if cache else None)
        write_reference(REFERENCE, root / "cifar100")
    print(f"wrote {REFERENCE}", file=sys.stderr)
