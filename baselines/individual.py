"""Individual models: one network per task, trained from scratch: the accuracy goals.

The CPG recipe's goals (``baseline_cifar100.sh``, ALGORITHMS.md §1.9): every task gets its own
VGG16-BN trained from scratch with the same schedule as CPG's finetune phase (lr 1e-2, 100
epochs, ×0.1 at 50 and 80), by ``packnet_cifar100_main_normal.py --mode finetune``: SGD with
Nesterov momentum and a manual weight decay of 4e-5 on the conv and linear weights only (BN,
biases and heads are not decayed). The goal of a task is its validation accuracy after
training. The strategy collects them (``produced_goals``); the runner writes them with their
provenance into the run directory (``goals.csv``) and as a keyed goal file under
``runs/goals/<benchmark>/`` (clbench.goals), where PAE and CPG find them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.strategy import Strategy, Task, TrainConfig

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndividualConfig(TrainConfig):
    epochs: int = 100  # baseline_cifar100.sh: 100 epochs
    lr: float = 1e-2  # baseline_cifar100.sh: lr 1e-2
    lr_milestones: tuple[int, ...] = (50, 80)  # CPG main L431-436
    batch_size: int = 32
    eval_batch_size: int = 100
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5


def _separate_networks(factory: Callable[[float], nn.Module]) -> nn.Module:
    from torch import nn

    from clbench.nn.multihead import MultiHeadNet

    class SeparateNetworks(nn.Module):
        """One MultiHeadNet per task; ``activate(k)`` routes the forward pass to network k."""

        def __init__(self) -> None:
            super().__init__()
            self.nets = nn.ModuleDict()
            self.active_task = self.training_task = 0

        def begin_task(self, task: int, num_classes: int, head: str = "linear", **_: object) -> None:
            net = MultiHeadNet(factory).to(next(iter(self.parameters()), _cpu()).device)
            net.begin_task(task, num_classes, head=head)
            self.nets[str(task)] = net
            self.active_task = self.training_task = task

        def activate(self, task: int) -> None:
            self.nets[str(task)].activate(task)
            self.active_task = task

        def finish_task(self) -> None:
            self.nets[str(self.training_task)].finish_task()
            self.training_task = 0

        def trainable_parameters(self) -> Iterator[nn.Parameter]:
            return self.nets[str(self.training_task)].trainable_parameters()

        def get_extra_state(self) -> dict[str, Any]:
            return {"tasks": list(self.nets), "active_task": self.active_task, "training_task": self.training_task}

        def set_extra_state(self, state: dict[str, Any]) -> None:
            # Empty networks to load into; each one's own extra state rebuilds its heads.
            self.nets = nn.ModuleDict({k: MultiHeadNet(factory) for k in state["tasks"]})
            self.active_task, self.training_task = state["active_task"], state["training_task"]

        def forward(self, x: Any) -> Any:
            return self.nets[str(self.active_task)](x)

        def features(self, x: Any) -> Any:
            return self.nets[str(self.active_task)].features(x)

    return SeparateNetworks()


def _cpu() -> Any:
    import torch

    return torch.zeros(())


class Individual(Strategy):
    """One network per task, from scratch (upper reference; writes the accuracy goals)."""

    name = "individual"
    kind = "individual"
    Config = IndividualConfig
    produces_goals: ClassVar[str] = "individual"  # the producer name in goal files (clbench.goals)

    def build_model(self) -> nn.Module:
        return _separate_networks(self.context.backbone_factory)

    def before_task(self, task: Task) -> None:
        super().before_task(task)
        self.model.to(self.context.device)

    def extra_state(self) -> dict[str, Any]:
        return {"goals": dict(getattr(self, "_goals", {}))}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._goals = dict(state["goals"])

    def make_optimizer(self, lr: float) -> Any:
        """SGD (Nesterov) with weight decay on the conv and linear weights of the task's backbone
        only, as upstream's manual decay (``utils/packnet_prune.py``: ``grad += wd·W`` on the
        shared conv/linear weights; BN, biases and the classifier heads are not decayed)."""
        import torch
        from torch import nn

        cfg = self.config
        net = self.model.nets[str(self.model.training_task)]
        decayed = {id(m.weight) for m in net.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        params = list(self.model.trainable_parameters())
        groups = [
            {"params": [p for p in params if id(p) in decayed], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
        ]
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)

    def after_task(self, task: Task) -> None:
        super().after_task(task)
        self._goals = getattr(self, "_goals", {})
        self._goals[task.name] = self.evaluate([task], "valid")[task.index]

    def produced_goals(self) -> dict[str, float]:
        """Validation accuracy (fraction) per finished task's name: the accuracy goals."""
        return dict(getattr(self, "_goals", {}))
