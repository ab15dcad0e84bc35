"""Runs one strategy on one benchmark and writes its results directory.

Layout of a run directory::

    config.toml       the resolved configuration (feed it back with ``-c`` to repeat the run)
    environment.json  package versions, device, host; who provided the strategy and benchmark
                      (distribution and version, or plugin file and sha256) and its accounting
    metrics.csv       the canonical long table (see clbench.results), rewritten after every task
    summary.json      mean accuracy, forgetting, BWT, wall time, peak memory (written at the end)
    summary.md        the same as a Markdown table
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import checkpoint, goal_training, results
from clbench import config as cfg
from clbench.errors import ClbenchError, ResultsExistError, RunInterrupted, UsageError
from clbench.journal import PhaseJournal, phase_path
from clbench.runspec import RunSpec, RunState
from clbench.taskcheck import check_tasks

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.manager import Plugins
    from clbench.strategy import Strategy, Task

log = logging.getLogger(__name__)

RESULT_FILES = (
    "resumes.json",
    results.METRICS_FILE,
    results.CONFIG_FILE,
    results.SUMMARY_FILE,
    results.ENVIRONMENT_FILE,
    "summary.md",
    results.TASKS_FILE,
)


def run(spec: RunSpec, plugins: Plugins) -> RunState:
    """Run ``spec`` (or continue it, with ``spec.resume``) and write its results directory."""
    run_dir, created = _prepare_run_dir(spec)
    with RunLock(run_dir):
        try:
            return _run_locked(spec, plugins, run_dir)
        except BaseException:
            if created:
                _remove_if_unstarted(run_dir)
            raise


def _run_locked(spec: RunSpec, plugins: Plugins, run_dir: Path) -> RunState:
    started = time.perf_counter()
    run_id = f"{spec.benchmark}-{spec.strategy}-{run_dir.name}"
    state = RunState(spec, run_id, run_dir)

    if spec.deterministic:
        _deterministic_kernels()
    device = _pick_device(spec.device)
    _seed_everything(spec.seed)

    # Everything that can fail on bad input happens before the first file is written.
    state.tasks, strategy = _build(spec, plugins, run_dir, device)
    state.strategy = strategy
    if getattr(spec.strategy_config, "engine", "avalanche") == "device":
        from clbench.engine import check_supported

        check_supported(strategy, state.tasks)  # before the run directory holds anything
    _check_free_space(run_dir, strategy, spec.phase_checkpoints)
    goals_started = time.perf_counter()
    goals = _resolve_goals(spec, plugins, strategy, state.tasks, run_dir)
    if goals is not None and goals.trained_now:
        # The goal runs report their own wall time; this run's clock starts after them.
        started += time.perf_counter() - goals_started

    key = results.RunKey(run_id, spec.strategy, spec.benchmark, spec.seed)
    writer = results.MetricsWriter(run_dir / results.METRICS_FILE, key)
    first_task, elapsed_before, replay_phases = 1, 0.0, False
    if spec.resume:
        saved = checkpoint.latest(run_dir)
        run_id = state.run_id = _kept_run_id(run_dir, saved) or run_id  # wherever the folder now lives
        writer.key = results.RunKey(run_id, spec.strategy, spec.benchmark, spec.seed)
        if saved is not None:
            _check_belongs(saved, spec, run_dir)
            strategy.load_checkpoint_state(saved.payload["strategy"])
            checkpoint.set_rng_state(saved.payload["rng"])
            writer.rows = list(saved.payload["rows"])
            first_task, elapsed_before = saved.task + 1, float(saved.payload["elapsed"])
            log.info("resuming %s after task %d of %d", run_dir, saved.task, len(state.tasks))
        # Saved phases replay only under the settings that made them.
        replay_phases = not _record_resume(run_dir, spec, first_task, device) and spec.phase_checkpoints
    results.atomic_write_text(run_dir / results.CONFIG_FILE, resolved_toml(spec))
    if not (spec.resume and (run_dir / results.ENVIRONMENT_FILE).is_file()):
        # environment.json describes the run's start (its command and goals); resumes.json each later part.
        env = environment(device)
        env["providers"] = plugins.provenance(spec.strategy, spec.benchmark)
        if goals is not None:
            env["goals"] = goals.provenance()
        results.atomic_write_json(run_dir / results.ENVIRONMENT_FILE, env)
    results.write_tasks(run_dir, [(t.index, t.name, t.kind, t.num_classes) for t in state.tasks])
    plugins.hook.clbench_run_start(run=state)

    clock = _Clock(started, elapsed_before)
    identity = {"run_id": run_id, "strategy_name": spec.strategy, "benchmark": spec.benchmark, "seed": spec.seed}
    for task in state.tasks[first_task - 1 :]:
        clock.start_task()
        journal = None
        if spec.phase_checkpoints:
            reuse = replay_phases and task.index == first_task
            journal = PhaseJournal.for_task(run_dir, task.index, lambda: {**identity, **clock.payload()}, reuse)
            resumed = journal.last_replayed
            if resumed is not None:
                _check_belongs_payload(resumed, spec, phase_path(run_dir, task.index, resumed["ordinal"]), run_dir)
                clock.resume_task(resumed)
                log.info("resuming task %d after its phase %r", task.index, resumed["phase"])
        strategy.context.journal = journal
        try:
            rows = _learn_and_evaluate(state, strategy, task, writer, clock)
            checkpoint.save(
                run_dir,
                task.index,
                {
                    "run_id": run_id,
                    "strategy_name": spec.strategy,
                    "benchmark": spec.benchmark,
                    "seed": spec.seed,
                    "strategy": strategy.checkpoint_state(),
                    "rng": checkpoint.rng_state(),
                    "rows": writer.rows,
                    "elapsed": clock.elapsed(),
                },
            )
            if journal is not None:
                journal.clear()  # the task checkpoint now covers its phases
        except KeyboardInterrupt:
            raise RunInterrupted(
                f"interrupted during task {task.index} ({task.name}); {_saved(task.index, journal)} in {run_dir}; "
                f"continue with: clbench run --resume {run_dir}"
            ) from None
        except ClbenchError as exc:
            raise type(exc)(f"{exc}; {_saved(task.index, journal)} in {run_dir}; after fixing the cause, continue "
                            f"with: clbench run --resume {run_dir} [changed options]") from None  # fmt: skip
        except OSError as exc:
            raise ClbenchError(
                f"could not write results of task {task.index} to {run_dir}: {exc.strerror or exc}; "
                f"{_saved(task.index, journal)} and intact; free space or fix permissions, "
                f"then: clbench run --resume {run_dir}"
            ) from None
        plugins.hook.clbench_after_task(run=state, task=task.index, rows=rows)

    goal_training.publish(spec, strategy, run_dir, len(state.tasks), keyed=spec.publish_goals)
    summary = _summary(writer, started, clock.before, device)
    if goals is not None:
        summary["goals"] = goals.provenance()
    results.atomic_write_json(run_dir / results.SUMMARY_FILE, summary)
    table = results.to_markdown(results.comparison_table([run_dir]))
    results.atomic_write_text(run_dir / "summary.md", table + "\n")
    plugins.hook.clbench_run_end(run=state, summary=summary)
    return state


def _build(spec: RunSpec, plugins: Plugins, run_dir: Path, device: Any) -> tuple[list[Task], Strategy]:
    """The benchmark's tasks and the strategy, validated against them; writes nothing.

    Raises:
        UsageError: the benchmark produced no tasks; the strategy does not fit them.
    """
    from clbench.strategy import Scenario, StrategyContext, Task

    benchmark: Benchmark = plugins.benchmarks.get(spec.benchmark)(spec.benchmark_config)
    task_data = check_tasks(benchmark.load_tasks(), benchmark)
    if not task_data:
        raise UsageError(f"benchmark {spec.benchmark!r} produced no tasks")
    # Avalanche's experiences are built (and Avalanche imported) only if its loop runs.
    scenario = Scenario(task_data)
    tasks = [Task(i, data, scenario=scenario) for i, data in enumerate(task_data, start=1)]
    context = StrategyContext(
        device=device,
        backbone_factory=benchmark.backbone,
        num_tasks=len(tasks),
        benchmark=spec.benchmark,
        run_dir=run_dir,
        goals_dir=spec.runs_root / "goals",
        quiet=spec.quiet or not sys.stderr.isatty(),
    )
    strategy: Strategy = plugins.strategies.get(spec.strategy)(spec.strategy_config, context)
    strategy.validate(tasks)
    return tasks, strategy


def prepare_goals(spec: RunSpec, plugins: Plugins) -> goal_training.goalfiles.Goals | None:
    """Find, or with ``goals = "auto"`` train, the accuracy goals a run of ``spec`` will use,
    without starting the run or writing its directory. Sweeps call it once per cell, one cell
    after another, before their cells run in parallel: concurrent cells then find the goals
    instead of training the same ones at once (clbench.sweep).

    Returns the goals (None for a strategy that needs none). Raises what :func:`run` raises
    before its first task (UsageError for goals that cannot be found or trained).
    """
    _seed_everything(spec.seed)
    run_dir = spec.out if spec.out is not None else spec.runs_root
    tasks, strategy = _build(spec, plugins, run_dir, _pick_device(spec.device))
    if not goal_training.wants_goals(strategy):
        return None
    return _resolve_goals(replace(spec, resume=False), plugins, strategy, tasks, run_dir)


def _resolve_goals(
    spec: RunSpec, plugins: Plugins, strategy: Strategy, tasks: list[Task], run_dir: Path
) -> goal_training.goalfiles.Goals | None:
    """The strategy's accuracy goals (clbench.goal_training), before any file of the run is
    written. Training them draws random numbers: the run's own stream is put back afterwards,
    so a run that trained its goals equals one that found them."""
    recorded = None
    env_file = run_dir / results.ENVIRONMENT_FILE
    if spec.resume and env_file.is_file():
        recorded = json.loads(env_file.read_text()).get("goals")
    rng = checkpoint.rng_state()
    try:
        return goal_training.resolve(spec, plugins, strategy, tasks, run, recorded)
    except RunInterrupted:
        raise RunInterrupted(
            f"interrupted while training accuracy goals (their finished tasks are kept under "
            f"{spec.runs_root / 'goals' / spec.benchmark}); run the same command again to continue them"
        ) from None
    finally:
        checkpoint.set_rng_state(rng)


def _saved(task: int, journal: PhaseJournal | None) -> str:
    """What an interrupted run keeps: its finished tasks and the finished phases of this one."""
    said = f"tasks 1-{task - 1} are saved" if task > 1 else "no task had finished"
    phases = journal.saved_phases() if journal is not None else 0
    return f"{said} (and {phases} finished phase(s) of task {task})" if phases else said


@dataclass
class _Clock:
    """Wall time of the run and of the current task, counting the parts before a resume."""

    started: float  # perf_counter() when this process began the run
    before: float = 0.0  # seconds the run ran before this process took over
    task_started: float = 0.0
    task_before: float = 0.0  # seconds the current task ran before a mid-task resume

    def start_task(self) -> None:
        self.task_started, self.task_before = time.perf_counter(), 0.0

    def resume_task(self, record: dict[str, Any]) -> None:
        """Count the interrupted part of the task (up to its last saved phase) as already run."""
        self.task_before = float(record["task_seconds"])
        self.before = float(record["elapsed"]) - (self.task_started - self.started)

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def task_seconds(self) -> float:
        return self.task_before + time.perf_counter() - self.task_started

    def payload(self) -> dict[str, float]:
        return {"elapsed": self.elapsed(), "task_seconds": self.task_seconds()}


def _learn_and_evaluate(
    state: RunState, strategy: Strategy, task: Task, writer: results.MetricsWriter, clock: _Clock
) -> list[dict[str, Any]]:
    context = strategy.context
    context.phase_seconds.clear()
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
    rows.append(writer.add(task.index, task.index, "seconds_task", clock.task_seconds()))
    writer.flush()
    test_acc = next(r["value"] for r in rows if r["metric"] == "accuracy" and r["eval_task"] == task.index)
    log.info("task %d/%d %s: test accuracy %.4f", task.index, len(state.tasks), task.name, test_acc)
    return rows


def _kept_run_id(run_dir: Path, saved: checkpoint.Checkpoint | None) -> str | None:
    """The run_id a resumed run already has (its checkpoint's, else its metrics.csv's), so that a
    moved or renamed run directory does not start a second run_id."""
    if saved is not None:
        return str(saved.payload["run_id"])
    try:
        with open(run_dir / results.METRICS_FILE, newline="") as f:
            first = next(csv.DictReader(f), None)
    except OSError:
        return None
    return first["run_id"] if first and first.get("run_id") else None


def _check_belongs(saved: checkpoint.Checkpoint, spec: RunSpec, run_dir: Path) -> None:
    _check_belongs_payload(saved.payload, spec, saved.path, run_dir)


def _check_belongs_payload(payload: dict[str, Any], spec: RunSpec, where: Path, run_dir: Path | None = None) -> None:
    found = (payload["strategy_name"], payload["benchmark"], payload["seed"])
    if found != (spec.strategy, spec.benchmark, spec.seed):
        raise checkpoint.CheckpointError(
            f"checkpoint {where} is of strategy/benchmark/seed {found}, not "
            f"{(spec.strategy, spec.benchmark, spec.seed)}: {run_dir or where.parent} holds another run"
        )


def _record_resume(run_dir: Path, spec: RunSpec, first_task: int, device: Any) -> bool:
    """Append this part of a resumed run to resumes.json: when, from which task, its command and
    environment, and the configuration it replaced (if any). True when the settings changed."""
    path = run_dir / "resumes.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    previous = (run_dir / results.CONFIG_FILE).read_text() if (run_dir / results.CONFIG_FILE).is_file() else None
    current = resolved_toml(spec)
    changed = previous is not None and previous != current
    if changed:
        log.warning(
            "resuming %s with changed settings (the earlier config is kept in resumes.json); "
            "task %d starts again from its beginning",
            run_dir,
            first_task,
        )
    history.append(
        {
            "utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "from_task": first_task,
            "previous_config": previous if previous != current else None,
            "environment": environment(device),
        }
    )
    results.atomic_write_json(path, history)
    return changed


class RunLock:
    """An exclusive lock on a run directory: a second run pointed at it fails at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".clbench.lock"
        self.handle: Any = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.handle = open(self.path, "a+")  # noqa: SIM115 (held open for the whole run)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise ResultsExistError(f"{self.path.parent} is in use by another clbench run ({holder})") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {platform.node()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
        self.handle.close()


