"""First-party benchmark definitions, installed as ``clbench_benchmarks``.

Registered through the ``clbench`` entry-point group like any third-party plugin.
Each module is imported lazily by its definition's methods; registering is cheap.
"""

from __future__ import annotations

from collections.abc import Callable

import clbench
from clbench.benchmark import Benchmark
from clbench_benchmarks.cifar100_20 import Cifar100_20
from clbench_benchmarks.digits import Digits
from clbench_benchmarks.facial4 import Facial4
from clbench_benchmarks.facial4_mini import Facial4Mini
from clbench_benchmarks.fine_grained6 import FineGrained6


@clbench.hookimpl
def clbench_register_benchmarks(register: Callable[[type[Benchmark]], None]) -> None:
    register(Digits)
    register(Cifar100_20)
    register(Facial4Mini)
    register(FineGrained6)
    register(Facial4)
