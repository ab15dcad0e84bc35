"""First-party baselines, installed as ``clbench_baselines``: the methods PackNet, PAE and CPG
are compared against, run through the same runner and tables."""

from __future__ import annotations

from collections.abc import Callable

import clbench
from clbench.strategy import Strategy
from clbench_baselines.ewc import EWC
from clbench_baselines.finetune import Finetune
from clbench_baselines.finetune_previous import FinetunePrevious
from clbench_baselines.individual import Individual
from clbench_baselines.joint import JointAlternating, JointDynamic, JointMixed
from clbench_baselines.lwf import LwF
from clbench_baselines.naive import Naive
from clbench_baselines.si import SI


@clbench.hookimpl
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(Finetune)
    register(Individual)
    register(FinetunePrevious)
    register(Naive)
    register(EWC)
    register(LwF)
    register(SI)
    register(JointAlternating)
    register(JointMixed)
    register(JointDynamic)
