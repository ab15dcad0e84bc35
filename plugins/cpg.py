"""CPG: Compacting, Picking and Growing.

Cite: Hung, Tu, Wu, Chen, Chen, Chen, "Compacting, Picking and Growing for Unforgetting Continual
Learning", NeurIPS 2019 (arXiv:1910.06562); code ivclab/CPG. Semantics: ALGORITHMS.md §1.

Per task: finetune the task's free weights while learning a pick mask over earlier tasks'
weights; if the validation accuracy misses the task's goal, restart the task wider (grow);
then prune the task's weights gradually in stages and keep the largest ratio that still meets
the goal (compact); finally retrain the pick mask and the kept weights, keeping the result
only if validation accuracy improves. Defaults are the CIFAR-100 recipe,
``experiment1/CPG_cifar100_scratch_mul_1.5.sh`` (cited per field as "script"), and
``CPG_cifar100_main_normal.py`` ("main").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import clbench
from clbench.config import check
from clbench.isolation import GoalDrivenStrategy
from clbench.strategy import Strategy, Task, TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CPGConfig(TrainConfig):
    # Finetune (training) phase
    epochs: int = 100  # script finetune_epochs=100
    lr: float = 1e-2  # script lr=1e-2
    lr_milestones: tuple[int, ...] = (50, 80)  # main L431-436: lr ×0.1 after epochs 50 and 80
    lr_gamma: float = 0.1
    batch_size: int = 32  # script batch_size=32
    eval_batch_size: int = 100  # main val_batch_size=100
    momentum: float = 0.9  # main L326-331: SGD momentum 0.9, nesterov
    nesterov: bool = True
    weight_decay: float = 4e-5  # script --weight_decay 4e-5, applied by hand before the gate (prune.py L202-205)
    lr_mask: float = 5e-4  # script lr_mask=5e-4 (Adam, main L344-346)
    lr_mask_decay_epoch: int = 50  # main L437-440: lr_mask ×0.2 after epoch 50
    lr_mask_stop_epoch: int = 70  # main L441-443: lr_mask ×0 after epoch 70 when the task owns weights
    # Accuracy goals and the grow decision
    # script --baseline_acc_file (individual models, baseline_cifar100.sh). "auto": goals keyed to
    # this benchmark, recipe and data (clbench.goals), trained first when none exist; "file": the
    # same, or an error; "self": clbench's documented fallback (each task's own pre-prune accuracy).
    goals: Literal["auto", "file", "self"] = "auto"
    goals_file: str | None = None  # an explicit CSV task,goal,source[,provenance] instead of the lookup
    min_train_accuracy: float = 0.95  # main L461-493: train accuracy must exceed 0.95
    goal_margin: float = 0.0  # pass test val − goal > −margin (0: CIFAR's val >= goal, main L478)
    task_goal_margins: tuple[float, ...] = ()  # per task, in task order (face: CPG_face.sh --acc_margin)
    allow_acc_loss: float = 0.0  # script choose_appropriate_pruning_ratio --allow_acc_loss 0.0
    capacity_rule: bool = True  # main L372-381: at max width with the goal missed, reserve room (CIFAR only)
    width_step: float = 0.5  # script: network_width_multiplier += 0.5 on exit 2
    max_width: float = 1.5  # script max_allowed_network_width_multiplier=1.5
    # Compact: gradual pruning in stages
    prune_stages: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # script L101-174
    prune_epochs: int = 20  # script nrof_epoch_for_each_prune=20
    prune_interval: int = 4  # script --pruning_interval=4 (epochs of the cubic ramp)
    prune_frequency: int = 10  # script --pruning_frequency=10 (iterations between mask updates)
    prune_lr: float = 1e-3  # script gradual_prune_lr=1e-3 (lr_mask 0 while pruning)
    # Retrain of pick mask and weights after compacting (CIFAR only, tasks > 1)
    retrain: bool = True  # script "retrain piggymask and weight"
    retrain_epochs: int = 30  # script --epochs 30 --finetune_again
    retrain_patience: int = 5  # main: stop after 5 epochs without improvement
    retrain_lr: float = 1e-3  # script --lr $gradual_prune_lr
    retrain_lr_mask: float = 1e-4  # script --lr_mask 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_packing(self, "cpg")


def validate_packing(cfg: Any, section: str) -> None:
    """Checks shared by the goal-driven strategies' configs (CPG, PAE)."""
    stages = cfg.prune_stages
    check(bool(stages), section, "prune_stages", "a non-empty list", stages)
    check(all(0 < s < 1 for s in stages), section, "prune_stages", "sparsities in (0, 1)", stages)
    check(list(stages) == sorted(set(stages)), section, "prune_stages", "strictly increasing", stages)
    check(cfg.prune_epochs >= 1, section, "prune_epochs", ">= 1", cfg.prune_epochs)
    check(cfg.prune_interval >= 1, section, "prune_interval", ">= 1", cfg.prune_interval)
    check(cfg.prune_frequency >= 1, section, "prune_frequency", ">= 1", cfg.prune_frequency)
    check(cfg.max_width >= 1.0, section, "max_width", ">= 1", cfg.max_width)
    check(cfg.width_step > 0, section, "width_step", "> 0", cfg.width_step)
    check(0 <= cfg.min_train_accuracy < 1, section, "min_train_accuracy", "in [0, 1)", cfg.min_train_accuracy)
    check(0 <= cfg.goal_margin < 1, section, "goal_margin", "in [0, 1)", cfg.goal_margin)
    margins = cfg.task_goal_margins
    check(all(0 <= m < 1 for m in margins), section, "task_goal_margins", "fractions in [0, 1)", margins)
    check(cfg.allow_acc_loss >= 0, section, "allow_acc_loss", ">= 0", cfg.allow_acc_loss)


