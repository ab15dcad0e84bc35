"""Recipes: a benchmark's named sets of strategy settings, plus the entries plugins contribute.

A benchmark declares ``recipes = {recipe: {strategy or "*": {field: value}}}``. A plugin adds
entries for any benchmark through ``clbench_register_recipes(register)`` (a strategy's paper
schedule shrunk for ``digits`` ``tiny``, say), or a new recipe with its note. The layers a recipe
puts under a run's config file and flags, later wins:

1. the benchmark's catch-all ``"*"`` entry, restricted to the strategy's Config fields, minus the
   fields the strategy lists in ``Strategy.own_defaults``;
2. the entry a plugin contributed for this strategy;
3. the benchmark's own entry for this strategy.

2 and 3 never both exist: a plugin cannot replace an entry the benchmark defines. When the
catch-all replaces a default the strategy's Config sets itself (different from the one it
inherits), :func:`catch_all_notes` says so; ``--print-config`` and ``--help`` show it.

Importing this module is cheap (no torch).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clbench import config as cfg
from clbench.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.registry import Registry


@dataclass(frozen=True)
class RecipeEntry:
    """Settings a plugin contributed for one strategy in one recipe of one benchmark."""

    benchmark: str
    recipe: str
    strategy: str
    values: dict[str, Any]
    note: str | None
    provider: str


@dataclass(frozen=True)
class Layer:
    """One recipe layer: the values it sets and where they come from (shown by ``--help``)."""

    values: dict[str, Any]
    origin: str


class RecipeBook:
    """The recipe entries plugins contributed, checked against the benchmarks' own."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], RecipeEntry] = {}

    def add(
        self,
        benchmark: str,
        recipe: str,
        strategy: str,
        values: dict[str, Any],
        note: str | None = None,
        *,
        provider: str,
        benchmarks: Registry[type[Benchmark]] | None = None,
    ) -> None:
        """Record a contributed entry.

        Raises:
            RegistryError: ``strategy`` is ``"*"`` or not snake_case; the entry exists already
                (in the benchmark or from another plugin); a new recipe comes without a note.
        """
        if strategy == "*" or not strategy.isidentifier() or strategy != strategy.lower():
            raise RegistryError(
                f"{provider} registered a {benchmark}/{recipe} recipe entry for {strategy!r}: plugins add "
                'entries for a named strategy only (a benchmark\'s catch-all "*" is its own)'
            )
        if not all(isinstance(k, str) for k in values):
            raise RegistryError(f"{provider}: recipe entry {benchmark}/{recipe}/{strategy} needs field-name keys")
        key = (benchmark, recipe, strategy)
        if key in self._entries:
            first = self._entries[key].provider
            raise RegistryError(f"recipe entry {'/'.join(key)} is registered twice: by {first} and by {provider}")
        bench_cls = benchmarks.get(benchmark) if benchmarks is not None and benchmark in benchmarks else None
        if bench_cls is not None:
            if strategy in bench_cls.recipes.get(recipe, {}):
                raise RegistryError(
                    f"{provider} registered recipe entry {'/'.join(key)}, which benchmark {benchmark!r} "
                    "defines itself; use another recipe name"
                )
            if recipe not in bench_cls.recipes and not note:
                raise RegistryError(f"{provider} added recipe {recipe!r} to {benchmark!r} without a note (cost, use)")
        self._entries[key] = RecipeEntry(benchmark, recipe, strategy, dict(values), note, provider)

    def discard_provider(self, provider: str) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e.provider != provider}

    def entry(self, benchmark: str, recipe: str, strategy: str) -> RecipeEntry | None:
        return self._entries.get((benchmark, recipe, strategy))

    def names(self, bench_cls: type[Benchmark]) -> list[str]:
        """The benchmark's recipes, then those plugins added to it, in order."""
        names = list(bench_cls.recipes)
        for benchmark, recipe, _ in self._entries:
            if benchmark == bench_cls.name and recipe not in names:
                names.append(recipe)
        return names

    def note(self, bench_cls: type[Benchmark], recipe: str) -> str:
        if recipe in bench_cls.recipe_notes:
            return bench_cls.recipe_notes[recipe]
        added = [e for e in self._entries.values() if (e.benchmark, e.recipe) == (bench_cls.name, recipe) and e.note]
        return f"{added[0].note} (from {added[0].provider})" if added else "(no description)"

    def contributed(self, bench_cls: type[Benchmark], recipe: str) -> list[RecipeEntry]:
        return [e for e in self._entries.values() if (e.benchmark, e.recipe) == (bench_cls.name, recipe)]

    def check_recipe(self, bench_cls: type[Benchmark], recipe: str) -> None:
        """Raises UsageError naming the recipes that exist when ``recipe`` is not one of them."""
        names = self.names(bench_cls)
        if recipe not in names:
            close = difflib.get_close_matches(recipe, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(
                f"benchmark {bench_cls.name!r} has no recipe {recipe!r}; available: {', '.join(names)}{hint} "
                "(clbench list recipes)"
            )

    def layers(self, bench_cls: type[Benchmark], recipe: str, strategy: str, strategy_cls: type) -> list[Layer]:
        """The recipe's layers for ``strategy`` (see the module docstring), earliest first.

        Raises:
            UsageError: the benchmark has no recipe ``recipe``.
        """
        self.check_recipe(bench_cls, recipe)
        fields = cfg.fields_of(strategy_cls.Config)
        own = bench_cls.recipes.get(recipe, {})
        keep = set(getattr(strategy_cls, "own_defaults", ()))
        common = {k: v for k, v in own.get("*", {}).items() if k in fields and k not in keep}
        out = [Layer(common, f"recipe {recipe}")]
        contributed = self.entry(bench_cls.name, recipe, strategy)
        if contributed is not None:
            out.append(Layer(dict(contributed.values), f"recipe {recipe}, from {contributed.provider}"))
        out.append(Layer(dict(own.get(strategy, {})), f"recipe {recipe}"))
        return out


def own_defaults(config_cls: type) -> dict[str, Any]:
    """Fields whose default ``config_cls`` sets itself: declared there and in no base dataclass,
    or given another default than the nearest base that declares them."""
    mine: dict[str, Any] = {}
    for name, field in cfg.fields_of(config_cls).items():
        if field.default is dataclasses.MISSING:
            continue
        bases = (b for b in config_cls.__mro__[1:] if dataclasses.is_dataclass(b) and name in cfg.fields_of(b))
        base = next(bases, None)
        if base is None or cfg.fields_of(base)[name].default != field.default:
            mine[name] = field.default
    return mine


def catch_all_notes(
    layers: list[Layer], strategy: str, strategy_cls: type, later_keys: Iterable[str] = ()
) -> dict[str, str]:
    """``{field: note}`` for each field where the catch-all ``"*"`` layer replaced a default the
    strategy's Config sets itself and no later layer (a recipe's, or ``later_keys``: config file,
    flags) set it again."""
    if not layers:
        return {}
    later = {k for layer in layers[1:] for k in layer.values} | {k.replace("-", "_") for k in later_keys}
    mine = own_defaults(strategy_cls.Config)
    notes = {}
    for name, value in layers[0].values.items():
        if name in mine and name not in later and mine[name] != value:
            notes[name] = (
                f'{layers[0].origin} (catch-all "*") sets {strategy}.{name} = {value!r}, replacing the strategy\'s '
                f"own default "
                f"{mine[name]!r} (a strategy keeps it by listing {name!r} in own_defaults)"
            )
    return notes
