"""Bytes a run writes to checkpoints, per task: ``python -m clbench.record_bytes [clbench run args]``.

Runs ``clbench run`` with the given arguments (``--out`` is required) and counts every file
written through ``clbench.checkpoint.write_verified`` into ``--out`` (not the goal-training runs
it may start): phase records (clbench.journal) and task checkpoints. Prints, per task, the phase
records' count and bytes, and both as a multiple of the final model's size (the model state of
the last task checkpoint, as ``torch.save`` writes it),
the measure of issue 13 ("phase records of a 20-task CPG paper-recipe run write ≤ 3× the final
model's size per task"). Example, a small proxy of CPG's paper schedule (10 prune stages and a
retrain per task)::

    python -m clbench.record_bytes run --strategy cpg --benchmark digits --device cpu --quiet \\
        --cpg.prune-stages 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95 --out /tmp/cpg-records
"""

from __future__ import annotations

import io
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

USAGE = "usage: python -m clbench.record_bytes run [clbench run options] --out DIR"


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status: ``clbench run``'s, or 2 (one line on stderr) when the arguments
    are not a ``run`` command with ``--out DIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.split("\n\n", 1)[0] + "\n" + USAGE)
        return 0
    if args[:1] == ["run"] and {"-h", "--help"} & set(args):
        from clbench.cli import main as cli_main

        return cli_main(args)  # clbench run's own options
    outs = [a.split("=", 1)[1] for a in args if a.startswith("--out=")]
    outs += [args[i + 1] for i, a in enumerate(args) if a == "--out" and i + 1 < len(args)]
    if args[:1] != ["run"] or len(outs) != 1 or not outs[0]:
        print(f"clbench.record_bytes: error: {USAGE} (exactly one --out, with its folder)", file=sys.stderr)
        return 2
    out = Path(outs[0])

    import torch

    from clbench import checkpoint, journal
    from clbench.cli import main as cli_main

    written: dict[str, dict[int, list[int]]] = {"phase": defaultdict(list), "task": defaultdict(list)}
    original = checkpoint.write_verified

    def counting(path: Path, payload: dict[str, Any]) -> None:
        original(path, payload)
        if path.parent.parent.resolve() != out.resolve():
            return  # a goal-training run started by this one (clbench.goal_training)
        kind = "phase" if "-phase-" in path.name else "task"
        written[kind][int(payload["task"])].append(path.stat().st_size)

    checkpoint.write_verified = counting  # task checkpoints
    journal.write_verified = counting  # phase records (imported by name)
    try:
        code = cli_main(args)
    finally:
        checkpoint.write_verified = original
        journal.write_verified = original
    last = checkpoint.latest(out)
    if code != 0 or last is None:
        return code or 1
    buffer = io.BytesIO()
    torch.save(last.payload["strategy"]["model"], buffer)
    model = len(buffer.getvalue())
    print(f"final model (last task checkpoint's model state): {model / 2**20:.3f} MiB")
    print("| task | phase records | phase MiB | × final model | task checkpoint MiB |")
    print("|---:|---:|---:|---:|---:|")
    total = 0
    for task in sorted(written["task"]):
        phases = written["phase"][task]
        total += sum(phases)
        task_mib = sum(written["task"][task]) / 2**20
        print(f"| {task} | {len(phases)} | {sum(phases) / 2**20:.3f} | {sum(phases) / model:.2f} | {task_mib:.3f} |")
    tasks = len(written["task"])
    print(f"mean per task: {total / max(tasks, 1) / model:.2f} × the final model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
