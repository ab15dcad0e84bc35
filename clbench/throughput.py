"""Training throughput: clbench's device engine running CPG vs a bare PyTorch loop.

Run ``python -m clbench.throughput --device cuda --batch-size 32 --steps 200 --warmup 20
--precision bf16 --channels-last``. In one process it measures images per second of

(a) **bare**: a plain PyTorch loop on the plain CIFAR VGG16-BN (``vgg16_bn_cifar()`` + a linear
    head of 5 classes): device-resident random uint8 CIFAR-shaped data, the engine's device
    augmentation (crop with padding 4, flip) and normalisation, SGD with momentum 0.9, nothing
    else (no metrics, no gradient gate);
(b) **engine**: clbench's CPG training of task 2 on the masked VGG16-BN through the real
    strategy (``CPG.run_phase``: SGD on the task's weights + Adam on its pick masks, the
    gradient gate with manual weight decay, device-side metrics, one host sync per epoch).
    Task 1 is not trained but registered, pruned to half and finished first, so task 2 owns
    half of every layer and picks over the other half (as ``tests/perf/bench_masked.py``);
(c) **engine_plain** (diagnostic): the engine training ``finetune`` on the plain VGG16-BN, which
    separates the engine's own cost from the masked substrate's.

All use the same batch size, precision and memory format; repetitions alternate (a, b, c, a, b,
c …) so that clock or thermal drift hits each alike. The table shows each repetition, the medians and the
ratios to bare (issue 7's goal for engine/bare: >= 0.8 on a GPU). On CUDA every timing ends with
``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clbench.datasets.arrays import ArrayDataset, Augment
from clbench.engine import EngineOptions, device_generator, device_tensors, epoch_batches
from clbench.nn.backbones import vgg16_bn_cifar

NUM_CLASSES = 5
CIFAR_AUGMENT = Augment(crop_padding=4, hflip=True)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cifar_like(n: int, seed: int) -> ArrayDataset:
    """``n`` random 32×32 RGB uint8 images and 5-class labels, with the CIFAR augmentation."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return ArrayDataset(images, rng.integers(0, NUM_CLASSES, n), mean=mean, std=std, augment=CIFAR_AUGMENT)


class BareLoop:
    """(a): the plain network in a minimal PyTorch loop over the same device-side data path."""

    def __init__(self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0) -> None:
        torch.manual_seed(seed)
        body = vgg16_bn_cifar()
        self.net = nn.Sequential(body, nn.Linear(body.out_features, NUM_CLASSES)).to(device).train()
        if options.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=1e-2, momentum=0.9)
        self.device, self.batch_size, self.options = device, batch_size, options
        self.seed = seed

    def prepare(self, steps: int) -> None:
        """Fresh data for ``steps`` steps, copied to the device (untimed)."""
        self.data = device_tensors(_cifar_like(steps * self.batch_size, self.seed), self.device)

    def run(self) -> None:
        """One pass over the prepared data."""
        generator = device_generator(self.device)
        for index in epoch_batches(len(self.data), self.batch_size, generator, self.device):
            x, y = self.data.batch(index, generator, self.options.channels_last)
            self.optimizer.zero_grad()
            with self.options.autocast(self.device):
                loss = F.cross_entropy(self.net(x), y)
            loss.backward()
            self.optimizer.step()
        _synchronize(self.device)


def _random_task(index: int, n: int, seed: int) -> Any:
    from clbench.benchmark import TaskData
    from clbench.strategy import Task

    train = _cifar_like(n, seed + index)
    data = TaskData(f"random{index}", [str(c) for c in range(NUM_CLASSES)], train, None, None)
    return Task(index, data, train_exp=None)


class _EngineVariant:
    """A strategy trained through clbench's device engine, one epoch of ``steps`` steps per run."""

    strategy: Any
    task_index = 1  # the task each run trains

    def __init__(self, device: torch.device, batch_size: int, seed: int) -> None:
        self.device, self.batch_size, self.seed = device, batch_size, seed

    def _build(self, strategy_cls: type, options: EngineOptions, num_tasks: int) -> Any:
        """``strategy_cls`` on the device engine with the measured batch size and options."""
        from clbench.strategy import StrategyContext

        torch.manual_seed(self.seed)
        config = strategy_cls.Config(
            engine="device",
            batch_size=self.batch_size,
            precision=options.precision,
            channels_last=options.channels_last,
        )
        context = StrategyContext(device=self.device, backbone_factory=vgg16_bn_cifar, num_tasks=num_tasks)
        return strategy_cls(config, context)

    def prepare(self, steps: int) -> None:
        """A fresh task of ``steps`` batches, its data copied to the device (untimed: the engine
        copies once per task, not per step)."""
        self.task = _random_task(self.task_index, steps * self.batch_size, self.seed)
        device_tensors(self.task.data.train, self.device)

    def run(self) -> None:
        """One training epoch over the prepared task."""
        self.train(self.task)
        _synchronize(self.device)

    def train(self, task: Any) -> None:
        raise NotImplementedError


