"""clbench: a plugin-based benchmark suite for task-incremental, parameter-isolation continual learning.

Importing this package is cheap on purpose (no torch, no avalanche): `clbench --help` and
`clbench list` must start in well under two seconds.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations (see :mod:`clbench.hookspecs`).
hookimpl = pluggy.HookimplMarker("clbench")

__all__ = ["__version__", "hookimpl"]
