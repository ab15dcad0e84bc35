"""The error raised for missing, partial or unreadable data (the CLI prints it and exits 2)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from clbench.errors import ClbenchError


class DataError(ClbenchError):
    """Data is missing, partial or unreadable; the message says where and what was expected."""


def missing_data_error(what: str, root: Path, missing: Iterable[str], layout: str) -> DataError:
    """Build the error for a data root that lacks folders or files.

    The message names the directory looked in, what is missing and the expected layout, so the
    user can fix the path or the extraction without reading the code.
    """
    missing_list = ", ".join(missing)
    return DataError(f"{what} not found under {root}: missing {missing_list}. Expected layout:\n{layout.rstrip()}")
