"""Cost of the masked substrate: forward+backward of masked vs plain VGG16-BN, CIFAR batch of 32.

The masked case is CPG training: task 2 active, piggymask picking on, so each layer computes
``weight * where(earlier, binarize(piggymask), own)`` every step. Rounds are few: this runs on
small CPU runners (run with ``pytest tests/perf/bench_masked.py --benchmark-only``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clbench.nn.backbones import vgg16_bn_cifar
from clbench.nn.masked import MaskedNet

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

pytestmark = pytest.mark.perf

BATCH = 32
ROUNDS = 5


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 5, (BATCH,), generator=g)


def _step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()

    return run


def test_plain_vgg16_bn_forward_backward(benchmark: BenchmarkFixture) -> None:
    torch.manual_seed(0)
    body = vgg16_bn_cifar()
    net = nn.Sequential(body, nn.Linear(body.out_features, 5)).train()
    x, y = _batch()
    benchmark.pedantic(_step(net, x, y), rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_masked_vgg16_bn_cpg_forward_backward(benchmark: BenchmarkFixture) -> None:
    torch.manual_seed(0)
    net = MaskedNet(vgg16_bn_cifar)
    net.begin_task(1, 5)
    net.prune(0.5)  # task 2 then owns half of each layer and picks from the other half
    net.finish_task()
    net.begin_task(2, 5, pick="learn")
    net.train()
    x, y = _batch()
    benchmark.pedantic(_step(net, x, y), rounds=ROUNDS, iterations=1, warmup_rounds=1)
