"""Mechanics shared by the parameter-isolation strategies (PackNet, PAE, CPG) over ``MaskedNet``.

The strategies in ``plugins/`` differ only in how they compact, pick and grow; the steps they
are built from live here, each following ``ALGORITHMS.md`` §1–§3:

* training phases with SGD on the task's weights (manual weight decay, then the gradient gate,
  §1.4) and Adam on its pick masks (§1.3), a fresh optimizer per phase so no momentum
  carries over from an earlier task;
* one-shot pruning (PackNet, §3.1) and gradual pruning on the cubic schedule in stages (§1.6);
* the accuracy-goal test that decides between pruning and growing (§1.7), growth by
  restarting the task wider from the state before it (§1.8), and the pruning-ratio choice.

Deliberate differences from the original code, all for the reasons given:

* Goal checks and the ratio choice read the **validation split** carved from train; the
  original used the test set ("Val = test", §1.9).
* The original saved a finetune checkpoint only when train accuracy exceeded 0.95; here the
  finetuned state is always kept (a run never stops half-way for lack of a checkpoint).
* Every stage runs in one process on one model, so released weights are zeroed when released
  and when a stage ends instead of by ``apply_mask`` in a separate inference process.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.errors import UsageError
from clbench.strategy import FitResult, Strategy, Task, iterations_per_epoch

if TYPE_CHECKING:
    from torch import nn

    from clbench.nn.masked import MaskedNet
    from clbench.optim import OptimizerGroup

# torch and the masked layers are imported inside methods: plugin modules subclass these
# classes, and `clbench list` imports every plugin without paying for torch.

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ goal decisions
def meets_goal(accuracy: float, goal: float, margin: float = 0.0) -> bool:
    """Upstream's pass test: ``accuracy >= goal`` with no margin (CIFAR main L478), else
    ``accuracy − goal > −margin`` (``CPG_imagenet_main.py`` L494-503, ``CPG_face_main.py`` L483)."""
    return accuracy >= goal if margin == 0 else accuracy - goal > -margin


def capacity_floor(remaining_tasks: int) -> float:
    """The CIFAR main's reserve (L372-381, L497-506): a task that misses its goal at the maximum
    width must prune at least ``1 − round(1/(remaining+1), 1)``, leaving room for the tasks after
    it. For the last task (``remaining_tasks == 0``) that is 0.0: it must not prune at all."""
    return 1.0 - round(1.0 / (remaining_tasks + 1), 1)


# ---------------------------------------------------------------------------- pruning
@dataclass
class PruneSchedule:
    """The original ``SparsePruner`` timing (§1.6): masks update every ``frequency`` iterations
    while ``begin <= step <= end``, to the cubic sparsity of that step."""

    initial: float
    final: float
    begin: int
    end: int
    frequency: int
    final_update: bool = False  # also update at ``end`` when it is off the frequency grid
    step: int = 0
    last: int = 0

    def __post_init__(self) -> None:
        self.step = self.last = self.begin

    def advance(self) -> float | None:
        """Call once after every optimizer step. Upstream's ``manager.train`` calls
        ``gradually_prune(curr_prune_step)`` and *then* increments it, so the first step is
        ``begin`` and the first update comes after ``frequency + 1`` steps."""
        from clbench.nn.masked import cubic_sparsity

        step, self.step = self.step, self.step + 1
        due = self.last + self.frequency <= step or (self.final_update and step == self.end)
        if self.begin <= step <= self.end and due:
            self.last = step
            return cubic_sparsity(step, self.initial, self.final, self.begin, self.end)
        return None


@dataclass
class StageRecord:
    sparsity: float
    val_accuracy: float
    state: dict[str, Any] | None


# --------------------------------------------------------------------------- strategy
class MaskedStrategy(Strategy):
    """Base of strategies that pack tasks into one :class:`~clbench.nn.masked.MaskedNet`.

    Subclasses set ``pick_mode`` (``"learn"``: CPG's learnable pick masks over earlier tasks'
    weights; ``"all"``: use every earlier weight, PackNet and PAE) and override
    ``compact`` / ``grow``. Their Config must provide the ``TrainConfig`` fields.
    """

    pick_mode: ClassVar[str] = "all"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self._schedule: PruneSchedule | None = None

    def build_model(self) -> MaskedNet:
        from clbench.nn.masked import MaskedNet

        return MaskedNet(self.context.backbone_factory, width_mult=1.0)

    def before_task(self, task: Task) -> None:
        pick = "learn" if self.pick_mode == "learn" and task.index > 1 else "all"
        self.model.begin_task(task.index, task.num_classes, pick=pick, head=task.data.head)

    # ------------------------------------------------------------------- phases
    def make_optimizer(self, lr: float, lr_mask: float = 0.0) -> OptimizerGroup:
        """SGD on the task's weights and per-task state (weight decay is added by hand before
        the gradient gate, so the optimizer's own is 0), Adam on its pick masks.

        Both use PyTorch's fused kernels where available (``clbench.optim.fused_options``).
        Deviation, for speed (issue 13): fused SGD updates bit for bit as the single-tensor
        loop upstream uses; fused Adam differs in the last bit of pick-mask updates, which can
        flip a pick-mask entry lying within that bit of the threshold (docs/algorithms.md).
        """
        import torch

        from clbench.optim import OptimizerGroup, fused_options

        cfg = self.config
        params = self.model.trainable_parameters()
        optimizers: list[Any] = [
            torch.optim.SGD(
                params,
                lr=lr,
                momentum=cfg.momentum,
                nesterov=cfg.nesterov and cfg.momentum > 0,
                weight_decay=0.0,
                **fused_options(params),
            )
        ]
        masks = self.model.pick_parameters()
        if masks:
            optimizers.append(torch.optim.Adam(masks, lr=lr_mask, **fused_options(masks)))
        return OptimizerGroup(optimizers)

    def updated_parameters(self) -> list[nn.Parameter]:
        """The SGD optimizer's parameters and the Adam optimizer's pick masks."""
        return [*self.model.trainable_parameters(), *self.model.pick_parameters()]

    def run_phase(
        self,
        task: Task,
        phase: str,
        epochs: int,
        lr: float,
        lr_milestones: Sequence[int] = (),
        lr_gamma: float = 0.1,
        lr_mask: float = 0.0,
        mask_factors: Sequence[tuple[int, float]] = (),
    ) -> FitResult:
        """Train for ``epochs``; ``mask_factors`` = [(epoch, factor)] multiplies the pick-mask lr
        from that epoch on (CPG: ×0.2 at 50, ×0 at 70)."""
        import torch

        group = self.make_optimizer(lr, lr_mask)
        sgd, *adam = group.optimizers
        schedulers: list[Any] = [torch.optim.lr_scheduler.MultiStepLR(sgd, list(lr_milestones), lr_gamma)]
        if adam and mask_factors:
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(adam[0], _factor_schedule(mask_factors)))
        # The public switch (MaskedNet.train_picks): pick masks train in this phase only when
        # they have a learning rate; upstream's prune stages zero their gradient (§1.3).
        before = self.model.train_picks
        self.model.train_picks = bool(adam) and lr_mask > 0
        try:
            return self.fit(task, group, schedulers, epochs, phase)
        finally:
            self.model.train_picks = before

    def after_backward(self, loop: Any) -> None:
        self.model.gate_gradients(self.config.weight_decay)

    def after_update(self, loop: Any) -> None:
        if self._schedule is not None:
            sparsity = self._schedule.advance()
            if sparsity is not None:
                self.model.prune(sparsity)

    # ------------------------------------------------------------------ compact
    def prune_once(self, ratio: float) -> None:
        """PackNet's one-shot prune: release the ``ratio`` of the task's weights with smallest |w|."""
        self.model.prune(ratio)
        self.model.zero_released()

    def prune_stage(
        self, task: Task, initial: float, final: float, epochs: int, interval_epochs: int, frequency: int, lr: float
    ) -> FitResult:
        """One gradual-pruning run of the original script: sparsity ramps from ``initial`` to
        ``final`` over the first ``interval_epochs`` (cubic), then holds; pick masks frozen."""
        per_epoch = iterations_per_epoch(len(task.data.train), self.config.batch_size)
        end, last_step = interval_epochs * per_epoch, epochs * per_epoch - 1
        # A stage no longer than its ramp (CPU recipes: 1 epoch, ramp 1) would stop short of its
        # target, with upstream's counting as well; its ramp ends on the last step instead, which
        # always updates. Upstream's recipes (20 epochs, ramp 4) never take this branch.
        short = end > last_step
        self._schedule = PruneSchedule(initial, final, 0, min(end, last_step), frequency, final_update=short)
        try:
            return self.run_phase(task, f"prune {final:g}", epochs, lr)
        finally:
            self._schedule = None
            self.model.zero_released()

    def owned_weights(self, task: Task) -> int:
        return int(self.model.accounting()["tasks"][task.index]["owned"])

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.model.state_dict())

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the model by a saved state (which may be narrower than the current one)."""
        from clbench.nn.masked import MaskedNet

        device = self.context.device
        model = MaskedNet.from_state_dict(state, self.context.backbone_factory).to(device)
        self.model = model

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.restore(state["model"])
        self.load_extra_state(state["extra"])

    def validation_accuracy(self, task: Task) -> float:
        return self.evaluate([task], "valid")[task.index]

    # ------------------------------------------------------------------ records
    def task_records(self, task: Task) -> dict[str, float]:
        acc = self.model.accounting()
        total = sum(layer["numel"] for layer in acc["layers"].values())
        mine = acc["tasks"][task.index]
        free = sum(layer["free"] for layer in acc["layers"].values())
        earlier = sum(t["owned"] for k, t in acc["tasks"].items() if k < task.index)
        # The task's allocation = what it owns now + what it released (free after it).
        allocation = mine["owned"] + free
        return {
            "parameters": float(total),
            "model_size_mb": float(acc["total_mb"]),
            "paper_size_mb": float(acc["paper_mb"]),
            "width_mult": float(acc["width_mult"]),
            "sparsity": free / allocation if allocation else 0.0,
            "owned_fraction": mine["owned"] / total,
            "free_fraction": free / total,
            "picked_fraction": mine["picked"] / earlier if earlier else math.nan,
        }


