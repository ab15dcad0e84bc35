"""A plain shared backbone with one head per task: the network of unprotected baselines."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from clbench.nn.heads import head_kind, make_head


class MultiHeadNet(nn.Module):
    """Shared backbone (every weight trains on every task) and a new head per task
    (linear, cosine or embedding: :func:`clbench.nn.heads.make_head`).

    It offers the same task interface as the masked network (``begin_task``, ``activate``,
    ``finish_task``, ``trainable_parameters``) so strategies drive both the same way.
    """

    def __init__(self, backbone_factory: Callable[[float], nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone_factory(1.0)
        self.heads = nn.ModuleDict()
        self.active_task = 0
        self.training_task = 0

    def begin_task(self, task: int, num_classes: int, head: str = "linear", **_: object) -> None:
        device = next(self.backbone.parameters()).device
        self.heads[str(task)] = make_head(head, self.backbone.out_features, num_classes, device=device)
        self.training_task = self.active_task = task

    def activate(self, task: int) -> None:
        if str(task) not in self.heads:
            raise KeyError(f"task {task} has no head; known tasks: {sorted(map(int, self.heads))}")
        self.active_task = task

    def finish_task(self) -> None:
        self.training_task = 0

    def get_extra_state(self) -> dict[str, object]:
        """Head shapes and kinds, so a fresh net can load a checkpoint of a later task."""
        heads = {k: [h.in_features, h.out_features, head_kind(h)] for k, h in self.heads.items()}
        return {"heads": heads, "training_task": self.training_task, "active_task": self.active_task}

    def set_extra_state(self, state: dict[str, object]) -> None:
        device = next(self.backbone.parameters()).device
        heads = state["heads"]
        assert isinstance(heads, dict)
        self.heads = nn.ModuleDict(
            {k: make_head(kind, fan_in, fan_out, device=device) for k, (fan_in, fan_out, kind) in heads.items()}
        )
        self.training_task = int(state["training_task"])  # type: ignore[arg-type]
        self.active_task = int(state["active_task"])  # type: ignore[arg-type]

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()
        yield from self.heads[str(self.training_task)].parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[str(self.active_task)](self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features: the embedding of a verification task."""
        return self.backbone(x)
