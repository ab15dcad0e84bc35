"""Plain backbones (clbench.nn.backbones): layer layout, widths and parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clbench.nn.backbones import digits_cnn, vgg16_bn_cifar
from clbench.nn.masked import MaskedNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count_with_head(width: float, classes: int = 5) -> int:
    body = vgg16_bn_cifar(width)
    return sum(p.numel() for p in body.parameters()) + body.out_features * classes + classes


def test_vgg16_bn_parameter_counts_match_cpg() -> None:
    # ALGORITHMS §1.9: 33.62 M with a 5-class head, 50.40 M at parameter multiplier 1.5.
    assert round(_count_with_head(1.0) / 1e6, 2) == 33.62
    assert round(_count_with_head(math.sqrt(1.5)) / 1e6, 2) == 50.40


def test_vgg16_bn_layout_and_sqrt_widths() -> None:
    body = vgg16_bn_cifar(math.sqrt(1.5))
    convs = [m for m in body if isinstance(m, nn.Conv2d)]
    linears = [m for m in body if isinstance(m, nn.Linear)]
    assert len(convs) == 13 and all(c.bias is None for c in convs)
    assert convs[0].in_channels == 3  # RGB input is never widened
    assert [convs[0].out_channels, convs[-1].out_channels] == [78, 627]
    assert [(m.in_features, m.out_features) for m in linears] == [(627, 5016), (5016, 5016)]
    assert body.out_features == 5016
    assert sum(isinstance(m, nn.MaxPool2d) for m in body) == 5
    assert not any(isinstance(m, nn.Dropout) for m in body)


def test_vgg16_bn_masked_forward_shape() -> None:
    torch.manual_seed(0)
    net = MaskedNet(lambda w: vgg16_bn_cifar(w * 0.125))  # narrow copy: same layout, fast
    net.begin_task(1, 5)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_digits_cnn_layout() -> None:
    body = digits_cnn()
    assert body.out_features == 128
    assert body(torch.randn(3, 1, 8, 8)).shape == (3, 128)
    kinds = {type(m) for m in body}
    assert {nn.Conv2d, nn.BatchNorm2d, nn.Flatten, nn.Linear, nn.BatchNorm1d} <= kinds
    grown = digits_cnn(math.sqrt(1.5))
    assert [grown[0].out_channels, grown[3].out_channels, grown.out_features] == [39, 78, 156]
    assert grown(torch.randn(2, 1, 8, 8)).shape == (2, 156)