def _factor_schedule(factors: Sequence[tuple[int, float]]) -> Any:
    ordered = sorted(factors)

    def factor(epoch: int) -> float:
        value = 1.0
        for start, multiplier in ordered:
            if epoch >= start:
                value *= multiplier
        return value

    return factor


# ------------------------------------------------------------ goal-driven pack & grow
class GoalDrivenStrategy(MaskedStrategy):
    """The CPG/PAE flow (§1.6–§1.8): finetune; grow and restart when the accuracy goal is missed;
    then prune gradually in stages and keep the largest ratio that still meets the goal.

    Config fields used: the ``TrainConfig`` ones, ``lr_mask``, ``lr_mask_decay_epoch``,
    ``lr_mask_stop_epoch``, ``goals``, ``goals_file``, ``min_train_accuracy``, ``goal_margin``,
    ``task_goal_margins``, ``allow_acc_loss``, ``capacity_rule``, ``width_step``, ``max_width``,
    ``prune_stages``, ``prune_epochs``, ``prune_interval``, ``prune_frequency``, ``prune_lr``.

    Goals: the runner resolves them before the first task (``clbench.goals``; with
    ``goals = "auto"`` it trains them when none match) and hands them over through
    :meth:`use_goals`. ``goal_producer`` names the baseline whose accuracies are the goals.
    """

    goal_producer: ClassVar[str] = "individual"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self._goals: dict[str, float] = {}

    def use_goals(self, goals: dict[str, float]) -> None:
        """The accuracy goal (fraction) per task name; every task of the run must have one."""
        self._goals = dict(goals)

    def before_task(self, task: Task) -> None:
        self._start_state: dict[str, Any] | None = self.snapshot()  # growth restarts the task from here (§1.8)
        self._goal: float | None = None
        self._before_prune = (math.nan, math.nan)
        super().before_task(task)

    def phase_state(self) -> dict[str, Any]:
        return {"goal": self._goal, "before_prune": self._before_prune}

    def load_phase_state(self, state: dict[str, Any]) -> None:
        self._goal = state["goal"]
        self._before_prune = tuple(state["before_prune"])

    def validate(self, tasks: Sequence[Task]) -> None:
        margins = self.config.task_goal_margins
        if margins and len(margins) != len(tasks):
            raise UsageError(
                f"{self.name}.task_goal_margins lists {len(margins)} margins for {len(tasks)} tasks; give one per task"
            )

    def goal(self, task: Task) -> float:
        if self.config.goals == "self":
            return self._before_prune[1]  # the task's own accuracy before pruning
        if task.name not in self._goals:
            raise UsageError(f"no accuracy goal for task {task.name!r}; the goals list {sorted(self._goals)}")
        return self._goals[task.name]

    def goal_margin(self, task: Task) -> float:
        """Upstream's pass margin for ``task`` (fine-grained 0.005; face per task), 0 on CIFAR."""
        margins = self.config.task_goal_margins
        return margins[task.index - 1] if margins else self.config.goal_margin

    def train(self, task: Task, **overrides: Any) -> FitResult:
        cfg = self.config
        # Stop learning pick masks at lr_mask_stop_epoch unless the task owns no free weights
        # and can only reuse earlier ones (upstream `stop_lr_mask`, main L431-444).
        stop = 0.0 if self.owned_weights(task) > 0 else 1.0
        result = self.run_phase(
            task,
            "finetune",
            cfg.epochs,
            cfg.lr,
            cfg.lr_milestones,
            cfg.lr_gamma,
            lr_mask=cfg.lr_mask if self.pick_mode == "learn" else 0.0,
            mask_factors=[(cfg.lr_mask_decay_epoch, 0.2), (cfg.lr_mask_stop_epoch, stop)],
        )
        self._before_prune = (result.train_accuracy, self.validation_accuracy(task))
        return result

    def at_max_width(self) -> bool:
        return self.model.width_mult + 1e-9 >= self.config.max_width

    def grow(self, task: Task) -> bool:
        train_acc, val_acc = self._before_prune
        goal = self.goal(task)
        self._goal = goal
        if train_acc > self.config.min_train_accuracy and meets_goal(val_acc, goal, self.goal_margin(task)):
            return False
        if self.at_max_width():
            log.info("task %d: %.4f misses goal %.4f at the maximum width; packing anyway", task.index, val_acc, goal)
            return False
        width = min(self.model.width_mult + self.config.width_step, self.config.max_width)
        log.info("task %d: accuracy %.4f misses goal %.4f: growing to width %g", task.index, val_acc, goal, width)
        assert self._start_state is not None, "grow() after compact(): the task's start state is gone"
        self.restore(self._start_state)
        self.model.expand(width)
        MaskedStrategy.before_task(self, task)
        return True

    def compact(self, task: Task) -> None:
        # No growth follows compact: the task's start state (a whole copy of the model) goes, so
        # it does not sit beside the stage and retrain copies.
        self._start_state = None
        if self.owned_weights(task) == 0:
            return  # the task owns nothing to prune (upstream exit 5)
        self.gradual_compact(task)

    def forced(self, task: Task, goal: float) -> bool:
        """The CIFAR main's "reached the upper bound" case (L372-381, and the ratio choice's
        second clause): capacity rule on, at the maximum width, the goal missed before pruning."""
        missed = not meets_goal(self._before_prune[1], goal, self.goal_margin(task))
        return self.config.capacity_rule and self.at_max_width() and missed

    def gradual_compact(self, task: Task) -> None:
        """Prune in stages, then keep the largest ratio whose validation accuracy meets the goal
        (upstream ``choose_appropriate_pruning_ratio_for_next_task.py``); with none, the
        unpruned model (upstream's ``scratch`` folder).

        With the capacity rule (CIFAR main L372-381), a task that missed its goal at the
        maximum width prunes at least :func:`capacity_floor`: the stages stop before one whose
        initial sparsity already reaches that floor (exit 6 before the stage) and after the first
        that reaches it, and the largest recorded stage is kept whatever its accuracy. A stage
        whose train accuracy is not above ``min_train_accuracy`` ends pruning unrecorded (exit 6).
        """
        cfg = self.config
        goal = self._goal if self._goal is not None else self.goal(task)
        margin = self.goal_margin(task)
        forced = self.forced(task, goal)
        floor = capacity_floor(self.context.num_tasks - task.index) if forced else None
        chosen, kept = 0.0, self.snapshot()  # the unpruned model (upstream `scratch` folder)
        initial = 0.0
        for target in cfg.prune_stages:
            if floor is not None and initial >= floor:
                break
            result = self.phase(
                f"prune {target:g}", self.prune_stage,
                task, initial, target, cfg.prune_epochs, cfg.prune_interval, cfg.prune_frequency, cfg.prune_lr,
                timed=False,  # inside "compact"
            )  # fmt: skip
            if not result.train_accuracy > cfg.min_train_accuracy:
                break  # upstream exit 6: the pruned net no longer fits the training data; not recorded
            initial = target
            val_acc = self.validation_accuracy(task)
            log.info("task %d: sparsity %g -> validation accuracy %.4f", task.index, target, val_acc)
            if forced or meets_goal(val_acc + cfg.allow_acc_loss, goal, margin):
                kept = None  # one kept copy at a time, not two while the new one is taken
                chosen, kept = target, self.snapshot()
            if floor is not None and target >= floor:
                break
        self.restore(kept)
        log.info("task %d: chose pruning ratio %g (goal %.4f)", task.index, chosen, goal)
