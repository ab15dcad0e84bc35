"""finetune_previous starts each task from an earlier task's network, with a new head."""

from __future__ import annotations

import random

import pytest
import torch

from clbench.loop import build_scenario
from clbench.strategy import StrategyContext, Task
from clbench_baselines.finetune_previous import FinetunePrevious, FinetunePreviousConfig
from clbench_benchmarks.digits import Digits, DigitsConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("parent", ["previous", "random"])
def test_each_task_starts_from_a_parent_network(parent):
    benchmark = Digits(DigitsConfig())
    data = benchmark.load_tasks()[:3]
    exps = build_scenario(data)
    tasks = [Task(i, d, exps["train"][i], exps["valid"][i], exps["test"][i]) for i, d in enumerate(data, start=1)]
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=benchmark.backbone, num_tasks=3)
    config = FinetunePreviousConfig(epochs=1, lr=0.05, batch_size=64, lr_milestones=(), parent=parent)
    strategy = FinetunePrevious(config, context)
    random.seed(0)
    lrs = []
    strategy.fit = lambda task, optimizer, *args, **kwargs: lrs.append(optimizer.param_groups[0]["lr"])  # no training
    for task in tasks:
        strategy.learn_task(task)
    nets = strategy.model.nets
    for child, mother in strategy.parents.items():
        assert (mother == child - 1) if parent == "previous" else (1 <= mother < child)
        a, b = nets[str(child)].backbone.state_dict(), nets[str(mother)].backbone.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)  # an untrained copy of the parent's network
        assert list(nets[str(child)].heads) == [str(child)]  # with its own new head
    assert sorted(strategy.parents) == [2, 3]
    assert lrs == [0.05, 0.025, 0.025]  # later tasks at half the lr (finetune_cifar100.sh: 5e-3 vs 1e-2)
