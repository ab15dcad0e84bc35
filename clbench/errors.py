"""Errors that reach the user as one clear line (the CLI maps them to exit code 2)."""

from __future__ import annotations


class ClbenchError(Exception):
    """Base of every error shown to the user as one clear line."""


class UsageError(ClbenchError):
    """Bad command-line input, configuration or name."""


class RegistryError(ClbenchError):
    """A name registered twice, or looked up and not found."""


class ResultsExistError(ClbenchError):
    """An output directory already holds results and the user did not ask to replace them."""


class RunInterrupted(ClbenchError):
    """Ctrl-C (SIGINT) during a run: finished tasks are saved and the run can be resumed."""


class NonFiniteLossError(ClbenchError):
    """The training loss became NaN or infinite (either engine; defined here so that the device
    engine can raise it without importing Avalanche through ``clbench.loop``)."""
