"""Example third-party strategy: feature extraction.

Cite: Li & Hoiem, "Learning without Forgetting", ECCV 2016 (the "Feature Extraction" baseline,
Sec. 2): the backbone learns on the first task only; every later task trains just its own head
on frozen features, so no earlier task can be forgotten.

It shows the whole plugin surface: a ``Strategy`` subclass with a typed ``Config`` (the CLI
derives ``--feature_extraction.head-lr``), a lifecycle override, and one registration hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from clbench.api import Strategy, Task, TrainConfig, hookimpl


@dataclass(frozen=True)
class FeatureExtractionConfig(TrainConfig):
    head_lr: float = 0.05  # lr of the later tasks' heads; the first task uses `lr`


class FeatureExtraction(Strategy):
    """Backbone trained on task 1 only; later tasks train a head on frozen features."""

    name = "feature_extraction"
    Config = FeatureExtractionConfig
    kind = "shared"  # one backbone + T heads: tables count every parameter and buffer

    def before_task(self, task: Task) -> None:
        super().before_task(task)
        if task.index > 1:
            # BatchNorm momentum 0 keeps the running statistics fixed while heads train.
            for module in self.model.backbone.modules():
                if hasattr(module, "momentum") and hasattr(module, "running_mean"):
                    module.momentum = 0.0

    def train(self, task: Task, **overrides: Any) -> Any:
        if task.index > 1:
            overrides.setdefault("lr", self.config.head_lr)
        return super().train(task, **overrides)

    def make_optimizer(self, lr: float) -> Any:
        import torch

        return torch.optim.SGD(list(self._trainable()), lr=lr, momentum=self.config.momentum)

    def _trainable(self) -> Iterator[Any]:
        task = self.model.training_task
        if task == 1:
            yield from self.model.backbone.parameters()
        yield from self.model.heads[str(task)].parameters()


@hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(FeatureExtraction)
