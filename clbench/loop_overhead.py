"""Per-epoch cost of the loop around the step: ``python -m clbench.loop_overhead``.

Where the network is small, the loop's own work (data, callbacks, metrics, host syncs) is what
an epoch costs. This trains one epoch at a time, interleaved round by round so that machine
load hits every variant alike, of:

* ``bare``: the plain network in a minimal PyTorch loop (data on the device, ``randperm``
  batches, zero_grad / forward / cross-entropy / backward / SGD step, nothing else);
* ``engine``: the ``finetune`` strategy on clbench's device engine (``clbench.engine``);
* ``avalanche``: the same strategy on Avalanche's ``SupervisedTemplate`` loop (``clbench.loop``);

on two workloads: ``digits`` (scikit-learn's digits task 1 and ``digits_cnn``, batch 32, as the
default recipe trains) and ``vgg025`` (VGG16-BN at width 0.25 on random CIFAR-sized images,
batch 32). Prints the median epoch time of each variant and its ratio to ``bare`` (issue 13:
the engine within 5 % of bare). Options: ``--rounds N``, ``--device cpu|cuda``,
``--workloads digits,vgg025``, ``--samples N`` (vgg025 training images).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _digits_task() -> Any:
    from clbench.strategy import Scenario, Task
    from clbench_benchmarks.digits import Digits, DigitsConfig

    data = Digits(DigitsConfig()).load_tasks()
    return Task(1, data[0], scenario=Scenario(data[:1]))


def _vgg_task(samples: int) -> Any:
    from clbench.benchmark import TaskData
    from clbench.datasets.tensors import TensorTaskDataset
    from clbench.strategy import Scenario, Task

    g = torch.Generator().manual_seed(0)
    images = torch.randn(samples, 3, 32, 32, generator=g)
    train = TensorTaskDataset(images, torch.randint(0, 10, (samples,), generator=g))
    data = TaskData("random", [str(c) for c in range(10)], train, train, train)
    return Task(1, data, scenario=Scenario([data]))


def _bare(backbone: Callable[[float], nn.Module], width: float, task: Any, device: torch.device) -> Callable[[], None]:
    from clbench.engine import device_generator, device_tensors, epoch_batches

    torch.manual_seed(0)
    body = backbone(width)
    net = nn.Sequential(body, nn.Linear(body.out_features, task.num_classes)).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    data = device_tensors(task.data.train, device)

    def epoch() -> None:
        generator = device_generator(device)
        for index in epoch_batches(len(data), BATCH, generator, device):
            x, y = data.batch(index, generator)
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
        _sync(device)

    return epoch


def _strategy(
    engine: str, backbone: Callable[[float], nn.Module], width: float, task: Any, device: torch.device
) -> Callable[[], None]:
    from clbench.strategy import StrategyContext
    from clbench_baselines.finetune import Finetune

    torch.manual_seed(0)
    context = StrategyContext(device=device, backbone_factory=lambda w: backbone(width * w), num_tasks=1)
    strategy = Finetune(Finetune.Config(engine=engine, batch_size=BATCH, epochs=1), context)
    strategy.before_task(task)

    def epoch() -> None:
        optimizer = strategy.make_optimizer(0.01)
        strategy.fit(task, optimizer, [], 1, "train")
        _sync(device)

    return epoch


def measure(workload: str, device: torch.device, rounds: int, samples: int) -> dict[str, list[float]]:
    """Seconds per epoch of each variant, ``rounds`` interleaved epochs each (after one warm-up)."""
    from clbench.nn.backbones import digits_cnn, vgg16_bn_cifar

    if workload == "digits":
        task, backbone, width = _digits_task(), digits_cnn, 1.0
    elif workload == "vgg025":
        task, backbone, width = _vgg_task(samples), vgg16_bn_cifar, 0.25
    else:
        raise ValueError(f"unknown workload {workload!r}: digits or vgg025")
    variants = {
        "bare": _bare(backbone, width, task, device),
        "engine": _strategy("device", backbone, width, task, device),
        "avalanche": _strategy("avalanche", backbone, width, task, device),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for epoch in variants.values():
        epoch()  # warm-up: first-call costs (allocator, Avalanche's dataset wrappers) are not per epoch
    for _ in range(rounds):
        for name, epoch in variants.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clbench.loop_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workloads", default="digits,vgg025")
    parser.add_argument("--samples", type=int, default=1024, help="vgg025 training images")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {args.rounds}")
    print("| workload | variant | median ms/epoch | min ms/epoch | × bare (median) |")
    print("|---|---|---:|---:|---:|")
    for workload in args.workloads.split(","):
        times = measure(workload, device, args.rounds, args.samples)
        bare = statistics.median(times["bare"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"| {workload} | {name} | {median * 1e3:.1f} | {min(values) * 1e3:.1f} | {median / bare:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
