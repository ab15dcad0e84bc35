"""Training throughput of the device engine (``python -m clbench.throughput``) at a tiny size.

The same three variants as the script, a few steps each so that ``pytest -m perf`` exercises
them on small CPU runners: a bare PyTorch loop on the plain VGG16-BN, clbench's engine training
CPG's task 2 on the masked VGG16-BN, and the engine training finetune on the plain network.
Compare ``bare`` and ``engine`` from one session only (same runner kind). For real numbers run
the script on a GPU (docs/speed.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from clbench.engine import EngineOptions
from clbench.throughput import BareLoop, EngineCPG, EnginePlain, Variant

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

pytestmark = pytest.mark.perf

BATCH = 8
STEPS = 2
ROUNDS = 3


def _bench(benchmark: BenchmarkFixture, variant: Variant) -> None:
    # A fresh task (untimed) before each round: the engine copies a task's data once.
    benchmark.pedantic(variant.run, setup=lambda: variant.prepare(STEPS), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_round"] = BATCH * STEPS


@pytest.mark.parametrize("variant_cls", [BareLoop, EngineCPG, EnginePlain], ids=["bare", "engine", "engine_plain"])
def test_train_steps(benchmark: BenchmarkFixture, variant_cls: type) -> None:
    variant = variant_cls(torch.device("cpu"), BATCH, EngineOptions())
    _bench(benchmark, variant)


def test_engine_bf16_channels_last(benchmark: BenchmarkFixture) -> None:
    variant = EngineCPG(torch.device("cpu"), BATCH, EngineOptions(precision="bf16", channels_last=True))
    _bench(benchmark, variant)
