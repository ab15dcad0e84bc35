"""The device engine: training and evaluation with each task's data resident on the device.

``Strategy.fit`` / ``Strategy.evaluate_all`` call this module when the strategy's config says
``engine = "device"``; the Avalanche engine (``SupervisedTemplate``) stays the default. The
semantics are those of ``clbench.loop.fit`` and its ``_StrategyBridge``, step for step::

    per epoch: shuffle (torch.randperm on the device)
    per step:  gather batch → augment (uint8) → normalise (one fused op) → zero_grad → forward
               → criterion → backward → strategy.after_backward → strategy.clip_gradients
               → optimizer.step → strategy.after_update; loss and correct counts stay on the device
    per epoch: one host sync (loss, accuracy, non-finite check), schedulers step once

What makes it faster than the Avalanche loop (ALGORITHMS.md §6: "1 min versus 20 s per epoch"):

* **Data on the device.** A task's split is copied once (uint8 N×C×H×W images, int64 targets)
  and cached per dataset object; batches are index gathers, with no DataLoader, no per-sample
  Python, no host-to-device copy per step.
* **Augmentation on the device**, batch-wise, on uint8 (random crop with zero padding and
  horizontal flip fused into one gather), drawn from a ``torch.Generator`` on the device that
  is seeded from the global torch RNG, so a run is reproducible per seed. Datasets describe
  their augmentation declaratively (:class:`clbench.datasets.arrays.Augment`); a per-sample
  ``transform`` without that description is refused, never silently dropped.
* **Normalisation** ``(x/255 − mean)/std`` as one ``addcmul`` with precomputed scale and shift.
* **No host synchronisation in the inner loop**: loss and correct counts accumulate in device
  tensors and are read once per epoch. (A pruning step of the masked strategies does sync: its
  magnitude cutoff is a ``kthvalue`` whose count decides the mask; it runs every
  ``prune_frequency`` steps only.)
* **Options** (``TrainConfig``): ``precision = "bf16"`` runs forward and loss under
  ``torch.autocast(dtype=torch.bfloat16)`` (weights, gradients and optimizer state stay fp32);
  ``channels_last = true`` puts the model's 4-D tensors and the inputs in channels-last memory
  format (tensor-core convolutions on GPUs need it).
* **Masked effective weights.** The masked layers' step costs are described in
  ``clbench/nn/masked.py`` (``_TrainingPlan``, ``_PickedWeight``) and measured by
  ``python -m clbench.throughput`` (docs/speed.md).

Not built: **CUDA-graph capture** of the train step. It needs static shapes and addresses
(the partial last batch, the pruning steps that rewrite owner masks and sync, the optimizer
group of SGD + Adam and the piggymask's appearance from task 2 on all break that) and it can
only be developed and verified on a GPU, which this project's development machines lack. The
step is eager; ``torch.compile`` / graphs can be added behind an option once measured on a GPU.

Strategies that add Avalanche plugins (EWC, SI, LwF: ``Strategy.avalanche_plugins()``) need
Avalanche's loop and cannot use this engine: :func:`check_supported` says so.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from clbench.datasets.arrays import ArrayDataset, Augment
from clbench.datasets.tensors import TensorTaskDataset
from clbench.errors import UsageError
from clbench.fitting import FitResult, iterations_per_epoch

if TYPE_CHECKING:
    from clbench.strategy import Strategy, Task

__all__ = [
    "ENGINES",
    "PRECISIONS",
    "DeviceTensors",
    "EngineOptions",
    "StepInfo",
    "augment_batch",
    "check_supported",
    "device_generator",
    "device_tensors",
    "engine_of",
    "epoch_batches",
    "evaluate_on_device",
    "fit_on_device",
]

ENGINES = ("avalanche", "device")
PRECISIONS = ("fp32", "bf16")
# Task kinds whose training batches are (image, label) pairs scored by argmax, as here.
_KINDS = ("classification", "verification")


# ---------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EngineOptions:
    """The engine's settings, read from a strategy config (``TrainConfig`` fields)."""

    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def of(cls, config: Any) -> EngineOptions:
        # getattr: configs written before these TrainConfig fields existed still work.
        precision = getattr(config, "precision", "fp32")
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        return cls(precision=precision, channels_last=bool(getattr(config, "channels_last", False)))

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast around forward and loss; fp32 runs without one."""
        if self.precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def engine_of(config: Any) -> str:
    """The engine a strategy config asks for (``"avalanche"`` when the field is absent)."""
    engine = getattr(config, "engine", "avalanche")
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def check_supported(strategy: Strategy, tasks: Sequence[Task] = ()) -> None:
    """Raise a UsageError, before any training, if ``strategy`` or the data of ``tasks`` cannot
    run on the device engine."""
    plugins = strategy.avalanche_plugins()
    if plugins:
        names = ", ".join(type(p).__name__ for p in plugins)
        raise UsageError(
            f"strategy {strategy.name!r} trains with Avalanche plugins ({names}), which only run inside "
            f"Avalanche's loop: use engine avalanche (--{strategy.name}.engine avalanche)"
        )
    for task in tasks:
        if task.kind not in _KINDS:
            raise UsageError(
                f"the device engine trains classification and verification tasks; task {task.index} "
                f"({task.name}) is a {task.kind} task: use engine avalanche"
            )
        splits = ("train", "valid", "test") if task.kind == "classification" else ("train",)
        for split in splits:  # verification pairs are scored outside the engine
            data = getattr(task.data, split)
            if data is not None:  # a split without data is never read
                _check_dataset(data, f"task {task.index} ({task.name}) {split}")


# ------------------------------------------------------------------------------- data
@dataclass
class DeviceTensors:
    """One split of a task, resident on the device.

    ``images``: N×C×H×W, uint8 (image arrays, normalised per batch with ``scale``/``shift``) or
    float (ready-made inputs, used as they are). ``targets``: N int64 labels.
    """

    images: Tensor
    targets: Tensor
    scale: Tensor | None = None  # C×1×1: 1 / (255·std)
    shift: Tensor | None = None  # C×1×1: −mean / std
    augment: Augment | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batch(
        self, index: Tensor | slice, generator: torch.Generator | None = None, channels_last: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Inputs and targets of the samples at ``index`` (a device tensor, or a slice: a view,
        no gather), augmented when a generator is given and the split has an augmentation."""
        x = self.images[index]
        if generator is not None and self.augment is not None and self.augment.active:
            x = augment_batch(x, self.augment, generator)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # on uint8: a quarter of the bytes
        if self.scale is not None and self.shift is not None:
            x = torch.addcmul(self.shift, x, self.scale)  # (x/255 − mean)/std in one op, as float32
        return x, self.targets[index]


