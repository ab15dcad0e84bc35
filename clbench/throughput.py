"""Training and evaluation throughput: clbench's masked strategies against a bare PyTorch loop.

Run ``python -m clbench.throughput`` (CPU: add ``OMP_NUM_THREADS=1`` for one thread; GPU:
``--device cuda --precision bf16 --channels-last``). For every width (``--widths``, the VGG
channel factor) and batch size (``--batch-sizes``) it measures, in one process, the images per
second of

* **bare**: a plain PyTorch loop on the plain CIFAR VGG16-BN (``vgg16_bn_cifar(width)`` + a
  linear head of 5 classes): device-resident random uint8 CIFAR-shaped data, the engine's
  device augmentation (crop with padding 4, flip) and normalisation, ``SGD(momentum=0.9)``
  with PyTorch's defaults, nothing else;
* **plain**: clbench's device engine training ``finetune`` on the plain VGG16-BN (the engine's
  own cost, without the masked substrate);
* **packnet**: the engine training PackNet's task 2 on the masked VGG16-BN (every earlier weight
  used, the gradient gate with manual weight decay);
* **cpg**: the engine training CPG's task 2 (SGD on the task's weights, Adam on its pick masks,
  the gate): ``CPG.run_phase(task, "finetune", ...)``;
* **eval_bare** / **eval_cpg**: evaluation (no augmentation, eval mode, ``no_grad``) of the bare
  network and of CPG's finished task 1 while task 2 trains, through the engine's accuracy loop.

For packnet and cpg, task 1 is registered, pruned to half and finished first (not trained), so
task 2 owns half of every layer and uses or picks from the other half. Repetitions alternate
(bare, plain, packnet, cpg, eval_bare, eval_cpg, bare, …) so that clock drift and a noisy
neighbour hit each alike; the table shows every repetition, the median and the ratio of each
variant's median to bare's (``eval_cpg`` to ``eval_bare``). On CUDA every timing ends with
``torch.cuda.synchronize()``. ``tests/perf/bench_throughput.py`` runs the same variants under
pytest-benchmark at a tiny size.
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clbench.datasets.arrays import ArrayDataset, Augment
from clbench.engine import EngineOptions, _accuracy, device_generator, device_tensors, epoch_batches
from clbench.nn.backbones import vgg16_bn_cifar

NUM_CLASSES = 5
CIFAR_AUGMENT = Augment(crop_padding=4, hflip=True)
TRAIN_VARIANTS = ("bare", "plain", "packnet", "cpg")
EVAL_VARIANTS = ("eval_bare", "eval_cpg")
VARIANTS = TRAIN_VARIANTS + EVAL_VARIANTS
#: The variant each ratio is taken against.
BASELINE = {name: "eval_bare" if name.startswith("eval") else "bare" for name in VARIANTS}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cifar_like(n: int, seed: int) -> ArrayDataset:
    """``n`` random 32×32 RGB uint8 images and 5-class labels, with the CIFAR augmentation."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return ArrayDataset(images, rng.integers(0, NUM_CLASSES, n), mean=mean, std=std, augment=CIFAR_AUGMENT)


def _vgg(width: float, multiplier: float = 1.0) -> nn.Module:
    """The CIFAR VGG16-BN at channel factor ``width`` (times MaskedNet's growth multiplier)."""
    return vgg16_bn_cifar(width * multiplier)


class Variant(Protocol):
    def prepare(self, steps: int) -> None: ...

    def run(self) -> None: ...


class _PlainNet(nn.Sequential):
    """The bare network with the task-routing call the engine's accuracy loop makes."""

    def activate(self, task: int) -> None:
        pass


class BareLoop:
    """bare: the plain network in a minimal PyTorch loop over the same device-side data path."""

    def __init__(
        self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0, width: float = 1.0
    ) -> None:
        torch.manual_seed(seed)
        body = _vgg(width)
        self.net = _PlainNet(body, nn.Linear(body.out_features, NUM_CLASSES)).to(device).train()
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


class BareEval(BareLoop):
    """eval_bare: the plain network evaluated through the engine's accuracy loop."""

    def run(self) -> None:
        self.net.eval()
        try:
            with torch.no_grad():
                _accuracy(self.net, 1, self.data, self.batch_size, self.options, self.device)
        finally:
            self.net.train()
        _synchronize(self.device)


