"""What both training engines hand back to the strategy layer, and how they count its steps.

Kept below :mod:`clbench.strategy`, :mod:`clbench.loop` and :mod:`clbench.engine` so that the
engines import it instead of the strategy module above them (the strategy picks the engine, the
engine never reaches back up). :mod:`clbench.strategy` re-exports both names for plugins.
Importing this module is cheap (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FitResult", "iterations_per_epoch"]


def iterations_per_epoch(samples: int, batch_size: int) -> int:
    """Training iterations per epoch; a last batch of one sample is dropped (it breaks BatchNorm)."""
    return samples // batch_size + (samples % batch_size > 1)


@dataclass
class FitResult:
    train_accuracy: float
    train_loss: float
