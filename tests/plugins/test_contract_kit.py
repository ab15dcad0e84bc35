"""The contract test kit (clbench.testing) fails a strategy that breaks the contract: a false
zero-forgetting claim, and state a resume loses."""

from __future__ import annotations

import pytest

from clbench_baselines.finetune import Finetune

pytest_plugins = ["clbench.testing"]


class Leaky(Finetune):
    """Finetune that claims zero forgetting and keeps a counter outside extra_state()."""

    name = "leaky"
    zero_forgetting = True  # false: finetune forgets

    def before_task(self, task):
        super().before_task(task)
        self.seen = getattr(self, "seen", 0) + 1  # lost on resume: not in extra_state()

    def train(self, task, **overrides):
        return super().train(task, lr=self.config.lr * self.seen, **overrides)


@pytest.mark.slow
def test_the_kit_catches_a_false_claim_and_lost_state(clbench_contract):
    run = clbench_contract.run(Leaky, options={"epochs": 2})
    run.assert_learns(0.5)
    with pytest.raises(AssertionError, match="declares zero_forgetting"):
        run.assert_zero_forgetting()
    with pytest.raises(AssertionError, match="another table"):
        run.assert_resume_bit_exact()


def test_the_kit_refuses_an_unknown_strategy(clbench_contract):
    with pytest.raises(AssertionError, match="not registered"):
        clbench_contract.plugins("no_such_strategy")