def _random_task(index: int, n: int, seed: int) -> Any:
    from clbench.benchmark import TaskData
    from clbench.strategy import Task

    train = _cifar_like(n, seed + index)
    data = TaskData(f"random{index}", [str(c) for c in range(NUM_CLASSES)], train, None, train)
    return Task(index, data, train_exp=None)


class _EngineVariant:
    """A strategy trained through clbench's device engine, one epoch of ``steps`` steps per run."""

    strategy: Any
    task_index = 1  # the task each run trains

    def __init__(self, device: torch.device, batch_size: int, seed: int, width: float) -> None:
        self.device, self.batch_size, self.seed, self.width = device, batch_size, seed, width

    def _build(self, strategy_cls: type, options: EngineOptions, num_tasks: int) -> Any:
        """``strategy_cls`` on the device engine with the measured batch size and options."""
        from clbench.strategy import StrategyContext

        torch.manual_seed(self.seed)
        config = strategy_cls.Config(
            engine="device",
            batch_size=self.batch_size,
            eval_batch_size=self.batch_size,
            precision=options.precision,
            channels_last=options.channels_last,
        )
        factory = functools.partial(_vgg, self.width)
        context = StrategyContext(device=self.device, backbone_factory=factory, num_tasks=num_tasks)
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


class _EngineMasked(_EngineVariant):
    """A masked strategy's task 2: task 1 is registered, pruned to half and finished first."""

    task_index = 2

    def __init__(
        self, strategy_cls: type, device: torch.device, batch_size: int, options: EngineOptions, seed: int, width: float
    ) -> None:
        super().__init__(device, batch_size, seed, width)
        self.strategy = self._build(strategy_cls, options, num_tasks=2)
        self.first = _random_task(1, batch_size, seed)
        self.strategy.before_task(self.first)
        self.strategy.model.prune(0.5)  # task 2 then owns half of each layer, uses the other half
        self.strategy.after_task(self.first)
        self.strategy.before_task(_random_task(2, batch_size, seed))


class EngineCPG(_EngineMasked):
    """cpg: clbench's engine training CPG's task 2 (picking on) on the masked VGG16-BN."""

    def __init__(
        self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0, width: float = 1.0
    ) -> None:
        from clbench_plugins.cpg import CPG

        super().__init__(CPG, device, batch_size, options, seed, width)

    def train(self, task: Any) -> None:
        # CPG's finetune phase: SGD on the task's weights, Adam on its pick masks, the gate.
        cfg = self.strategy.config
        self.strategy.run_phase(task, "finetune", 1, cfg.lr, lr_mask=cfg.lr_mask)


class EnginePackNet(_EngineMasked):
    """packnet: clbench's engine training PackNet's task 2 (every earlier weight used)."""

    def __init__(
        self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0, width: float = 1.0
    ) -> None:
        from clbench_plugins.packnet import PackNet

        super().__init__(PackNet, device, batch_size, options, seed, width)

    def train(self, task: Any) -> None:
        self.strategy.run_phase(task, "train", 1, self.strategy.config.lr)


class EvalCPG(EngineCPG):
    """eval_cpg: CPG's finished task 1 evaluated while task 2 trains (the engine's accuracy loop)."""

    def prepare(self, steps: int) -> None:
        self.task = _random_task(1, steps * self.batch_size, self.seed)
        self.task.data.test = self.task.data.train
        device_tensors(self.task.data.test, self.device)

    def run(self) -> None:
        from clbench.engine import evaluate_on_device

        evaluate_on_device(self.strategy, [self.task], "test", self.batch_size)
        _synchronize(self.device)


class EnginePlain(_EngineVariant):
    """plain: the engine training ``finetune`` on the plain VGG16-BN (a head per task): the
    engine's own cost beside bare, without the masked substrate's."""

    def __init__(
        self, device: torch.device, batch_size: int, options: EngineOptions, seed: int = 0, width: float = 1.0
    ) -> None:
        from clbench_baselines.finetune import Finetune

        super().__init__(device, batch_size, seed, width)
        self.strategy = self._build(Finetune, options, num_tasks=1)
        self.strategy.before_task(_random_task(1, batch_size, seed))

    def train(self, task: Any) -> None:
        self.strategy.train(task, epochs=1)


BUILDERS: dict[str, Callable[..., Variant]] = {
    "bare": BareLoop,
    "plain": EnginePlain,
    "packnet": EnginePackNet,
    "cpg": EngineCPG,
    "eval_bare": BareEval,
    "eval_cpg": EvalCPG,
}


