"""Task heads: a plain linear classifier, the cosine head of margin-loss face embeddings, and
the L2-normalised embedding head of triplet tasks.

Face verification trains an identity classifier whose features become the embedding. The
original CPG code uses SphereFace's ``AngleLinear`` (m=4) with ``AngleLoss`` (ALGORITHMS.md
§1.5); clbench uses the additive cosine margin of CosFace / LMCL (Wang et al., CVPR 2018), an
angular-margin loss of the same family that needs no annealing schedule: logits are
``s·cos θ_j`` and the target's logit becomes ``s·(cos θ_y − m)`` in the loss only.

Triplet tasks (:mod:`clbench.triplets`) train an :class:`EmbeddingHead`: ``Linear(features →
16)`` then L2 normalisation, the compact expression embedding of Vemulapalli & Agarwala (CVPR
2019). Its size is fixed, so ``make_head("embedding", ...)`` ignores ``num_classes``.

Every head is an ``nn.Linear`` (subclass): the networks copy, widen and rebuild heads through
``weight``/``bias``/``in_features``/``out_features`` alone (``MaskedNet.expand``, checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KINDS = ("linear", "cosine", "embedding")
COSINE_SCALE = 30.0  # CosFace s (paper Sec. 3.3 uses 64 for 512-d; 30 is the common re-implementation value)
COSINE_MARGIN = 0.35  # CosFace m (paper Sec. 4.2 best value)
EMBEDDING_DIM = 16  # FEC paper: "compact (16-dimensional) expression embedding"


class CosineHead(nn.Linear):
    """``s · cos(x, w_j)`` for each class j: normalised features against normalised weights."""

    def __init__(self, in_features: int, out_features: int, scale: float = COSINE_SCALE, **kwargs: object) -> None:
        super().__init__(in_features, out_features, bias=False, **kwargs)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class EmbeddingHead(nn.Linear):
    """``Linear(in_features → dim)`` followed by L2 normalisation: a triplet task's embedding."""

    def __init__(self, in_features: int, dim: int = EMBEDDING_DIM, **kwargs: object) -> None:
        super().__init__(in_features, dim, bias=True, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=1)


def head_kind(head: nn.Module) -> str:
    """The ``make_head`` kind that builds a head like ``head`` (for checkpoints' extra state)."""
    if isinstance(head, EmbeddingHead):
        return "embedding"
    return "cosine" if isinstance(head, CosineHead) else "linear"


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
    """A fresh head; linear heads use the upstream ``add_dataset`` init (normal 0.01, bias 0).

    ``"embedding"`` ignores ``num_classes`` (always :data:`EMBEDDING_DIM` outputs) and keeps
    PyTorch's default ``nn.Linear`` init: the upstream init is a classifier's, and after the L2
    normalisation a smaller weight only enlarges the steps (the gradient scales as 1 / ‖Wx‖).
    """
    if kind == "embedding":
        return EmbeddingHead(in_features, device=device)
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
