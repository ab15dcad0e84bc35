"""Glue that lets Avalanche's regularisation plugins run inside clbench's training loops.

Imported only when a run starts (it imports avalanche). Two facts of clbench's loop matter
(``clbench/loop.py``):

* ``fit`` builds a **fresh** ``Loop`` (Avalanche ``SupervisedTemplate``) per call, so the loop's
  ``Clock`` restarts at ``train_exp_counter == 0`` on every task. ``EWCPlugin`` keys its saved
  parameters and importances by that counter (mode ``separate``: the penalty sums over
  ``range(train_exp_counter)``, so with a restarted clock it would never apply), and
  ``SynapticIntelligencePlugin`` indexes its per-experience lambdas by it. :class:`TaskClock`
  sets the counter to the experience's task label (task index − 1: Avalanche labels tasks from
  0) before each training experience, which is what the counter would read if one loop had
  seen every task in order. The plugins themselves are kept on the strategy, so their state
  (saved parameters, importances, the previous model) spans tasks.
* The loop's model is ``TaskRoutedModel``, a ``MultiTaskModule`` whose ``forward`` needs task
  labels and whose ``adaptation`` is a no-op, so its ``known_train_tasks_labels`` stays empty.
  Avalanche's ``LearningWithoutForgetting`` distils every previous head through
  ``forward(x, None)`` → ``forward_all_tasks``; :class:`AllHeads` supplies that view from the
  network's own heads, and :class:`MultiHeadLwFPlugin` uses it for both the teacher and the
  student.

Two Avalanche 0.6.0 defects are worked around: LwF's ``post_adapt`` reads
``exp.dataset.task_set``, which clbench's datasets lack, and SI's weight snapshots alias the live
parameters on the CPU (:class:`MeteredSIPlugin`). Every plugin records the penalty it adds and
can save and restore its state for ``clbench run --resume``. Overview: docs/baselines.md.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    from avalanche.core import SupervisedPlugin
    from avalanche.models import MultiTaskModule
    from avalanche.training.plugins import EWCPlugin, LwFPlugin, SynapticIntelligencePlugin
    from avalanche.training.utils import ParamData

from clbench.loop import TaskRoutedModel
from clbench.triplets import as_images


class TaskClock(SupervisedPlugin):
    """Sets ``clock.train_exp_counter`` to the task label (task index − 1) of the experience
    about to be trained, so that counter-keyed plugin state is correct across fresh loops.

    Put it first: it must run before any plugin that reads the counter. The loop's ``Clock``
    comes last (Avalanche appends it) and only increments the counter after the experience.
    """

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        strategy.clock.train_exp_counter = int(strategy.experience.task_label)


class _Metered:
    """Mixin for a regularisation plugin: records the penalty it adds to ``strategy.loss``
    in ``before_backward`` (mean per training iteration, per task label)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.penalty_sum: dict[int, torch.Tensor] = {}
        self.penalty_steps: dict[int, int] = {}

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        # The plugin adds its penalty to `strategy.loss` (none reads the loss's value). Let it add
        # to a zero loss, so the penalty is measured exactly (a tiny penalty would vanish in
        # float32 next to the cross-entropy), then put the sum back.
        loss = strategy.loss
        strategy.loss = torch.zeros_like(loss)
        try:
            super().before_backward(strategy, *args, **kwargs)  # type: ignore[misc]
        finally:
            added, strategy.loss = strategy.loss, loss + strategy.loss
        task = int(strategy.experience.task_label)
        total = added.detach().sum().double()
        self.penalty_sum[task] = self.penalty_sum[task] + total if task in self.penalty_sum else total
        self.penalty_steps[task] = self.penalty_steps.get(task, 0) + 1

    def meter_state(self) -> dict[str, Any]:
        return {"sum": {k: float(v) for k, v in self.penalty_sum.items()}, "steps": dict(self.penalty_steps)}

    def load_meter_state(self, state: dict[str, Any]) -> None:
        self.penalty_sum = {int(k): torch.tensor(v, dtype=torch.float64) for k, v in state["sum"].items()}
        self.penalty_steps = {int(k): int(v) for k, v in state["steps"].items()}

    def mean_penalty(self, task_label: int) -> float:
        """Mean penalty per iteration while training the task with this label (0 if none)."""
        steps = self.penalty_steps.get(task_label, 0)
        return float(self.penalty_sum[task_label]) / steps if steps else 0.0


