"""Training throughput of the device engine (``python -m clbench.throughput``) at a tiny size.

The same variants as the script (``clbench.throughput.BUILDERS``: bare, plain, packnet, cpg,
eval_bare, eval_cpg), a few steps each at width 0.25 so that ``pytest -m perf`` exercises them
on small CPU runners. Compare variants from one session only (same runner kind). For the ratios
the issue asks for run the script, which interleaves repetitions (docs/speed.md).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import pytest
import torch

from clbench.engine import EngineOptions
from clbench.throughput import BUILDERS, EngineCPG, Measurement, Variant, measure, ratios

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

pytestmark = pytest.mark.perf

BATCH = 8
STEPS = 2
ROUNDS = 3
WIDTH = 0.25


def _bench(benchmark: BenchmarkFixture, variant: Variant) -> None:
    # A fresh task (untimed) before each round: the engine copies a task's data once.
    benchmark.pedantic(variant.run, setup=lambda: variant.prepare(STEPS), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_round"] = BATCH * STEPS


@pytest.mark.parametrize("name", list(BUILDERS))
def test_steps(benchmark: BenchmarkFixture, name: str) -> None:
    variant = BUILDERS[name](torch.device("cpu"), BATCH, EngineOptions(), width=WIDTH)
    _bench(benchmark, variant)


@pytest.mark.parametrize("batch_size", [32, 128])
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_interleaved_ratios(benchmark: BenchmarkFixture, width: float, batch_size: int) -> None:
    """All variants side by side, repetitions alternating (``clbench.throughput.measure``); the
    img/s medians and the ratios to bare land in the benchmark's ``extra_info``."""
    found: list[Measurement] = []

    def run() -> None:
        found.append(measure(torch.device("cpu"), batch_size, 2, 1, 3, EngineOptions(), width))

    benchmark.pedantic(run, rounds=1, iterations=1)
    speeds = found[0].images_per_second
    benchmark.extra_info["img_per_s"] = {name: statistics.median(v) for name, v in speeds.items()}
    benchmark.extra_info["ratio"] = ratios(speeds)
    benchmark.extra_info["faults_per_step"] = {n: statistics.median(v) for n, v in found[0].faults_per_step.items()}


def test_cpg_bf16_channels_last(benchmark: BenchmarkFixture) -> None:
    variant = EngineCPG(torch.device("cpu"), BATCH, EngineOptions(precision="bf16", channels_last=True), width=WIDTH)
    _bench(benchmark, variant)
