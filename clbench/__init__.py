"""clbench: a plugin-based benchmark suite for task-incremental, parameter-isolation continual learning.

Importing this package is cheap on purpose (no torch, no avalanche): `clbench --help` and
`clbench list` must start in well under two seconds.

Layers, top to bottom. Data flows config → benchmark → runner → strategy → engine → results: a
module imports (at run time, function-level imports included) only from its own layer or the
layers below it, and the import graph has no cycle. Names under ``if TYPE_CHECKING:`` may point
up (a hook's argument type), as long as the module-level graph stays acyclic too. The results
views stand apart: they read run directories and never import the runner or anything it trains
with. ``tests/unit/test_import_layers.py`` reads this table and checks all of it::

    entry:       cli, api, testing, throughput, loop_overhead, record_bytes
    views:       tables, compare, report, selection, provenance
    experiment:  experiment, sweep, sweep_grid
    runner:      runner, goal_training
    plugins:     manager, registry, hookspecs, recipes, runspec
    strategy:    strategy, isolation
    engine:      engine, loop, fitting, optim, checkpoint, journal, statedelta, triplets, verification
    model, data: nn, network, datasets, benchmark, taskcheck
    records:     results, goals, accounting
    base:        __init__, config, errors, field_docs

``api`` is the public surface for plugins (docs/plugins.md); ``nn`` and ``datasets`` stand for
their subpackages.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations (see :mod:`clbench.hookspecs`).
hookimpl = pluggy.HookimplMarker("clbench")

__all__ = ["__version__", "hookimpl"]
