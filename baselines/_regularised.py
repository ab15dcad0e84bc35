"""Shared base of the Avalanche regularisation baselines (EWC, SI, LwF): finetune on one
shared backbone with a head per task, plus one Avalanche plugin that lives as long as the
strategy (see :mod:`clbench_baselines._avalanche` for why a plugin alone is not enough)."""

from __future__ import annotations

from typing import Any

from clbench.strategy import Strategy, Task


class Regularised(Strategy):
    """Finetune (a shared ``MultiHeadNet``, SGD, a fresh optimizer per task) plus the Avalanche
    plugin returned by :meth:`make_plugin`, created once and reused by every training loop."""

    kind = "regularisation"
    _plugins: list[Any] | None = None

    def make_plugin(self) -> Any:
        """The Avalanche plugin (with its penalty recorded); avalanche may be imported here."""
        raise NotImplementedError

    @property
    def regularizer(self) -> Any:
        return self.avalanche_plugins()[-1]

    def avalanche_plugins(self) -> list[Any]:
        if self._plugins is None:
            from clbench_baselines._avalanche import TaskClock

            # TaskClock first: it fixes the experience counter the plugin reads.
            self._plugins = [TaskClock(), self.make_plugin()]
        return self._plugins

    def after_task(self, task: Task) -> None:
        """Drop every gradient once the task is learned. Earlier tasks' heads are in no later
        optimizer, so nothing else clears theirs; Avalanche's EWC importance pass adds the square
        of any gradient it finds (``compute_importances`` zeroes only the optimizer's parameters),
        and so gave every old head a stale, growing importance for every later task."""
        super().after_task(task)
        self.model.zero_grad(set_to_none=True)

    def extra_state(self) -> dict[str, Any]:
        """The plugin's state (anchors, importances, teacher …), so a resumed run goes on exactly."""
        return {"plugin": self.regularizer.plugin_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        ctx = self.context
        self.regularizer.load_plugin_state(state["plugin"], ctx.device, ctx.backbone_factory)

    def task_records(self, task: Task) -> dict[str, float]:
        """Adds ``regularizer_loss``: the mean penalty the plugin added per training step of
        this task (0 on task 1, where there is nothing to protect yet)."""
        records = super().task_records(task)
        records["regularizer_loss"] = self.regularizer.mean_penalty(task.index - 1)
        return records
