"""``clbench sweep``: the cells of a grid (clbench.sweep_grid) run as Ray tasks, one run directory each.

Layout of a sweep directory::

    sweep.json        the expanded grid (spec and cells); a re-invoked sweep must match it
    cells/<id>.toml   each cell's config file (``clbench run -c``)
    logs/<id>.log     each cell's output, every attempt appended
    <id>/             the cell's run directory, exactly as ``clbench run --out`` writes it

A cell whose directory holds ``summary.json`` is finished and never run again; one with a
``config.toml`` but no summary is continued with ``clbench run --resume`` (from its last phase
checkpoint), also when Ray retries a task whose worker died. Ray is imported only here, when a
sweep starts. The cells run through the callables the command line hands in (:class:`CellRunner`),
so this module never imports the command line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import results
from clbench.errors import ClbenchError, RunInterrupted, UsageError
from clbench.sweep_grid import GRID_FILE, Cell, SweepSpec, grid_record

if TYPE_CHECKING:
    from clbench.runspec import RunSpec

RUNNING_DIR = ".running"  # a marker per cell a worker is running now (the progress bar counts them)


@dataclass(frozen=True)
class CellRunner:
    """How a cell is checked, run and prepared, each given the arguments of ``clbench run``.

    ``resolve(argv)`` returns the RunSpec or raises UsageError; ``run(argv)`` returns the exit
    code of ``clbench run``; ``prepare_goals(argv)`` finds or trains the cell's accuracy goals.
    All three must be importable module-level functions (Ray ships them to workers by name).
    """

    resolve: Callable[[list[str]], RunSpec]
    run: Callable[[list[str]], int]
    prepare_goals: Callable[[list[str]], None]


@dataclass(frozen=True)
class SweepOptions:
    """Where and how cells run. CPUs and GPUs are Ray resource units per cell."""

    address: str | None = None  # None: RAY_ADDRESS, else an embedded Ray on this machine
    num_cpus: int | None = None  # embedded Ray only: CPUs it may use (default: all)
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0  # fractional: 0.5 lets two cells share one GPU
    max_retries: int = 3  # times a cell is retried after its worker died
    plugins: tuple[str, ...] = ()
    quiet: bool = False

    def __post_init__(self) -> None:
        if not self.cpus_per_run > 0:
            raise UsageError(f"--cpus-per-run must be > 0, got {self.cpus_per_run}")
        if self.gpus_per_run < 0:
            raise UsageError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")
        if self.gpus_per_run > 1 and self.gpus_per_run != int(self.gpus_per_run):
            raise UsageError(f"--gpus-per-run above 1 must be whole, got {self.gpus_per_run}")
        if self.max_retries < 0:
            raise UsageError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UsageError(f"--num-cpus must be >= 1, got {self.num_cpus}")


def run_sweep(
    sweep_dir: Path, spec: SweepSpec, cells: Sequence[Cell], options: SweepOptions, runner: CellRunner
) -> int:
    """Run every unfinished cell of the grid; returns 0 when all cells are finished, else 1.

    Everything that can fail on bad input (a cell's config, an unreachable cluster, storage the
    nodes do not share, a directory holding another sweep) fails before any cell runs.

    Raises:
        UsageError: bad input, as above (the CLI prints one line and exits 2).
        RunInterrupted: Ctrl-C; finished cells are kept, the rest continue on the next invocation.
    """
    sweep_dir = Path(sweep_dir).absolute()  # workers may start elsewhere (they chdir to this cwd)
    record = json.loads(json.dumps(grid_record(spec, cells)))
    _check_same_grid(sweep_dir, record)
    argv_of = {c.id: _fresh_argv(sweep_dir, c, options) for c in cells}
    goal_cells = _check_cells(cells, options, runner)
    todo = [c for c in cells if not _finished(sweep_dir / c.id)]
    done_before = len(cells) - len(todo)
    if not todo:
        print(f"all {len(cells)} cells of {sweep_dir} are finished; nothing to run", file=sys.stderr)
        return 0
    started_ray = _start_ray(options)
    try:
        import ray

        _check_resources(ray.cluster_resources(), options)
        created = not sweep_dir.exists()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            _check_shared_storage(ray, sweep_dir)
        except UsageError:
            if created:
                shutil.rmtree(sweep_dir, ignore_errors=True)
            raise
        _write_grid(sweep_dir, record, cells)
        goal_argvs = [argv_of[c.id] for c in goal_cells if not (sweep_dir / c.id / results.CONFIG_FILE).is_file()]
        if goal_argvs:
            _prepare_goals(ray, sweep_dir, goal_argvs, options, runner)
        failed = _run_cells(ray, sweep_dir, todo, done_before, len(cells), argv_of, options, runner)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    finished = sum(_finished(sweep_dir / c.id) for c in cells)
    print(f"{finished} of {len(cells)} cells finished in {sweep_dir}", file=sys.stderr)
    for cell_id, message in failed.items():
        print(f"failed: {cell_id}: {message} (log: {sweep_dir / 'logs' / (cell_id + '.log')})", file=sys.stderr)
    if failed:
        print("run the same command again to retry the failed cells", file=sys.stderr)
    return 0 if finished == len(cells) else 1


# ------------------------------------------------------------------------------ checks
def _finished(cell_dir: Path) -> bool:
    return (cell_dir / results.SUMMARY_FILE).is_file()


def _check_same_grid(sweep_dir: Path, record: dict[str, Any]) -> None:
    path = sweep_dir / GRID_FILE
    if not path.is_file():
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            raise UsageError(f"{sweep_dir} exists and is not a clbench sweep (no {GRID_FILE}); choose another --out")
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("cells") != record["cells"]:
        ids = {c["id"] for c in saved.get("cells", [])}
        new = [c["id"] for c in record["cells"] if c["id"] not in ids]
        hint = f" (new cells such as {new[0]})" if new else ""
        raise UsageError(
            f"{sweep_dir} holds another sweep{hint} ({path} differs); choose another --out, "
            f"or re-run the spec it was made with"
        )


def _fresh_argv(sweep_dir: Path, cell: Cell, options: SweepOptions) -> list[str]:
    plugins = [x for p in options.plugins for x in ("--plugin", p)]
    config = sweep_dir / "cells" / f"{cell.id}.toml"
    return ["-c", str(config), "--out", str(sweep_dir / cell.id), *plugins]


def _resume_argv(argv: list[str]) -> list[str]:
    """``clbench run --resume CELL_DIR`` for the fresh argument list ``argv``."""
    out = argv[argv.index("--out") + 1]
    plugins = argv[argv.index("--out") + 2 :]
    return ["--resume", out, *plugins]


def _check_cells(cells: Sequence[Cell], options: SweepOptions, runner: CellRunner) -> list[Cell]:
    """Resolve every cell as ``clbench run`` would; returns the cells that train accuracy goals
    when none are found (``goals = "auto"``)."""
    needs_goals = []
    with tempfile.TemporaryDirectory(prefix="clbench-sweep-") as tmp:
        for cell in cells:
            argv = _fresh_argv(Path(tmp), cell, options)
            config = Path(argv[argv.index("-c") + 1])
            config.parent.mkdir(exist_ok=True)
            config.write_text(cell.config_toml(), encoding="utf-8")
            try:
                spec = runner.resolve(argv)
            except ClbenchError as exc:
                raise UsageError(f"cell {cell.id}: {exc}") from None
            strategy_config = spec.strategy_config
            if getattr(strategy_config, "goals", None) == "auto" and not getattr(strategy_config, "goals_file", None):
                needs_goals.append(cell)
    # One after another, lowest seed first: what running the cells in that order would find.
    return sorted(needs_goals, key=lambda c: (c.seed, c.id))


def _check_address(address: str) -> None:
    """A fast, clear failure for an address where no Ray cluster listens."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT (such as 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start it with `ray start --head` "
            f"there, or leave out --address and RAY_ADDRESS to run on this machine"
        ) from None