_CACHE: weakref.WeakKeyDictionary[Any, dict[str, DeviceTensors]] = weakref.WeakKeyDictionary()


def device_tensors(dataset: Any, device: torch.device | str) -> DeviceTensors:
    """``dataset`` on ``device``, built once and cached while the dataset object lives."""
    per_device = _CACHE.setdefault(dataset, {})
    key = str(torch.device(device))
    if key not in per_device:
        _check_dataset(dataset, type(dataset).__name__)
        per_device[key] = _to_device(dataset, torch.device(device))
    return per_device[key]


def _check_dataset(dataset: Any, where: str) -> None:
    if isinstance(dataset, TensorTaskDataset):
        return
    if not isinstance(dataset, ArrayDataset):
        raise UsageError(
            f"the device engine reads ArrayDataset or TensorTaskDataset data, but {where} is a "
            f"{type(dataset).__name__}: use engine avalanche"
        )
    augment = getattr(dataset, "augment", None)
    if dataset.transform is not None and augment is None:
        raise UsageError(
            f"{where} has a per-sample transform but no declarative augment (clbench.datasets.arrays.Augment), "
            "so the device engine cannot reproduce it: give the ArrayDataset augment=..., or use engine avalanche"
        )


def _to_device(dataset: Any, device: torch.device) -> DeviceTensors:
    if isinstance(dataset, TensorTaskDataset):
        return DeviceTensors(dataset.inputs.to(device), dataset.labels.to(device))
    # Copy out of a read-only memmap once (torch refuses to wrap non-writable arrays);
    # NHWC → NCHW on the device, where it is cheap.
    array = dataset.images
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array)
    images = torch.from_numpy(array).to(device)
    images = images.permute(0, 3, 1, 2).contiguous()
    targets = torch.as_tensor(dataset.targets, dtype=torch.long, device=device)
    c = images.shape[1]
    mean, std = dataset._mean, dataset._std
    if mean is None or std is None:
        mean, std = torch.zeros(c, 1, 1), torch.ones(c, 1, 1)
    scale = (1.0 / (255.0 * std.double())).float().to(device)
    shift = (-mean.double() / std.double()).float().to(device)
    augment = getattr(dataset, "augment", None)
    return DeviceTensors(images, targets, scale, shift, augment)


