"""The bridge to Avalanche: benchmark streams, the SupervisedTemplate loop and its evaluator.

Imported only when a run starts (``import avalanche`` costs about ten seconds). clbench uses
Avalanche for what it does well (streams, the training loop with plugin callbacks, metrics)
and keeps every piece of task state in its own network classes (see ALGORITHMS.md §4.6).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

with warnings.catch_warnings():
    # qpsolvers (imported by avalanche for GEM) warns that no QP solver is installed; clbench
    # never uses GEM, so the warning is noise.
    warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    from avalanche.benchmarks import benchmark_from_datasets, with_task_labels
    from avalanche.benchmarks.utils import ConstantSequence, TaskLabels, as_classification_dataset
    from avalanche.core import SupervisedPlugin
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.models import MultiTaskModule
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate

from clbench.errors import ClbenchError, NonFiniteLossError
from clbench.fitting import FitResult, iterations_per_epoch
from clbench.triplets import as_images, triplet_correct

if TYPE_CHECKING:
    from clbench.benchmark import TaskData
    from clbench.strategy import Strategy, Task

_ACC_KEY = re.compile(r"Top1_Acc_Exp/eval_phase/(\w+?)_stream/Task(\d+)/Exp\d+")


__all__ = ["NonFiniteLossError", "build_scenario", "evaluate", "fit"]  # NonFiniteLossError: clbench.errors


def build_scenario(tasks: Sequence[TaskData]) -> dict[str, dict[int, Any]]:
    """Avalanche experiences per split and task index (from 1): ``{"train": {1: exp, ...}, ...}``.

    Every dataset carries its task label (Avalanche's are 0-based: task i has label i − 1),
    set explicitly because verification and triplet tasks have no classification ``valid``/``test``
    data (clbench scores their pairs and triplets itself), so stream positions and task indices
    can differ.
    """
    result: dict[str, dict[int, Any]] = {}
    for split in ("train", "valid", "test"):
        indices = [i for i, t in enumerate(tasks, start=1) if split == "train" or t.kind == "classification"]
        datasets = [_labelled(getattr(tasks[i - 1], split), i - 1) for i in indices]
        stream = with_task_labels(benchmark_from_datasets(**{split: datasets})).streams[split]
        result[split] = {i: stream[pos] for pos, i in enumerate(indices)}
    return result


def _labelled(dataset: Any, task_label: int) -> Any:
    data = as_classification_dataset(dataset)
    labels = TaskLabels(ConstantSequence(task_label, len(data)))
    return data.update_data_attribute(name="targets_task_labels", new_value=labels)


class TaskRoutedModel(MultiTaskModule):
    """Presents a clbench network to Avalanche as a multi-head module.

    Avalanche passes each sample's task label; the network is switched to that task
    (``activate``) before the forward pass. Heads are created by the strategy in
    ``begin_task``, so Avalanche's own head adaptation is switched off.

    A triplet task's batch is ``(B, 3, C, H, W)``: it runs as ``(3B, C, H, W)`` (rows
    ``a0, p0, n0, a1, ...``) and returns ``(3B, D)`` embeddings (see :mod:`clbench.triplets`).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def adaptation(self, experience: Any = None) -> None:
        pass

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int) -> torch.Tensor:
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        first = int(task_labels[0])
        if bool((task_labels == first).all()):
            return self.forward_single_task(x, first)
        if x.dim() == 5:
            # Triplet rows hold three images and their outputs are embeddings, not logits:
            # padding them into one logit table has no meaning.
            raise ClbenchError("a batch of triplets (B, 3, C, H, W) must come from one task, not mixed tasks")
        # Mixed-task batches: pad each head's logits with a very negative value so that
        # padding never wins an argmax.
        parts = []
        for t in task_labels.unique().tolist():
            selected = task_labels == t
            parts.append((selected, self.forward_single_task(x[selected], t)))
        width = max(out.shape[1] for _, out in parts)
        result = x.new_full((x.shape[0], width), -1e9)
        for selected, out in parts:
            result[selected, : out.shape[1]] = out
        return result

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        self.net.activate(task_label + 1)
        return self.net(as_images(x))


class _NoOptimizerRewiring:
    """Avalanche would re-collect *all* model parameters into the optimizer before each
    experience; clbench hands every phase a fresh optimizer with exactly the parameters
    that may train, so that rewiring is switched off."""

    def make_optimizer(self, **kwargs: Any) -> None:
        return None


class Loop(_NoOptimizerRewiring, SupervisedTemplate):
    """Avalanche's supervised loop with clbench's optimizer handling."""


