"""One definition of "the same experiment", shared by ``table``, ``report`` and ``compare``.

Two runs are the same experiment when their resolved ``config.toml`` is equal apart from
``run.seed``: strategy, benchmark, recipe, task count, data limits, engine, precision and every
override take part. Such runs differ only by seed noise and form one row of a comparison table.

A run's *label* names its recipe and every field in which its configuration differs from what
``clbench run --strategy S --benchmark B --recipe R`` alone resolves to
(``tiny (lr=0.0, epochs=3)``). It depends on that run's configuration only, never on the other
runs in the table, so equal settings always read the same and every difference is named.

Importing this module is cheap (no torch): recipes and ``Config`` classes come from the
registries, which ``clbench list`` also loads without a framework.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import tomllib
from typing import TYPE_CHECKING, Any

from clbench import config as cfg
from clbench.errors import ClbenchError
from clbench.runspec import RunOptions

if TYPE_CHECKING:
    from clbench.manager import Plugins

# Settings that name the experiment rather than configure it: never shown as an override.
IDENTITY = ("run.strategy", "run.benchmark", "run.recipe", "run.seed")


def experiment_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config (as read from ``config.toml``) without ``run.seed`` and without where
    or how the data was read: ``run.data_root`` and the benchmark section's ``NOT_DATA`` fields
    (:func:`not_data_fields`; the same images in another folder, downloaded or cached, are the same
    experiment, so two seeds run on two machines are one table row): a deep copy."""
    same = copy.deepcopy(config)
    run = same.get("run", {})
    run.pop("seed", None)
    run.pop("data_root", None)
    benchmark = same.get(str(run.get("benchmark")))
    if isinstance(benchmark, dict):
        for name in not_data_fields(str(run.get("benchmark"))):
            benchmark.pop(name, None)
    return same


def not_data_fields(benchmark: str) -> tuple[str, ...]:
    """``data_root`` and the installed ``benchmark``'s ``Config.NOT_DATA`` (the fields that say where
    or how its data is read, as :func:`clbench.goals.data_key` leaves them out). A benchmark that is
    not installed here (or plugins that fail to load) gives ``("data_root",)`` alone: reading its
    runs on such a machine may then split rows that differ in such a field."""
    plugins = installed_plugins()
    declared = ()
    if plugins is not None and benchmark in plugins.benchmarks:
        declared = tuple(getattr(plugins.benchmarks.get(benchmark).Config, "NOT_DATA", ()))
    return tuple(dict.fromkeys(("data_root", *declared)))


def experiment_id(config: dict[str, Any]) -> str:
    """8 hex digits naming the experiment (stable across Python versions); ``config`` is the
    output of :func:`experiment_config`."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def recipe_layers(plugins: Plugins, benchmark: str, strategy: str, recipe: str) -> list[dict[str, Any]]:
    """The config layers recipe ``recipe`` of ``benchmark`` puts under ``strategy``'s flags, plugin
    contributions included (:meth:`clbench.recipes.RecipeBook.layers`).

    Raises:
        RegistryError: the strategy or benchmark is not installed.
        UsageError: the benchmark has no such recipe.
    """
    bench_cls = plugins.benchmarks.get(benchmark)
    strategy_cls = plugins.strategies.get(strategy)
    return [layer.values for layer in plugins.recipes.layers(bench_cls, recipe, strategy, strategy_cls)]


def run_defaults() -> dict[str, Any]:
    """The ``[run]`` values a plain ``clbench run`` writes (device, deterministic, …)."""
    return {f.name: f.default for f in dataclasses.fields(RunOptions)}


@functools.cache
def installed_plugins() -> Plugins | None:
    """The installed plugins, loaded once per process (None when loading fails)."""
    from clbench.manager import load_plugins

    try:
        return load_plugins()
    except ClbenchError:
        return None


@functools.cache
def recipe_values(strategy: str, benchmark: str, recipe: str) -> dict[str, Any] | None:
    """Flattened ``section.field`` → value that ``--strategy S --benchmark B --recipe R`` alone
    resolves to, as ``config.toml`` stores it (tuples as lists, unset fields absent). None when the
    strategy, benchmark or recipe is not installed."""
    plugins = installed_plugins()
    if plugins is None or strategy not in plugins.strategies or benchmark not in plugins.benchmarks:
        return None
    strategy_cls = plugins.strategies.get(strategy)
    benchmark_cls = plugins.benchmarks.get(benchmark)
    if recipe not in plugins.recipes.names(benchmark_cls):
        return None
    try:
        layers = recipe_layers(plugins, benchmark, strategy, recipe)
        strategy_config = cfg.resolve(strategy_cls.Config, strategy, layers)
        benchmark_config = cfg.resolve(benchmark_cls.Config, benchmark, [benchmark_cls.recipe_config_layer(recipe)])
    except ClbenchError:
        return None
    run = {k: v for k, v in run_defaults().items() if k in ("device", "deterministic", "phase_checkpoints")}
    text = cfg.to_toml({"run": run, strategy: cfg.as_dict(strategy_config), benchmark: cfg.as_dict(benchmark_config)})
    return flatten(tomllib.loads(text))


def overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Fields of a run's config that differ from its recipe's values (``section.field`` →
    value), in config order. When the strategy or benchmark is not installed, every field but
    the identity is listed."""
    run = config.get("run", {})
    flat = flatten(experiment_config(config))
    baseline = recipe_values(str(run.get("strategy")), str(run.get("benchmark")), str(run.get("recipe")))
    return {
        name: value
        for name, value in flat.items()
        if name not in IDENTITY and (baseline is None or baseline.get(name, _ABSENT) != value)
    }


_ABSENT = object()


def label(config: dict[str, Any]) -> str:
    """``recipe (field=value, …)`` naming every override (see the module docstring)."""
    run = config.get("run", {})
    strategy, benchmark = str(run.get("strategy")), str(run.get("benchmark"))
    shown = [f"{short_name(name, strategy, benchmark)}={show(value)}" for name, value in overrides(config).items()]
    recipe = str(run.get("recipe", "?"))
    return f"{recipe} ({', '.join(shown)})" if shown else recipe


def short_name(name: str, strategy: str, benchmark: str) -> str:
    """``cpg.lr`` reads as ``lr`` in a row that already says cpg (also ``run.`` and the benchmark)."""
    for section in (strategy, benchmark, "run"):
        if name.startswith(f"{section}."):
            return name[len(section) + 1 :]
    return name


def show(value: Any) -> str:
    """A value as a label shows it; long ones (file paths) keep their distinctive tail."""
    if value is None:
        return "unset"
    text = str(value)
    return text if len(text) <= 32 else "…" + text[-31:]
