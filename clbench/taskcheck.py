"""Checks on a benchmark's tasks, run when they are loaded: before any training and before the
run directory holds anything.

Each check ends a run in one line (exit 2) that names the task, what was found, the contract and
where to fix it:

* every split has samples (an empty split would fail deep inside Avalanche's dataset code);
* a classification task's labels (in every split) are within ``0..n-1``, ``n = len(class_names)`` (a label ``n`` or more
  would stop training with ``IndexError: Target n is out of bounds`` after earlier tasks'
  results were written);
* a task has at least two classes, unless its kind makes one class meaningful (verification
  and triplet tasks score embeddings, not a head's argmax): a one-class head always predicts
  its class and scores 100 % by construction;
* the first batch of every split has finite inputs (NaN or infinite inputs would show up later
  as a non-finite loss, looking like a learning-rate problem).

A benchmark whose labels are not ``0..n-1`` by construction can ask for remapping with
``TaskData(remap_labels=True)``: the sorted distinct training labels become ``0..n-1``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from clbench.errors import UsageError

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark, TaskData

#: Task kinds for which one class is meaningful (their scores do not come from a head's argmax).
ONE_CLASS_KINDS = ("verification", "triplet")
#: Samples of each split whose inputs are checked for NaN and infinity (the first batch).
FIRST_BATCH = 32


class TaskDataError(UsageError):
    """A benchmark's task breaks the TaskData contract (labels, empty split, one class, NaN inputs)."""


def check_tasks(tasks: Sequence[TaskData], benchmark: Benchmark) -> list[TaskData]:
    """Check every task (see the module doc) and return them, remapped where a task asks for it.

    Args:
        tasks: what ``benchmark.load_tasks()`` returned, in task order (task 1 first).
        benchmark: the benchmark that made them (named in errors, with the file to fix).

    Returns:
        The tasks; those with ``remap_labels=True`` get datasets with labels ``0..n-1``.

    Raises:
        TaskDataError: one line naming the task, what was found and what to fix.
    """
    if not tasks:
        raise TaskDataError(f"benchmark {benchmark.name!r} produced no tasks; {_fix_in(benchmark)}")
    checked = []
    # Reading samples may draw random augmentations: the run's random streams stay untouched.
    with _rng_untouched():
        for index, task in enumerate(tasks, start=1):
            where = f"task {index} ({task.name}) of benchmark {benchmark.name!r}"
            _check_not_empty(task, where, benchmark)
            if task.remap_labels and task.kind != "triplet":
                task = _remapped(task)
            _check_classes(task, where, benchmark)
            _check_first_batches(task, where, benchmark)
            checked.append(task)
    return checked


def _fix_in(benchmark: Benchmark) -> str:
    """Where to fix a task: the benchmark class's ``load_tasks`` and its source file."""
    try:
        source = inspect.getsourcefile(type(benchmark))
    except TypeError:
        source = None
    return f"fix {type(benchmark).__name__}.load_tasks" + (f" in {source}" if source else "")


def _splits(task: TaskData) -> dict[str, Any]:
    return {"train": task.train, "valid": task.valid, "test": task.test}


def _check_not_empty(task: TaskData, where: str, benchmark: Benchmark) -> None:
    for split, data in _splits(task).items():
        try:
            size = len(data)
        except TypeError:
            continue  # not a sized split: nothing to check here
        if size == 0:
            raise TaskDataError(
                f"{where} has no {split} samples; every task needs training, validation and test samples "
                f"({_fix_in(benchmark)}, or check the data under --data-root)"
            )


def targets(dataset: Any) -> list[int]:
    """The integer labels of a classification dataset: its ``targets`` list when it has one,
    else the second element of every sample."""
    found = getattr(dataset, "targets", None)
    if found is None:
        found = [dataset[i][1] for i in range(len(dataset))]
    return [int(t) for t in found]


def _check_classes(task: TaskData, where: str, benchmark: Benchmark) -> None:
    if task.kind == "triplet":
        return  # triplet items carry a constant target; the embedding head has no classes
    n = task.num_classes
    if n < 2 and task.kind not in ONE_CLASS_KINDS:
        raise TaskDataError(
            f"{where} has {n} class(es) ({_names(task.class_names)}): its head would always predict it and "
            f"score 100 % by construction; a {task.kind} task needs at least 2 classes ({_fix_in(benchmark)}, "
            f"or merge the folder's class into another task)"
        )
    contract = f"local labels 0..{n - 1}, one per class_names entry"
    split_items = [("train", task.train)]
    if task.kind == "classification":
        split_items += [("valid", task.valid), ("test", task.test)]
    for split, data in split_items:
        found = sorted(set(targets(data)))
        if any(not 0 <= t < n for t in found):
            raise TaskDataError(
                f"{where} has labels {_short(found)} in its {split} split; the contract is {contract}: "
                "remap them in load_tasks or pass "
                f"TaskData(remap_labels=True) ({_fix_in(benchmark)})"
            )


def _check_first_batches(task: TaskData, where: str, benchmark: Benchmark) -> None:
    import torch

    for split, data in _splits(task).items():
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            continue
        for i in range(min(len(data), FIRST_BATCH)):
            item = data[i]
            x = item[0] if isinstance(item, tuple | list) else item
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                break  # pair splits and integer images cannot hold NaN
            if not bool(torch.isfinite(x).all()):
                bad = "NaN" if bool(torch.isnan(x).any()) else "infinite"
                raise TaskDataError(
                    f"{where}: sample {i} of the first {split} batch has {bad} inputs; the data itself is bad, "
                    f"not the learning rate ({_fix_in(benchmark)}, or the files under --data-root)"
                )


def _remapped(task: TaskData) -> TaskData:
    """``task`` with its labels mapped onto ``0..n-1`` (sorted distinct training labels)."""
    order = sorted(set(targets(task.train)))
    mapping = {label: k for k, label in enumerate(order)}
    splits = {"train": task.train}
    if task.kind == "classification":
        splits.update(valid=task.valid, test=task.test)
    remapped = {split: RemappedLabels(data, mapping) for split, data in splits.items()}
    return replace(task, **remapped, remap_labels=False)


class RemappedLabels:
    """A classification dataset whose labels go through ``mapping``; a label missing from it
    becomes ``len(mapping)`` (out of range, so the label check reports it)."""

    def __init__(self, dataset: Any, mapping: dict[int, int]) -> None:
        self.dataset = dataset
        self.mapping = mapping
        self.targets = [self._map(t) for t in targets(dataset)]

    def _map(self, label: int) -> int:
        return self.mapping.get(int(label), len(self.mapping))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x, _ = self.dataset[index]
        return x, self.targets[index]


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(str, names)) or "none"


def _short(values: Sequence[int], limit: int = 8) -> str:
    head = "{" + ", ".join(map(str, values[:limit]))
    return head + (", ...}" if len(values) > limit else "}")


class _rng_untouched:  # noqa: N801 (used as a context manager)
    """Restore Python's, NumPy's and torch's CPU random states on exit."""

    def __enter__(self) -> None:
        import numpy as np
        import torch

        self.states = (random.getstate(), np.random.get_state(), torch.get_rng_state())

    def __exit__(self, *exc: object) -> None:
        import numpy as np
        import torch

        python, numpy_state, torch_state = self.states
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
