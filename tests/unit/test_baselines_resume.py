"""A baseline restored from a checkpoint (what `clbench run --resume` does) goes on exactly as
the uninterrupted one: plugin state (EWC/SI anchors and importances, LwF's teacher), the joint
strategies' earlier tasks and single-task models, and the goals all survive."""

from __future__ import annotations

import io
import random

import pytest
import torch

from clbench.loop import build_scenario
from clbench.strategy import StrategyContext, Task
from clbench_baselines.ewc import EWC, EWCConfig
from clbench_baselines.finetune_previous import FinetunePrevious, FinetunePreviousConfig
from clbench_baselines.joint import JointDynamic, JointMixed, JointMixedConfig
from clbench_baselines.lwf import LwF, LwFConfig
from clbench_baselines.si import SI, SIConfig
from clbench_benchmarks.digits import Digits, DigitsConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN = {"epochs": 1, "lr": 0.05, "batch_size": 64, "lr_milestones": ()}
CASES = {
    "ewc": (EWC, EWCConfig(ewc_lambda=100.0, **TRAIN)),
    "si": (SI, SIConfig(si_lambda=100.0, **TRAIN)),
    "lwf": (LwF, LwFConfig(**TRAIN)),
    "joint_mixed": (JointMixed, JointMixedConfig(pseudo_threshold=0.6, distill_weight=1.0, **TRAIN)),
    "joint_dynamic": (JointDynamic, JointDynamic.Config(warm_start=True, **TRAIN)),
    "finetune_previous": (FinetunePrevious, FinetunePreviousConfig(parent="random", nesterov=False, **TRAIN)),
}


@pytest.fixture(scope="module")
def digits_tasks():
    benchmark = Digits(DigitsConfig())
    data = benchmark.load_tasks()[:3]
    exps = build_scenario(data)
    tasks = [Task(i, d, exps["train"][i], exps["valid"][i], exps["test"][i]) for i, d in enumerate(data, start=1)]
    return benchmark, tasks


def _new(cls, config, benchmark, tasks):
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=benchmark.backbone, num_tasks=len(tasks))
    strategy = cls(config, context)
    strategy.validate(tasks)
    return strategy


def _seed(n):
    torch.manual_seed(n)
    random.seed(n)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_a_restored_baseline_continues_exactly(name, digits_tasks):
    benchmark, tasks = digits_tasks
    cls, config = CASES[name]
    _seed(0)
    original = _new(cls, config, benchmark, tasks)
    for task in tasks[:2]:
        original.learn_task(task)
    buffer = io.BytesIO()
    torch.save(original.checkpoint_state(), buffer)  # as clbench.checkpoint writes it
    restored = _new(cls, config, benchmark, tasks)
    restored.load_checkpoint_state(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    for strategy in (original, restored):
        _seed(1)
        strategy.learn_task(tasks[2])
    a, b = original.model.state_dict(), restored.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
    assert original.task_records(tasks[2]) == restored.task_records(tasks[2])
