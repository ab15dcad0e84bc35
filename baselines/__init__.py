"""First-party baselines, installed as ``clbench_baselines``: the methods PackNet, PAE and CPG
are compared against, run through the same runner and tables."""

from __future__ import annotations

from collections.abc import Callable

import clbench
from clbench.strategy import Strategy
from clbench_baselines.finetune import Finetune
from clbench_baselines.individual import Individual


@clbench.hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(Finetune)
    register(Individual)