class _StrategyBridge(SupervisedPlugin):
    """Forwards loop events to the strategy, keeps device-side training statistics,
    steps the lr schedule, watches for non-finite losses and drives the progress bar."""

    def __init__(
        self,
        strategy: Strategy,
        task: Task,
        phase: str,
        schedulers: Sequence[Any],
        progress: tqdm | None,
    ) -> None:
        super().__init__()
        self.strategy = strategy
        self.task = task
        self.phase = phase
        self.schedulers = schedulers
        self.progress = progress
        self.triplets = task.kind == "triplet"  # outputs are (3B, D) embeddings: count triplet accuracy
        self.epoch = 0
        self.step = 0
        self._reset()
        self.last = (math.nan, math.nan)

    def _reset(self) -> None:
        self.correct = torch.zeros((), dtype=torch.long)
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.seen = 0

    def before_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self._reset()
        self.correct = self.correct.to(strategy.device)
        self.loss_sum = self.loss_sum.to(strategy.device)

    def before_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.strategy.before_iteration(strategy)

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        # Avalanche's own regularisers (EWC, SI, LwF) add to ``strategy.loss`` here too; the
        # logged loss (after_training_iteration) is the one back-propagated.
        strategy.loss = self.strategy.training_loss(strategy.loss, strategy.mb_output, strategy.mb_y, strategy)

    def after_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.strategy.after_backward(strategy)
        self.strategy.clip_gradients()

    def after_update(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.strategy.after_update(strategy)

    def after_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        n = strategy.mb_y.shape[0]
        loss = strategy.loss.detach().sum()  # Avalanche keeps the loss as a 1-element tensor
        if self.triplets:
            self.correct += triplet_correct(strategy.mb_output)
        else:
            self.correct += (strategy.mb_output.argmax(1) == strategy.mb_y).sum()
        self.loss_sum += loss.double() * n
        self.seen += n
        self.step += 1
        if self.progress is not None:
            self.progress.update(1)

    def after_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.epoch += 1
        loss = float(self.loss_sum) / max(self.seen, 1)  # one host sync per epoch
        acc = float(self.correct) / max(self.seen, 1)
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss in task {self.task.index} ({self.task.name}), "
                f"phase {self.phase}, epoch {self.epoch}, step {self.step}: lower the learning rate"
            )
        self.last = (acc, loss)
        for scheduler in self.schedulers:
            scheduler.step()
        if self.progress is not None:
            self.progress.set_postfix(epoch=self.epoch, loss=f"{loss:.3f}", acc=f"{acc:.3f}")


def _evaluator() -> EvaluationPlugin:
    with warnings.catch_warnings():
        # clbench reads the metrics from the returned dict and writes its own tables.
        warnings.filterwarnings("ignore", message="No loggers specified", category=UserWarning)
        return EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])


def fit(
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
    """Train ``strategy.model`` on ``task`` for ``epochs`` with ``optimizer``; every scheduler
    steps once per epoch. The Avalanche engine only: ``Strategy.fit`` picks the engine."""
    if epochs == 0:
        return FitResult(train_accuracy=math.nan, train_loss=math.nan)
    ctx = strategy.context
    train_exp = task.experience("train")
    steps = epochs * iterations_per_epoch(len(train_exp.dataset), batch_size)
    progress = None
    if not ctx.quiet:
        label = f"task {task.index}/{ctx.num_tasks} {phase}"
        progress = tqdm(total=steps, desc=label, leave=False, dynamic_ncols=True)
    bridge = _StrategyBridge(strategy, task, phase, schedulers, progress)
    loop = Loop(
        model=TaskRoutedModel(strategy.model),
        optimizer=optimizer,
        criterion=criterion,
        train_mb_size=batch_size,
        train_epochs=epochs,
        eval_mb_size=batch_size,
        device=ctx.device,
        plugins=[*strategy.avalanche_plugins(), bridge],
        evaluator=_evaluator(),
    )
    try:
        # A last batch of one sample breaks BatchNorm in training mode; drop only that one.
        drop_last = len(train_exp.dataset) % batch_size == 1
        loop.train(train_exp, eval_streams=[], drop_last=drop_last)
    finally:
        if progress is not None:
            progress.close()
    acc, loss = bridge.last
    return FitResult(train_accuracy=acc, train_loss=loss)


def evaluate(strategy: Strategy, tasks: Sequence[Task], split: str, batch_size: int) -> dict[int, float]:
    """Task-aware top-1 accuracy of each (classification) task on ``split``, read from
    Avalanche's evaluator. The Avalanche engine only: ``Strategy.evaluate_all`` picks the engine."""
    if not tasks:
        return {}
    exps = [t.experience(split) for t in tasks]
    loop = Loop(
        model=TaskRoutedModel(strategy.model),
        optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0),
        train_mb_size=batch_size,
        eval_mb_size=batch_size,
        device=strategy.context.device,
        evaluator=_evaluator(),
    )
    metrics = loop.eval(exps)
    found: dict[int, float] = {}
    for key, value in metrics.items():
        match = _ACC_KEY.fullmatch(key)
        if match and match.group(1) == split:
            found[int(match.group(2)) + 1] = float(value)
    missing = [t.index for t in tasks if t.index not in found]
    if missing:
        raise RuntimeError(f"Avalanche reported no {split} accuracy for tasks {missing}: {sorted(metrics)}")
    return found
