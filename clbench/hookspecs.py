"""Hook specifications: the contract between clbench and its plugins.

Every plugin (first-party or third-party) is a module registered under the ``clbench``
entry-point group. It implements some of the hooks below with :data:`clbench.hookimpl`.
Hooks are for things every plugin takes part in (registration, observing a run); the steps
of one selected strategy (compact / pick / grow) are methods of its class, not hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.runspec import RunState
    from clbench.strategy import Strategy

hookspec = pluggy.HookspecMarker("clbench")


@hookspec
def clbench_register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    """Register strategy classes: call ``register(cls)`` once per :class:`~clbench.strategy.Strategy`.

    The class's ``name`` is its registry key (snake_case, equal to the CLI value). A name
    registered twice is an error that names both providers.
    """


@hookspec
def clbench_register_benchmarks(register: Callable[[type[Benchmark]], None]) -> None:
    """Register benchmark classes: call ``register(cls)`` once per :class:`~clbench.benchmark.Benchmark`."""


@hookspec
def clbench_run_start(run: RunState) -> None:
    """Observe the start of a run (its directory exists, its resolved config is saved)."""


@hookspec
def clbench_after_task(run: RunState, task: int, rows: list[dict[str, Any]]) -> None:
    """Observe the end of a task: ``rows`` are the metric rows it added (already written to disk)."""


@hookspec
def clbench_run_end(run: RunState, summary: dict[str, Any]) -> None:
    """Observe the end of a completed run with its summary (mean accuracy, wall time, memory...)."""


@hookspec
def clbench_register_recipes(register: Callable[..., None]) -> None:
    """Contribute recipe entries: ``register(benchmark, recipe, strategy, values, note=None)``.

    ``values`` (``{config_field: value}``) apply to ``strategy``, one the same plugin registers,
    when it runs ``benchmark`` with ``--recipe recipe`` (e.g. its paper schedule shrunk for
    ``digits``/``tiny``).
    A recipe the benchmark does not define is added to it and needs a one-line ``note`` (its
    purpose and cost). An entry the benchmark defines itself, or another plugin already added,
    cannot be replaced, and ``strategy`` cannot be the catch-all ``"*"``: the plugin is then
    reported broken. Precedence: docs/plugins.md, "Recipes".
    """
