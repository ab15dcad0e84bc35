"""Joint trainers' own loop: the gradient-norm cap, and triplet tasks (alternating only) (seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from clbench.benchmark import TaskData
from clbench.errors import UsageError
from clbench.loop import build_scenario
from clbench.strategy import StrategyContext, Task
from clbench.triplets import StackedTriplets, TripletDataset, sample_label_triplets
from clbench_baselines.joint import JointAlternating, JointConfig, JointDynamic, JointMixed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDE = 4


def _factory(width: float) -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 8), nn.ReLU())
    net.out_features = 8
    return net


class _Images(Dataset):
    def __init__(self, n: int, seed: int, classes: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % classes
        self.x = torch.randn(n, 1, SIDE, SIDE, generator=g) + labels.view(-1, 1, 1, 1)
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.targets[i]


def _classification(name: str, seed: int) -> TaskData:
    return TaskData(name, ["a", "b", "c"], _Images(32, seed), _Images(12, seed + 1), _Images(12, seed + 2))


def _triplets(name: str) -> TaskData:
    splits = {}
    for seed, split in enumerate(("train", "valid", "test"), start=10):
        images = _Images(24, seed)
        triplets = TripletDataset(images, sample_label_triplets(images.targets, 12, seed))
        splits[split] = StackedTriplets(triplets) if split == "train" else triplets
    return TaskData(name, ["a", "b", "c"], kind="triplet", **splits)


def _tasks(*data: TaskData) -> list[Task]:
    exps = build_scenario(list(data))
    return [
        Task(i, d, exps["train"][i], exps["valid"].get(i), exps["test"].get(i)) for i, d in enumerate(data, start=1)
    ]


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


class _KeepUnit(JointDynamic):
    """Keeps the dynamic-weight unit and its initial parameters, to measure how far it moved."""

    name = "keep_unit_for_test"

    def make_unit(self, model: nn.Module, tasks: list[Task]) -> nn.Module | None:
        self.unit = super().make_unit(model, tasks)
        self.unit_start = _flat(self.unit) if self.unit is not None else None
        return self.unit


def _joint_dynamic_step_two(clip: float | None) -> tuple[float, float, int]:
    """Distance moved by the network and the unit while joint_dynamic trains tasks 1-2 for one
    epoch (plain SGD, lr 0.1), and the number of SGD steps."""
    torch.manual_seed(0)
    config = JointConfig(epochs=1, lr=0.1, momentum=0.0, batch_size=8, clip_grad_norm=clip)
    strategy = _KeepUnit(config, StrategyContext(torch.device("cpu"), _factory, num_tasks=2))
    tasks = _tasks(_classification("one", 0), _classification("two", 5))
    strategy.validate(tasks)
    strategy.before_task(tasks[0])
    strategy.after_task(tasks[0])  # task 1 untrained: only step 2 is measured
    strategy.before_task(tasks[1])
    start = _flat(strategy.model)
    strategy.train(tasks[1])
    steps = math.ceil(64 / 8)  # mixed batches over both tasks' 32 images
    model_moved = float((_flat(strategy.model) - start).norm())
    unit_moved = float((_flat(strategy.unit) - strategy.unit_start).norm())
    return model_moved, unit_moved, steps


def test_clip_grad_norm_caps_every_joint_step_over_network_and_unit():
    clip, lr = 1e-3, 0.1
    model_moved, unit_moved, steps = _joint_dynamic_step_two(clip)
    # Each clipped step moves the network by lr·g and the unit by 10·lr·g' with ‖(g, g')‖ ≤ clip.
    combined = math.hypot(model_moved / lr, unit_moved / (10 * lr))
    assert 0 < combined <= steps * clip * (1 + 1e-4)
    free_model, free_unit, _ = _joint_dynamic_step_two(None)
    # Unclipped, each part alone moves well beyond its share of the bound: the cap binds on both.
    assert free_model > 100 * steps * lr * clip and free_unit > 5 * steps * 10 * lr * clip


def test_clip_grad_norm_unset_leaves_gradients_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a))
    _joint_dynamic_step_two(None)
    assert calls == []
    _joint_dynamic_step_two(0.5)
    assert len(calls) == 8 and calls[0][1] == 0.5


@pytest.mark.parametrize("cls", [JointMixed, JointDynamic])
def test_mixed_batch_joint_strategies_refuse_triplet_tasks(cls):
    strategy = cls(cls.Config(), StrategyContext(torch.device("cpu"), _factory, num_tasks=2))
    with pytest.raises(UsageError, match="triplet tasks \\(similar\\) are not supported"):
        strategy.validate(_tasks(_classification("one", 0), _triplets("similar")))


def test_joint_alternating_trains_a_triplet_task_beside_a_classification_task():
    torch.manual_seed(0)
    config = JointConfig(epochs=2, lr=0.05, batch_size=8, clip_grad_norm=5.0)
    strategy = JointAlternating(config, StrategyContext(torch.device("cpu"), _factory, num_tasks=2))
    tasks = _tasks(_classification("one", 0), _triplets("similar"))
    strategy.validate(tasks)
    for task in tasks:
        strategy.before_task(task)
        result = strategy.train(task)
        strategy.after_task(task)
    assert math.isfinite(result.train_loss) and 0.0 <= result.train_accuracy <= 1.0
    scores = strategy.evaluate_all(tasks, "test")
    assert set(scores) == {1, 2} and 0.0 <= scores[2]["accuracy"] <= 1.0
