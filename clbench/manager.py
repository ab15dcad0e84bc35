"""Plugin loading: one pluggy manager per run, filled in a fixed order (as tox does), with every
third-party plugin isolated (as pytest, tox and llm do) so that one broken package cannot take
down the others.

Order: unpublished plugin files given with ``--plugin`` → entry points of the ``clbench`` group
(minus those named, by entry-point or distribution name, in ``CLBENCH_DISABLE_PLUGINS=a,b``; all
but clbench's own with ``CLBENCH_NO_THIRD_PARTY_PLUGINS=1``) → explicitly passed modules. First-party
strategies and benchmarks are entry points of the clbench distribution itself, so every run
exercises the same path a third-party package uses. Nothing heavy is imported here.

A plugin file or entry point that fails to import, whose hooks do not match the hookspecs, or
whose registration hook raises or registers a taken name is left out and recorded in
:attr:`Plugins.broken` (one line each, naming how to disable it); everything it registered is
removed. Modules passed in code (``modules=``) are the caller's own: their errors propagate.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from clbench import config as cfg
from clbench import hookspecs
from clbench.errors import ClbenchError, RegistryError, UsageError
from clbench.recipes import RecipeBook
from clbench.registry import Registry

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.strategy import Strategy

ENTRY_POINT_GROUP = "clbench"
DISABLE_ENV = "CLBENCH_DISABLE_PLUGINS"
NO_THIRD_PARTY_ENV = "CLBENCH_NO_THIRD_PARTY_PLUGINS"
FIRST_PARTY = "clbench"  # the distribution whose entry points are clbench's own


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from; recorded in a run's ``environment.json`` (provenance).

    ``kind`` is ``"distribution"`` (an installed package's entry point, with ``distribution``,
    ``version`` and ``entry_point``), ``"file"`` (``--plugin FILE.py``, with ``path`` and its
    ``sha256``) or ``"module"`` (passed to :func:`load_plugins` in code).
    """

    plugin: str  # the name pluggy knows it by: entry-point name, file:NAME.py, module name
    kind: str
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None  # "module:attr" the entry point names
    path: str | None = None
    sha256: str | None = None

    @property
    def first_party(self) -> bool:
        return self.kind == "distribution" and _canonical(self.distribution or "") == FIRST_PARTY

    def describe(self) -> str:
        """``clbench-example 0.1.0 (entry point example)``, ``file:mine.py`` or the module name."""
        if self.kind == "distribution":
            return f"{self.distribution} {self.version} (entry point {self.plugin})"
        return self.plugin

    def disable_hint(self) -> str:
        """How a user turns this plugin off."""
        if self.kind == "distribution":
            return f"disable it with {DISABLE_ENV}={self.distribution} (or uninstall {self.distribution})"
        if self.kind == "file":
            return f"fix {self.path} or leave out --plugin {self.path}"
        return "leave it out of load_plugins(modules=...)"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin left out because it failed at ``stage`` (``import``, ``validate`` or ``register``)."""

    origin: Origin
    stage: str
    error: str  # "ModuleNotFoundError: No module named 'x'", one line

    def line(self) -> str:
        """The one line the CLI prints on stderr for it."""
        verb = {"import": "failed to import", "validate": "does not match the hookspecs",
                "register": "failed to register"}[self.stage]  # fmt: skip
        return f"plugin {self.origin.describe()} {verb}: {self.error}; {self.origin.disable_hint()}"


@dataclass
class PluginInfo:
    name: str
    provider: str
    version: str
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", "BROKEN (<stage>)" (the error goes to stderr) or "disabled (...)"


@dataclass
class Plugins:
    """The loaded plugin manager, the registries it filled and what could not be loaded."""

    pm: pluggy.PluginManager
    strategies: Registry[type[Strategy]]
    benchmarks: Registry[type[Benchmark]]
    recipes: RecipeBook = field(default_factory=RecipeBook)
    origins: dict[str, Origin] = field(default_factory=dict)  # plugin name -> origin (loaded ones)
    broken: list[BrokenPlugin] = field(default_factory=list)
    disabled: list[Origin] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def info(self) -> list[PluginInfo]:
        """One row per plugin for ``clbench list plugins``: loaded, broken and disabled ones."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            origin = self.origins.get(name, Origin(name, "module"))
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            out.append(PluginInfo(name, origin.describe(), origin.version or "-", hooks))
        for bad in self.broken:
            o = bad.origin
            out.append(PluginInfo(o.plugin, o.describe(), o.version or "-", [], f"BROKEN ({bad.stage})"))
        for o in self.disabled:
            out.append(PluginInfo(o.plugin, o.describe(), o.version or "-", [], f"disabled ({DISABLE_ENV})"))
        return sorted(out, key=lambda p: p.name)

    def origin_of(self, provider: str) -> Origin | None:
        """The origin of the plugin that registered an entry (its ``Entry.provider``)."""
        return next((o for o in self.origins.values() if o.describe() == provider), None)

    def provenance(self, strategy: str, benchmark: str) -> dict[str, Any]:
        """What ``environment.json`` records under ``providers``: who provided the run's strategy
        (with its declared accounting, :mod:`clbench.accounting`) and benchmark, and every
        ``--plugin`` file loaded (path and sha256), so that ``--resume`` can reload them."""
        from clbench.accounting import record as accounting

        record: dict[str, Any] = {}
        pairs: tuple[tuple[str, Registry[Any], str], ...] = (
            ("strategy", self.strategies, strategy), ("benchmark", self.benchmarks, benchmark),
        )  # fmt: skip
        for kind, registry, name in pairs:
            if name in registry:
                entry = registry.entry(name)
                origin = self.origin_of(entry.provider)
                record[kind] = {"name": name, **(origin.as_dict() if origin else {"plugin": entry.provider})}
        if "strategy" in record:
            record["strategy"]["accounting"] = accounting(self.strategies.get(strategy))
        record["plugin_files"] = [o.as_dict() for o in self.origins.values() if o.kind == "file"]
        return record

    def why_missing(self, kind: str, name: str) -> str:
        """A hint for an unknown ``kind`` (strategy/benchmark) ``name``: the plugins that did not
        load and may have provided it; '' when every plugin loaded."""
        parts = [f"{b.origin.describe()} did not load ({b.error})" for b in self.broken]
        parts += [f"{o.describe()} is disabled by {DISABLE_ENV}" for o in self.disabled]
        return f"; {kind} {name!r} may come from a plugin that is not loaded: {'; '.join(parts)}" if parts else ""


