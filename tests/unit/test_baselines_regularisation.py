"""Avalanche's EWC, SI and LwF plugins really act inside clbench's per-task loops (digits, in process).

Each method penalises one quantity: EWC and SI a weighted distance to the weights after task 1,
LwF the divergence of the old head's outputs from the network after task 1. Runs with the same
seed are identical through task 1 (no penalty yet), so after task 2 that quantity is compared
with finetune's from the same start: a large coefficient must shrink it. (Final accuracies on
digits differ by a few test images between these methods and mostly reflect BatchNorm running
statistics, which no regulariser protects, so they make a noisy test.)
"""

from __future__ import annotations

import copy

import pytest
import torch

from clbench.loop import build_scenario
from clbench.strategy import StrategyContext, Task
from clbench_baselines.ewc import EWC, EWCConfig
from clbench_baselines.finetune import Finetune, FinetuneConfig
from clbench_baselines.lwf import LwF, LwFConfig
from clbench_baselines.si import SI, SIConfig
from clbench_benchmarks.digits import Digits, DigitsConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN = {"epochs": 2, "lr": 0.01, "batch_size": 32, "lr_milestones": ()}


@pytest.fixture(scope="module")
def digits_tasks():
    benchmark = Digits(DigitsConfig())
    data = benchmark.load_tasks()[:2]
    exps = build_scenario(data)
    tasks = [Task(i, d, exps["train"][i], exps["valid"][i], exps["test"][i]) for i, d in enumerate(data, start=1)]
    return benchmark, tasks


def _start(cls, config, digits_tasks):
    """A strategy that has learned task 1 (seed 0), and a copy of its network then."""
    benchmark, tasks = digits_tasks
    torch.manual_seed(0)
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=benchmark.backbone, num_tasks=len(tasks))
    strategy = cls(config, context)
    strategy.learn_task(tasks[0])
    return strategy, copy.deepcopy(strategy.model)


@pytest.fixture(scope="module")
def finetuned(digits_tasks):
    """Finetune's network after task 1 and after task 2."""
    strategy, after_1 = _start(Finetune, FinetuneConfig(**TRAIN), digits_tasks)
    strategy.learn_task(digits_tasks[1][1])
    return after_1, strategy.model


def _weighted_distance(model, anchors, importances):
    """Σ importance · (θ − anchor)² over the anchored parameters (names as the loop sees them)."""
    params = dict(model.named_parameters())
    total = 0.0
    for name, anchor in anchors.items():
        p = params[name.removeprefix("net.")].detach().flatten()
        total += float((importances[name].flatten() * (p - anchor.flatten()) ** 2).sum())
    return total


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.slow
def test_ewc_keeps_fisher_weighted_distance_small(digits_tasks, finetuned):
    ft_after_1, ft_after_2 = finetuned
    strategy, after_1 = _start(EWC, EWCConfig(ewc_lambda=1e4, **TRAIN), digits_tasks)
    assert _same_weights(after_1, ft_after_1)  # the same start as finetune
    strategy.learn_task(digits_tasks[1][1])
    plugin = strategy.regularizer
    # One anchor per task, keyed by task: the experience counter survived the fresh loops.
    assert sorted(plugin.saved_params) == [0, 1] and sorted(plugin.importances) == [0, 1]
    anchors = {k: v.data for k, v in plugin.saved_params[0].items()}
    fisher = {k: v.data for k, v in plugin.importances[0].items()}
    assert _weighted_distance(ft_after_1, anchors, fisher) == 0.0  # anchored at the state after task 1
    ewc = _weighted_distance(strategy.model, anchors, fisher)
    finetune = _weighted_distance(ft_after_2, anchors, fisher)
    assert ewc < 0.5 * finetune
    assert plugin.mean_penalty(0) == 0.0 and plugin.mean_penalty(1) > 0
    # Task 2 never reads task 1's head, so its Fisher there is 0 (a stale gradient of the old head,
    # which no later optimizer clears, used to be counted as importance).
    old_head = {k: v.data for k, v in plugin.importances[1].items() if k.startswith("net.heads.1.")}
    assert old_head and all(bool((f == 0).all()) for f in old_head.values())
    new_head = [v.data for k, v in plugin.importances[1].items() if k.startswith("net.heads.2.")]
    assert new_head and all(float(f.abs().sum()) > 0 for f in new_head)


