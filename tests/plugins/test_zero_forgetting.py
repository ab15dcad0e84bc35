"""Zero forgetting, exactly, through each packing strategy's real lifecycle on the default benchmark.

An observer plugin (the `clbench_after_task` hook) records, when each task finishes, that task's
outputs on a fixed batch and the weights it owns; after every later task (including a growth step
and a save/load round trip of the whole network through a file) they must be bit-identical.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
import torch

import clbench
from clbench import config as cfg
from clbench.cli import DEFAULT_BENCHMARK
from clbench.manager import load_plugins
from clbench.nn.masked import MaskedNet
from clbench.runner import RunSpec, run


@dataclass
class Recorder:
    batch: torch.Tensor = field(
        default_factory=lambda: torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    )
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    owned: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    checks: int = 0
    widths: list[float] = field(default_factory=list)

    @clbench.hookimpl
    def clbench_after_task(self, run, task, rows):
        strategy = run.strategy
        if task == 3:  # save/load round trip through bytes, as a checkpoint would
            buffer = io.BytesIO()
            torch.save(strategy.model.state_dict(), buffer)
            buffer.seek(0)
            state = torch.load(buffer, weights_only=False)
            strategy.model = MaskedNet.from_state_dict(state, strategy.context.backbone_factory)
        model = strategy.model
        model.eval()
        self.widths.append(model.width_mult)
        with torch.no_grad():
            for k in range(1, task + 1):
                model.activate(k)
                out = model(self.batch)
                owned = {
                    name: layer.weight.detach()[layer.owner == k].clone()
                    for name, layer in model.named_modules()
                    if hasattr(layer, "owner")
                }
                if k == task:
                    self.outputs[k], self.owned[k] = out, owned
                else:
                    assert torch.equal(out, self.outputs[k]), f"task {k} outputs changed after task {task}"
                    for name, values in owned.items():
                        assert torch.equal(values, self.owned[k][name]), f"task {k} weights moved in {name}"
                    self.checks += 1


def _tiny_spec(plugins, name, recipe_strategy, overrides, seed, out):
    """A digits ``tiny`` run of strategy ``name`` with the recipe entry of ``recipe_strategy``."""
    strategy_cls = plugins.strategies.get(name)
    bench_cls = plugins.benchmarks.get(DEFAULT_BENCHMARK)
    recipe = bench_cls.recipes["tiny"]
    fields = cfg.fields_of(strategy_cls.Config)
    common = {k: v for k, v in recipe["*"].items() if k in fields}
    layers = [common, recipe.get(recipe_strategy, {}), overrides]
    return RunSpec(
        strategy=name,
        benchmark=DEFAULT_BENCHMARK,
        strategy_config=cfg.resolve(strategy_cls.Config, name, layers),
        benchmark_config=bench_cls.Config(),
        recipe="tiny",
        seed=seed,
        device="cpu",
        out=out,
        quiet=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["packnet", "pae", "cpg"])
def test_earlier_tasks_are_bit_identical(strategy, tmp_path):
    recorder = Recorder()
    plugins = load_plugins(modules=[recorder])
    overrides = {"weight_decay": 5e-3, "momentum": 0.9}  # both on: nothing earlier may still move
    if strategy != "packnet":
        # Unreachable train accuracy forces the grow step (up to the cap) on the first tasks.
        overrides |= {"goals": "self", "min_train_accuracy": 0.999999}
    run(_tiny_spec(plugins, strategy, strategy, overrides, 5, tmp_path / "run"), plugins)
    assert recorder.checks == 10  # every earlier task after each of tasks 2..5
    if strategy != "packnet":
        assert max(recorder.widths) > 1.0, "the grow step was not exercised"


def _grow_once_per_task(self, task):
    """Unreachable goal until the network has grown by one width step for every task after the
    first: widths 1.0 → 1.25 → 1.5 → 1.75 → 2.0 over tasks 1..5, so every growth happens with
    finished tasks in the network, which then run sliced to their own width."""
    return 1.01 if self.model.width_mult < 1.0 + 0.25 * (task.index - 1) - 1e-9 else 0.0


class GrowingStrategies:
    @clbench.hookimpl
    def clbench_register_strategies(self, register):
        from clbench_plugins.cpg import CPG
        from clbench_plugins.pae import PAE

        for base in (CPG, PAE):
            members = {"name": f"growing_{base.name}", "goal": _grow_once_per_task}
            register(type(f"Growing{base.__name__}", (base,), members))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["avalanche", "device"])
@pytest.mark.parametrize("strategy", ["pae", "cpg"])
def test_growth_after_finished_tasks_leaves_them_bit_identical(strategy, engine, tmp_path):
    recorder = Recorder()
    plugins = load_plugins(modules=[recorder, GrowingStrategies()])
    overrides = {"weight_decay": 5e-3, "momentum": 0.9, "goals": "self", "min_train_accuracy": 0.0,
                 "width_step": 0.25, "max_width": 2.0, "engine": engine}  # fmt: skip
    run(_tiny_spec(plugins, f"growing_{strategy}", strategy, overrides, 3, tmp_path / "run"), plugins)
    assert recorder.widths == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert recorder.checks == 10