def load_plugins(
    entrypoints: bool = True,
    modules: Iterable[ModuleType | object] = (),
    files: Sequence[str | Path] = (),
    third_party: bool | None = None,
) -> Plugins:
    """Create a plugin manager, load plugins in the documented order and fill the registries.

    Idempotent and side-effect free: each call builds a fresh manager, so tests can isolate a
    plugin with ``load_plugins(entrypoints=False, modules=[my_plugin])``. ``third_party=False``
    loads only clbench's own entry points (default: on unless ``CLBENCH_NO_THIRD_PARTY_PLUGINS``
    is set). Broken files and entry points end up in ``Plugins.broken``, never raise.

    Raises:
        UsageError: a ``--plugin`` path is not a file.
        pluggy.PluginValidationError, RegistryError: a module passed in ``modules`` is invalid.
    """
    pm = pluggy.PluginManager("clbench")
    pm.add_hookspecs(hookspecs)
    loader = _Loader(pm)
    for path in files:
        loader.load_file(Path(path))
    if entrypoints:
        if third_party is None:
            third_party = os.environ.get(NO_THIRD_PARTY_ENV, "").strip().lower() not in ("1", "true", "yes", "on")
        disabled = {_canonical(s) for s in os.environ.get(DISABLE_ENV, "").split(",") if s.strip()}
        for dist, ep in _entry_points():
            loader.load_entry_point(dist, ep, disabled, third_party)
    for module in modules:
        loader.load_module(module)
    loader.check_pending()
    return loader.fill()


