"""Compact expression embedding: a triplet-loss embedding for facial-expression similarity,
scored by triplet prediction accuracy. Self-contained pieces, not yet a clbench task kind
(see docs/baselines.md, "Wiring triplets in as a task kind").

Cite: Vemulapalli & Agarwala, "A Compact Embedding for Facial Expression Similarity", CVPR 2019
(arXiv:1811.11283): a 16-dimensional, L2-normalised embedding trained with a triplet loss on the
FEC dataset (triplets of faces annotated with which two expressions are most alike), evaluated
by triplet prediction accuracy. Triplet loss: Schroff et al., "FaceNet", CVPR 2015.

* :class:`TripletLoss`: ``max(0, d(a,p) − d(a,n) + margin)`` on squared Euclidean distances of
  L2-normalised embeddings (FaceNet Eq. 1); ``symmetric=True`` adds the term with the positive
  as anchor, ``max(0, d(a,p) − d(p,n) + margin)``, as FEC's loss does (both images of the
  similar pair must be closer to each other than to the third).
* :func:`triplet_accuracy`: fraction of triplets whose anchor is closer to the positive than to
  the negative; ``strict=True`` is FEC's rule (the similar pair must be the closest of the
  three pairs).
* :func:`sample_expression_triplets` and :class:`TripletDataset`: **a stand-in for FEC**, which
  is not in the shared data: triplets from FER2013's emotion labels (anchor and positive share an
  emotion, the negative has another). This measures emotion-level similarity, a coarser notion
  than FEC's within-category human judgements.
* :class:`EmbeddingHead`: ``Linear(features → 16)`` then L2 normalisation (FEC's embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

EMBEDDING_DIM = 16  # FEC paper: "compact (16-dimensional) expression embedding"
MARGIN = 0.1  # FEC paper, triplet loss margin δ = 0.1 (on squared distances of unit vectors)


class EmbeddingHead(nn.Module):
    """``Linear(in_features → dim)`` followed by L2 normalisation: the task's embedding head."""

    def __init__(self, in_features: int, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=1)


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=1)


class TripletLoss(nn.Module):
    """Mean hinge loss over triplets ``(anchor, positive, negative)`` of embeddings."""

    def __init__(self, margin: float = MARGIN, symmetric: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.symmetric = symmetric

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        d_ap = _sq_dist(anchor, positive)
        loss = F.relu(d_ap - _sq_dist(anchor, negative) + self.margin)
        if self.symmetric:
            loss = loss + F.relu(d_ap - _sq_dist(positive, negative) + self.margin)
        return loss.mean()


def triplet_accuracy(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, strict: bool = False
) -> float:
    """Fraction of triplets with ``d(a, p) < d(a, n)`` (ties count as wrong); ``strict``: also
    ``d(a, p) < d(p, n)``, i.e. the similar pair is the closest of the three (FEC's accuracy)."""
    d_ap = _sq_dist(anchor, positive)
    right = d_ap < _sq_dist(anchor, negative)
    if strict:
        right &= d_ap < _sq_dist(positive, negative)
    return float(right.float().mean()) if len(right) else float("nan")


def sample_expression_triplets(labels: Sequence[int] | np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows ``(anchor, positive, negative)`` of indices into ``labels``: anchor and
    positive are two different images of one emotion, the negative an image of another emotion.
    Anchor emotions are drawn uniformly over the emotions that have two images or more (FER2013
    is imbalanced: "disgust" has 436 training images, "happy" 7,215), negatives uniformly
    over the other images. Deterministic for a seed."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in by_class}
    anchors = [c for c, idx in by_class.items() if len(idx) >= 2]
    if not anchors or len(by_class) < 2:
        raise ValueError("triplets need an emotion with two images and a second emotion")
    rows = np.empty((count, 3), dtype=np.int64)
    for i in range(count):
        c = anchors[rng.integers(len(anchors))]
        rows[i, :2] = rng.choice(by_class[c], size=2, replace=False)
        rows[i, 2] = others[c][rng.integers(len(others[c]))]
    return rows


class TripletDataset(Dataset):
    """Items ``(anchor_image, positive_image, negative_image)`` from an image dataset yielding
    ``(image, label)`` and a ``(n, 3)`` index array."""

    def __init__(self, images: Dataset[Any], triplets: np.ndarray) -> None:
        self.images = images
        self.triplets = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, p, n = self.triplets[i]
        return self.images[a][0], self.images[p][0], self.images[n][0]


@torch.no_grad()
def evaluate_triplets(
    embed: Callable[[torch.Tensor], torch.Tensor],
    data: TripletDataset,
    device: torch.device,
    batch_size: int = 256,
    strict: bool = False,
) -> float:
    """Triplet prediction accuracy of ``embed`` (images → embeddings) over ``data``."""
    parts: list[list[torch.Tensor]] = [[], [], []]
    for batch in DataLoader(data, batch_size=batch_size):
        for part, images in zip(parts, batch, strict=True):
            part.append(embed(images.to(device)).cpu())
    return triplet_accuracy(*(torch.cat(p) for p in parts), strict=strict)
