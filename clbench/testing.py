"""The strategy contract as a test kit for plugin authors, served the way pytest's ``pytester``
serves pytest plugin authors. In your package's tests::

    pytest_plugins = ["clbench.testing"]

    def test_contract(clbench_contract):
        clbench_contract.check(MyStrategy)  # or the name of an installed strategy

The contract, on the offline default benchmark (``digits``, recipe ``tiny``, CPU, a fixed seed):

1. **learns**: every task's accuracy right after it is learned clears a floor (0.6; chance on
   digits' class pairs is 0.5);
2. **zero forgetting**, when the strategy declares ``zero_forgetting = True``: every task keeps
   exactly the accuracy it finished with, to the last bit;
3. **checkpoint/resume bit-exact**: the last task, run again in a fresh strategy loaded from the
   checkpoint of the task before it (as ``clbench run --resume`` does), gives the same table.

It costs about one run of the strategy plus one task. Nothing here is collected as a test by
itself: clbench's own suite calls it for clbench's own strategies only, so installing a plugin
never adds to that suite. Import cost: pytest; torch only once a run starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import clbench
from clbench import config as cfg

if TYPE_CHECKING:
    import pandas as pd

    from clbench.manager import Plugins
    from clbench.runspec import RunSpec

DEFAULT_BENCHMARK = "digits"
DEFAULT_RECIPE = "tiny"
FLOOR = 0.6  # digits' tasks are class pairs: chance is 0.5


@dataclass
class ContractRun:
    """One finished run of the contract: its directory, metrics and accuracy matrix
    (rows: trained task, columns: evaluated task, fractions)."""

    strategy: type
    run_dir: Path
    spec: RunSpec
    plugins: Plugins
    metrics: pd.DataFrame = field(repr=False)

    @property
    def matrix(self) -> pd.DataFrame:
        from clbench import results

        return results.accuracy_matrix(self.metrics)

    def assert_learns(self, floor: float = FLOOR) -> None:
        """Every task's accuracy right after it is learned is above ``floor``."""
        matrix = self.matrix
        low = {int(t): float(matrix.loc[t, t]) for t in matrix.index if not matrix.loc[t, t] > floor}
        assert not low, f"{self.strategy.name}: accuracy when learned is not above {floor} on tasks {low}"

    def assert_zero_forgetting(self) -> None:
        """Each task's accuracy never changes after it is learned (bit for bit); only checked
        when the strategy declares ``zero_forgetting = True``."""
        if not getattr(self.strategy, "zero_forgetting", False):
            return
        matrix = self.matrix
        for task in matrix.columns:
            seen = matrix.loc[task:, task]
            assert seen.nunique() == 1, (
                f"{self.strategy.name} declares zero_forgetting, but task {task} went {list(seen)}"
            )

    def assert_resume_bit_exact(self) -> None:
        """Resume a copy of this run from the checkpoint before its last task, in a fresh
        strategy, and compare every measured value but timings with this run's."""
        from clbench import checkpoint
        from clbench.runner import run

        copy = self.run_dir.with_name(self.run_dir.name + "-resumed")
        shutil.copytree(self.run_dir, copy)
        last = int(self.metrics["trained_task"].max())
        folder = copy / checkpoint.CHECKPOINT_DIR
        for name in (f"task-{last:03d}.pt", f"task-{last:03d}.pt.sha256"):
            (folder / name).unlink(missing_ok=True)
        for name in ("summary.json", "summary.md"):
            (copy / name).unlink(missing_ok=True)
        saved = checkpoint.latest(copy)
        assert saved is not None and saved.task == last - 1, f"no checkpoint of task {last - 1} in {copy}"
        from dataclasses import replace

        run(replace(self.spec, out=copy, resume=True, overwrite=False), self.plugins)
        from clbench import results

        assert _table(results.load_metrics(copy)) == _table(self.metrics), (
            f"{self.strategy.name}: resuming before task {last} gave another table than the uninterrupted run "
            "(state missing from extra_state()/phase_state(), or randomness outside torch/numpy/random?)"
        )


