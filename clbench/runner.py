"""Runs one strategy on one benchmark and writes its results directory.

Layout of a run directory::

    config.toml       the resolved configuration (feed it back with ``-c`` to repeat the run)
    environment.json  package versions, device, host
    metrics.csv       the canonical long table (see clbench.results), rewritten after every task
    summary.json      mean accuracy, forgetting, BWT, wall time, peak memory (written at the end)
    summary.md        the same as a Markdown table
"""

from __future__ import annotations

import logging
import platform
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import config as cfg
from clbench import results
from clbench.errors import ResultsExistError, UsageError

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.manager import Plugins
    from clbench.strategy import Strategy, Task

log = logging.getLogger(__name__)

RESULT_FILES = (
    results.METRICS_FILE,
    results.CONFIG_FILE,
    results.SUMMARY_FILE,
    results.ENVIRONMENT_FILE,
    "summary.md",
)


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
    quiet: bool = False
    runs_root: Path = Path("runs")


@dataclass
class RunState:
    """What observers (``clbench_after_task`` …) see of a run in progress."""

    spec: RunSpec
    run_id: str
    run_dir: Path
    tasks: list[Task] = field(default_factory=list)
    strategy: Strategy | None = None


def run(spec: RunSpec, plugins: Plugins) -> RunState:
    started = time.perf_counter()
    run_dir = _prepare_run_dir(spec)
    run_id = f"{spec.benchmark}-{spec.strategy}-{run_dir.name}"
    state = RunState(spec, run_id, run_dir)
    results.atomic_write_text(run_dir / results.CONFIG_FILE, resolved_toml(spec))

    import torch

    device = _pick_device(spec.device)
    _seed_everything(spec.seed)
    results.atomic_write_json(run_dir / results.ENVIRONMENT_FILE, environment(device))
    plugins.hook.clbench_run_start(run=state)

    from clbench.loop import build_scenario
    from clbench.strategy import StrategyContext, Task

    benchmark: Benchmark = plugins.benchmarks.get(spec.benchmark)(spec.benchmark_config)
    task_data = benchmark.load_tasks()
    if not task_data:
        raise UsageError(f"benchmark {spec.benchmark!r} produced no tasks")
    exps = build_scenario(task_data)
    state.tasks = [
        Task(i, data, exps["train"][i], exps["valid"].get(i), exps["test"].get(i))
        for i, data in enumerate(task_data, start=1)
    ]
    context = StrategyContext(
        device=device,
        backbone_factory=benchmark.backbone,
        num_tasks=len(state.tasks),
        benchmark=spec.benchmark,
        run_dir=run_dir,
        goals_dir=spec.runs_root / "goals",
        quiet=spec.quiet or not sys.stderr.isatty(),
    )
    strategy: Strategy = plugins.strategies.get(spec.strategy)(spec.strategy_config, context)
    state.strategy = strategy
    writer = results.MetricsWriter(
        run_dir / results.METRICS_FILE, results.RunKey(run_id, spec.strategy, spec.benchmark, spec.seed)
    )
    for task in state.tasks:
        context.phase_seconds.clear()
        task_start = time.perf_counter()
        strategy.learn_task(task)
        seen = state.tasks[: task.index]
        rows = []
        for split, prefix in (("test", ""), ("valid", "val_")):
            for index, scores in strategy.evaluate_all(seen, split).items():
                for metric, value in scores.items():
                    rows.append(writer.add(task.index, index, prefix + metric, value))
        for name, value in strategy.task_records(task).items():
            rows.append(writer.add(task.index, task.index, name, value))
        for phase, seconds in context.phase_seconds.items():
            rows.append(writer.add(task.index, task.index, f"seconds_{phase}", seconds))
        rows.append(writer.add(task.index, task.index, "seconds_task", time.perf_counter() - task_start))
        writer.flush()
        test_acc = next(r["value"] for r in rows if r["metric"] == "accuracy" and r["eval_task"] == task.index)
        log.info("task %d/%d %s: test accuracy %.4f", task.index, len(state.tasks), task.name, test_acc)
        plugins.hook.clbench_after_task(run=state, task=task.index, rows=rows)

    summary = _summary(writer, started, device, torch)
    results.atomic_write_json(run_dir / results.SUMMARY_FILE, summary)
    table = results.to_markdown(results.comparison_table([run_dir]))
    results.atomic_write_text(run_dir / "summary.md", table + "\n")
    plugins.hook.clbench_run_end(run=state, summary=summary)
    return state


def resolved_toml(spec: RunSpec) -> str:
    return cfg.to_toml(
        {
            "run": {
                "strategy": spec.strategy,
                "benchmark": spec.benchmark,
                "recipe": spec.recipe,
                "seed": spec.seed,
                "device": spec.device,
            },
            spec.strategy: cfg.as_dict(spec.strategy_config),
            spec.benchmark: cfg.as_dict(spec.benchmark_config),
        }
    )


def _prepare_run_dir(spec: RunSpec) -> Path:
    if spec.out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = spec.runs_root / spec.benchmark / spec.strategy / f"{stamp}-s{spec.seed}"
        run_dir, n = base, 1
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    else:
        run_dir = spec.out
        existing = [name for name in RESULT_FILES if (run_dir / name).exists()]
        if existing and not spec.overwrite:
            raise ResultsExistError(
                f"{run_dir} already holds results ({', '.join(existing)}); "
                "choose another --out, or pass --overwrite to replace them"
            )
        for name in existing:
            (run_dir / name).unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".clbench-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write results to {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def _pick_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def environment(device: Any) -> dict[str, Any]:
    import torch

    versions = {}
    for package in ("clbench", "torch", "torchvision", "avalanche-lib", "pluggy", "pandas", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "git_commit": _git_commit(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    import subprocess

    try:
        out = subprocess.run(
            [git, "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _summary(writer: results.MetricsWriter, started: float, device: Any, torch: Any) -> dict[str, Any]:
    import pandas as pd

    metrics = pd.DataFrame(writer.rows, columns=results.COLUMNS)
    summary: dict[str, Any] = dict(results.summarize(metrics))
    summary["wall_seconds"] = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux.
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return summary