@pytest.mark.slow
def test_si_keeps_importance_weighted_distance_small(digits_tasks, finetuned):
    ft_after_1, ft_after_2 = finetuned
    strategy, after_1 = _start(SI, SIConfig(si_lambda=1e4, **TRAIN), digits_tasks)
    assert _same_weights(after_1, ft_after_1)
    plugin = strategy.regularizer
    anchors = {k: v.data.clone() for k, v in plugin.ewc_data[0].items()}
    omega = {k: v.data.clone() for k, v in plugin.ewc_data[1].items()}
    assert max(float(w.max()) for w in omega.values()) > 0  # path integrals are not all 0 (CPU fix)
    strategy.learn_task(digits_tasks[1][1])
    si = _weighted_distance(strategy.model, anchors, omega)
    finetune = _weighted_distance(ft_after_2, anchors, omega)
    assert si < 0.5 * finetune
    assert plugin.mean_penalty(0) == 0.0 and plugin.mean_penalty(1) > 0


@pytest.mark.slow
def test_lwf_distils_from_task_2_on_and_keeps_the_old_head(digits_tasks, finetuned):
    ft_after_1, ft_after_2 = finetuned
    strategy, after_1 = _start(LwF, LwFConfig(alpha=3.0, **TRAIN), digits_tasks)
    assert _same_weights(after_1, ft_after_1)
    plugin = strategy.regularizer
    teacher = plugin.lwf.prev_model
    assert teacher.known_train_tasks_labels == {0} and not any(p.requires_grad for p in teacher.parameters())
    assert dict(plugin.lwf.prev_classes_by_task) == {0: {0, 1}}
    strategy.learn_task(digits_tasks[1][1])
    assert plugin.mean_penalty(0) == 0.0 and plugin.mean_penalty(1) > 0
    assert strategy.task_records(digits_tasks[1][1])["regularizer_loss"] == pytest.approx(plugin.mean_penalty(1))

    x = torch.stack([digits_tasks[1][1].data.train[i][0] for i in range(len(digits_tasks[1][1].data.train))])

    def old_head_divergence(model):
        # What LwF penalises: task 1's head after task 2 against the network after task 1, on
        # task 2's images, both BatchNorms on batch statistics (as during training).
        with torch.no_grad():
            old, new = copy.deepcopy(after_1).train(), copy.deepcopy(model).train()
            old.activate(1), new.activate(1)
            return float(plugin.lwf._distillation_loss(new(x), old(x), [0, 1]))

    assert old_head_divergence(strategy.model) < 0.5 * old_head_divergence(ft_after_2)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_stability_limit_is_where_torch_sgd_starts_to_diverge(momentum, nesterov):
    from clbench_baselines.ewc import sgd_stability_limit

    limit = sgd_stability_limit(momentum, nesterov)

    def final(factor: float) -> float:  # SGD on loss = x²/2 (curvature 1) at lr = factor·limit
        x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([x], lr=factor * limit, momentum=momentum, nesterov=nesterov and momentum > 0)
        for _ in range(3000):
            opt.zero_grad()
            (x**2 / 2).sum().backward()
            opt.step()
        return abs(float(x.detach()))

    assert final(0.95) < 1e-3
    assert not final(1.05) < 1e3  # grown, or overflowed to inf/NaN


def _ewc_with_importances(importances, heads=0, **config):
    """An EWC strategy with the given importances (task -> name -> tensor) and ``heads`` heads."""
    from types import SimpleNamespace

    benchmark = Digits(DigitsConfig())
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=benchmark.backbone, num_tasks=3)
    strategy = EWC(EWCConfig(**{"lr": 0.01, "momentum": 0.9, **config}), context)
    for task in range(1, heads + 1):
        strategy.model.begin_task(task, 2)
        strategy.model.finish_task()
    plugin = strategy.regularizer
    for task, tensors in importances.items():
        plugin.importances[task] = {name: SimpleNamespace(data=t) for name, t in tensors.items()}
    return strategy


