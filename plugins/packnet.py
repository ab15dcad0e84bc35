"""PackNet: adding multiple tasks to a single network by iterative pruning.

Cite: Mallya & Lazebnik, "PackNet: Adding Multiple Tasks to a Single Network by Iterative
Pruning", CVPR 2018 (arXiv:1711.05769); code arunmallya/packnet. Semantics: ALGORITHMS.md §3.1.

Per task: train the free weights (every earlier task's weights are used, frozen), prune a fixed
fraction of the task's weights by magnitude in one shot, retrain the rest; no picking, no
growth. Defaults are the CIFAR-100 re-run in the CPG repository that gives the published 67.5
(``experiment1/PackNet_cifar100.sh``, "script"), with CPG's per-task BN, biases and heads
(``utils/packnet_manager.py`` L159-170, L225-236).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import clbench
from clbench.config import check
from clbench.isolation import MaskedStrategy
from clbench.strategy import FitResult, Strategy, Task, TrainConfig


@dataclass(frozen=True)
class PackNetConfig(TrainConfig):
    epochs: int = 100  # script: 100 epochs
    lr: float = 1e-2  # script: lr 1e-2
    lr_milestones: tuple[int, ...] = (50, 80)  # script: ×0.1 at 50 and 80
    lr_gamma: float = 0.1
    batch_size: int = 32  # script batch_size=32
    eval_batch_size: int = 100
    momentum: float = 0.9  # CPG packnet_cifar100_main_normal.py: SGD(momentum=0.9, nesterov=True)
    nesterov: bool = True
    weight_decay: float = 4e-5  # script: manual 4e-5 with CPG's gradient gate
    prune_ratio: float = 0.6  # script: one-shot prune 0.6
    post_prune_epochs: int = 30  # script: 30 epochs after pruning
    post_prune_lr: float = 1e-3  # script: lr 1e-3
    post_prune_milestones: tuple[int, ...] = (25,)  # script: ×0.1 at 25

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.prune_ratio < 1, "packnet", "prune_ratio", "in [0, 1)", self.prune_ratio)
        check(self.post_prune_epochs >= 0, "packnet", "post_prune_epochs", ">= 0", self.post_prune_epochs)


class PackNet(MaskedStrategy):
    """PackNet (CVPR 2018): train, one-shot magnitude prune, retrain; no pick, no growth."""

    name = "packnet"
    kind = "packing"
    zero_forgetting = True
    Config = PackNetConfig
    pick_mode = "all"

    def train(self, task: Task, **overrides: object) -> FitResult:
        cfg = self.config
        return self.run_phase(task, "train", cfg.epochs, cfg.lr, cfg.lr_milestones, cfg.lr_gamma)

    def compact(self, task: Task) -> None:
        cfg = self.config
        self.prune_once(cfg.prune_ratio)
        self.run_phase(task, "post-prune", cfg.post_prune_epochs, cfg.post_prune_lr, cfg.post_prune_milestones)
        self.model.zero_released()


@clbench.hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(PackNet)