# ----------------------------------------------------------------------- augmentation
def device_generator(device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from the global torch RNG (reproducible per run seed)."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def augment_batch(x: Tensor, augment: Augment, generator: torch.Generator) -> Tensor:
    """Random crop (zero padding ``crop_padding``, back to H×W) and random horizontal flip of a
    B×C×H×W batch, per sample, as one gather; same distribution as torchvision's
    ``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()``."""
    b, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    p = augment.crop_padding
    if p:
        x = F.pad(x, (p, p, p, p))
        rows = rows + torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
        cols = cols + torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
    if augment.hflip:
        flip = torch.rand((b, 1), generator=generator, device=dev) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)  # the same window, read right to left
    batch = torch.arange(b, device=dev).view(b, 1, 1, 1)
    channel = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """Shuffled index batches of one epoch: every sample once, except a last batch of one
    sample, which is dropped (it breaks BatchNorm; ``iterations_per_epoch``)."""
    order = torch.randperm(n, generator=generator, device=device)
    for i in range(iterations_per_epoch(n, batch_size)):
        yield order[i * batch_size : (i + 1) * batch_size]


# --------------------------------------------------------------------------- training
@dataclass
class StepInfo:
    """Passed to the strategy's loop callbacks (``before_iteration``, ``training_loss``,
    ``after_backward``, ``after_update``) where Avalanche passes its loop (the built-in
    strategies read nothing from it)."""

    task: Task
    phase: str
    epoch: int = 0  # epochs finished in this phase
    iteration: int = 0  # steps finished in this phase