def _tensors(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {name: data.data.detach().cpu().clone() for name, data in params.items()}


def _param_data(tensors: dict[str, torch.Tensor], device: Any, prefix: str = "") -> dict[str, Any]:
    return {name: ParamData(prefix + name, init_tensor=t.to(device), device=device) for name, t in tensors.items()}


class MeteredEWCPlugin(_Metered, EWCPlugin):
    """Avalanche's ``EWCPlugin``, unchanged, with its penalty recorded and its state saveable."""

    def plugin_state(self) -> dict[str, Any]:
        return {
            "saved_params": {t: _tensors(d) for t, d in self.saved_params.items()},
            "importances": {t: _tensors(d) for t, d in self.importances.items()},
            "meter": self.meter_state(),
        }

    def load_plugin_state(self, state: dict[str, Any], device: Any, factory: Callable[..., Any]) -> None:
        for t, tensors in state["saved_params"].items():
            self.saved_params[int(t)] = _param_data(tensors, device)
        for t, tensors in state["importances"].items():
            self.importances[int(t)] = _param_data(tensors, device, "imp_")
        self.load_meter_state(state["meter"])


def _own_storage(target: dict[str, Any], model: nn.Module) -> None:
    """Give every ``ParamData`` in ``target`` its own copy where it shares memory with a
    parameter of ``model``."""
    shared = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for data in target.values():
        if data.data.untyped_storage().data_ptr() in shared:
            data.data = data.data.clone()


class MeteredSIPlugin(_Metered, SynapticIntelligencePlugin):
    """Avalanche's ``SynapticIntelligencePlugin`` with its penalty recorded and one CPU fix.

    The plugin snapshots weights with ``param.detach().cpu().flatten()``. On a CUDA device
    ``.cpu()`` copies; on the CPU it returns the parameter itself, so the snapshots (the
    anchor θ* taken before the task and θ before each step) are views of the live weights.
    The path integral ``Σ g·Δθ`` is then 0 and so are every importance and the penalty
    (measured with avalanche-lib 0.6.0 on CPU). The two snapshots that must outlive the step
    are copied here; the others are read at once, when a view is still correct.
    """

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        super().before_training_exp(strategy, *args, **kwargs)  # takes the anchor θ*
        _own_storage(self.ewc_data[0], strategy.model)

    def before_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        super().before_training_iteration(strategy, *args, **kwargs)  # takes θ before the step
        _own_storage(self.syn_data["old_theta"], strategy.model)

    def plugin_state(self) -> dict[str, Any]:
        return {
            "ewc_data": [_tensors(d) for d in self.ewc_data],
            "syn_data": {key: _tensors(d) for key, d in self.syn_data.items()},
            "meter": self.meter_state(),
        }

    def load_plugin_state(self, state: dict[str, Any], device: Any, factory: Callable[..., Any]) -> None:
        # The plugin keeps these on the CPU (its snapshots go through `.cpu()`).
        anchors, importances = (_param_data(t, "cpu") for t in state["ewc_data"])
        self.ewc_data = (anchors, importances)
        self.syn_data = {key: _param_data(t, "cpu") for key, t in state["syn_data"].items()}
        self.load_meter_state(state["meter"])


class AllHeads(MultiTaskModule):
    """``forward(x, None)`` of a ``TaskRoutedModel`` over a ``MultiHeadNet``: every existing
    head's logits, keyed by Avalanche task label, from one backbone pass."""

    def __init__(self, routed: nn.Module) -> None:
        super().__init__()
        self.routed = routed
        self.known_train_tasks_labels = {int(k) - 1 for k in routed.net.heads}

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.routed.forward_single_task(x, task_label)

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        net = self.routed.net
        features = net.features(as_images(x))  # triplet batches as 3B images, as TaskRoutedModel
        return {t: net.heads[str(t + 1)](features) for t in sorted(self.known_train_tasks_labels)}


class _AllHeadsLwF(LwFPlugin):
    """Avalanche's ``LwFPlugin`` with the multi-head view above.

    The teacher is a frozen ``deepcopy`` of the model after each task, kept in training mode
    as Avalanche's is, so its BatchNorm normalises with the current batch's statistics just
    as the student's does. An eval-mode teacher (FACIL's choice) normalises the new task's
    images with the old tasks' running statistics; on digits (per-task input normalisation)
    that drove task 1 from 98.9 % to 47.8 % final accuracy (measured, seed 0).
    """

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        strategy.loss += self.lwf(strategy.mb_x, strategy.mb_output, AllHeads(strategy.model))

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        # Avalanche's `post_adapt` does this bookkeeping through `exp.dataset.task_set`, which
        # clbench's (single-task, classification) datasets lack; same steps, read directly.
        lwf = self.lwf
        lwf.expcount += 1
        teacher = AllHeads(copy.deepcopy(strategy.model))
        teacher.train()  # BatchNorm on batch statistics, like the student
        for p in teacher.parameters():
            p.requires_grad_(False)
        lwf.prev_model = teacher
        task = int(strategy.experience.task_label)
        classes = {int(c) for c in strategy.experience.dataset.targets.uniques}
        lwf.prev_classes_by_task[task] = lwf.prev_classes_by_task[task] | classes


class MultiHeadLwFPlugin(_Metered, _AllHeadsLwF):
    """Avalanche's LwF distillation over every previous head, with its loss recorded."""

    def plugin_state(self) -> dict[str, Any]:
        lwf = self.lwf
        teacher = None if lwf.prev_model is None else lwf.prev_model.routed.net.state_dict()
        classes = {t: sorted(c) for t, c in lwf.prev_classes_by_task.items()}
        return {"expcount": lwf.expcount, "classes": classes, "teacher": teacher, "meter": self.meter_state()}

    def load_plugin_state(self, state: dict[str, Any], device: Any, factory: Callable[..., Any]) -> None:
        from clbench.nn.multihead import MultiHeadNet

        lwf = self.lwf
        lwf.expcount = int(state["expcount"])
        for t, classes in state["classes"].items():
            lwf.prev_classes_by_task[int(t)] = set(classes)
        if state["teacher"] is not None:
            net = MultiHeadNet(factory)
            net.load_state_dict(state["teacher"])  # its extra state rebuilds the heads first
            teacher = AllHeads(TaskRoutedModel(net.to(device)))
            teacher.train()
            for p in teacher.parameters():
                p.requires_grad_(False)
            lwf.prev_model = teacher
        self.load_meter_state(state["meter"])
