"""Resolving a goal-driven strategy's accuracy goals before its first task, training them if asked.

Upstream runs a baseline script first (individual models for CPG, the best of five random-parent
finetune sequences for PAE) and hands its JSON to every later run. Here a PAE or CPG run finds
goals keyed to its own benchmark, recipe, data and the producer's schedule (clbench.goals); with
``goals = "auto"`` and none found it trains them first as ordinary, resumable clbench runs under
``<runs>/goals/<benchmark>/`` and publishes them there for later runs.

The runner passes its own ``run`` function in (``run_fn``), so this module never imports the runner.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import config as cfg
from clbench import goals as goalfiles
from clbench.errors import UsageError

if TYPE_CHECKING:
    from clbench.manager import Plugins
    from clbench.runspec import RunSpec
    from clbench.strategy import Strategy, Task

log = logging.getLogger(__name__)


def wants_goals(strategy: Strategy) -> bool:
    """True for a goal-driven strategy (``use_goals``) that is not set to its own accuracies."""
    return hasattr(strategy, "use_goals") and getattr(strategy.config, "goals", "self") != "self"


def _runner_strategy(producer: str) -> tuple[str, dict[str, Any]]:
    """The strategy that trains ``producer``'s goals and the config fields it needs."""
    if producer == "finetune_max":  # finetune_cifar100.sh: random earlier task as the parent
        return "finetune_previous", {"parent": "random"}
    return producer, {}


def expected_key(
    spec: RunSpec, plugins: Plugins, strategy: Strategy, num_tasks: int
) -> tuple[goalfiles.GoalKey, Any]:
    """The key goals for this run must have, and the producer's config resolved from the run's recipe."""
    producer = strategy.goal_producer  # type: ignore[attr-defined]
    name, extra = _runner_strategy(producer)
    producer_cls = plugins.strategies.get(name)
    benchmark_cls = plugins.benchmarks.get(spec.benchmark)
    layers = benchmark_cls.recipe_layers(spec.recipe, name, list(cfg.fields_of(producer_cls.Config)))
    producer_config = cfg.resolve(producer_cls.Config, name, [*layers, extra])
    config_key = goalfiles.config_hash(producer_config)
    if producer == "finetune_max":
        text = f"{config_key}x{strategy.config.goal_sequences}"
        config_key = hashlib.sha256(text.encode()).hexdigest()[:8]
    data = goalfiles.data_key(spec.benchmark_config)
    return goalfiles.GoalKey(producer, spec.benchmark, spec.recipe, num_tasks, data, config_key), producer_config


def producer_key(spec: RunSpec, producer: str, num_tasks: int) -> goalfiles.GoalKey:
    """The key of the goals a run of a goal-producing strategy (``individual`` …) writes."""
    data = goalfiles.data_key(spec.benchmark_config)
    config_key = goalfiles.config_hash(spec.strategy_config)
    return goalfiles.GoalKey(producer, spec.benchmark, spec.recipe, num_tasks, data, config_key)


def resolve(
    spec: RunSpec,
    plugins: Plugins,
    strategy: Strategy,
    tasks: Sequence[Task],
    run_fn: Callable[[RunSpec, Plugins], Any],
    recorded: dict[str, Any] | None = None,
) -> goalfiles.Goals | None:
    """Find (or, with ``goals = "auto"``, train) the goals of ``strategy`` and hand them over.

    ``recorded`` is the provenance a resumed run saved: it keeps the goals it started with.
    Returns None when the strategy needs no goals file.

    Raises:
        UsageError: no matching goals with ``goals = "file"``; an explicit goals file measured on
            another benchmark, recipe, task count or data; a task without a goal.
    """
    if recorded is not None:
        _check_unchanged(strategy, recorded)
    if not wants_goals(strategy):
        return None
    config = strategy.config
    goals_dir = spec.runs_root / "goals"
    key, producer_config = expected_key(spec, plugins, strategy, len(tasks))
    if recorded is not None:
        found = goalfiles.Goals.from_provenance(recorded)
        log.info("resumed run keeps its accuracy goals from %s", found.path)
    elif config.goals_file:
        found = _explicit(Path(config.goals_file), key, strategy.name)
    else:
        found = _lookup(spec, plugins, goals_dir, key)
        if found is None and config.goals == "auto":
            found = _train(spec, plugins, strategy, key, producer_config, run_fn, goals_dir)
        if found is None:
            known = ", ".join(goalfiles.available(goals_dir, spec.benchmark)) or "none"
            raise UsageError(
                f"no accuracy goals for {strategy.name} on {spec.benchmark} (recipe {spec.recipe}, {len(tasks)} tasks, "
                f"{key.producer} goals {key.stem()} in {goals_dir / spec.benchmark}; found: {known}); "
                f"pass --{strategy.name}.goals auto to train them first, or --{strategy.name}.goals-file FILE"
            )
    missing = goalfiles.missing_tasks(found, [t.name for t in tasks])
    if missing:
        raise UsageError(f"goals file {found.path} has no goal for task(s) {missing}; it lists {sorted(found.values)}")
    strategy.use_goals(found.values)  # type: ignore[attr-defined]
    return found


def _check_unchanged(strategy: Strategy, recorded: dict[str, Any]) -> None:
    """A resumed run keeps the goals its earlier tasks were packed against."""
    config = strategy.config
    given = getattr(config, "goals_file", None)
    if not wants_goals(strategy) or (given and Path(given) != Path(recorded["file"])):
        raise UsageError(
            f"this run started with the accuracy goals of {recorded['file']} and a resumed run keeps them; "
            f"drop --{strategy.name}.goals/--{strategy.name}.goals-file from --resume, or start a new run"
        )