def test_ewc_stiffness_sums_importances_over_earlier_tasks_in_separate_mode():
    # The CIFAR CPU table's divergence: conv1's summed importance reached 1.93 after task 14 at
    # lambda 100, lr 0.01, momentum 0.9: 0.01 · 2 · 100 · 1.93 = 3.85 > 2 · 1.9 (task 15's penalty
    # jumped 0.52 -> 1.3e5, the weights grew to 8.6e12 and task 19's loss overflowed).
    f1, f2 = torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.0, 0.93, 0.1])
    strategy = _ewc_with_importances({0: {"a": f1}, 1: {"a": f2, "b": torch.tensor([0.2])}}, ewc_lambda=100.0)
    stiffness = strategy.penalty_stiffness()
    assert (stiffness.parameter, stiffness.count, stiffness.importance) == ("a", 1, pytest.approx(1.93))
    assert stiffness.value == pytest.approx(0.01 * 2 * 100 * 1.93 / 3.8)
    online = _ewc_with_importances({0: {"a": f1}, 1: {"a": f2}}, ewc_lambda=100.0, mode="online")
    assert online.penalty_stiffness().value == pytest.approx(0.01 * 2 * 100 * 0.93 / 3.8)  # the latest only
    nesterov = _ewc_with_importances({0: {"a": f1}}, ewc_lambda=100.0, nesterov=True, weight_decay=0.5)
    assert nesterov.penalty_stiffness().value == pytest.approx(0.01 * (2 * 100 * 1.0 + 0.5) / (3.8 / 2.8))
    # The largest stable lambda makes the stiffest weight sit exactly at the limit.
    best = nesterov.stable_lambda(1.0)
    assert 0.01 * (2 * best * 1.0 + 0.5) == pytest.approx(3.8 / 2.8)
    assert tuple(_ewc_with_importances({}).penalty_stiffness()) == (0.0, "", 0, 0.0)


def test_ewc_stiffness_leaves_out_earlier_tasks_heads():
    # Old heads train no more (and Avalanche names them "net.heads.<task>.*").
    stiff_head = {"net.heads.1.weight": torch.tensor([50.0]), "net.backbone.0.weight": torch.tensor([0.1])}
    strategy = _ewc_with_importances({0: stiff_head}, heads=1, ewc_lambda=100.0)
    stiffness = strategy.penalty_stiffness()
    assert stiffness.parameter == "net.backbone.0.weight" and stiffness.count == 0


def test_ewc_records_its_stiffness_and_warns_before_sgd_diverges(caplog):
    from types import SimpleNamespace

    stiff = _ewc_with_importances({0: {"a": torch.tensor([2.0])}}, ewc_lambda=100.0)
    with caplog.at_level("WARNING"):
        records = stiff.task_records(SimpleNamespace(index=1))
    assert records["ewc_stiffness"] == pytest.approx(0.01 * 2 * 100 * 2.0 / 3.8)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "1 weight(s)" in warning and "--ewc.ewc-lambda (below 95)" in warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        stiff.task_records(SimpleNamespace(index=3))  # the last task: no later task to warn about
    calm = _ewc_with_importances({0: {"a": torch.tensor([2.0])}}, ewc_lambda=10.0)
    with caplog.at_level("WARNING"):
        assert calm.task_records(SimpleNamespace(index=1))["ewc_stiffness"] < 1
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_gradient_clipping_counts_only_what_the_optimizer_updates():
    # An old head is in no later optimizer: its gradient (stale, or LwF's distillation adding to
    # it every step) used to count in the clipped norm and shrink every update of the task.
    benchmark = Digits(DigitsConfig())
    context = StrategyContext(device=torch.device("cpu"), backbone_factory=benchmark.backbone, num_tasks=2)
    strategy = Finetune(FinetuneConfig(clip_grad_norm=1.0, **TRAIN), context)
    net = strategy.model
    net.begin_task(1, 2)
    net.finish_task()
    net.begin_task(2, 2)
    trained = strategy.updated_parameters()
    assert all(p is not q for p in net.heads["1"].parameters() for q in trained)
    for p in net.parameters():
        p.grad = torch.full_like(p, 1e6 if any(p is q for q in net.heads["1"].parameters()) else 0.1)
    norm = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in trained])))
    strategy.clip_gradients()
    clipped = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in trained])))
    assert norm > 1 and clipped == pytest.approx(1.0, rel=1e-4)
    assert bool((net.heads["1"].weight.grad == 1e6).all())  # not ours to touch
