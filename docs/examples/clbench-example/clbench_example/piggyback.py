"""Template: a masking strategy on clbench's masked layer (a minimal Piggyback).

Cite: Mallya, Davis & Lazebnik, "Piggyback: Adapting a Single Network to Multiple Tasks by
Learning to Mask Weights", ECCV 2018 (arXiv:1801.06519). Task 1 trains the whole network (the
paper starts from an ImageNet-trained one); every later task keeps those weights frozen and learns
one binary mask over them (real-valued scores, thresholded; straight-through gradients) and its
own head, BatchNorm and biases. Finished tasks never change: zero forgetting.

``MaskedStrategy`` does the work: ``pick_mode = "learn"`` gives every task after the first a
learnable mask over the earlier tasks' weights; ``run_phase`` trains the task's own parameters
with SGD and, when ``lr_mask > 0``, its mask with Adam. Task 1 owns every weight, so later tasks
own none and their gradient gate keeps the shared weights frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clbench.api import FitResult, MaskedStrategy, Strategy, Task, TrainConfig, check, hookimpl


@dataclass(frozen=True)
class PiggybackConfig(TrainConfig):
    epochs: int = 30  # arunmallya/piggyback src/scripts/run_piggyback_training.sh: NUM_EPOCHS=30
    lr_mask: float = 1e-4  # same script: --mask_adam, LR_MASK=1e-4
    lr_mask_milestones: tuple[int, ...] = (15,)  # same script: MASK_DECAY=15, --lr_decay_factor 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lr_mask >= 0, "piggyback", "lr_mask", ">= 0", self.lr_mask)


class Piggyback(MaskedStrategy):
    """Piggyback (ECCV 2018): task-1 weights frozen; later tasks learn a binary mask and a head."""

    name = "piggyback"
    Config = PiggybackConfig
    kind = "masking"  # tables count its size as the masked network's (clbench.api.KINDS)
    zero_forgetting = True  # the contract kit checks it
    pick_mode = "learn"

    def train(self, task: Task, **overrides: Any) -> FitResult:
        cfg = self.config
        masks = [(epoch, 0.1) for epoch in cfg.lr_mask_milestones]
        lr_mask = cfg.lr_mask if task.index > 1 else 0.0  # task 1 has no earlier weights to mask
        return self.run_phase(
            task, "train", cfg.epochs, cfg.lr, cfg.lr_milestones, cfg.lr_gamma, lr_mask=lr_mask, mask_factors=masks
        )


@hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(Piggyback)


@hookimpl
def clbench_register_recipes(register: Callable[..., None]) -> None:
    # digits runs in seconds: its recipes' catch-all shrinks epochs and lr; these entries shrink
    # the mask schedule too, with the mask lr of CPG's digits recipes (few steps to flip a mask).
    register("digits", "default", "piggyback", {"lr_mask": 5e-3, "lr_mask_milestones": (3,)})
    register("digits", "tiny", "piggyback", {"lr_mask": 5e-3, "lr_mask_milestones": ()})
