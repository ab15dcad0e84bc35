"""The error raised for missing, partial or unreadable data (the CLI prints it and exits 2)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from clbench.errors import ClbenchError


class DataError(ClbenchError):
    """Data is missing, partial or unreadable; the message says where and what was expected."""


def missing_data_error(what: str, root: Path, missing: Iterable[str], layout: str) -> DataError:
    """Build the error for a data root that lacks folders or files.

    The first line names the directory looked in, what is missing and the fix (``--data-root``);
    the lines after it give the expected layout, which the CLI prints under ``--verbose``, so the
    user can fix the path or the extraction without reading the code.
    """
    missing_list = ", ".join(missing)
    return DataError(
        f"{what} not found under {root}: missing {missing_list}; point --data-root at the folder that holds "
        f"them (--verbose shows the expected layout)\nExpected layout:\n{layout.rstrip()}"
    )
