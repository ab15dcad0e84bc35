"""Task heads: a plain linear classifier, and the cosine head of margin-loss face embeddings.

Face verification trains an identity classifier whose features become the embedding. The
original CPG code uses SphereFace's ``AngleLinear`` (m=4) with ``AngleLoss`` (ALGORITHMS.md
§1.5); clbench uses the additive cosine margin of CosFace / LMCL (Wang et al., CVPR 2018), an
angular-margin loss of the same family that needs no annealing schedule: logits are
``s·cos θ_j`` and the target's logit becomes ``s·(cos θ_y − m)`` in the loss only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KINDS = ("linear", "cosine")
COSINE_SCALE = 30.0  # CosFace s (paper Sec. 3.3 uses 64 for 512-d; 30 is the common re-implementation value)
COSINE_MARGIN = 0.35  # CosFace m (paper Sec. 4.2 best value)


class CosineHead(nn.Linear):
    """``s · cos(x, w_j)`` for each class j: normalised features against normalised weights."""

    def __init__(self, in_features: int, out_features: int, scale: float = COSINE_SCALE, **kwargs: object) -> None:
        super().__init__(in_features, out_features, bias=False, **kwargs)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class MarginCrossEntropy(nn.Module):
    """Cross-entropy on cosine logits with the target's logit lowered by ``scale · margin``."""

    def __init__(self, margin: float = COSINE_MARGIN, scale: float = COSINE_SCALE) -> None:
        super().__init__()
        self.margin = margin
        self.scale = scale

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shifted = logits - self.scale * self.margin * F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(shifted, target)


def make_head(kind: str, in_features: int, num_classes: int, device: torch.device | None = None) -> nn.Linear:
    """A fresh head; linear heads use the upstream ``add_dataset`` init (normal 0.01, bias 0)."""
    if kind == "cosine":
        head: nn.Linear = CosineHead(in_features, num_classes, device=device)
        nn.init.normal_(head.weight, 0.0, 0.01)
        return head
    if kind != "linear":
        raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")
    head = nn.Linear(in_features, num_classes, device=device)
    nn.init.normal_(head.weight, 0.0, 0.01)
    nn.init.zeros_(head.bias)
    return head
