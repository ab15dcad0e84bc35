"""Task checkpoints: atomic, checksummed, and found again after a crash.

After every finished task the runner writes ``checkpoints/task-NNN.pt`` (everything needed to
continue: the strategy's model and extra state, the random-number generators, the metric rows
so far, the elapsed wall time) and, beside it, ``task-NNN.pt.sha256``. Both are written to a
temporary file and renamed, the checksum last, so a checkpoint counts only once it is complete.
On resume the newest checkpoint whose checksum matches is used; a truncated or corrupted one is
reported and skipped in favour of the last good one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError
from clbench.results import atomic_write_bytes

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
FORMAT = 1
_NAME = re.compile(r"task-(\d{3,})\.pt")


class CheckpointError(ClbenchError):
    """No usable checkpoint, or one that does not belong to this run."""


@dataclass
class Checkpoint:
    task: int  # the last finished task (from 1)
    path: Path
    payload: dict[str, Any]


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, task: int, payload: dict[str, Any]) -> Path:
    """Write task ``task``'s checkpoint; once it is safely on disk, all but the previous one are
    removed (that one stays as the fallback should the newest be damaged later)."""

    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"task-{task:03d}.pt"
    write_verified(path, {"task": task, **payload})
    for older in folder.glob("task-*.pt"):
        match = _NAME.fullmatch(older.name)
        if match and int(match.group(1)) < task - 1:
            older.unlink(missing_ok=True)
            older.with_name(older.name + ".sha256").unlink(missing_ok=True)
    return path


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint whose checksum verifies. Damaged newer ones are reported and
    skipped; when none is usable, one line says that the run starts over from task 1 and why."""
    found, damaged = scan(run_dir)
    if found is None and damaged:
        log.warning(
            "starting over from task 1: no kept task checkpoint of %s is usable (%s)", run_dir, "; ".join(damaged)
        )
    for problem in damaged if found is not None else ():
        log.warning("checkpoint %s; falling back to an earlier one", problem)
    return found


def scan(run_dir: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint whose checksum verifies, and what is wrong with each newer one
    (``"<path> fails its checksum"``, newest first), without logging anything."""
    folder = run_dir / CHECKPOINT_DIR
    found = sorted(
        ((int(m.group(1)), p) for p in folder.glob("task-*.pt") if (m := _NAME.fullmatch(p.name))), reverse=True
    )
    damaged = []
    for task, path in found:
        payload, why = _verified(path, "checkpoint")
        if payload is not None:
            return Checkpoint(task, path, payload), damaged
        damaged.append(f"{path} {why}")
    return None, damaged


def write_verified(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` (with the format number) to ``path``, then its SHA-256 beside it;
    both atomically, the checksum last, so a file counts only once it is complete."""
    import torch

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_name(path.name + ".sha256"), (hashlib.sha256(data).hexdigest() + "\n").encode())


def read_verified(path: Path, what: str, fallback: str) -> dict[str, Any] | None:
    """What :func:`write_verified` wrote to ``path``, or None (after a warning that names the
    ``what`` and the ``fallback``) when its checksum is missing or does not match."""
    payload, why = _verified(path, what)
    if payload is None:
        log.warning("%s %s %s; %s", what, path, why, fallback)
    return payload


def recorded_digest(path: Path) -> str | None:
    """The SHA-256 written beside ``path`` by :func:`write_verified` (None when ``path`` or its
    checksum file is missing)."""
    digest_file = path.with_name(path.name + ".sha256")
    return digest_file.read_text().strip() if path.is_file() and digest_file.is_file() else None


def _verified(path: Path, what: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(payload, None)``, or ``(None, why)`` when the checksum is missing or does not match.

    Raises:
        CheckpointError: the file verifies but has another format number.
    """
    import torch

    data = path.read_bytes()
    expected = recorded_digest(path)
    if expected != hashlib.sha256(data).hexdigest():
        return None, "has no checksum file (interrupted while saving)" if expected is None else "fails its checksum"
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{what} {path} has format {payload.get('format')!r}, expected {FORMAT}")
    return payload, None
