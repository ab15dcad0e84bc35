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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from clbench.config import check
from clbench.strategy import TrainConfig
from clbench_baselines._regularised import Regularised


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