def _start_ray(options: SweepOptions) -> bool:
    """Connect to the cluster, or start Ray embedded; returns True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "include_dashboard": False}
    if address is not None:
        _check_address(address)
        if options.num_cpus is not None:
            raise UsageError("--num-cpus sizes an embedded Ray; a cluster has its own (leave out --address for it)")
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    else:
        ray.init(num_cpus=options.num_cpus, object_store_memory=200 * 2**20, **quiet)
    return True


def _check_resources(total: dict[str, float], options: SweepOptions) -> None:
    for flag, need, name in (
        ("--cpus-per-run", options.cpus_per_run, "CPU"),
        ("--gpus-per-run", options.gpus_per_run, "GPU"),
    ):
        have = total.get(name, 0.0)
        if need > have:
            raise UsageError(f"{flag} {need:g} is more than the Ray cluster has ({have:g} {name}); lower it")


def _sees(paths: list[str]) -> tuple[str, list[str]]:
    """On one node: its name and the paths of ``paths`` it cannot see."""
    return platform.node(), [p for p in paths if not os.path.exists(p)]


def _check_shared_storage(ray: Any, sweep_dir: Path) -> None:
    """Every alive node must see the sweep directory and the working directory (runs/goals)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = sweep_dir / f".storage-check-{uuid.uuid4().hex}"
    token.write_text(platform.node())
    try:
        sees = ray.remote(num_cpus=0)(_sees)
        refs = [
            sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                [str(token.resolve()), os.getcwd()]
            )
            for n in nodes
        ]
        for host, missing in ray.get(refs, timeout=120):
            if missing:
                raise UsageError(
                    f"node {host} cannot see {missing[0]}: a sweep directory (and the working directory, "
                    f"which holds runs/goals) must be on storage every node mounts at the same path; see docs/sweeps.md"
                )
    finally:
        token.unlink(missing_ok=True)


