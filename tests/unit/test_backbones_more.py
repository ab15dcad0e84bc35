"""ResNet-50 and SphereNet-20 backbones (clbench.nn.backbones): layout, counts, torchvision
weights, and growth through ``MaskedNet``."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clbench.nn.backbones import load_torchvision_resnet50_weights, resnet50, spherenet20
from clbench.nn.masked import MaskedNet

SQRT_1_5 = math.sqrt(1.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _weights(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, kind))


def _names(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_modules()]


# ----------------------------------------------------------------------------- ResNet-50
def test_resnet50_parameter_count_matches_cpg() -> None:
    torchvision = pytest.importorskip("torchvision")
    body = resnet50()
    with_head = _count(body) + body.out_features * 1000 + 1000
    assert body.out_features == 2048
    assert with_head == _count(torchvision.models.resnet50(weights=None)) == 25_557_032
    assert round(with_head / 1e6, 2) == 25.56  # ALGORITHMS §1.9, incl. ImageNet head


def test_resnet50_widths_follow_one_base_per_stage() -> None:
    body = resnet50(SQRT_1_5)
    assert body.conv1.weight.shape == (78, 3, 7, 7)  # RGB input is never widened
    block = body.layer1[0]
    assert [block.conv1.out_channels, block.conv2.out_channels, block.conv3.out_channels] == [78, 78, 313]
    assert block.downsample[0].out_channels == 313  # both residual branches agree
    last = body.layer4[-1]
    assert [last.conv1.in_channels, last.conv3.out_channels] == [2508, 2508]
    assert body.out_features == int(2048 * SQRT_1_5) == 2508
    assert [len(body.layer1), len(body.layer2), len(body.layer3), len(body.layer4)] == [3, 4, 6, 3]
    assert body(torch.randn(2, 3, 32, 32)).shape == (2, 2508)


def test_resnet50_module_names_do_not_depend_on_width() -> None:
    assert _names(resnet50(1.0)) == _names(resnet50(SQRT_1_5)) == _names(resnet50(0.25))


def _torchvision_resnet50() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():  # non-default BN state, so a mis-mapped BN key changes the logits
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return tv


def test_torchvision_weights_reproduce_torchvision_logits() -> None:
    tv = _torchvision_resnet50()
    body = resnet50()
    fc_weight, fc_bias = load_torchvision_resnet50_weights(body, tv.state_dict())
    assert fc_weight.shape == (1000, 2048) and fc_bias.shape == (1000,)
    body.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)
        got = F.linear(body(x), fc_weight, fc_bias)
    assert torch.allclose(got, expected, rtol=0.0, atol=1e-5)


def test_torchvision_weights_reject_wrong_keys_and_widths() -> None:
    state = _torchvision_resnet50().state_dict()
    missing = {k: v for k, v in state.items() if k != "layer2.1.conv2.weight"}
    with pytest.raises(ValueError, match=r"missing keys \[layer2\.1\.conv2\.weight\]"):
        load_torchvision_resnet50_weights(resnet50(), missing)
    with pytest.raises(ValueError, match=r"unexpected keys \[classifier\.weight\]"):
        load_torchvision_resnet50_weights(resnet50(), {**state, "classifier.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="width 1.0 only"):
        load_torchvision_resnet50_weights(resnet50(SQRT_1_5), state)
    # Checkpoints older than BN's counter lack num_batches_tracked: tolerated.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    load_torchvision_resnet50_weights(resnet50(), old)


# ---------------------------------------------------------------------------- SphereNet-20
def test_spherenet20_layout_follows_upstream() -> None:
    body = spherenet20()
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    prelus = [m for m in body.modules() if isinstance(m, nn.PReLU)]
    assert len(convs) == 20 and all(c.bias is not None for c in convs)  # conv biases as upstream
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in body.modules())  # none upstream
    assert [p.num_parameters for p in prelus] == [c.out_channels for c in convs]  # per channel
    assert sorted({c.out_channels for c in convs}) == [64, 128, 256, 512]
    assert [c.stride for c in convs].count((2, 2)) == 4
    assert (body.fc5.in_features, body.fc5.out_features, body.out_features) == (512 * 7 * 7, 512, 512)
    assert body(torch.randn(2, 3, 112, 112)).shape == (2, 512)


def test_spherenet20_sharable_weight_count() -> None:
    body = spherenet20()
    conv = _weights(body, nn.Conv2d)
    # ALGORITHMS §1.9's "11.65 M Sharable weights" are the 20 conv weights: upstream's
    # 512·7·7→512 FC is not Sharable (it lives in the per-task face-verification classifier).
    assert conv == 11_650_752 and round(conv / 1e6, 2) == 11.65
    # Our fc5 is a shared, masked layer, so this backbone masks 12,845,056 more weights.
    assert _weights(body, nn.Linear) == 512 * 7 * 7 * 512 == 12_845_056
    assert conv + _weights(body, nn.Linear) == 24_495_808
    trunk = spherenet20(embedding=False)  # upstream's Sharable part
    assert trunk.fc5 is None and trunk.out_features == 25_088
    assert _weights(trunk, nn.Conv2d) + _weights(trunk, nn.Linear) == 11_650_752


def test_spherenet20_widths_and_input_size() -> None:
    body = spherenet20(SQRT_1_5, input_size=64)
    assert body.conv1_1.weight.shape[:2] == (78, 3)
    assert [body.conv2_1.out_channels, body.conv3_9.out_channels, body.relu4_3.num_parameters] == [156, 313, 627]
    assert (body.fc5.in_features, body.out_features) == (627 * 4 * 4, 627)
    assert body(torch.randn(2, 3, 64, 64)).shape == (2, 627)
    assert _names(spherenet20(1.0, 64)) == _names(body)


# ----------------------------------------------------------------------- through MaskedNet
def _sphere64(width: float) -> nn.Module:
    return spherenet20(width, input_size=64)


BACKBONES: dict[str, tuple[Callable[[float], nn.Module], int]] = {
    "resnet50": (resnet50, 64),
    "spherenet20": (_sphere64, 64),
}


def _stem(net: MaskedNet) -> nn.Module:
    backbone = net.backbone
    return backbone.conv1 if hasattr(backbone, "layer1") else backbone.conv1_1


def _train(net: MaskedNet, x: torch.Tensor, y: torch.Tensor, steps: int = 2) -> None:
    sgd = torch.optim.SGD(net.trainable_parameters(), lr=0.01, momentum=0.9, nesterov=True)
    picks = net.pick_parameters()
    adam = torch.optim.Adam(picks, lr=1e-3) if picks else None
    net.train()
    for _ in range(steps):
        sgd.zero_grad()
        if adam is not None:
            adam.zero_grad()
        F.cross_entropy(net(x), y).backward()
        net.gate_gradients(weight_decay=4e-5)
        sgd.step()
        if adam is not None:
            adam.step()
        net.zero_released()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_masked_forward_at_width_one(name: str) -> None:
    factory, size = BACKBONES[name]
    torch.manual_seed(0)
    net = MaskedNet(factory)
    net.begin_task(1, 3)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 3)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_masked_expand_keeps_finished_task_bit_identical(name: str) -> None:
    full, size = BACKBONES[name]
    torch.manual_seed(0)
    x, y1, y2 = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 0]), torch.tensor([3, 2, 1, 0])
    # Half-width copy (same layout and names, stem 32 → 39 after growth): a quarter of the
    # weights keeps the masked SGD/Adam steps and pruning at full width out of a unit test.
    net = MaskedNet(lambda w: full(0.5 * w))
    net.begin_task(1, 3)
    _train(net, x, y1)
    net.prune(0.5)  # task 2 will own (and train) half of the old-width weights too
    net.finish_task()
    net.eval()
    with torch.no_grad():
        before = net(x)

    net.begin_task(2, 4)
    net.expand(1.5)
    assert _stem(net).weight.shape[:2] == (39, 3)
    _train(net, x, y2)
    net.finish_task()
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (4, 4)
        net.activate(1)
        after = net(x)
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_masked_width_follows_sqrt_of_parameter_multiplier(name: str) -> None:
    factory, _ = BACKBONES[name]
    net = MaskedNet(factory, width_mult=1.5)
    assert _stem(net).weight.shape[:2] == (78, 3)
    expected = {"resnet50": int(2048 * SQRT_1_5), "spherenet20": int(512 * SQRT_1_5)}[name]
    assert net.out_features == expected  # 2508 / 627
