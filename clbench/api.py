"""The public API for plugin authors: what a plugin may import, in one place.

Stability (docs/plugins.md, "What a plugin may import"): the names in ``__all__`` here, the
hookspecs in :mod:`clbench.hookspecs`, ``clbench.hookimpl`` and the test kit
:mod:`clbench.testing` keep their meaning and signatures within a minor version (0.x: changes
are announced in the changelog one minor version ahead). Every other module of clbench is
internal and may change in any release. Importing this module is cheap (no torch): ``clbench
list`` imports every plugin.
"""

from __future__ import annotations

from clbench import hookimpl
from clbench.accounting import KINDS
from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check
from clbench.errors import ClbenchError, UsageError
from clbench.isolation import MaskedStrategy
from clbench.network import TaskAwareNetwork
from clbench.strategy import FitResult, Strategy, StrategyContext, Task, TrainConfig

#: Modules a plugin may import (the test kit checks the example package against this list).
PUBLIC_MODULES = ("clbench", "clbench.api", "clbench.hookspecs", "clbench.testing")

__all__ = [
    "KINDS",
    "PUBLIC_MODULES",
    "Benchmark",
    "BenchmarkConfig",
    "ClbenchError",
    "FitResult",
    "MaskedStrategy",
    "Strategy",
    "StrategyContext",
    "Task",
    "TaskAwareNetwork",
    "TaskData",
    "TrainConfig",
    "UsageError",
    "check",
    "hookimpl",
]
