"""Finetune: one shared network trained on each task in turn, with a new head per task.

The lower bound of task-incremental learning: nothing protects earlier tasks, so their
accuracy falls as the shared backbone drifts (catastrophic forgetting; McCloskey & Cohen 1989,
and the "Finetuning" rows of Li & Hoiem, "Learning without Forgetting", ECCV 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

from clbench.strategy import Strategy, TrainConfig


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Plain SGD; defaults follow the CPG CIFAR finetune stage (lr 1e-2, momentum 0.9,
    batch 32; ALGORITHMS.md §1.9) and benchmarks override epochs in their recipes."""


class Finetune(Strategy):
    """One network, a new head per task, no protection against forgetting (lower bound)."""

    name = "finetune"
    kind = "shared"
    Config = FinetuneConfig
