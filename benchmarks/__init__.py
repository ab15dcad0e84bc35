"""First-party benchmark definitions, installed as ``clbench_benchmarks``.

Registered through the ``clbench`` entry-point group like any third-party plugin.
Each module is imported lazily by its definition's methods; registering is cheap.
"""

from __future__ import annotations

from collections.abc import Callable

import clbench
from clbench.benchmark import Benchmark
from clbench_benchmarks.digits import Digits


@clbench.hookimpl
def clbench_register_benchmarks(register: Callable[[type[Benchmark]], None]) -> None:
    register(Digits)
