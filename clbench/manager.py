"""Plugin loading: one pluggy manager per run, filled in a fixed order (as tox does).

Order: unpublished plugin files given with ``--plugin`` → entry points of the ``clbench`` group
(minus those named in ``CLBENCH_DISABLE_PLUGINS=a,b``) → explicitly passed modules. First-party
strategies and benchmarks are entry points of the clbench distribution itself, so every run
exercises the same path a third-party package uses. Nothing heavy is imported here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from clbench import hookspecs
from clbench.errors import UsageError
from clbench.registry import Registry

if TYPE_CHECKING:
    from clbench.benchmark import Benchmark
    from clbench.strategy import Strategy

ENTRY_POINT_GROUP = "clbench"
DISABLE_ENV = "CLBENCH_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    provider: str
    version: str
    hooks: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    """The loaded plugin manager and the registries it filled."""

    pm: pluggy.PluginManager
    strategies: Registry[type[Strategy]]
    benchmarks: Registry[type[Benchmark]]

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def info(self) -> list[PluginInfo]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist = dists.get(id(plugin))
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            out.append(
                PluginInfo(
                    name=name,
                    provider=_provider(name, plugin, self.pm),
                    version=dist.version if dist is not None else "-",
                    hooks=hooks,
                )
            )
        return sorted(out, key=lambda p: p.name)


def load_plugins(
    entrypoints: bool = True,
    modules: Iterable[ModuleType | object] = (),
    files: Sequence[str | Path] = (),
) -> Plugins:
    """Create a plugin manager, load plugins in the documented order and fill the registries.

    Idempotent and side-effect free: each call builds a fresh manager, so tests can isolate a
    plugin with ``load_plugins(entrypoints=False, modules=[my_plugin])``.
    """
    pm = pluggy.PluginManager("clbench")
    pm.add_hookspecs(hookspecs)
    for path in files:
        module = _import_file(Path(path))
        pm.register(module, name=f"file:{Path(path).name}")
    if entrypoints:
        for blocked in filter(None, (s.strip() for s in os.environ.get(DISABLE_ENV, "").split(","))):
            pm.set_blocked(blocked)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for module in modules:
        name = getattr(module, "__name__", None) or repr(module)
        if pm.is_registered(module):
            continue
        pm.register(module, name=name)
    pm.check_pending()

    strategies: Registry[type[Strategy]] = Registry("strategy")
    benchmarks: Registry[type[Benchmark]] = Registry("benchmark")
    _fill(pm, "clbench_register_strategies", strategies)
    _fill(pm, "clbench_register_benchmarks", benchmarks)
    return Plugins(pm, strategies, benchmarks)


def _fill(pm: pluggy.PluginManager, hook_name: str, registry: Registry[Any]) -> None:
    # Each implementation is called on its own so that every entry knows its provider
    # (needed for the "registered twice: by A and by B" error and for `clbench list`).
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # registration order
        provider = _provider(impl.plugin_name, impl.plugin, pm)
        impl.function(register=_registrar(registry, provider))


def _registrar(registry: Registry[Any], provider: str) -> Callable[[type], None]:
    def register(cls: type) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str):
            raise UsageError(f"{provider} registered {cls!r} without a string `name` attribute")
        registry.add(name, cls, _one_line(cls), provider)

    return register


def _one_line(cls: type) -> str:
    text = getattr(cls, "description", None) or (cls.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""


def _provider(plugin_name: str, plugin: object, pm: pluggy.PluginManager) -> str:
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return f"{dist.project_name} {dist.version} (entry point {plugin_name})"
    return plugin_name


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"plugin file {path} does not exist")
    module_name = f"clbench_plugin_file_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"plugin file {path} cannot be imported (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    spec.loader.exec_module(module)
    return module
