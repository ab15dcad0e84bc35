"""Triplet tasks: an L2-normalised embedding trained with a triplet loss, scored by triplet accuracy.

The compact expression embedding of Vemulapalli & Agarwala, "A Compact Embedding for Facial
Expression Similarity", CVPR 2019 (arXiv:1811.11283): a 16-dimensional, L2-normalised embedding
(:class:`clbench.nn.heads.EmbeddingHead`) trained with a triplet loss on triplets of faces,
evaluated by triplet prediction accuracy. Triplet loss: Schroff et al., "FaceNet", CVPR 2015.

How a triplet task flows through clbench (task kind ``"triplet"``, see
:class:`clbench.benchmark.TaskData`):

* training items are :class:`StackedTriplets`: ``(stack([anchor, positive, negative]), 0)``, so a
  batch is ``(B, 3, C, H, W)``; ``TaskRoutedModel`` flattens it to ``(3B, C, H, W)`` (rows
  ``a0, p0, n0, a1, ...``) and the network returns ``(3B, 16)`` embeddings;
* :class:`TripletCriterion` regroups them to ``(B, 3, 16)`` and applies :class:`TripletLoss`
  (the constant target is ignored); the training loop counts :func:`triplet_correct`;
* ``valid``/``test`` are :class:`TripletDataset` objects; :func:`evaluate` embeds each image
  they reference once through the task's head and reports triplet accuracy.

* :class:`TripletLoss`: ``max(0, d(a,p) − d(a,n) + margin)`` on squared Euclidean distances of
  L2-normalised embeddings (FaceNet Eq. 1); ``symmetric=True`` adds the term with the positive
  as anchor, ``max(0, d(a,p) − d(p,n) + margin)``, as FEC's loss does (both images of the
  similar pair must be closer to each other than to the third).
* :func:`triplet_accuracy`: fraction of triplets whose anchor is closer to the positive than to
  the negative; ``strict=True`` is FEC's rule (the similar pair must be the closest of the
  three pairs). The task's reported ``accuracy`` is the plain (non-strict) one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from clbench.nn.heads import EMBEDDING_DIM, EmbeddingHead

__all__ = [
    "EMBEDDING_DIM",
    "MARGIN",
    "EmbeddingHead",
    "StackedTriplets",
    "TripletCriterion",
    "TripletDataset",
    "TripletLoss",
    "evaluate",
    "evaluate_triplets",
    "sample_label_triplets",
    "split_triplets",
    "triplet_accuracy",
    "triplet_correct",
]

MARGIN = 0.1  # FEC paper, triplet loss margin δ = 0.1 (on squared distances of unit vectors)


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


def as_images(x: torch.Tensor) -> torch.Tensor:
    """A triplet batch ``(B, 3, C, H, W)`` as ``3B`` images (rows ``a0, p0, n0, a1, ...``, the
    order :func:`split_triplets` reads back); any other batch as it is."""
    return x.flatten(0, 1) if x.dim() == 5 else x


def split_triplets(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anchor, positive and negative rows of a ``(3B, D)`` output whose rows run
    ``a0, p0, n0, a1, p1, n1, ...`` (a flattened ``(B, 3, ...)`` batch)."""
    if output.dim() != 2 or output.shape[0] % 3:
        raise ValueError(f"triplet outputs must be (3·B, D) rows a0, p0, n0, a1, ...; got shape {tuple(output.shape)}")
    anchor, positive, negative = output.view(-1, 3, output.shape[1]).unbind(1)
    return anchor, positive, negative


