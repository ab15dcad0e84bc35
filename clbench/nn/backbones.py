"""Plain feature extractors for ``MaskedNet``: each takes a channel multiplier, exposes ``out_features``.

Widths follow upstream CPG: ``int(base * width)``, truncated, with the RGB/grey input never
widened (ALGORITHMS.md §1.8). ``MaskedNet`` passes ``sqrt(parameter multiplier)`` as ``width``.
Parameter-free ops are width-agnostic (``nn.Flatten``, not ``view(-1, C)``) because finished
tasks run sliced to the width they finished at, and module names never depend on the width
(``MaskedNet.expand`` matches layers by name).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "RESNET50_LAYERS",
    "SPHERENET20_STAGES",
    "FeatureExtractor",
    "ResNetFeatures",
    "SphereNet20",
    "VGG16_CFG",
    "digits_cnn",
    "load_torchvision_resnet50_weights",
    "resnet50",
    "spherenet20",
    "vgg16_bn_cifar",
]

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


#: ResNet-50 stages as (bottleneck base width, blocks, stride of the first block).
RESNET50_LAYERS: tuple[tuple[int, int, int], ...] = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
_BOTTLENECK_EXPANSION = 4
_TORCHVISION_HEAD = ("fc.weight", "fc.bias")


class _Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (v1.5: the 3×3 conv carries the stride).

    1×1 ``in→mid``, 3×3 ``mid→mid``, 1×1 ``mid→out``, each bias-free with BN; the identity
    goes through a 1×1 conv + BN ``downsample`` in the first block of a stage. ``out`` is
    the same number on both branches, so the addition holds at any width.
    """

    def __init__(self, in_channels: int, mid: int, out: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNetFeatures(nn.Sequential):
    """``nn.Sequential`` with torchvision's module names (``conv1``, ``layer1.0.conv1``, ...)
    and the ``out_features`` attribute ``MaskedNet`` reads."""

    def __init__(self, layers: Mapping[str, nn.Module], out_features: int) -> None:
        super().__init__(OrderedDict(layers))
        self.out_features = out_features


def resnet50(width: float = 1.0) -> ResNetFeatures:
    """ResNet-50 feature extractor of the fine-grained CPG experiments (§1.9), without its head.

    torchvision's layout: conv 7×7/2 - BN - ReLU - maxpool 3×3/2, stages of [3, 4, 6, 3]
    bottlenecks, global average pool, flatten. Every channel count scales as upstream CPG
    ``models/resnet.py`` does: stem ``int(64·w)``, bottleneck ``int(base·w)`` and stage output
    ``int(4·base·w)``; the 3 RGB inputs stay. Stage outputs and their downsample convs share one
    number, so the residual additions match at any width. ``out_features = int(2048·w)``: 2048
    at w=1, 2508 at w=sqrt(1.5). 23,508,032 parameters at w=1; with a 1000-class head 25,557,032
    (25.56 M, as torchvision's ``resnet50``).

    Init as upstream: convs ``normal(0, 1e-3)`` (so channels added by growth start near zero),
    BN weight 1, bias 0. Task 1 of ``fine_grained6`` loads ImageNet weights instead: see
    :func:`load_torchvision_resnet50_weights`.
    """
    stem = _scaled(64, width)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=nn.BatchNorm2d(stem),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    in_channels = stem
    for i, (base, blocks, stride) in enumerate(RESNET50_LAYERS, start=1):
        mid, out = _scaled(base, width), _scaled(base * _BOTTLENECK_EXPANSION, width)
        # The first block always downsamples (stride or 64→256 channels), so names never vary.
        stage = [_Bottleneck(in_channels, mid, out, stride, downsample=True)]
        stage += [_Bottleneck(out, mid, out, 1, downsample=False) for _ in range(blocks - 1)]
        layers[f"layer{i}"] = nn.Sequential(*stage)
        in_channels = out
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    net = ResNetFeatures(layers, in_channels)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 1e-3)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def _listed(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_torchvision_resnet50_weights(backbone: nn.Module, state_dict: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Load a torchvision ``resnet50`` state dict into a plain :func:`resnet50` backbone (width 1).

    Module names are torchvision's, so every key but the head maps onto itself; ``fc.weight`` and
    ``fc.bias`` (the ImageNet head) come back as copies, for task 1 of ``fine_grained6`` to
    install as its head (``net.heads["1"]``). Load before ``MaskedNet`` masks the backbone, e.g.
    in its factory at width 1. ``*.num_batches_tracked`` may be absent (older checkpoints);
    any other missing or unexpected key, or a shape that does not fit, raises ``ValueError``.
    """
    own = backbone.state_dict()
    given = set(state_dict)
    missing = (set(own) | set(_TORCHVISION_HEAD)) - given
    missing = {k for k in missing if not k.endswith(".num_batches_tracked")}
    unexpected = given - set(own) - set(_TORCHVISION_HEAD)
    if missing or unexpected:
        raise ValueError(
            "not a torchvision resnet50 state dict for this backbone: "
            f"missing keys [{_listed(missing)}]; unexpected keys [{_listed(unexpected)}]"
        )
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    fc_weight, fc_bias = state_dict["fc.weight"], state_dict["fc.bias"]
    out_features = getattr(backbone, "out_features", None)
    if fc_weight.dim() != 2 or fc_weight.shape[1] != out_features:
        wrong.append(f"fc.weight {tuple(fc_weight.shape)} does not take {out_features} features")
    if wrong:
        raise ValueError(f"shapes do not fit (torchvision weights fit width 1.0 only): {_listed(wrong, 4)}")
    with torch.no_grad():
        for k, v in own.items():
            if k in state_dict:
                v.copy_(state_dict[k])
    return fc_weight.detach().clone(), fc_bias.detach().clone()


#: SphereFace-20 stages as (base channels, residual units); each stage opens with a 3×3/2 conv.
SPHERENET20_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 4), (512, 1))


class SphereNet20(nn.Module):
    """SphereFace CNN-20 (sphere20a) with upstream CPG's module names (``conv1_1``, ``relu1_1``, ...).

    Stage ``s`` is ``conv{s}_1`` (3×3/2) + ``relu{s}_1`` followed by residual units
    ``x + relu{s}_{j+1}(conv{s}_{j+1}(relu{s}_j(conv{s}_j(x))))``. No BatchNorm; convs have biases;
    PReLUs are per channel. ``fc5`` (if any) maps the flattened maps to the embedding.
    """

    fc5: nn.Module | None

    def __init__(self, width: float, input_size: int, embedding: bool) -> None:
        super().__init__()
        if input_size < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        in_channels, size = 3, input_size
        for s, (base, units) in enumerate(SPHERENET20_STAGES, start=1):
            channels = _scaled(base, width)
            for j in range(1, 2 + 2 * units):
                stride = 2 if j == 1 else 1
                conv = nn.Conv2d(in_channels if j == 1 else channels, channels, 3, stride=stride, padding=1)
                self.add_module(f"conv{s}_{j}", conv)
                self.add_module(f"relu{s}_{j}", nn.PReLU(channels))
            in_channels = channels
            size = (size - 1) // 2 + 1  # 3×3, stride 2, padding 1
        self._units = tuple(units for _, units in SPHERENET20_STAGES)
        self.flatten = nn.Flatten()  # channel-major, so growth keeps old features top-left
        flat = in_channels * size * size
        self.fc5 = nn.Linear(flat, _scaled(512, width)) if embedding else None
        self.out_features = self.fc5.out_features if self.fc5 is not None else flat
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.25)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def _unit(self, s: int, j: int, x: Tensor) -> Tensor:
        # Looked up by name at call time: mask_modules swaps the modules after construction.
        return getattr(self, f"relu{s}_{j}")(getattr(self, f"conv{s}_{j}")(x))

    def forward(self, x: Tensor) -> Tensor:
        for s, units in enumerate(self._units, start=1):
            x = self._unit(s, 1, x)
            for j in range(2, 2 + 2 * units, 2):
                x = x + self._unit(s, j + 1, self._unit(s, j, x))
        x = self.flatten(x)
        return x if self.fc5 is None else self.fc5(x)


def spherenet20(width: float = 1.0, input_size: int = 112, embedding: bool = True) -> SphereNet20:
    """SphereNet-20 of the facial CPG experiments (ivclab/CPG ``models/spherenet.py``, §1.9).

    Channels ``int(64·w)``, ``int(128·w)``, ``int(256·w)``, ``int(512·w)`` (RGB stays 3); a
    ``input_size``² input ends at ``ceil(input_size/16)``² maps (112 → 7×7, 64 → 4×4).

    ``embedding=True`` (default) ends in ``fc5 = Linear(int(512·w)·7·7 → int(512·w))``, a masked,
    shared layer giving the 512-d face embedding, so each task head reads 512 features.
    Upstream has no such shared layer: its ``Linear(int(512·w)·7·7 → 512)`` (unwidened) sits
    inside the per-task face-verification classifier, and the other facial tasks put a
    ``Linear(int(512·w)·7·7 → C)`` straight on the flattened maps. ``embedding=False`` gives
    that upstream trunk: ``out_features = int(512·w)·7·7``.

    At 112×112, w=1: 11,650,752 conv weights (the 11.65 M Sharable weights of §1.9) and 4,672
    conv biases + 4,672 PReLU slopes; ``fc5`` adds 12,845,056 weights + 512 biases.
    Init as upstream: convs ``kaiming_normal_(fan_out)``, biases 0, PReLU 0.25; ``fc5`` as
    upstream's classifier: ``normal(0, 0.01)``, bias 0.
    """
    return SphereNet20(width, input_size, embedding)