def time_run(variant: Variant, steps: int, batch_size: int) -> tuple[float, float]:
    """Images per second of ``steps`` steps (``run`` ends with a device synchronisation), and
    the minor page faults per step: on CPU every fresh weight-sized tensor costs faults."""
    variant.prepare(steps)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    variant.run()
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return steps * batch_size / seconds, faults / steps


@dataclass
class Measurement:
    """Per variant, one value per repetition: images per second and minor page faults per step."""

    images_per_second: dict[str, list[float]] = field(default_factory=dict)
    faults_per_step: dict[str, list[float]] = field(default_factory=dict)


def measure(
    device: torch.device,
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    options: EngineOptions,
    width: float = 1.0,
    variants: Sequence[str] = VARIANTS,
) -> Measurement:
    """Each variant ``repeats`` times, alternating (evaluation variants run ``4 × steps``
    batches: a batch of evaluation costs about a quarter of a training step)."""
    built = {name: BUILDERS[name](device, batch_size, options, width=width) for name in variants}
    counts = {name: 4 * steps if name.startswith("eval") else steps for name in variants}
    for variant in built.values():
        if warmup:
            time_run(variant, warmup, batch_size)  # allocator, first-call costs, cudnn autotuning
    found = Measurement({name: [] for name in variants}, {name: [] for name in variants})
    for _ in range(repeats):
        for name, variant in built.items():
            speed, faults = time_run(variant, counts[name], batch_size)
            found.images_per_second[name].append(speed)
            found.faults_per_step[name].append(faults)
    return found


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def ratios(found: dict[str, list[float]]) -> dict[str, float]:
    """Each variant's median img/s over its baseline's (bare, or eval_bare for evaluation)."""
    return {
        name: statistics.median(values) / statistics.median(found[BASELINE[name]])
        for name, values in found.items()
        if BASELINE[name] in found
    }


def report(found: Measurement, title: str) -> str:
    """A markdown table: img/s of each repetition, the median, the ratio of medians and the
    median minor page faults per step."""
    speeds = found.images_per_second
    repeats = len(next(iter(speeds.values())))
    lines = [f"### {title}", ""]
    header = " | ".join(f"rep {i + 1}" for i in range(repeats))
    lines.append(f"| variant | {header} | median img/s | ratio | faults/step |")
    lines.append("|---" * (repeats + 4) + "|")
    ratio = ratios(speeds)
    for name, values in speeds.items():
        cells = " | ".join(f"{v:,.1f}" for v in values)
        against = f"{ratio[name]:.3f} × {BASELINE[name]}" if name in ratio else "-"
        faults = statistics.median(found.faults_per_step.get(name) or [math.nan])
        lines.append(f"| {name} | {cells} | {statistics.median(values):,.1f} | {against} | {faults:,.0f} |")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clbench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--widths", type=_floats, default=[1.0, 0.25], help="VGG channel factors, e.g. 1,0.25")
    parser.add_argument("--batch-sizes", type=_ints, default=[32, 128], help="e.g. 32,128")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"a subset of {','.join(VARIANTS)}")
    parser.add_argument(
        "--images",
        type=int,
        default=512,
        help="training images per repetition (steps = images // batch size; evaluation: 4 × as many)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the first repetition")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each variant, alternating")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if min(args.batch_sizes, default=0) < 2 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch-sizes >= 2, --repeats >= 1, --warmup >= 0")
    if args.images < max(args.batch_sizes):
        parser.error(f"--images must be at least the largest batch size ({max(args.batch_sizes)})")
    if not args.widths or min(args.widths) <= 0:
        parser.error("--widths must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    device = torch.device(args.device)
    options = EngineOptions(precision=args.precision, channels_last=args.channels_last)
    print(f"device: {device_name(device)}; torch {torch.__version__}")  # noqa: T201 - the report
    print(  # noqa: T201
        f"{args.images} training images (evaluation: {4 * args.images}) per repetition × {args.repeats} "
        f"repetitions, warmup {args.warmup} steps, precision {args.precision}, channels_last {args.channels_last}\n"
    )
    for width in args.widths:
        for batch_size in args.batch_sizes:
            steps = args.images // batch_size
            found = measure(device, batch_size, steps, args.warmup, args.repeats, options, width, variants)
            print(report(found, f"width {width:g}, batch {batch_size}") + "\n", flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