class TripletCriterion(nn.Module):
    """The training loss of a triplet task: :class:`TripletLoss` on the network's ``(3B, D)``
    output regrouped to ``(B, 3, D)``; the target (the constant 0 of :class:`StackedTriplets`)
    is ignored."""

    def __init__(self, margin: float = MARGIN, symmetric: bool = True) -> None:
        super().__init__()
        self.loss = TripletLoss(margin, symmetric)

    def forward(self, output: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.loss(*split_triplets(output))


def triplet_correct(output: torch.Tensor) -> torch.Tensor:
    """How many triplets of a ``(3B, D)`` output have ``d(a, p) < d(a, n)``: a 0-d long tensor on
    the output's device (no host sync, so the training loop can sum it per step)."""
    anchor, positive, negative = split_triplets(output.detach())
    return (_sq_dist(anchor, positive) < _sq_dist(anchor, negative)).sum()


def triplet_accuracy(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, strict: bool = False
) -> float:
    """Fraction of triplets with ``d(a, p) < d(a, n)`` (ties count as wrong); ``strict``: also
    ``d(a, p) < d(p, n)``, i.e. the similar pair is the closest of the three (FEC's accuracy)."""
    d_ap = _sq_dist(anchor, positive)
    right = d_ap < _sq_dist(anchor, negative)
    if strict:
        right &= d_ap < _sq_dist(positive, negative)
    return int(right.sum()) / len(right) if len(right) else float("nan")  # exact, not a float32 mean


def sample_label_triplets(labels: Sequence[int] | np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows ``(anchor, positive, negative)`` of indices into ``labels``: anchor and
    positive are two different items of one label, the negative an item of another label.
    Anchor labels are drawn uniformly over the labels that have two items or more (so an
    imbalanced set such as FER2013, 436 "disgust" vs 7,215 "happy" training images, gives every
    label the same share of triplets), negatives uniformly over the other items. Deterministic
    for a seed."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in by_class}
    anchors = [c for c, idx in by_class.items() if len(idx) >= 2]
    if not anchors or len(by_class) < 2:
        raise ValueError("triplets need a label with two items and a second label")
    rows = np.empty((count, 3), dtype=np.int64)
    for i in range(count):
        c = anchors[rng.integers(len(anchors))]
        rows[i, :2] = rng.choice(by_class[c], size=2, replace=False)
        rows[i, 2] = others[c][rng.integers(len(others[c]))]
    return rows


class TripletDataset(Dataset):
    """Items ``(anchor_image, positive_image, negative_image)`` from an image dataset yielding
    ``(image, label)`` and a ``(n, 3)`` index array (the ``valid``/``test`` split of a triplet task)."""

    def __init__(self, images: Dataset[Any], triplets: np.ndarray) -> None:
        self.images = images
        self.triplets = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, p, n = self.triplets[i]
        return self.images[a][0], self.images[p][0], self.images[n][0]


class StackedTriplets(Dataset):
    """The ``train`` split of a triplet task: items ``(stack([a, p, n]) (3, C, H, W), 0)``.

    Each image passes through the image dataset's own transform (e.g. a random flip per image).
    ``targets`` is all zeros: Avalanche's classification datasets need one per item.
    """

    def __init__(self, triplets: TripletDataset) -> None:
        self.triplets = triplets
        self.targets: list[int] = [0] * len(triplets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.stack(self.triplets[i]), 0


@torch.no_grad()
def evaluate_triplets(
    embed: Callable[[torch.Tensor], torch.Tensor],
    data: TripletDataset,
    device: torch.device,
    batch_size: int = 256,
    strict: bool = False,
) -> float:
    """Triplet prediction accuracy of ``embed`` (images → embeddings) over ``data``; each image
    the triplets reference is embedded once."""
    used, positions = np.unique(data.triplets, return_inverse=True)
    chunks = [
        embed(batch[0].to(device)).float().cpu()
        for batch in DataLoader(Subset(data.images, used.tolist()), batch_size=batch_size, shuffle=False)
    ]
    emb = torch.cat(chunks) if chunks else torch.zeros(0, EMBEDDING_DIM)
    rows = emb[torch.as_tensor(positions.reshape(-1, 3))]  # (n, 3, D)
    return triplet_accuracy(rows[:, 0], rows[:, 1], rows[:, 2], strict=strict)


def evaluate(model: Any, task: int, data: TripletDataset, device: torch.device, batch_size: int) -> dict[str, float]:
    """``accuracy``: triplet accuracy on ``data`` of task ``task``'s embedding (the output of its
    embedding head), in eval mode; the caller's mode is restored."""
    was_training = model.training
    model.eval()
    model.activate(task)
    try:
        accuracy = evaluate_triplets(model, data, device, batch_size)
    finally:
        model.train(was_training)
    return {"accuracy": accuracy}
