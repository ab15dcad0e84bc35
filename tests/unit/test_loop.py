from __future__ import annotations

import torch
from torch import nn

from clbench.loop import TaskRoutedModel
from clbench.nn.multihead import MultiHeadNet


def _net() -> MultiHeadNet:
    def factory(width: float) -> nn.Module:
        layer = nn.Linear(4, 3)
        layer.out_features = 3
        return layer

    net = MultiHeadNet(factory)
    net.begin_task(1, 2)
    net.finish_task()
    net.begin_task(2, 5)
    return net


def test_single_task_batch_routes_to_that_head():
    model = TaskRoutedModel(_net())
    x = torch.randn(6, 4)
    assert model(x, torch.zeros(6, dtype=torch.long)).shape == (6, 2)
    assert model(x, 1).shape == (6, 5)


def test_mixed_task_batch_pads_with_losing_logits():
    model = TaskRoutedModel(_net())
    x = torch.randn(4, 4)
    labels = torch.tensor([0, 1, 0, 1])
    out = model(x, labels)
    assert out.shape == (4, 5)
    assert (out[labels == 0, 2:] == -1e9).all()
    assert out[labels == 0].argmax(1).max() < 2
    assert torch.equal(out[1], model(x[1:2], 1)[0])