def _explicit(path: Path, key: goalfiles.GoalKey, option: str) -> goalfiles.Goals:
    found = goalfiles.read(path)
    if found.key is None:
        found.notes.append("no provenance recorded in the file; used as given")
        log.info("accuracy goals from %s (the file records no provenance)", path)
        return found
    hard = found.key.differences(key, ignore=("producer", "config_key"))
    if hard:
        raise UsageError(
            f"goals file {path} was measured on other data or settings than this run ({'; '.join(hard)}); use "
            f"goals of this benchmark, recipe and data (--{option}.goals auto trains them) or a file without "
            f"provenance columns"
        )
    soft = found.key.differences(key, ignore=("benchmark", "recipe", "tasks", "data_key"))
    if soft:
        note = f"goals produced differently from this strategy's own ({'; '.join(soft)})"
        found.notes.append(note)
        log.warning("%s: %s", path, note)
    return found


def _lookup(spec: RunSpec, plugins: Plugins, goals_dir: Path, key: goalfiles.GoalKey) -> goalfiles.Goals | None:
    path = goalfiles.find(goals_dir, key, spec.seed)
    if path is not None:
        found = goalfiles.read(path)
        log.warning("using accuracy goals from %s (%s, seeds %s)", path, key.producer, " ".join(map(str, found.seeds)))
        return found
    benchmark_cls = plugins.benchmarks.get(spec.benchmark)
    full_scale = goalfiles.data_key(spec.benchmark_config) == goalfiles.data_key(benchmark_cls.Config())
    if spec.recipe == benchmark_cls.default_recipe and full_scale:
        published = goalfiles.published(spec.benchmark)
        if published is not None:
            log.warning("using the published accuracy goals %s (recipe %s)", published.path, spec.recipe)
            return published
    return None


def _train(
    spec: RunSpec,
    plugins: Plugins,
    strategy: Strategy,
    key: goalfiles.GoalKey,
    producer_config: Any,
    run_fn: Callable[[RunSpec, Plugins], Any],
    goals_dir: Path,
) -> goalfiles.Goals:
    """Train the goals as ordinary clbench runs (resumed when an earlier attempt stopped)."""
    name, _ = _runner_strategy(key.producer)
    sequences = strategy.config.goal_sequences if key.producer == "finetune_max" else 1
    seeds = [spec.seed + i for i in range(sequences)]
    folder = goals_dir / spec.benchmark / f"{key.stem()}-s{spec.seed}"
    target = goalfiles.goal_path(goals_dir, key, spec.seed)
    own = _epochs_per_task(strategy.config)
    theirs = producer_config.epochs * sequences
    share = f"about {100 * theirs / own:.0f} % of this run's own training epochs" if own else "extra training"
    log.warning(
        "no %s accuracy goals for %s on %s (recipe %s): training them first with %s (%d sequence(s), %d epoch(s) "
        "per task; %s); they are kept in %s for later runs",
        key.producer, strategy.name, spec.benchmark, spec.recipe,
        name, sequences, producer_config.epochs, share, target,
    )  # fmt: skip
    started = time.perf_counter()
    per_sequence = []
    for i, seed in enumerate(seeds):
        out = folder if sequences == 1 else folder / f"sequence{i + 1}-s{seed}"
        if (out / "summary.json").is_file() and (out / "goals.csv").is_file():
            per_sequence.append(goalfiles.read(out / "goals.csv").values)
            continue
        resume = (out / "config.toml").is_file()
        sub = replace(
            spec, strategy=name, strategy_config=producer_config, seed=seed, out=out, resume=resume, overwrite=False,
            publish_goals=sequences == 1,  # finetune-max publishes the maximum, not each sequence
        )  # fmt: skip
        state = run_fn(sub, plugins)
        per_sequence.append(state.strategy.produced_goals())
    combined = {task: max(values[task] for values in per_sequence) for task in per_sequence[0]}
    source = f"{key.producer} for {strategy.name}: {folder}"
    goalfiles.write(target, combined, source, key, seeds)
    log.warning("accuracy goals trained in %.0f s and written to %s", time.perf_counter() - started, target)
    return goalfiles.Goals(combined, str(target), key, tuple(seeds), trained_now=True)


def _epochs_per_task(config: Any) -> int:
    """Training epochs of one pass through a goal-driven task: finetune, prune stages, retrain."""
    epochs = config.epochs + len(getattr(config, "prune_stages", ())) * getattr(config, "prune_epochs", 0)
    if getattr(config, "retrain", False):
        epochs += config.retrain_epochs
    return epochs


def publish(spec: RunSpec, strategy: Strategy, run_dir: Path, num_tasks: int, keyed: bool = True) -> Path | None:
    """After a goal-producing run (``produces_goals``): write its goals with their provenance into
    ``run_dir/goals.csv`` and (``keyed``) as the keyed goal file later PAE/CPG runs look up."""
    producer = getattr(strategy, "produces_goals", None)
    if not producer:
        return None
    values = strategy.produced_goals()  # type: ignore[attr-defined]
    key = producer_key(spec, producer, num_tasks)
    source = f"{spec.strategy} run {run_dir}"
    goalfiles.write(run_dir / "goals.csv", values, source, key, [spec.seed])
    if not keyed:
        return None
    target = goalfiles.goal_path(spec.runs_root / "goals", key, spec.seed)
    goalfiles.write(target, values, source, key, [spec.seed])
    log.info("accuracy goals for %s written to %s", spec.benchmark, target)
    return target
