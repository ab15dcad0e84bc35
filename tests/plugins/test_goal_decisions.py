"""The goal-driven decisions of PAE and CPG against upstream ivclab/CPG, without training.

A scripted strategy replays chosen validation/train accuracies through the real ``grow``,
``gradual_compact`` and CPG ``retrain`` code; the phases themselves are stubbed. Upstream
references: ``CPG_cifar100_main_normal.py`` (the CIFAR main), ``CPG_imagenet_main.py``,
``CPG_face_main.py``, ``tools/choose_appropriate_pruning_ratio_for_next_task.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clbench.isolation import GoalDrivenStrategy, PruneSchedule, capacity_floor, meets_goal
from clbench.strategy import FitResult
from clbench_plugins.cpg import CPG, CPGConfig
from clbench_plugins.packnet import PackNetConfig
from clbench_plugins.pae import PAEConfig


class FakeModel:
    def __init__(self, width: float, log: list[str]) -> None:
        self.width_mult = width
        self.log = log

    def reset_pick(self) -> None:
        self.log.append("reset_pick")

    def expand(self, width: float) -> None:
        self.width_mult = width
        self.log.append(f"expand {width:g}")

    def begin_task(self, *args, **kwargs) -> None:
        pass


class Scripted(GoalDrivenStrategy):
    """GoalDrivenStrategy over a fake model: stage k reaches ``stage_val[k]`` validation accuracy
    and ``stage_train[k]`` train accuracy; snapshots are labels of what the model holds."""

    name = "scripted"

    def __init__(self, config, *, num_tasks, width=1.0, stage_val=None, stage_train=None):
        self.config = config
        self.context = SimpleNamespace(num_tasks=num_tasks, journal=None, phase_seconds={})
        self.log: list[str] = []
        self.model = FakeModel(width, self.log)
        self.stage_val = stage_val or {}
        self.stage_train = stage_train or {}
        self.holding = "unpruned"
        self._goals = {}
        self._goal = None

    def snapshot(self):
        return self.holding

    def restore(self, state):
        self.holding = state

    def owned_weights(self, task):
        return 1

    def prune_stage(self, task, initial, final, *args):
        self.log.append(f"stage {initial:g}->{final:g}")
        self.holding = f"pruned {final:g}"
        return FitResult(self.stage_train.get(final, 1.0), 0.0)

    def validation_accuracy(self, task):
        self.log.append("validate")
        return self.stage_val.get(self.holding, 0.0)


def task(index: int, name: str = "t"):
    return SimpleNamespace(index=index, name=f"{name}{index}", num_classes=2, data=SimpleNamespace(head="linear"))


def cifar(**overrides) -> CPGConfig:
    base = {"goals": "file", "prune_stages": (0.5, 0.8, 0.9), "max_width": 1.0, "min_train_accuracy": 0.9}
    return CPGConfig(**(base | overrides))


def test_capacity_floor_matches_the_cifar_main():
    # 1 − round(1 / (remaining + 1), 1): Python's round, as upstream.
    assert capacity_floor(0) == 0.0
    assert capacity_floor(1) == 0.5
    assert capacity_floor(3) == pytest.approx(0.8)
    assert capacity_floor(19) == pytest.approx(0.9)


def test_meets_goal_uses_the_cifar_test_without_margin_and_the_strict_margin_test_with_one():
    assert meets_goal(0.80, 0.80) and not meets_goal(0.7999, 0.80)
    # fine-grained: best − goal > −0.005
    assert meets_goal(0.8245, 0.8283, 0.005)
    assert not meets_goal(0.8200, 0.8283, 0.005)


def test_last_task_that_misses_its_goal_at_max_width_is_not_pruned():
    """Upstream: remaining 0 → must = 0.0 → exit 6 before the first stage; the choice keeps the
    unpruned model. Before the fix, 0.0 read as "no requirement" and every stage ran."""
    strategy = Scripted(cifar(), num_tasks=5, stage_val={"pruned 0.9": 0.5})
    strategy._goal, strategy._before_prune = 0.99, (1.0, 0.9)
    strategy.gradual_compact(task(5))
    assert not any(entry.startswith("stage") for entry in strategy.log)
    assert strategy.holding == "unpruned"


def test_forced_task_prunes_to_the_capacity_floor_and_keeps_the_largest_stage():
    strategy = Scripted(cifar(), num_tasks=5)  # task 4: one task left → floor 0.5
    strategy._goal, strategy._before_prune = 0.99, (1.0, 0.9)
    strategy.gradual_compact(task(4))
    assert [e for e in strategy.log if e.startswith("stage")] == ["stage 0->0.5"]
    assert strategy.holding == "pruned 0.5"  # kept although it misses the goal (the forced branch)


def test_stage_that_no_longer_fits_the_training_data_ends_pruning_unrecorded():
    vals = {"pruned 0.5": 0.95, "pruned 0.8": 0.95}
    strategy = Scripted(cifar(max_width=1.5), num_tasks=5, stage_val=vals, stage_train={0.8: 0.5})
    strategy._goal, strategy._before_prune = 0.9, (1.0, 0.95)
    strategy.gradual_compact(task(2))
    assert [e for e in strategy.log if e.startswith("stage")] == ["stage 0->0.5", "stage 0.5->0.8"]
    assert strategy.holding == "pruned 0.5"


def fine_grained(**overrides) -> CPGConfig:
    base = {"goals": "file", "prune_stages": (0.5, 0.8), "max_width": 1.5, "min_train_accuracy": 0.0,
            "goal_margin": 0.005, "capacity_rule": False}  # fmt: skip
    return CPGConfig(**(base | overrides))


def test_fine_grained_margin_passes_a_task_just_under_its_goal_instead_of_growing():
    strategy = Scripted(fine_grained(), num_tasks=6)
    strategy._goals = {"t2": 0.8283}
    strategy._before_prune = (0.9, 0.8245)  # 0.38 points under the goal, inside the 0.5 margin
    assert strategy.grow(task(2)) is False
    assert "expand 2" not in strategy.log


def test_fine_grained_stage_keep_rule_uses_the_margin_and_nothing_is_forced():
    vals = {"pruned 0.5": 0.8245, "pruned 0.8": 0.80}
    strategy = Scripted(fine_grained(max_width=1.0), num_tasks=6, stage_val=vals)
    strategy._goal, strategy._before_prune = 0.8283, (0.9, 0.80)  # missed before pruning, at max width
    strategy.gradual_compact(task(6))  # the last task: the CIFAR capacity rule would stop at once
    assert [e for e in strategy.log if e.startswith("stage")] == ["stage 0->0.5", "stage 0.5->0.8"]
    assert strategy.holding == "pruned 0.5"  # 0.8 misses goal − margin and is not forced


def test_face_margins_are_per_task():
    config = fine_grained(task_goal_margins=(0.005, 0.015, 0.005, 0.010))
    strategy = Scripted(config, num_tasks=4)
    assert [strategy.goal_margin(task(i)) for i in (1, 2, 3, 4)] == [0.005, 0.015, 0.005, 0.010]
    with pytest.raises(Exception, match="task_goal_margins"):
        strategy.validate([task(1), task(2)])


def test_cpg_retrain_measures_the_accuracy_to_beat_after_resetting_the_pick_mask():
    """Upstream (main L271-279, L409-429): piggymask reset to 0.01, *then* validate."""
    config = cifar(retrain_epochs=1, retrain_patience=1)
    strategy = Scripted(config, num_tasks=5)
    strategy.make_optimizer = lambda *a: None
    strategy.fit = lambda *a: strategy.log.append("fit")
    CPG.retrain(strategy, task(2))
    assert strategy.log.index("reset_pick") < strategy.log.index("validate")


def test_prune_schedule_updates_on_upstreams_iteration():
    """``gradually_prune(curr_prune_step)`` runs before the step counter is incremented: with
    frequency 2 the first mask update follows the third iteration, the next the fifth."""
    schedule = PruneSchedule(initial=0.0, final=0.8, begin=0, end=8, frequency=2)
    updates = [i for i in range(1, 12) if schedule.advance() is not None]
    assert updates == [3, 5, 7, 9]


def test_defaults_follow_the_cpg_repository():
    assert PackNetConfig().nesterov is True  # packnet_cifar100_main_normal.py: SGD(..., nesterov=True)
    assert CPGConfig().goals == "auto" and PAEConfig().goals == "auto"
    assert CPGConfig().capacity_rule and PAEConfig().goal_sequences == 5


def test_a_stage_no_longer_than_its_ramp_reaches_its_target():
    """With the ramp ending on the stage's last step (7, off the frequency-2 grid) that step
    still updates, to the final sparsity."""
    schedule = PruneSchedule(initial=0.5, final=0.8, begin=0, end=7, frequency=2, final_update=True)
    reached = [s for s in (schedule.advance() for _ in range(8)) if s is not None]
    assert reached[-1] == 0.8 and len(reached) == 4  # steps 2, 4, 6 and the last, 7
