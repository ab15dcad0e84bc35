"""SI (Synaptic Intelligence): finetune with a quadratic penalty whose per-weight strength is
each weight's contribution to the drop in loss along its training path on earlier tasks.

Cite: Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017
(arXiv:1703.04200).

Runs Avalanche's own ``SynapticIntelligencePlugin`` (avalanche-lib 0.6.0,
``training/plugins/synaptic_intelligence.py``) in clbench's loop on the shared backbone with a
head per task. Its state (anchors, importances, path integrals) lives on the plugin, which the
strategy keeps across tasks; ``TaskClock`` fixes the experience counter it indexes lambdas by.
Heads are excluded (``excluded_parameters``): they belong to one task each, so they need no
protection, and the plugin reads ``param.grad`` of every parameter it tracks, which is ``None``
for the heads of tasks other than the current one. BatchNorm parameters are excluded by the
plugin itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clbench.config import check
from clbench.strategy import TrainConfig
from clbench_baselines._regularised import Regularised

HEAD_PARAMETERS = "net.heads.*"  # parameter names as the loop's TaskRoutedModel sees them


@dataclass(frozen=True)
class SIConfig(TrainConfig):
    # continual-learning-baselines experiments/split_mnist/synaptic_intelligence.py (multi-head
    # Split-MNIST, the task-incremental setting): si_lambda 1, si_eps 0.001.
    si_lambda: float = 1.0
    eps: float = 0.001  # the paper's damping ξ (Eq. 5)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.si_lambda >= 0, "si", "si_lambda", ">= 0", self.si_lambda)
        check(self.eps > 0, "si", "eps", "> 0", self.eps)


class SI(Regularised):
    """Finetune + Avalanche's SynapticIntelligencePlugin (path-integral importance penalty)."""

    name = "si"
    Config = SIConfig

    def make_plugin(self) -> Any:
        from clbench_baselines._avalanche import MeteredSIPlugin

        cfg: SIConfig = self.config
        return MeteredSIPlugin(cfg.si_lambda, eps=cfg.eps, excluded_parameters=[HEAD_PARAMETERS])
