"""Naive: Avalanche's name for finetuning, registered so Avalanche users find it.

Cite: Avalanche (Lomonaco et al., "Avalanche: an End-to-End Library for Continual Learning",
CVPR-W 2021), ``avalanche.training.Naive`` (avalanche-lib 0.6.0,
``training/supervised/strategy_wrappers.py``): ``SupervisedTemplate`` with no plugins, i.e. plain
SGD on each experience in turn with no regularisation. Here it is the ``finetune`` baseline
under its Avalanche name: the same shared backbone, a head per task, a fresh SGD per task.
"""

from __future__ import annotations

from clbench_baselines.finetune import Finetune


class Naive(Finetune):
    """Avalanche's Naive: finetune under Avalanche's name (no regularisation, lower bound)."""

    name = "naive"
