"""Finetune from the previous task: one network per task, each initialised as a copy of an
earlier task's trained network (a new head), then trained on its task: the accuracy goals of
the original CPG recipe.

Cite: Hung et al., "Compacting, Picking and Growing for Unforgetting Continual Learning",
NeurIPS 2019 (arXiv:1910.06562); ivclab/CPG ``experiment1/finetune_cifar100.sh`` (ALGORITHMS.md
§1.9, "Goals"): task 1 from scratch at lr 1e-2; every later task starts from the checkpoint of
an earlier task, chosen by ``tools/random_generate_task_id.py`` (uniform over 1 … t−1), at
lr 5e-3, 100 epochs, wd 4e-5. Upstream repeats the sequence 5 times and keeps each task's best
accuracy ("max"); here one run is one sequence (repeat with ``--seed`` and take the maximum).

``parent = "previous"`` (default, as the issue asks) starts task t from task t−1; ``"random"``
draws the parent as upstream does. Like ``individual`` the run's goals (each task's validation
accuracy) are written into ``goals.csv`` and a keyed goal file of producer ``finetune_previous``;
PAE's "finetune max" goals take the maximum over ``--pae.goal-sequences`` runs of this
strategy with random parents (the runner trains them when ``--pae.goals auto`` finds none).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Literal

from clbench.config import check
from clbench.strategy import FitResult, Task
from clbench_baselines.individual import Individual, IndividualConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetunePreviousConfig(IndividualConfig):
    # Inherits individual's schedule (100 epochs, lr 1e-2, ×0.1 at 50 and 80, batch 32, wd 4e-5).
    parent: Literal["previous", "random"] = "previous"  # random: finetune_cifar100.sh's random earlier task
    later_lr_factor: float = 0.5  # finetune_cifar100.sh: LR=5e-3 for tasks ≥ 2 vs --lr 1e-2 for task 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.later_lr_factor > 0, "finetune_previous", "later_lr_factor", "> 0", self.later_lr_factor)


class FinetunePrevious(Individual):
    """One network per task, copied from the previous task's network (writes the accuracy goals)."""

    name = "finetune_previous"
    Config = FinetunePreviousConfig
    produces_goals = "finetune_previous"

    def before_task(self, task: Task) -> None:
        super().before_task(task)  # a fresh network with the task's new head
        if task.index == 1:
            return
        cfg: FinetunePreviousConfig = self.config
        parent = task.index - 1 if cfg.parent == "previous" else random.randint(1, task.index - 1)
        nets = self.model.nets
        # Everything but the head: the backbone's weights and BatchNorm statistics.
        nets[str(task.index)].backbone.load_state_dict(nets[str(parent)].backbone.state_dict())
        self.parents = {**getattr(self, "parents", {}), task.index: parent}
        log.info("task %d starts from task %d's network", task.index, parent)

    def train(self, task: Task, **overrides: Any) -> FitResult:
        if task.index > 1:
            overrides.setdefault("lr", self.config.lr * self.config.later_lr_factor)
        return super().train(task, **overrides)
