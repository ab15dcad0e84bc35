"""PAE: Packing And Expanding.

Cite: Hung, Tu, Chen, Chen, Chen, "Increasingly Packing Multiple Facial-Informatics Modules in
A Unified Deep-Learning Model via Lifelong Learning", ICMR 2019, pp. 339-343; code ivclab/PAE.
Semantics: ALGORITHMS.md §2.

PAE packs each task by gradual pruning to the largest ratio that keeps its accuracy goal and
expands the network when the goal is missed, like CPG, but without picking: every task uses
all weights of the tasks before it. Defaults are the CIFAR-100 re-run in the CPG repository,
``experiment1/PAE_cifar100_scratch_mul_1.5.sh`` ("PAE script"), which is CPG's script with
``lr_mask=0.0``, no retrain and a ×2.0 cap; goals there come from the finetune "max" baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import clbench
from clbench.config import check
from clbench.isolation import GoalDrivenStrategy
from clbench.strategy import Strategy, TrainConfig
from clbench_plugins.cpg import validate_packing


@dataclass(frozen=True)
class PAEConfig(TrainConfig):
    epochs: int = 100  # PAE script finetune_epochs=100
    lr: float = 1e-2  # PAE script lr=1e-2
    lr_milestones: tuple[int, ...] = (50, 80)  # CPG main L431-436
    lr_gamma: float = 0.1
    batch_size: int = 32  # PAE script batch_size=32
    eval_batch_size: int = 100
    momentum: float = 0.9  # CPG main L326-331
    nesterov: bool = True
    weight_decay: float = 4e-5  # PAE script --weight_decay 4e-5 (manual, gated)
    # PAE script: logs/finetune_max_cifar100_acc.txt, the best of goal_sequences random-parent
    # finetune sequences per task (finetune_cifar100.sh); "auto" trains them when none match.
    goals: Literal["auto", "file", "self"] = "auto"
    goals_file: str | None = None
    goal_sequences: int = 5  # finetune_cifar100.sh: 5 sequences, "max" per task
    min_train_accuracy: float = 0.95  # CPG main L461-493
    goal_margin: float = 0.0  # as CPG's
    task_goal_margins: tuple[float, ...] = ()
    allow_acc_loss: float = 0.0  # PAE script --allow_acc_loss 0.0
    capacity_rule: bool = True  # CPG main L372-381 (the PAE script runs the same main)
    width_step: float = 0.5  # PAE script: += 0.5 on exit 2
    max_width: float = 2.0  # PAE script max_allowed_network_width_multiplier=2.0
    prune_stages: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # as CPG's script
    prune_epochs: int = 20
    prune_interval: int = 4
    prune_frequency: int = 10
    prune_lr: float = 1e-3
    # No pick masks: these two exist only because the shared finetune phase reads them.
    lr_mask: float = 0.0  # PAE script lr_mask=0.0
    lr_mask_decay_epoch: int = 50
    lr_mask_stop_epoch: int = 70

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_packing(self, "pae")
        check(self.goal_sequences >= 1, "pae", "goal_sequences", ">= 1", self.goal_sequences)


class PAE(GoalDrivenStrategy):
    """PAE (ICMR 2019): gradual pruning to the goal, all earlier weights reused, growth up to ×2."""

    name = "pae"
    kind = "packing"
    zero_forgetting = True
    Config = PAEConfig
    pick_mode = "all"
    goal_producer = "finetune_max"


@clbench.hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(PAE)
