"""The task-aware network interface (clbench.api.TaskAwareNetwork) is checked when a strategy
builds its network: every first-party strategy's passes, a network missing members is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clbench.errors import UsageError
from clbench.manager import load_plugins
from clbench.network import TaskAwareNetwork
from clbench.strategy import Strategy, StrategyContext

PLUGINS = load_plugins(third_party=False)


def _context():
    bench = PLUGINS.benchmarks.get("digits")
    return StrategyContext(device=torch.device("cpu"), backbone_factory=bench(bench.Config()).backbone, num_tasks=5)


@pytest.mark.parametrize("name", PLUGINS.strategies.names())
def test_every_first_party_network_is_task_aware(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cls = PLUGINS.strategies.get(name)
    strategy = cls(cls.Config(), _context())
    assert isinstance(strategy.model, TaskAwareNetwork)


def test_a_network_without_the_task_interface_is_refused_in_one_line():
    class Plain(Strategy):
        name = "plain"

        def build_model(self):
            return nn.Linear(2, 2)

    with pytest.raises(UsageError) as info:
        Plain(Plain.Config(), _context())
    message = str(info.value)
    assert "\n" not in message and "lacks begin_task, finish_task, activate" in message
    assert "TaskAwareNetwork" in message
