"""Provenance of a run's plugins: what ``environment.json`` records under ``providers`` and
what ``--resume`` does with it.

The record (written by the runner from :meth:`clbench.manager.Plugins.provenance`) names the
distribution and version, or the ``--plugin`` file and its sha256, that provided the run's
strategy and benchmark, and every plugin file the run loaded. ``--resume`` reloads those files
(and says so on stderr) so that a run started with ``--plugin FILE`` resumes without the flag.
Importing this module is cheap (no torch).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clbench.manager import file_sha256

ENVIRONMENT_FILE = "environment.json"


def recorded(run_dir: Path) -> dict[str, Any]:
    """The ``providers`` record of a run ({} for runs from before it was recorded, or none)."""
    try:
        env = json.loads((Path(run_dir) / ENVIRONMENT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    providers = env.get("providers") if isinstance(env, dict) else None
    return providers if isinstance(providers, dict) else {}


def files_to_reload(run_dir: Path, record: dict[str, Any], given: Sequence[str | Path]) -> list[str]:
    """Plugin files the run loaded that ``--plugin`` does not name again and that still exist;
    one line on stderr for each (and for a file that changed since, or is gone)."""
    named = {Path(p).resolve() for p in given}
    reload = []
    for item in record.get("plugin_files", []):
        path = Path(str(item.get("path", "")))
        if not item.get("path") or path.resolve() in named:
            continue
        if not path.is_file():
            print(f"clbench: --resume {run_dir}: the run loaded plugin file {path}, which is gone", file=sys.stderr)
            continue
        same = file_sha256(path) == item.get("sha256")
        changed = "" if same else " (changed since the run started: its sha256 differs)"
        print(
            f"clbench: --resume {run_dir}: reloading plugin file {path} recorded in the run{changed}", file=sys.stderr
        )
        reload.append(str(path))
    return reload


def hint(record: dict[str, Any], kind: str, name: str) -> str:
    """For an unknown ``kind`` ``name`` in a resumed run: where the run got it from."""
    source = record.get(kind)
    if not isinstance(source, dict) or source.get("name", name) != name:
        return ""
    if source.get("kind") == "file":
        return f"; the run loaded it from plugin file {source.get('path')}: restore that file or pass --plugin FILE"
    if source.get("kind") == "distribution":
        return (f"; the run got it from {source.get('distribution')} {source.get('version')}: install that "
                "distribution, or re-enable it")  # fmt: skip
    return ""