def _write_grid(sweep_dir: Path, record: dict[str, Any], cells: Sequence[Cell]) -> None:
    for name in ("cells", "logs", RUNNING_DIR):
        (sweep_dir / name).mkdir(exist_ok=True)
    for cell in cells:
        results.atomic_write_text(sweep_dir / "cells" / f"{cell.id}.toml", cell.config_toml())
    for marker in (sweep_dir / RUNNING_DIR).iterdir():
        marker.unlink()  # left by workers of an earlier invocation that were killed
    results.atomic_write_json(sweep_dir / GRID_FILE, record)


# ------------------------------------------------------------------------------- Ray tasks
def _logged(log: Path) -> contextlib.ExitStack:
    """Send stdout and stderr (and the logging set up under them) to ``log``."""
    stack = contextlib.ExitStack()
    handle = stack.enter_context(open(log, "a", encoding="utf-8", buffering=1))
    stack.enter_context(contextlib.redirect_stdout(handle))
    stack.enter_context(contextlib.redirect_stderr(handle))
    return stack


def _cell_task(
    run: Callable[[list[str]], int], sweep_dir: str, cell_id: str, argv: list[str], cwd: str, threads: int
) -> dict[str, Any]:
    """Run one cell in a Ray worker: fresh, resumed (a config.toml but no summary) or skipped."""
    os.chdir(cwd)  # runs/goals is relative to the working directory, as for clbench run
    root = Path(sweep_dir)
    cell_dir = root / cell_id
    if _finished(cell_dir):
        return {"id": cell_id, "rc": 0}
    marker = root / RUNNING_DIR / cell_id
    marker.write_text(f"pid {os.getpid()} on {platform.node()}")
    log = root / "logs" / f"{cell_id}.log"
    if (cell_dir / results.CONFIG_FILE).is_file():
        argv = _resume_argv(argv)
    try:
        import torch

        torch.set_num_threads(threads)
        with _logged(log):
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            print(f"== {stamp} pid {os.getpid()} on {platform.node()}: clbench run {' '.join(argv)}")
            rc = run(argv)
    finally:
        marker.unlink(missing_ok=True)
    return {"id": cell_id, "rc": rc, "message": _last_error(log) if rc else ""}


