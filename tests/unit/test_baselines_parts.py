"""Building blocks of the baselines: dynamic task weights, pseudo-labels, triplets (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench_baselines.joint import DYNAMIC_SIGMA, IGNORE, distillation_loss, dynamic_weights_class, pseudo_labels
from clbench_baselines.triplet import (
    TripletDataset,
    TripletLoss,
    evaluate_triplets,
    sample_expression_triplets,
    triplet_accuracy,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dynamic_weights_move_toward_the_task_with_the_larger_loss():
    torch.manual_seed(0)
    unit = dynamic_weights_class()(in_features=16, num_tasks=3)
    features = torch.randn(32, 16)
    losses = torch.tensor([0.2, 2.5, 0.6])  # task 1 (index 1) is the hard one
    present = torch.ones(3, dtype=torch.bool)
    start = unit(features).detach()
    assert torch.allclose(start.sum(), torch.tensor(1.0))
    optimizer = torch.optim.SGD(unit.parameters(), lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        unit.unit_loss(unit(features), losses, present).backward()
        optimizer.step()
    end = unit(features).detach()
    assert end[1] > start[1] + 0.1  # the hard task gained weight …
    assert int(end.argmax()) == 1 and end[1] > end[2] > end[0]  # … and the order follows the losses


def test_dynamic_unit_loss_ignores_absent_tasks_and_uses_sigma():
    w = torch.tensor([0.5, 0.3, 0.2])
    losses = torch.tensor([1.0, 0.0, 3.0])
    present = torch.tensor([True, False, True])
    unit = dynamic_weights_class()
    expected = 0.5 / (1.0 + DYNAMIC_SIGMA) + 0.2 / (3.0 + DYNAMIC_SIGMA)
    assert float(unit.unit_loss(w, losses, present)) == pytest.approx(expected)


def test_pseudo_labels_respect_the_threshold():
    # softmax confidences: row 0 ≈ 0.982 (class 2), row 1 = 0.5 (tie), row 2 ≈ 0.731 (class 0)
    logits = torch.tensor([[0.0, 0.0, 4.7], [1.0, 1.0, -30.0], [1.0, 0.0, -30.0]])
    confidence = torch.softmax(logits, 1).max(1).values
    assert pseudo_labels(logits, 0.9).tolist() == [2, IGNORE, IGNORE]
    assert pseudo_labels(logits, 0.7).tolist() == [2, IGNORE, 0]
    # The threshold is inclusive and applies to the softmax confidence itself.
    assert pseudo_labels(logits, float(confidence[2])).tolist()[2] == 0
    assert pseudo_labels(logits, float(confidence[2]) + 1e-4).tolist()[2] == IGNORE
    assert pseudo_labels(logits, 1.0).tolist() == [IGNORE, IGNORE, IGNORE]


def test_distillation_loss_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.randn(5, 4)
    assert float(distillation_loss(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(logits, logits.flip(1), 2.0)) > 0


def test_triplet_accuracy_on_a_hand_made_case():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    n = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    # d(a,p) vs d(a,n): 1<4 right, 9>1 wrong, 1=1 tie (wrong), 4=4 tie (wrong)
    assert triplet_accuracy(a, p, n) == pytest.approx(0.25)
    # strict (FEC): also d(a,p) < d(p,n); row 0: d(p,n) = 1, not > 1 → wrong
    assert triplet_accuracy(a, p, n, strict=True) == 0.0
    a2, p2, n2 = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[-3.0, 0.0]])
    assert triplet_accuracy(a2, p2, n2, strict=True) == 1.0


def test_triplet_loss_is_a_hinge_on_squared_distances():
    a = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    far = torch.tensor([[-1.0, 0.0]])  # d = 4: satisfied with margin
    near = torch.tensor([[0.0, 1.0]])  # d = 2
    assert float(TripletLoss(margin=0.1)(a, p, far)) == 0.0
    assert float(TripletLoss(margin=3.0, symmetric=False)(a, p, near)) == pytest.approx(1.0)  # 0 − 2 + 3
    assert float(TripletLoss(margin=3.0, symmetric=True)(a, p, near)) == pytest.approx(2.0)


def test_expression_triplets_pair_one_emotion_against_another():
    labels = np.array([0, 0, 0, 1, 1, 2, 3])
    triplets = sample_expression_triplets(labels, 500, seed=1)
    a, p, n = triplets.T
    assert (a != p).all() and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    assert set(labels[a]) == {0, 1}  # emotions 2 and 3 have one image each: never anchors
    assert (triplets == sample_expression_triplets(labels, 500, seed=1)).all()
    with pytest.raises(ValueError):
        sample_expression_triplets(np.array([0, 1, 2]), 3)


def test_evaluate_triplets_with_an_identity_embedding():
    class Images(torch.utils.data.Dataset):
        points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.0, 0.2]])

        def __len__(self):
            return len(self.points)

        def __getitem__(self, i):
            return self.points[i], 0

    data = TripletDataset(Images(), np.array([[0, 1, 2], [0, 2, 1], [0, 1, 3]]))
    assert evaluate_triplets(lambda x: x, data, torch.device("cpu"), batch_size=2) == pytest.approx(2 / 3)