def _remove_if_unstarted(run_dir: Path) -> None:
    """Leave no half-made run behind when a new run fails before its first file is written."""
    leftovers = [p for p in run_dir.iterdir() if p.name != ".clbench.lock"] if run_dir.is_dir() else []
    if not leftovers:
        shutil.rmtree(run_dir, ignore_errors=True)


def _check_free_space(run_dir: Path, strategy: Strategy, phase_checkpoints: bool) -> None:
    model_bytes = sum(t.numel() * t.element_size() for t in strategy.model.state_dict().values() if hasattr(t, "numel"))
    copies = 3.0  # two task checkpoints kept, one being written
    if phase_checkpoints:
        copies += _phase_records_at_most(strategy.config)
    need = int(copies * model_bytes * getattr(strategy.config, "max_width", 1.0)) + 2**20  # grown, and the tables
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise ClbenchError(
            f"not enough free space in {run_dir}: checkpoints need about {need / 2**20:.0f} MB, "
            f"{free / 2**20:.0f} MB are free"
        )


def _phase_records_at_most(config: Any) -> int:
    """Phase records one task can hold at once (clbench.journal): a train and a grow record per
    growth step and one more train, compact, and inside it every prune stage and CPG's retrain."""
    width_step = getattr(config, "width_step", None)
    growths = math.ceil((getattr(config, "max_width", 1.0) - 1.0) / width_step - 1e-9) if width_step else 0
    return 2 * (growths + 1) + 1 + len(getattr(config, "prune_stages", ())) + 1


