"""Plain feature extractors for ``MaskedNet``: each takes a channel multiplier, exposes ``out_features``.

Widths follow upstream CPG: ``int(base * width)``, truncated, with the RGB/grey input never
widened (ALGORITHMS.md §1.8). ``MaskedNet`` passes ``sqrt(parameter multiplier)`` as ``width``.
Parameter-free ops are width-agnostic (``nn.Flatten``, not ``view(-1, C)``) because finished
tasks run sliced to the width they finished at.

TODO: ``spherenet20`` (facial benchmark, PReLU, conv biases, §1.9) comes with its own issue.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["FeatureExtractor", "VGG16_CFG", "digits_cnn", "vgg16_bn_cifar"]

#: VGG configuration "D" (ivclab/CPG models/vgg.py `cfg['D']`); "M" is a 2×2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class FeatureExtractor(nn.Sequential):
    """``nn.Sequential`` that records the size of the features it feeds to the task heads."""

    def __init__(self, layers: Iterable[nn.Module], out_features: int) -> None:
        super().__init__(*layers)
        self.out_features = out_features


def _scaled(base: int, width: float) -> int:
    return int(base * width)  # upstream truncates: 64·sqrt(1.5) → 78


def vgg16_bn_cifar(width: float = 1.0) -> FeatureExtractor:
    """CIFAR VGG16-BN of the CPG experiments (``custom_vgg_cifar100`` with cfg D, §1.9).

    13 bias-free 3×3 convs with BN+ReLU and 5 max-pools take 32×32 to 1×1, then
    Linear(512→4096)-ReLU-Linear(4096→4096)-ReLU, no dropout. With a 5-class head: 33.62 M
    parameters at width 1, 50.40 M at width sqrt(1.5). Init as upstream ``_initialize_weights``.
    """
    layers: list[nn.Module] = []
    in_channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = _scaled(int(v), width)
        layers += [
            nn.Conv2d(in_channels, out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        in_channels = out
    hidden = _scaled(4096, width)
    layers += [
        nn.Flatten(),
        nn.Linear(in_channels, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
    ]
    net = FeatureExtractor(layers, hidden)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return net


def digits_cnn(width: float = 1.0) -> FeatureExtractor:
    """Small CNN for 1×8×8 inputs (scikit-learn digits, the offline default benchmark).

    Conv(1→32)-BN-ReLU, Conv(32→64)-BN-ReLU-MaxPool2, Flatten, Linear(64·4·4→128, bias)-BN1d-ReLU.
    It has every layer kind the substrate handles, incl. a Linear after a flatten of conv
    features, so growth across a flatten is exercised; a 5-task CPU run takes seconds.
    """
    c1, c2, hidden = _scaled(32, width), _scaled(64, width), _scaled(128, width)
    layers: list[nn.Module] = [
        nn.Conv2d(1, c1, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 4 * 4, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
    ]
    return FeatureExtractor(layers, hidden)