class EngineCPG(_EngineVariant):
    """(b): clbench's engine training CPG's task 2 (picking on) on the masked VGG16-BN."""

    task_index = 2

    def __init__(self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0) -> None:
        from clbench_plugins.cpg import CPG

        super().__init__(device, batch_size, seed)
        self.strategy = self._build(CPG, options, num_tasks=2)
        first = _random_task(1, batch_size, seed)
        self.strategy.before_task(first)
        self.strategy.model.prune(0.5)  # task 2 then owns half of each layer and picks from the rest
        self.strategy.after_task(first)
        self.strategy.before_task(_random_task(2, batch_size, seed))

    def train(self, task: Any) -> None:
        # CPG's finetune phase: SGD on the task's weights, Adam on its pick masks, the gate.
        cfg = self.strategy.config
        self.strategy.run_phase(task, "finetune", 1, cfg.lr, lr_mask=cfg.lr_mask)


class EnginePlain(_EngineVariant):
    """(c) diagnostic: the engine training ``finetune`` on the plain VGG16-BN (a head per task):
    the engine's own cost beside (a), without the masked substrate's."""

    def __init__(self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0) -> None:
        from clbench_baselines.finetune import Finetune

        super().__init__(device, batch_size, seed)
        self.strategy = self._build(Finetune, options, num_tasks=1)
        self.strategy.before_task(_random_task(1, batch_size, seed))

    def train(self, task: Any) -> None:
        self.strategy.train(task, epochs=1)


class Variant(Protocol):
    def prepare(self, steps: int) -> None: ...

    def run(self) -> None: ...


def time_run(variant: Variant, steps: int, batch_size: int) -> float:
    """Images per second of ``steps`` training steps (``run`` ends with a device synchronisation)."""
    variant.prepare(steps)
    start = time.perf_counter()
    variant.run()
    return steps * batch_size / (time.perf_counter() - start)


def measure(
    device: torch.device, batch_size: int, steps: int, warmup: int, repeats: int, options: EngineOptions
) -> dict[str, list[float]]:
    """Images/s of the bare loop, the engine on CPG and the engine on the plain network,
    ``repeats`` times each, alternating."""
    variants: dict[str, Variant] = {
        "bare": BareLoop(device, batch_size, options),
        "engine": EngineCPG(device, batch_size, options),
        "engine_plain": EnginePlain(device, batch_size, options),
    }
    for variant in variants.values():
        if warmup:
            time_run(variant, warmup, batch_size)  # cudnn autotuning, allocator, first-call costs
    found: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, variant in variants.items():
            found[name].append(time_run(variant, steps, batch_size))
    return found


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def report(found: dict[str, list[float]], header: dict[str, Any]) -> str:
    lines = [f"{key}: {value}" for key, value in header.items()]
    repeats = len(found["bare"])
    lines.append("")
    lines.append("| variant | " + " | ".join(f"rep {i + 1}" for i in range(repeats)) + " | median |")
    lines.append("|---" * (repeats + 2) + "|")
    for name, values in found.items():
        cells = " | ".join(f"{v:,.1f}" for v in values)
        lines.append(f"| {name} | {cells} | {statistics.median(values):,.1f} |")
    for name in ("engine", "engine_plain"):
        ratios = [b / a for a, b in zip(found["bare"], found[name], strict=True)]
        cells = " | ".join(f"{r:.3f}" for r in ratios)
        median = statistics.median(found[name]) / statistics.median(found["bare"])
        lines.append(f"| {name}/bare | {cells} | {median:.3f} |")
    lines += ["", "img/s per repetition; median column: the median img/s, and for the ratio rows the ratio of medians"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clbench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant before the first repetition")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each variant, alternating")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 2 or args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch-size >= 2, --steps >= 1, --repeats >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    device = torch.device(args.device)
    options = EngineOptions(precision=args.precision, channels_last=args.channels_last)
    found = measure(device, args.batch_size, args.steps, args.warmup, args.repeats, options)
    header = {
        "device": device_name(device),
        "torch": torch.__version__,
        "settings": (
            f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repetitions (warmup {args.warmup}), "
            f"precision {args.precision}, channels_last {args.channels_last}"
        ),
        "bare": "plain VGG16-BN + linear head, device data + augmentation, SGD momentum 0.9",
        "engine": "clbench device engine, CPG task 2 on the masked VGG16-BN (pick on, half owned)",
        "engine_plain": "clbench device engine, finetune on the plain VGG16-BN (the engine's own cost)",
    }
    print(report(found, header))  # noqa: T201 - the table is this command's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