def _last_error(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("clbench:")]
    return (said or lines or ["(no output)"])[-1]


def _goals_task(prepare: Callable[[list[str]], None], log: str, argvs: list[list[str]], cwd: str) -> None:
    os.chdir(cwd)
    with _logged(Path(log)):
        for argv in argvs:
            print(f"== accuracy goals for: clbench run {' '.join(argv)}")
            prepare(argv)


def _prepare_goals(
    ray: Any, sweep_dir: Path, argvs: list[list[str]], options: SweepOptions, runner: CellRunner
) -> None:
    """Accuracy goals (``goals = auto``) found or trained once, before the cells run in parallel:
    cells that need the same goals would otherwise train them at the same time."""
    log = sweep_dir / "logs" / "goals.log"
    if not options.quiet:
        print(f"resolving the accuracy goals of {len(argvs)} cell(s) first (log: {log})", file=sys.stderr)
    task = ray.remote(_goals_task).options(**_resources(options))
    try:
        ray.get(task.remote(runner.prepare_goals, str(log), argvs, os.getcwd()))
    except KeyboardInterrupt:
        raise RunInterrupted(f"sweep interrupted while resolving accuracy goals; no cell had started ({log})") from None
    except ray.exceptions.RayError as exc:
        raise ClbenchError(f"resolving the accuracy goals failed: {_first_line(exc)} (log: {log})") from None


def _resources(options: SweepOptions) -> dict[str, Any]:
    return {
        "num_cpus": options.cpus_per_run,
        "num_gpus": options.gpus_per_run,
        "max_retries": options.max_retries,
        "retry_exceptions": False,
    }


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _run_cells(
    ray: Any,
    sweep_dir: Path,
    todo: Sequence[Cell],
    done_before: int,
    total: int,
    argv_of: dict[str, list[str]],
    options: SweepOptions,
    runner: CellRunner,
) -> dict[str, str]:
    """Submit the cells, follow them with a progress bar; returns the failed cells' messages."""
    from tqdm import tqdm

    task = ray.remote(_cell_task).options(**_resources(options))
    threads = max(1, int(options.cpus_per_run))
    cwd = os.getcwd()
    pending = {task.remote(runner.run, str(sweep_dir.resolve()), c.id, argv_of[c.id], cwd, threads): c.id for c in todo}
    failed: dict[str, str] = {}
    bar = tqdm(total=total, initial=done_before, unit="cell", desc="sweep", disable=options.quiet, file=sys.stderr)
    shown: dict[str, int] = {}
    live = sys.stderr.isatty()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                cell_id = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                    if outcome["rc"] != 0:
                        failed[cell_id] = outcome["message"]
                except ray.exceptions.RayError as exc:
                    failed[cell_id] = _first_line(exc)
                if cell_id not in failed:
                    bar.update(1)
            running = sum((sweep_dir / RUNNING_DIR / cid).exists() for cid in pending.values())
            counts = {"finished": bar.n, "running": running, "failed": len(failed)}
            if counts != shown or live:  # a log file gets a line per change, a terminal a ticking clock
                bar.set_postfix(counts, refresh=True)
                shown = counts
    except KeyboardInterrupt:
        # Disconnecting ends this job's tasks (Ray stops a driver's non-detached work with it).
        # ray.cancel(force=True) on tasks that were finishing at that moment crashed the driver in
        # Ray 2.60 ("Tried to complete task that was not pending", task_manager.cc) once in CI.
        ray.shutdown()
        raise RunInterrupted(
            f"sweep interrupted: {bar.n} of {total} cells finished and kept in {sweep_dir}; run the same command "
            f"again to continue (unfinished cells resume from their last checkpoint)"
        ) from None
    finally:
        bar.close()
    return failed