def _table(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Every measured value except timings, in row order (NaN as -1: NaN != NaN)."""
    kept = frame[~frame["metric"].str.startswith("seconds_")].fillna({"value": -1.0})
    return list(kept[["trained_task", "eval_task", "metric", "value"]].itertuples(index=False))


class _Registers:
    """An in-memory plugin that registers one strategy class (as a test fixture would)."""

    def __init__(self, strategy: type) -> None:
        self.strategy = strategy
        self.__name__ = f"clbench.testing:{strategy.__name__}"

    @clbench.hookimpl
    def clbench_register_strategies(self, register: Any) -> None:
        register(self.strategy)


class Contract:
    """The ``clbench_contract`` fixture: runs a strategy through the contract under ``tmp_path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._count = 0

    def plugins(self, strategy: type | str, modules: Sequence[object] = ()) -> tuple[Plugins, str]:
        """The plugins a contract run loads, and the strategy's name.

        ``modules``: your plugin modules, registered in code beside clbench's own (not your
        installed package, whose entry points would register the same names). Otherwise a
        strategy name means an installed strategy; a class is registered on its own unless the
        installed one is that very class.
        """
        from clbench.manager import load_plugins

        name = strategy if isinstance(strategy, str) else strategy.name
        if modules:
            plugins = load_plugins(modules=modules, third_party=False)
        else:
            plugins = load_plugins()
            if not isinstance(strategy, str) and plugins.strategies.get_or_none(name) is not strategy:
                plugins = load_plugins(modules=[_Registers(strategy)], third_party=False)
        assert name in plugins.strategies, (
            f"strategy {name!r} is not registered; plugins that did not load: {[b.line() for b in plugins.broken]}"
        )
        return plugins, name

    def run(
        self,
        strategy: type | str,
        *,
        benchmark: str = DEFAULT_BENCHMARK,
        recipe: str = DEFAULT_RECIPE,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        modules: Sequence[object] = (),
    ) -> ContractRun:
        """Run ``strategy`` (a class, or an installed strategy's name) on ``benchmark`` with
        ``recipe`` plus ``options`` (``{config_field: value}``, as ``--<strategy>.<field>``)
        on the CPU, and return the finished run (``modules``: see :meth:`plugins`)."""
        from clbench import results
        from clbench.runner import RunSpec, run

        plugins, name = self.plugins(strategy, modules)
        strategy_cls = plugins.strategies.get(name)
        bench_cls = plugins.benchmarks.get(benchmark)
        layers = [layer.values for layer in plugins.recipes.layers(bench_cls, recipe, name, strategy_cls)]
        self._count += 1
        spec = RunSpec(
            strategy=name,
            benchmark=benchmark,
            strategy_config=cfg.resolve(strategy_cls.Config, name, [*layers, dict(options or {})]),
            benchmark_config=cfg.resolve(bench_cls.Config, benchmark, [bench_cls.recipe_config_layer(recipe)]),
            recipe=recipe,
            seed=seed,
            device="cpu",
            out=self.tmp_path / f"contract-{name}-{self._count}",
            quiet=True,
            runs_root=self.tmp_path / "runs",
        )
        run(spec, plugins)
        return ContractRun(strategy_cls, spec.out, spec, plugins, results.load_metrics(spec.out))  # type: ignore[arg-type]

    def check(
        self,
        strategy: type | str,
        *,
        floor: float = FLOOR,
        resume: bool = True,
        **run_options: Any,
    ) -> ContractRun:
        """The whole contract: :meth:`run`, then learns, zero forgetting (where declared) and,
        with ``resume``, checkpoint/resume bit-exact. Returns the run for further checks."""
        result = self.run(strategy, **run_options)
        result.assert_learns(floor)
        result.assert_zero_forgetting()
        if resume:
            result.assert_resume_bit_exact()
        return result


@pytest.fixture
def clbench_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Contract]:
    """A :class:`Contract` writing under ``tmp_path`` (the working directory too, so files a
    strategy writes beside its run, such as ``runs/goals``, stay there)."""
    monkeypatch.chdir(tmp_path)
    yield Contract(tmp_path)
