from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clbench import verification
from clbench.nn.heads import CosineHead, MarginCrossEntropy
from clbench.verification import PairSplit


def test_best_threshold_separates_perfectly_separable_scores():
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    same = np.array([True, True, False, False])
    t = verification.best_threshold(scores, same)
    assert 0.3 < t < 0.8
    assert ((scores > t) == same).all()


def test_fold_accuracies_use_thresholds_from_other_folds():
    # Fold 1 alone would choose a threshold near 0.5; fold 2's pairs say 0.15 separates them.
    scores = np.array([0.6, 0.4, 0.2, 0.1])
    same = np.array([True, False, True, False])
    folds = np.array([1, 1, 2, 2])
    split = PairSplit(torch.zeros(4, 1), [[0, 1]] * 4, same, folds, eval_folds=[1, 2])
    accs = verification.fold_accuracies(scores, split)
    # fold 1 with fold 2's threshold (≈0.15): both pairs predicted same -> 1/2 right.
    # fold 2 with fold 1's threshold (≈0.5): both predicted different -> 1/2 right.
    assert accs == [0.5, 0.5]
    held_out = PairSplit(torch.zeros(4, 1), [[0, 1]] * 4, same, folds, eval_folds=[2], threshold_folds={2: [2]})
    assert verification.fold_accuracies(scores, held_out) == [1.0]


def test_pair_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one entry per pair"):
        PairSplit(torch.zeros(2, 1), [[0, 1]], [True, False], [1], eval_folds=[1])


class _Identity(nn.Module):
    """An 'embedding' that is the input itself; records which task was activated."""

    def __init__(self) -> None:
        super().__init__()
        self.active = None

    def activate(self, task: int) -> None:
        self.active = task

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_evaluate_scores_pairs_by_cosine():
    images = torch.utils.data.TensorDataset(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
    split = PairSplit(images, [[0, 1], [0, 2], [2, 3], [0, 3]], [True, False, False, False], [1, 1, 1, 1], [1],
                      {1: [1]})  # fmt: skip
    model = _Identity()
    scores = verification.evaluate(model, 3, split, torch.device("cpu"), batch_size=2)
    assert model.active == 3
    assert scores["accuracy"] == 1.0 and math.isnan(scores["accuracy_std"])


def test_margin_loss_is_cross_entropy_on_shifted_target_logit():
    logits = torch.tensor([[10.0, 5.0, -3.0], [0.0, 1.0, 2.0]])
    target = torch.tensor([0, 2])
    loss = MarginCrossEntropy(margin=0.2, scale=10.0)(logits, target)
    shifted = logits.clone()
    shifted[0, 0] -= 2.0
    shifted[1, 2] -= 2.0
    assert torch.allclose(loss, nn.functional.cross_entropy(shifted, target))


def test_cosine_head_outputs_scaled_cosines():
    head = CosineHead(4, 3, scale=5.0)
    out = head(torch.randn(6, 4))
    assert out.shape == (6, 3) and out.abs().max() <= 5.0 + 1e-5
    assert head.bias is None
