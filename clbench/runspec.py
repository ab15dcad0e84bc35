"""What a run is: the ``[run]`` options a user sets, the resolved :class:`RunSpec`, and the
:class:`RunState` observers see while it runs.

Below the runner, the CLI and the hook specifications, which all name these types: keeping them
here lets :mod:`clbench.hookspecs` describe its observers without importing the runner that
calls them. Importing this module is cheap (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import config as cfg

if TYPE_CHECKING:
    from clbench.strategy import Strategy, Task

__all__ = ["RunOptions", "RunSpec", "RunState"]


@dataclass(frozen=True)
class RunOptions:
    """Run-level options: the ``[run]`` section of a config file, or ``clbench run``'s own flags."""

    seed: int = 0
    device: str = "auto"
    out: str | None = None
    overwrite: bool = False
    quiet: bool = False
    deterministic: bool = False
    phase_checkpoints: bool = True
    recipe: str | None = None
    epochs: int | None = None
    data_root: str | None = None
    strategy: str | None = None
    benchmark: str | None = None

    def __post_init__(self) -> None:
        cfg.check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "run",
            "device",
            "auto, cpu, cuda or cuda:N",
            self.device,
        )
        cfg.check(self.seed >= 0, "run", "seed", ">= 0", self.seed)
        cfg.check(self.epochs is None or self.epochs >= 0, "run", "epochs", ">= 0", self.epochs)


@dataclass
class RunSpec:
    """Everything that defines a run, resolved and validated."""

    strategy: str
    benchmark: str
    strategy_config: Any
    benchmark_config: Any
    recipe: str
    seed: int = 0
    device: str = "auto"
    out: Path | None = None
    overwrite: bool = False
    resume: bool = False
    quiet: bool = False
    deterministic: bool = False
    phase_checkpoints: bool = True  # a checkpoint after every phase, not only after every task
    runs_root: Path = Path("runs")
    publish_goals: bool = True  # a goal-producing run also writes the keyed goal file (not inside finetune-max)
    notes: tuple[str, ...] = ()  # how the config was resolved (catch-all recipe values): --print-config shows them


@dataclass
class RunState:
    """What observers (``clbench_after_task`` …) see of a run in progress."""

    spec: RunSpec
    run_id: str
    run_dir: Path
    tasks: list[Task] = field(default_factory=list)
    strategy: Strategy | None = None
