"""Evaluation in one memory format, and the individual baseline's weight decay (upstream's)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clbench.strategy import StrategyContext
from clbench_baselines.individual import Individual, IndividualConfig
from clbench_benchmarks.digits import Digits, DigitsConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _strategy(cls, config):
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=Digits(DigitsConfig()).backbone, num_tasks=2)
    strategy = cls(config, context)
    strategy.before_task(SimpleNamespace(index=1, num_classes=2, data=SimpleNamespace(head="linear")))
    return strategy


def _four_d(model):
    return [p for p in list(model.parameters()) + list(model.buffers()) if p.dim() == 4]


@pytest.mark.parametrize("channels_last", [False, True])
def test_every_evaluation_runs_in_the_configured_memory_format(channels_last):
    """Training leaves weights channels-last, a restored snapshot is contiguous: scored in either
    state a finished task's outputs differed in the last bits (verification/triplet paths)."""
    strategy = _strategy(Individual, IndividualConfig(engine="device", channels_last=channels_last))
    other = torch.contiguous_format if channels_last else torch.channels_last
    strategy.model.to(memory_format=other)  # the layout the last phase happened to leave
    strategy.evaluate_all([], "valid")
    wanted = torch.channels_last if channels_last else torch.contiguous_format
    assert all(t.is_contiguous(memory_format=wanted) for t in _four_d(strategy.model))


def test_individual_decays_only_conv_and_linear_weights_of_the_backbone():
    """baseline_cifar100.sh runs packnet_cifar100_main_normal.py: manual decay on the shared
    conv/linear weights; BN, biases and the classifier head are not decayed."""
    strategy = _strategy(Individual, IndividualConfig(weight_decay=4e-5))
    optimizer = strategy.make_optimizer(0.1)
    net = strategy.model.nets["1"]
    weights = {id(m.weight) for m in net.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == weights
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in strategy.model.trainable_parameters()}
    assert optimizer.defaults["nesterov"] is True