class _EpochStats:
    """Loss and correct counts summed on the device; read (one host sync) once per epoch."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: Tensor, output: Tensor, y: Tensor) -> None:
        n = y.shape[0]
        self.loss_sum += loss.detach().double() * n
        self.correct += (output.argmax(1) == y).sum()
        self.seen += n

    def read(self) -> tuple[float, float]:
        """(accuracy, mean loss)."""
        seen = max(self.seen, 1)
        return float(self.correct) / seen, float(self.loss_sum) / seen


def fit_on_device(
    strategy: Strategy,
    task: Task,
    *,
    optimizer: Any,
    schedulers: Sequence[Any],
    criterion: nn.Module,
    epochs: int,
    batch_size: int,
    phase: str,
) -> FitResult:
    """``clbench.loop.fit`` on the device engine: train ``strategy.model`` on ``task`` for
    ``epochs`` with ``optimizer``; every scheduler steps once per epoch."""
    if epochs == 0:
        return FitResult(train_accuracy=math.nan, train_loss=math.nan)
    check_supported(strategy, [task])
    ctx = strategy.context
    device = torch.device(ctx.device)
    options = EngineOptions.of(strategy.config)
    data = device_tensors(task.data.train, device)
    generator = device_generator(device)
    model = _prepare_model(strategy, task, options)
    per_epoch = iterations_per_epoch(len(data), batch_size)
    progress = None
    if not ctx.quiet:
        label = f"task {task.index}/{ctx.num_tasks} {phase}"
        progress = tqdm(total=epochs * per_epoch, desc=label, leave=False, dynamic_ncols=True)
    info = StepInfo(task, phase)
    acc, loss = math.nan, math.nan
    try:
        for _ in range(epochs):
            stats = _EpochStats(device)
            for index in epoch_batches(len(data), batch_size, generator, device):
                x, y = data.batch(index, generator, options.channels_last)
                _train_step(strategy, model, optimizer, criterion, options, device, x, y, info, stats)
                if progress is not None:
                    progress.update(1)
            info.epoch += 1
            acc, loss = stats.read()  # the epoch's one host sync
            if not math.isfinite(loss):
                _raise_non_finite(task, phase, info)
            for scheduler in schedulers:
                scheduler.step()
            if progress is not None:
                progress.set_postfix(epoch=info.epoch, loss=f"{loss:.3f}", acc=f"{acc:.3f}")
    finally:
        if progress is not None:
            progress.close()
    return FitResult(train_accuracy=acc, train_loss=loss)


def _prepare_model(strategy: Strategy, task: Task, options: EngineOptions) -> nn.Module:
    """Route the model to the task (as ``TaskRoutedModel`` does) in train mode, channels-last
    when asked (parameters keep their identity, so the optimizer's references stay valid)."""
    model = strategy.model
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    model.activate(task.index)
    model.train()
    return model


def _train_step(
    strategy: Strategy,
    model: nn.Module,
    optimizer: Any,
    criterion: nn.Module,
    options: EngineOptions,
    device: torch.device,
    x: Tensor,
    y: Tensor,
    info: StepInfo,
    stats: _EpochStats,
) -> None:
    strategy.before_iteration(info)
    optimizer.zero_grad()
    with options.autocast(device):
        output = model(x)
        loss = strategy.training_loss(criterion(output, y), output, y, info)
    loss.backward()
    strategy.after_backward(info)  # gradient gate + manual weight decay of masked strategies
    strategy.clip_gradients()
    optimizer.step()
    strategy.after_update(info)  # pruning schedule
    info.iteration += 1
    stats.add(loss, output, y)


def _raise_non_finite(task: Task, phase: str, info: StepInfo) -> None:
    # One error class for both engines, in clbench.errors: importing clbench.loop would load Avalanche.
    from clbench.errors import NonFiniteLossError

    raise NonFiniteLossError(
        f"non-finite training loss in task {task.index} ({task.name}), "
        f"phase {phase}, epoch {info.epoch}, step {info.iteration}: lower the learning rate"
    )


# ------------------------------------------------------------------------- evaluation
def evaluate_on_device(strategy: Strategy, tasks: Sequence[Task], split: str, batch_size: int) -> dict[int, float]:
    """Task-aware top-1 accuracy of each classification task on ``split`` (``"valid"`` or
    ``"test"``): no augmentation, eval mode, one host sync per task. The model's train/eval
    flags are restored afterwards, as Avalanche's ``eval`` does."""
    if not tasks:
        return {}
    device = torch.device(strategy.context.device)
    options = EngineOptions.of(strategy.config)
    model = strategy.model
    modes = [(m, m.training) for m in model.modules()]
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    model.eval()
    found: dict[int, float] = {}
    try:
        with torch.no_grad():
            for task in tasks:
                data = device_tensors(getattr(task.data, split), device)
                found[task.index] = _accuracy(model, task.index, data, batch_size, options, device)
    finally:
        for module, training in modes:
            module.training = training
    return found


def _accuracy(
    model: nn.Module, task: int, data: DeviceTensors, batch_size: int, options: EngineOptions, device: torch.device
) -> float:
    model.activate(task)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = len(data)
    for start in range(0, n, batch_size):
        x, y = data.batch(slice(start, start + batch_size), None, options.channels_last)
        with options.autocast(device):
            output = model(x)
        correct += (output.argmax(1) == y).sum()
    return float(correct) / max(n, 1)  # the task's one host sync
