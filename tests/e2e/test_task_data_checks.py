"""A benchmark's tasks are checked when they are loaded (clbench.taskcheck): labels outside
0..n-1, an empty split, a one-class task and NaN inputs each end in one line and exit 2 before
training starts and before the run directory holds anything (issue 17, items 1-3 and 8)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLUGIN = """
import numpy as np
import clbench
from clbench.benchmark import Benchmark, TaskData
from clbench.datasets.tensors import TensorTaskDataset

TASKS = {tasks!r}  # (labels of each split, class count, kind, remap_labels) per task
NAN = {nan!r}  # (task, split) whose first sample holds a NaN


def split(labels, nan):
    rng = np.random.default_rng(len(labels))
    x = rng.normal(size=(len(labels), 1, 8, 8)).astype(np.float32)
    if nan and len(labels):
        x[0, 0, 0, 0] = np.nan
    return TensorTaskDataset(x, np.asarray(labels, dtype=np.int64))


class Tiny(Benchmark):
    name = "tiny"
    recipes = {{"default": {{"*": {{"epochs": 1, "batch_size": 8, "lr_milestones": ()}}}}}}

    def load_tasks(self):
        return [
            TaskData(
                name=f"t{{i}}",
                class_names=[str(c) for c in range(n)],
                kind=kind,
                **({{"remap_labels": True}} if remap else {{}}),
                **{{s: split(labels[s], NAN == (i, s)) for s in ("train", "valid", "test")}},
            )
            for i, (labels, n, kind, remap) in enumerate(TASKS, start=1)
        ]

    def backbone(self, width=1.0):
        from clbench.nn.backbones import digits_cnn

        return digits_cnn(width)


@clbench.hookimpl
def clbench_register_benchmarks(register):
    register(Tiny)
"""


def _labels(train, test=None, valid=None):
    test = train if test is None else test
    return {"train": list(train) * 6, "valid": list(train if valid is None else valid) * 2, "test": list(test) * 2}


GOOD = (_labels([0, 1]), 2, "classification", False)


def _run(tmp_path: Path, run_cli, tasks, nan=None, strategy="finetune"):
    plugin = tmp_path / "tiny_bench.py"
    plugin.write_text(textwrap.dedent(PLUGIN.format(tasks=tasks, nan=nan)))
    out = tmp_path / "run"
    code, err = run_cli(["run", "--plugin", str(plugin), "--benchmark", "tiny", "--strategy", strategy,
                         "--out", str(out), "--quiet", "--device", "cpu",
                         *(["--cpg.goals", "self"] if strategy == "cpg" else [])])  # fmt: skip
    return code, err, out


def _assert_refused(code: int, err: str, out: Path, *parts: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("strategy", ["finetune", "cpg"])
def test_labels_outside_0_to_n_minus_1_are_refused_at_load(tmp_path, run_cli, strategy):
    tasks = [GOOD, (_labels([2, 3, 4]), 3, "classification", False)]
    code, err, out = _run(tmp_path, run_cli, tasks, strategy=strategy)
    _assert_refused(code, err, out, "task 2 (t2)", "labels {2, 3, 4}", "0..2", "remap_labels=True", "tiny_bench.py")


def test_a_label_gap_is_refused_at_load(tmp_path, run_cli):
    code, err, out = _run(tmp_path, run_cli, [(_labels([0, 2]), 2, "classification", False), GOOD])
    _assert_refused(code, err, out, "task 1 (t1)", "labels {0, 2}", "0..1")


def test_test_labels_outside_the_classes_are_refused_at_load(tmp_path, run_cli):
    code, err, out = _run(tmp_path, run_cli, [GOOD, (_labels([0, 1], test=[0, 5]), 2, "classification", False)])
    _assert_refused(code, err, out, "task 2 (t2)", "test split")


def test_remap_labels_maps_the_labels_the_benchmark_asks_for(tmp_path, run_cli):
    tasks = [GOOD, (_labels([2, 3, 4]), 3, "classification", True)]
    code, err, out = _run(tmp_path, run_cli, tasks)
    assert code == 0, err
    from clbench import results

    assert set(results.load_metrics(out)["eval_task"]) == {1, 2}


def test_remapped_labels_wraps_without_copying():
    from clbench.datasets.tensors import TensorTaskDataset
    from clbench.taskcheck import RemappedLabels

    data = RemappedLabels(TensorTaskDataset([[1.0], [2.0], [3.0]], [7, 3, 9]), {3: 0, 7: 1, 9: 2})
    assert data.targets == [1, 0, 2] and data[2][1] == 2 and len(data) == 3


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_an_empty_split_is_refused_at_load(tmp_path, run_cli, split):
    labels = _labels([0, 1])
    labels[split] = []
    code, err, out = _run(tmp_path, run_cli, [GOOD, (labels, 2, "classification", False)])
    _assert_refused(code, err, out, f"task 2 (t2) of benchmark 'tiny' has no {split} samples")


def test_a_one_class_task_is_refused_at_load(tmp_path, run_cli):
    code, err, out = _run(tmp_path, run_cli, [GOOD, (_labels([0]), 1, "classification", False)])
    _assert_refused(code, err, out, "task 2 (t2)", "1 class(es)", "100 % by construction", "at least 2 classes")


def test_one_class_is_allowed_where_the_task_kind_makes_it_meaningful():
    from clbench.benchmark import TaskData
    from clbench.datasets.tensors import TensorTaskDataset
    from clbench.taskcheck import check_tasks
    from clbench.verification import PairSplit

    data = TensorTaskDataset([[0.5]] * 4, [0] * 4)
    pairs = PairSplit(data, [(0, 1), (2, 3)], [True, False], [1, 1], [1])
    task = TaskData("identity", ["someone"], data, pairs, pairs, kind="verification")
    assert check_tasks([task], _Named())[0] is task


class _Named:
    name = "named"


@pytest.mark.parametrize("split", ["train", "test"])
def test_nan_in_the_first_batch_inputs_is_named_as_a_data_problem(tmp_path, run_cli, split):
    code, err, out = _run(tmp_path, run_cli, [GOOD, GOOD], nan=(2, split))
    _assert_refused(code, err, out, "task 2 (t2)", f"first {split} batch has NaN inputs", "not the learning rate")
