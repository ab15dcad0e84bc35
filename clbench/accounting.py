"""How a strategy's model size is counted, declared by the strategy (``Strategy.kind``).

Tables and summaries read a run's kind (recorded in its ``environment.json``) instead of a list
of strategy names: a plugin strategy picks the kind whose counting its ``task_records`` follows,
or describes its own in ``Strategy.size_note``. Importing this module is cheap (no torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: kind -> how ``size_mb`` / ``params`` are counted (the table footnote).
KINDS: dict[str, str] = {
    "packing": "4 bytes per weight of the shared masked layers + 1 byte per weight for the owner mask + "
    "per-task state (BN, biases, heads, packed pick masks); params = weights of the masked layers, growth included",
    "masking": "as packing: the shared masked layers once, their owner mask, and per task its binary pick mask "
    "(packed, 1 bit per weight), BN, biases and head",
    "regularisation": "every parameter and buffer at its element size (one backbone + T heads); the penalty's "
    "stored state (old weights, importances) is not counted",
    "replay": "every parameter and buffer at its element size; the replay buffer is not counted",
    "joint": "every parameter and buffer at its element size (one backbone trained on all tasks at once + T heads)",
    "individual": "every parameter and buffer at its element size, all T networks",
    "shared": "every parameter and buffer at its element size (one backbone + T heads)",
    "other": "every parameter and buffer of the model at its element size (Strategy.task_records)",
}

#: Kinds whose ``paper_size_mb`` record follows the papers' count (docs/results.md).
PAPER_SIZE = (
    "paper_mb: the size as the papers count it (docs/results.md): owner masks at ⌈log2(T+1)⌉ bits per "
    "weight and each pick mask at 1 bit per earlier task's weight."
)


def check_kind(kind: str, strategy: str) -> None:
    """Raise ValueError naming the valid kinds when ``kind`` is not one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"strategy {strategy!r} declares kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def record(strategy_cls: type) -> dict[str, str]:
    """What ``environment.json`` keeps of a strategy's accounting."""
    kind = str(getattr(strategy_cls, "kind", "other"))
    return {"kind": kind, "size_note": str(getattr(strategy_cls, "size_note", "") or KINDS.get(kind, ""))}


def recorded(run_dir: Path) -> dict[str, str] | None:
    """The accounting a run recorded (None for runs from before it was recorded)."""
    try:
        env = json.loads((Path(run_dir) / "environment.json").read_text())
    except (OSError, ValueError):
        return None
    found = env.get("providers", {}).get("strategy", {}).get("accounting") if isinstance(env, dict) else None
    return found if isinstance(found, dict) and "kind" in found else None


def size_notes(accounting: Mapping[str, Mapping[str, Any]], paper_column: bool) -> list[str]:
    """Footnotes for the size columns: one clause per way of counting found among the table's
    strategies (``accounting``: strategy -> :func:`record`), grouping the strategies that share it."""
    by_text: dict[str, list[str]] = {}
    for strategy, acc in accounting.items():
        label = acc.get("kind", "other")
        by_text.setdefault(f"{label}: {acc.get('size_note') or KINDS.get(label, KINDS['other'])}", []).append(strategy)
    clauses = [f"{text.split(': ', 1)[0]} ({', '.join(sorted(names))}): {text.split(': ', 1)[1]}"
               for text, names in by_text.items()]  # fmt: skip
    notes = ["size_mb / params: what the strategy records after the last task, counted by its declared kind. "
             + "; ".join(clauses) + "."] if clauses else []  # fmt: skip
    if paper_column:
        notes.append(PAPER_SIZE)
    return notes