class CPG(GoalDrivenStrategy):
    """CPG (NeurIPS 2019): gradual pruning to the goal, learned picking, growth up to ×1.5."""

    name = "cpg"
    kind = "packing"
    zero_forgetting = True
    Config = CPGConfig
    pick_mode = "learn"

    def compact(self, task: Task) -> None:
        super().compact(task)
        if self.config.retrain and task.index > 1 and self.owned_weights(task) > 0:
            self.phase("retrain", self.retrain, task)

    def retrain(self, task: Task) -> None:
        """Re-learn the pick mask from 0.01 with the kept weights; keep the result only if it
        beats the validation accuracy of the reset mask (all earlier weights picked), stopping
        after ``retrain_patience`` epochs without improvement. Otherwise the pruned model with
        its learned pick mask stays (upstream ``choose_retrain_or_not.py``)."""
        cfg = self.config
        kept = self.snapshot()
        # Upstream (main L271-279, L409-429) re-initialises the pick mask to 0.01 (every earlier
        # weight picked) *before* it validates: that accuracy is the one to beat.
        self.model.reset_pick()
        best_acc, best_state = self.validation_accuracy(task), None
        optimizer = self.make_optimizer(cfg.retrain_lr, cfg.retrain_lr_mask)
        self.model.train_picks = True  # the retrain learns the pick mask (MaskedNet.train_picks)
        stale = 0
        for _ in range(cfg.retrain_epochs):
            self.fit(task, optimizer, [], 1, "retrain")
            acc = self.validation_accuracy(task)
            if acc > best_acc:
                # Once the retrain has improved, the pruned model is never restored: keep one copy.
                kept = best_state = None
                best_acc, best_state, stale = acc, self.snapshot(), 0
            else:
                stale += 1
                if stale == cfg.retrain_patience:
                    break
        self.restore(best_state if best_state is not None else kept)
        log.info("task %d: retrain %s", task.index, "improved" if best_state is not None else "kept the pruned model")


@clbench.hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(CPG)