class _Loader:
    """Registers plugins one at a time, turning each one's failure into a :class:`BrokenPlugin`."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.origins: dict[str, Origin] = {}
        self.broken: list[BrokenPlugin] = []
        self.disabled: list[Origin] = []
        self.strict: set[str] = set()  # modules passed in code: their errors propagate

    def load_file(self, path: Path) -> None:
        if not path.is_file():
            raise UsageError(f"plugin file {path} does not exist")
        origin = Origin(f"file:{path.name}", "file", path=str(path.resolve()), sha256=file_sha256(path))
        try:
            module = _import_file(path)
        except Exception as exc:  # any error in someone else's module
            self._break(origin, "import", exc)
            return
        self._register(module, origin)

    def load_entry_point(
        self, dist: importlib.metadata.Distribution, ep: importlib.metadata.EntryPoint, disabled: set[str], third: bool
    ) -> None:
        dist_name = dist.metadata["Name"] or "?"
        origin = Origin(ep.name, "distribution", dist_name, dist.version, entry_point=ep.value)
        seen = self.pm.has_plugin(ep.name) or ep.name in self.origins
        if seen or any(b.origin.plugin == ep.name for b in self.broken):
            return  # the same distribution found twice on sys.path (as pluggy skips it)
        if _canonical(ep.name) in disabled or _canonical(dist_name) in disabled or not (third or origin.first_party):
            self.disabled.append(origin)
            return
        try:
            plugin = ep.load()
        except Exception as exc:
            self._break(origin, "import", exc)
            return
        self._register(plugin, origin)

    def load_module(self, module: object) -> None:
        name = getattr(module, "__name__", None) or repr(module)
        if self.pm.is_registered(module):
            return
        self.strict.add(name)
        self.pm.register(module, name=name)
        self.origins[name] = Origin(name, "module")

    def _register(self, plugin: object, origin: Origin) -> None:
        try:
            self.pm.register(plugin, name=origin.plugin)
        except Exception as exc:  # pluggy.PluginValidationError: a hook's signature
            self._unregister(origin.plugin)
            self._break(origin, "validate", exc)
            return
        self.origins[origin.plugin] = origin

    def _unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.origins.pop(name, None)

    def _break(self, origin: Origin, stage: str, exc: BaseException | str) -> None:
        if origin.plugin in self.strict:
            raise exc if isinstance(exc, BaseException) else RegistryError(exc)
        self.broken.append(BrokenPlugin(origin, stage, exc if isinstance(exc, str) else _one_line_error(exc)))

    def check_pending(self) -> None:
        """Hooks no hookspec knows (a misspelt hook name) break the plugin that implements them."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                origin = self.origins.get(name, Origin(name, "module"))
                if name in self.strict:
                    raise
                self._unregister(name)
                self._break(origin, "validate", exc)

    def fill(self) -> Plugins:
        """Call every registration hook, one plugin at a time: a plugin whose hook raises or that
        registers a taken name is broken, and none of its entries is kept. clbench's own plugins
        register first, so a clash with a third-party plugin breaks the latter."""
        staged: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        for hook_name in ("clbench_register_strategies", "clbench_register_benchmarks", "clbench_register_recipes"):
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):  # registration order
                if impl.plugin_name not in self.origins:
                    continue
                calls = staged.setdefault(impl.plugin_name, [])
                try:
                    impl.function(register=_collector(hook_name, calls))
                except Exception as exc:
                    self._fail_registration(impl.plugin_name, staged, exc)
        strategies: Registry[type[Strategy]] = Registry("strategy")
        benchmarks: Registry[type[Benchmark]] = Registry("benchmark")
        recipes = RecipeBook()
        order = sorted(staged, key=lambda n: not self.origins.get(n, Origin(n, "module")).first_party)
        for plugin_name in order:  # benchmarks before recipes: recipes check their benchmark
            origin = self.origins.get(plugin_name)
            if origin is None:
                continue
            try:
                self._add(staged[plugin_name], origin.describe(), strategies, benchmarks, recipes)
            except (ClbenchError, TypeError, ValueError) as exc:
                for registry in (strategies, benchmarks, recipes):
                    registry.discard_provider(origin.describe())
                self._fail_registration(plugin_name, staged, exc)
        return Plugins(self.pm, strategies, benchmarks, recipes, self.origins, self.broken, self.disabled)

    def _fail_registration(self, plugin_name: str, staged: dict[str, Any], exc: BaseException) -> None:
        origin = self.origins.get(plugin_name, Origin(plugin_name, "module"))
        staged.pop(plugin_name, None)
        if plugin_name in self.strict:
            raise exc
        self._unregister(plugin_name)
        self._break(origin, "register", exc)

    @staticmethod
    def _add(
        calls: list[tuple[str, tuple[Any, ...]]],
        provider: str,
        strategies: Registry[Any],
        benchmarks: Registry[Any],
        recipes: RecipeBook,
    ) -> None:
        for hook_name, args in sorted(calls, key=lambda c: c[0] == "clbench_register_recipes"):
            if hook_name == "clbench_register_recipes":
                strategy = args[2]
                owner = strategies.entry(strategy).provider if strategy in strategies else None
                if strategy != "*" and owner != provider:  # "*": RecipeBook.add says why it is refused
                    raise RegistryError(
                        f"{provider} added recipe entries for strategy {strategy!r}, which "
                        + (f"{owner} registers" if owner else "it does not register")
                        + ": a plugin adds recipe entries for its own strategies only"
                    )
                if owner is not None:
                    fields = cfg.fields_of(strategies.get(strategy).Config)
                    unknown = sorted({str(k).replace("-", "_") for k in args[3]} - set(fields))
                    if unknown:
                        raise RegistryError(
                            f"{provider}: recipe entry {args[0]}/{args[1]}/{strategy} sets {unknown}, which are "
                            f"not fields of {strategy}'s Config"
                        )
                recipes.add(*args, provider=provider, benchmarks=benchmarks)
                continue
            (cls,) = args
            name = getattr(cls, "name", None)
            if not isinstance(name, str):
                raise RegistryError(f"{provider} registered {cls!r} without a string `name` attribute")
            registry = strategies if hook_name == "clbench_register_strategies" else benchmarks
            if registry is strategies:
                from clbench.strategy import check_strategy_class

                check_strategy_class(cls)
            registry.add(name, cls, _one_line(cls), provider)


