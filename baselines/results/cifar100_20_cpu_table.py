"""Write the measured part of baselines/results/cifar100_20-cpu.md (and all of its .csv) from the
run directories of ``cifar100_20-cpu.sh``, and from sweeps whose setting was chosen on validation.

    python baselines/results/cifar100_20_cpu_table.py WORK_DIR [SWEEP_DIR ...]

Only finished runs (with summary.json) count. A SWEEP_DIR (``clbench sweep``) holds one strategy's
settings; the one with the best validation accuracy (``clbench table SWEEP_DIR --select val``) is
the table's row for that strategy, in place of any run of it in WORK_DIR. The generated block sits
between the markers below; the rest of the .md (the reviewer's reading) is written by hand and
kept as it is.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from clbench import selection, tables
from clbench.results import atomic_write_text

HERE = Path(__file__).resolve().parent
MD, CSV = HERE / "cifar100_20-cpu.md", HERE / "cifar100_20-cpu.csv"
BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"
ORDER = ("individual", "finetune", "ewc", "lwf", "si", "joint_mixed", "packnet", "pae", "cpg")
PUBLISHED = HERE.parent / "reference" / "cifar100_20.csv"


def clbench(*args: str) -> str:
    exe = Path(sys.executable).with_name("clbench")
    return subprocess.run([str(exe), *args], check=True, capture_output=True, text=True).stdout


def finished(work: Path) -> list[Path]:
    """Finished run directories (``<strategy>-s<seed>`` with summary.json), in table order."""
    runs = [p for p in sorted(work.glob("*-s*")) if (p / "summary.json").is_file()]
    rank = {s: i for i, s in enumerate(ORDER)}
    return sorted(runs, key=lambda p: (rank.get(p.name.rsplit("-s", 1)[0], len(ORDER)), p.name))


@functools.cache
def strategy_of(run: Path) -> str:
    return tables.load_run(run).strategy  # read once per run: it parses metrics.csv


def chosen(sweep: Path) -> tuple[list[Path], list[str]]:
    """The run directories of the setting chosen on validation in ``sweep``, and a line per setting
    compared (its hyperparameters, mean final validation accuracy, run wall time; or why it has no
    score), for the reader to see what the choice was made from."""
    runs = tables.load_runs(tables.find_run_dirs([sweep]))
    choices = selection.select_on_validation(runs)
    if len(choices) != 1:
        raise SystemExit(f"{sweep}: expected one strategy's settings, found {len(choices)} experiments")
    lines = []
    for run in runs:
        name = run.path.name
        if not run.summary:
            log = sweep / "logs" / f"{name}.log"
            logged = log.read_text().strip().splitlines() if log.is_file() else ["no log"]
            last = logged[-1] if logged else "empty log"
            lines.append(f"| {name} | not finished | | {last} |")
            continue
        picked = " **(chosen)**" if any(r.path == run.path for r in choices[0].runs) else ""
        score = 100 * selection.validation_score(run)
        lines.append(f"| {name}{picked} | {score:.2f} | {run.summary['wall_seconds']:.0f} | |")
    return [r.path for r in choices[0].runs], lines


def times(work: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """(strategy, seed) -> (wall seconds summed over the lane script's attempts, attempts), from
    times.csv. An attempt killed outright (reboot, SIGKILL) wrote no row and is not counted."""
    total: dict[tuple[str, str], tuple[float, int]] = {}
    path = work / "times.csv"
    if path.is_file():
        for row in csv.reader(path.open()):
            key = (row[0], row[1])
            seconds, attempts = total.get(key, (0.0, 0))
            total[key] = (seconds + float(row[4]), attempts + 1)
    return total


def span(work: Path, swept: set[str]) -> str:
    """The lane script's wall time from times.csv (first start to last end, and the attempts'
    sum); ``swept``: strategies whose row comes from a sweep instead (timed in its own table)."""
    path = work / "times.csv"
    rows = list(csv.reader(path.open())) if path.is_file() else []
    if not rows:
        return "Whole table: no times.csv."
    first, last = min(int(r[2]) for r in rows), max(int(r[3]) for r in rows)
    total = sum(float(r[4]) for r in rows)
    done = {r[0] for r in rows if len(r) < 6 or r[5] == "0"}
    scripted = [s for s in ORDER if s not in swept]
    what = (
        f"The lane script's {len(scripted)} strategies"
        if set(scripted) <= done
        else f"Runs so far ({len(done & set(scripted))} of {len(scripted)} scripted strategies done)"
    )
    failed = sorted({r[0] for r in rows} - done)
    also = f"; attempts that failed count too ({', '.join(failed)})" if failed else ""
    swept_note = f" {', '.join(sorted(swept))}: the sweep below." if swept else ""
    return (
        f"{what} (times.csv, both lanes): first start to last end {last - first} s = "
        f"{(last - first) / 3600:.2f} h (budget 2.5 h; gaps between reruns of the script count too{also}); the runs' "
        f"script times add up to {total:.0f} s = {total / 7200:.2f} h per lane.{swept_note}"
    )


def published_table() -> list[str]:
    rows: dict[str, dict[str, float]] = {}
    for line in PUBLISHED.read_text().splitlines():
        if line.startswith("#") or line.startswith("strategy,"):
            continue
        strategy, _, task, metric, value, *_ = line.split(",")
        key = "mean" if metric == "mean_accuracy" else f"T{task}"
        rows.setdefault(strategy, {})[key] = float(value) * 100
    head = [f"T{i}" for i in range(1, 21)] + ["mean"]
    out = ["| published (full scale, VGG16-BN width 1, 100 epochs; ivclab/CPG README) | " + " | ".join(head) + " |"]
    out.append("|---|" + "---:|" * len(head))
    for strategy, values in rows.items():
        out.append(f"| {strategy} | " + " | ".join(f"{values[k]:.1f}" for k in head) + " |")
    return out


def block(work: Path, runs: list[Path], settings: list[str], swept: set[str]) -> str:
    envs = [json.loads((r / "environment.json").read_text()) for r in runs]
    commits = sorted({e.get("git_commit", "?") for e in envs})
    threads = sorted({str(e.get("torch_threads", "?")) for e in envs})
    seeds = sorted({r.name.rsplit("-s", 1)[1] for r in runs})
    wall = times(work)
    rows = []
    for run in runs:
        info = tables.load_run(run)
        strategy, seed, own = info.strategy, str(info.seed), info.summary["wall_seconds"]
        if run.parent != work:  # a sweep's cell: the sweep logs no script time
            rows.append(f"| {strategy} | {seed} | {own:.0f} | (sweep cell {run.name}) | {own / 3600:.2f} | 1 |")
            continue
        seconds, attempts = wall.get((strategy, seed), (float("nan"), 0))
        rows.append(f"| {strategy} | {seed} | {own:.0f} | {seconds:.0f} | {seconds / 3600:.2f} | {attempts} |")
    lines = [
        BEGIN,
        f"Finished runs: {len(runs)} ({', '.join(r.name for r in runs)}). Device: {envs[0].get('device')} on host "
        f"{envs[0].get('host')!r}, {os.cpu_count()} cores, torch threads per run {', '.join(threads)}, two runs at a "
        f"time; torch {envs[0].get('packages', {}).get('torch')}. Commit: {', '.join(commits)}. "
        f"Seeds: {', '.join(seeds)}.",
        "",
        clbench("table", *map(str, runs)).rstrip(),
        "",
        "Wall time per run: `run s` is the run's own (summary.json, resumed parts added up); `script s` is what",
        "the lane script measured around it, all attempts, including accuracy goals the run trained first.",
        "",
        "| strategy | seed | run s | script s | script h | attempts |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        span(work, swept),
        "",
        *(
            [
                "Settings chosen on validation (`clbench table SWEEP_DIR --select val`: the best mean final",
                "validation accuracy; the test split takes no part):",
                "",
                "| sweep cell | mean final val accuracy % | run s | not finished: last log line |",
                "|---|---:|---:|---|",
                *settings,
                "",
            ]
            if settings
            else []
        ),
        *published_table(),
        END,
    ]
    return "\n".join(lines)


def main(work: Path, sweeps: list[Path]) -> None:
    runs, settings, swept = finished(work), [], set()
    for sweep in sweeps:
        picked, lines = chosen(sweep)
        replaced = {strategy_of(p) for p in picked}
        runs = [r for r in runs if r.name.rsplit("-s", 1)[0] not in replaced] + picked
        settings += lines
        swept |= replaced
    rank = {s: i for i, s in enumerate(ORDER)}
    runs.sort(key=lambda p: (rank.get(strategy_of(p), len(ORDER)), p.name))
    if not runs:
        raise SystemExit(f"no finished runs under {work}")
    # Written whole or not at all (an interrupted rewrite must not truncate the hand-written reading).
    atomic_write_text(CSV, clbench("table", "--format", "csv", "--no-notes", *map(str, runs)))
    text = MD.read_text() if MD.is_file() else f"{BEGIN}\n{END}\n"
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    atomic_write_text(MD, before + block(work, runs, settings, swept) + after)
    print(f"wrote {MD} and {CSV} ({len(runs)} runs)", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: {sys.argv[0]} WORK_DIR [SWEEP_DIR ...]")
    main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
