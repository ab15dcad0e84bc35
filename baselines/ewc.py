"""EWC: finetune with a quadratic penalty that anchors each weight in proportion to its
Fisher importance for the earlier tasks.

Cite: Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 114(13),
2017, doi:10.1073/pnas.1611835114 (arXiv:1612.00796). Online variant: Schwarz et al., "Progress &
Compress", ICML 2018 (arXiv:1805.06370).

Runs Avalanche's own ``EWCPlugin`` (avalanche-lib 0.6.0, ``training/plugins/ewc.py``) inside
clbench's loop on the shared backbone with a head per task (task-incremental, multi-head). The
plugin keys its anchors and importances by ``clock.train_exp_counter``, which restarts in every
fresh clbench loop; ``TaskClock`` (``_avalanche.py``) sets it to the task index − 1, so
``separate`` mode really sums one penalty per earlier task. Avalanche's penalty is
``lambda · Σ F (θ − θ*)²`` with ``F`` the mean over mini-batches of the squared batch gradient
(no ½, unlike the paper's Eq. 3), so lambdas are not interchangeable with FACIL's.

That penalty has curvature ``2λ·ΣF`` per weight, and SGD diverges on a quadratic whose curvature
times the lr exceeds :func:`sgd_stability_limit`. In separate mode ``ΣF`` grows with every task,
so a λ that is stable early can turn a weight's iteration unstable later; behind a BatchNorm the
weight's scale does not change the loss, so it grows unseen until the loss overflows (measured on
the CIFAR CPU table, baselines/results/cifar100_20-cpu.md). Each task therefore records
``ewc_stiffness`` and warns, naming the fix, once the next task's SGD would diverge.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from clbench.config import check
from clbench.strategy import Task, TrainConfig
from clbench_baselines._regularised import Regularised

log = logging.getLogger(__name__)


class Stiffness(NamedTuple):
    """EWC's penalty against SGD's stability limit (:meth:`EWC.penalty_stiffness`)."""

    value: float  # lr · (2λ·F + weight_decay) / sgd_stability_limit at the stiffest weight; > 1 diverges
    parameter: str  # the parameter holding it, as Avalanche names it ("net.backbone.0.weight")
    count: int  # weights above 1 in all parameters
    importance: float  # the stiffest weight's summed importance F


def sgd_stability_limit(momentum: float, nesterov: bool) -> float:
    """The largest ``lr × curvature`` at which PyTorch's SGD still converges on a quadratic.

    Heavy-ball momentum ``m`` (PyTorch's ``v ← m·v + g; θ ← θ − lr·v``): ``2(1 + m)``; with
    ``nesterov`` (``θ ← θ − lr·(g + m·v)``): ``2(1 + m)/(1 + 2m)``; 2 without momentum. Both follow
    from Jury's conditions on the two-step recurrence; ``tests/unit/test_baselines_regularisation.py``
    checks them against ``torch.optim.SGD`` on either side of the bound.
    """
    return 2 * (1 + momentum) / (1 + 2 * momentum) if nesterov and momentum > 0 else 2 * (1 + momentum)


@dataclass(frozen=True)
class EWCConfig(TrainConfig):
    # continual-learning-baselines experiments/permuted_mnist/ewc.py: ewc_lambda 1, ewc_mode
    # 'separate', ewc_decay None (benchmarks tune lambda in their recipes).
    ewc_lambda: float = 1.0
    mode: Literal["separate", "online"] = "separate"  # separate: one anchor per earlier task (the paper)
    decay_factor: float = 1.0  # online mode only: importance ← decay·old + new (1 = plain sum)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ewc_lambda >= 0, "ewc", "ewc_lambda", ">= 0", self.ewc_lambda)
        check(0 < self.decay_factor <= 1, "ewc", "decay_factor", "in (0, 1]", self.decay_factor)


class EWC(Regularised):
    """Finetune + Avalanche's EWCPlugin (Fisher-weighted anchor to earlier tasks' weights)."""

    name = "ewc"
    Config = EWCConfig

    def make_plugin(self) -> Any:
        from clbench_baselines._avalanche import MeteredEWCPlugin

        cfg: EWCConfig = self.config
        decay = cfg.decay_factor if cfg.mode == "online" else None  # the plugin rejects a decay in separate mode
        return MeteredEWCPlugin(cfg.ewc_lambda, mode=cfg.mode, decay_factor=decay)

    def penalty_stiffness(self) -> Stiffness:
        """How the penalty the next task trains under compares with SGD's stability limit:
        :class:`Stiffness` at the stiffest weight (``F`` summed over the earlier tasks in separate
        mode, the accumulated importance in online mode). Earlier tasks' heads, which no later
        task trains, are left out. All zero before any importance exists."""
        import torch

        cfg: EWCConfig = self.config
        importances = self.regularizer.importances
        if not importances:
            return Stiffness(0.0, "", 0, 0.0)
        tasks = sorted(importances) if cfg.mode == "separate" else [max(importances)]
        # The plugin names parameters as its loop sees the model ("net." + name). Earlier tasks'
        # heads train no more, so their curvature cannot make the next task diverge.
        heads = tuple(f"net.heads.{t}." for t in getattr(self.model, "heads", {}))
        summed: dict[str, torch.Tensor] = {}
        for task in tasks:
            for name, data in importances[task].items():
                if name.startswith(heads):
                    continue
                summed[name] = data.data + summed[name] if name in summed else data.data.clone()
        scale = cfg.lr / sgd_stability_limit(cfg.momentum, cfg.nesterov)
        worst = Stiffness(0.0, "", 0, 0.0)
        count = 0
        for name, total in summed.items():
            if not total.numel():
                continue
            stiffness = scale * (2 * cfg.ewc_lambda * total + cfg.weight_decay)
            count += int((stiffness > 1).sum())
            peak = int(stiffness.argmax())
            if float(stiffness.flatten()[peak]) > worst.value:
                worst = Stiffness(float(stiffness.flatten()[peak]), name, 0, float(total.flatten()[peak]))
        return worst._replace(count=count)

    def stable_lambda(self, importance: float) -> float:
        """The largest λ at which SGD stays stable on a weight of summed importance ``importance``
        (0 when the weight decay alone is past the limit); ``inf`` for an unimportant weight."""
        cfg: EWCConfig = self.config
        room = sgd_stability_limit(cfg.momentum, cfg.nesterov) / cfg.lr - cfg.weight_decay
        return max(room, 0.0) / (2 * importance) if importance > 0 else math.inf

    def task_records(self, task: Task) -> dict[str, float]:
        """Adds ``ewc_stiffness`` (:meth:`penalty_stiffness` for the next task) and, when it
        exceeds 1 and a task follows, warns, naming the fix."""
        records = super().task_records(task)
        stiffness = self.penalty_stiffness()
        records["ewc_stiffness"] = stiffness.value
        if stiffness.value > 1 and task.index < self.context.num_tasks:
            cfg: EWCConfig = self.config
            log.warning(
                "EWC after task %d: SGD diverges on the penalty alone for %d weight(s) (stiffest: %s, "
                "lr·(2λ·ΣF + weight_decay) at %.2f× the stability limit %.2f of momentum %g): expect them to "
                "grow until the loss is non-finite; lower --ewc.ewc-lambda (below %.3g) or --ewc.lr",
                task.index, stiffness.count, stiffness.parameter, stiffness.value,
                sgd_stability_limit(cfg.momentum, cfg.nesterov), cfg.momentum, self.stable_lambda(stiffness.importance),
            )  # fmt: skip
        return records