def _collector(hook_name: str, calls: list[tuple[str, tuple[Any, ...]]]) -> Callable[..., None]:
    """The ``register`` callable a registration hook receives: it records the call; entries are
    added only once the whole hook has returned."""
    if hook_name == "clbench_register_recipes":

        def register_recipe(
            benchmark: str, recipe: str, strategy: str, values: dict[str, Any], note: str | None = None
        ) -> None:
            calls.append((hook_name, (benchmark, recipe, strategy, dict(values), note)))

        return register_recipe

    def register(cls: type) -> None:
        calls.append((hook_name, (cls,)))

    return register


def _entry_points() -> Iterator[tuple[importlib.metadata.Distribution, importlib.metadata.EntryPoint]]:
    """Every ``clbench`` entry point with the distribution that declares it (what pluggy's
    ``load_setuptools_entrypoints`` walks, without its all-or-nothing loading)."""
    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                yield dist, ep


def _canonical(name: str) -> str:
    """PEP 503 normalisation: ``Clbench_Example`` and ``clbench-example`` are one name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _one_line_error(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"{exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_line(cls: type) -> str:
    text = getattr(cls, "description", None) or (cls.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (provenance of ``--plugin`` files)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import_file(path: Path) -> ModuleType:
    module_name = f"clbench_plugin_file_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