def resolved_toml(spec: RunSpec) -> str:
    return cfg.to_toml(
        {
            "run": {
                "strategy": spec.strategy,
                "benchmark": spec.benchmark,
                "recipe": spec.recipe,
                "seed": spec.seed,
                "device": spec.device,
                "deterministic": spec.deterministic,
                "phase_checkpoints": spec.phase_checkpoints,
            },
            spec.strategy: cfg.as_dict(spec.strategy_config),
            spec.benchmark: cfg.as_dict(spec.benchmark_config),
        }
    )


def _prepare_run_dir(spec: RunSpec) -> tuple[Path, bool]:
    """Check (and create) the run directory; returns it and whether this call created it."""
    if spec.resume:
        run_dir = spec.out
        if run_dir is None or not (run_dir / results.CONFIG_FILE).is_file():
            raise UsageError(
                f"cannot resume {run_dir}: it holds no {results.CONFIG_FILE} (is it a clbench run directory?)"
            )
        _check_writable(run_dir)
        return run_dir, False
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
                f"{run_dir} already holds results ({', '.join(existing)}); choose another --out, "
                f"continue it with --resume {run_dir}, or pass --overwrite to replace them"
            )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create results directory {run_dir}: {exc.strerror or exc}") from None
    _check_writable(run_dir)
    if spec.overwrite:
        # Only after the directory is known to be writable and, below, locked by this run.
        with RunLock(run_dir):
            for name in RESULT_FILES:
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / checkpoint.CHECKPOINT_DIR, ignore_errors=True)
    return run_dir, created


def _check_writable(run_dir: Path) -> None:
    try:
        probe = run_dir / ".clbench-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write results to {run_dir}: {exc.strerror or exc}") from None


def _pick_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _deterministic_kernels() -> None:
    """Ask torch for deterministic kernels (docs/reliability.md says what that covers). cuBLAS
    needs its workspace setting before CUDA starts, hence the environment variable."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


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


def _summary(writer: results.MetricsWriter, started: float, elapsed_before: float, device: Any) -> dict[str, Any]:
    import pandas as pd
    import torch

    metrics = pd.DataFrame(writer.rows, columns=results.COLUMNS)
    summary: dict[str, Any] = dict(results.summarize(metrics))
    # Wall time of all parts of a resumed run (each part from its start to its end).
    summary["wall_seconds"] = elapsed_before + time.perf_counter() - started
    # ru_maxrss is in KiB on Linux; for a resumed run, the peak of its last part.
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return summary
