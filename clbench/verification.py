"""Face verification: scoring pairs of images by the cosine of their embeddings.

The LFW protocol (Huang et al., 2007, View 2): pairs come in folds; each fold's accuracy uses
the decision threshold that maximises accuracy on the other folds, and the result is the mean ±
std over the evaluated folds. A split may name, per evaluated fold, which folds choose its
threshold (``threshold_folds``), so a held-out-fold variant fits the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class PairSplit:
    """The verification data of one split.

    ``images`` yields ``(image_tensor, anything)``; ``pairs[i] = (a, b)`` indexes it; ``same[i]``
    says whether both show one person; ``folds[i]`` is the pair's fold. ``eval_folds`` are the
    folds whose accuracy is reported; ``threshold_folds[f]`` the folds whose pairs choose fold f's
    threshold (default: every other fold, the 10-fold protocol).
    """

    images: Dataset[Any]
    pairs: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    eval_folds: Sequence[int]
    threshold_folds: Mapping[int, Sequence[int]] | None = None

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.same = np.asarray(self.same, dtype=bool)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        if not len(self.pairs) == len(self.same) == len(self.folds):
            raise ValueError("pairs, same and folds must have one entry per pair")

    def __len__(self) -> int:
        return len(self.pairs)

    def threshold_source(self, fold: int) -> list[int]:
        if self.threshold_folds is not None and fold in self.threshold_folds:
            return list(self.threshold_folds[fold])
        return sorted(set(self.folds.tolist()) - {fold})


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (score > t ⇒ same) with the highest accuracy on these pairs; ties → the smallest."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    # Accuracy of every candidate at once: predictions are scores > t.
    accuracies = ((scores[None, :] > candidates[:, None]) == same[None, :]).mean(axis=1)
    return float(candidates[int(np.argmax(accuracies))])


def fold_accuracies(scores: np.ndarray, split: PairSplit) -> list[float]:
    result = []
    for fold in split.eval_folds:
        source = np.isin(split.folds, split.threshold_source(fold))
        if not source.any():
            raise ValueError(f"no pairs to choose the threshold of fold {fold}")
        threshold = best_threshold(scores[source], split.same[source])
        mine = split.folds == fold
        result.append(float(((scores[mine] > threshold) == split.same[mine]).mean()))
    return result


@torch.no_grad()
def embed(model: Any, task: int, images: Dataset[Any], device: torch.device, batch_size: int) -> torch.Tensor:
    """L2-normalised embeddings of every image for ``task`` (eval mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    model.activate(task)
    chunks = []
    try:
        for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
            x = batch[0].to(device)
            chunks.append(torch.nn.functional.normalize(model.features(x).float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def evaluate(model: Any, task: int, split: PairSplit, device: torch.device, batch_size: int) -> dict[str, float]:
    """``accuracy`` (mean over evaluated folds) and ``accuracy_std`` (population std, NaN for one fold)."""
    emb = embed(model, task, split.images, device, batch_size)
    a, b = torch.as_tensor(split.pairs[:, 0]), torch.as_tensor(split.pairs[:, 1])
    scores = (emb[a] * emb[b]).sum(dim=1).numpy()
    accs = fold_accuracies(scores, split)
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)) if len(accs) > 1 else math.nan,
    }
