"""The "triplet" task kind: embedding head, triplet criterion, routing of (B, 3, C, H, W) batches,
training-loop accuracy, evaluation, checkpoints of networks with embedding heads (seconds)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from clbench.benchmark import TASK_KINDS, TaskData
from clbench.errors import ClbenchError
from clbench.loop import TaskRoutedModel, build_scenario
from clbench.nn.heads import EMBEDDING_DIM, CosineHead, EmbeddingHead, head_kind, make_head
from clbench.nn.masked import MaskedNet
from clbench.nn.multihead import MultiHeadNet
from clbench.strategy import Strategy, StrategyContext, Task, TrainConfig
from clbench.triplets import (
    StackedTriplets,
    TripletCriterion,
    TripletDataset,
    evaluate_triplets,
    sample_label_triplets,
    split_triplets,
    triplet_correct,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDE = 6  # images are 1×6×6
SIGNAL = 2.0


def _factory(width: float) -> nn.Module:
    """A tiny backbone (a masked net widens its conv: out_features follows the width)."""
    channels = max(1, round(4 * width))
    net = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Flatten())
    net.out_features = channels * SIDE * SIDE
    return net


class _Images(Dataset):
    """``(image, label)``: noise, and the label (0..3) as one pixel's value: an untrained network
    hardly sees it (the noise dominates distances), a trained one can."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 4
        self.x = torch.randn(n, 1, SIDE, SIDE, generator=g)
        self.x[:, 0, 2, 2] = SIGNAL * labels.float()
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.targets[i]


def _triplet_task(n_train: int = 48, n_eval: int = 24) -> TaskData:
    splits = {}
    for seed, split in enumerate(("train", "valid", "test")):
        images = _Images(n_train if split == "train" else n_eval, seed)
        triplets = TripletDataset(images, sample_label_triplets(images.targets, len(images), seed))
        splits[split] = StackedTriplets(triplets) if split == "train" else triplets
    return TaskData("similarity", ["a", "b", "c", "d"], kind="triplet", **splits)


def _classification_task() -> TaskData:
    return TaskData("brightness", ["a", "b", "c", "d"], _Images(32, 3), _Images(16, 4), _Images(16, 5))


def _tasks(*data: TaskData) -> list[Task]:
    exps = build_scenario(list(data))
    return [
        Task(i, d, exps["train"][i], exps["valid"].get(i), exps["test"].get(i)) for i, d in enumerate(data, start=1)
    ]


# ------------------------------------------------------------------- kind, head, loss
def test_triplet_kind_trains_an_embedding_head_with_the_triplet_loss():
    assert "triplet" in TASK_KINDS
    data = _triplet_task()
    assert data.head == "embedding"
    assert isinstance(_tasks(data)[0].criterion(), TripletCriterion)
    x, y = data.train[0]
    assert x.shape == (3, 1, SIDE, SIDE) and y == 0
    assert data.train.targets == [0] * len(data.train)
    assert replace(data, kind="verification").head == "cosine" and replace(data, kind="classification").head == "linear"


def test_embedding_head_is_a_16_d_unit_vector_whatever_num_classes():
    head = make_head("embedding", 10, num_classes=7)
    assert isinstance(head, EmbeddingHead) and isinstance(head, nn.Linear)
    assert head.out_features == EMBEDDING_DIM == 16
    out = head(torch.randn(5, 10))
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(5))
    kinds = ["linear", "cosine", "embedding"]
    assert [head_kind(make_head(k, 4, 3)) for k in kinds] == kinds


def test_triplet_criterion_on_a_hand_made_case():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # Rows a0, p0, n0, a1, p1, n1. Triplet 0 is right (d(a,p)=0, d(a,n)=d(p,n)=2): loss 0.
    # Triplet 1 is wrong: d(a,p)=2, d(a,n)=0, d(p,n)=2 → relu(2−0+0.1) + relu(2−2+0.1) = 2.2.
    output = torch.tensor([e1, e1, e2, e1, e2, e1])
    target = torch.zeros(2, dtype=torch.long)
    assert float(TripletCriterion()(output, target)) == pytest.approx(2.2 / 2)
    assert float(TripletCriterion(symmetric=False)(output, target)) == pytest.approx(2.1 / 2)
    assert int(triplet_correct(output)) == 1
    a, p, n = split_triplets(output)
    assert torch.equal(a, torch.tensor([e1, e1])) and torch.equal(n, torch.tensor([e2, e1]))
    with pytest.raises(ValueError, match="3·B"):
        TripletCriterion()(output[:5], target)


# -------------------------------------------------------------------------- routing
def test_task_routed_model_runs_triplets_as_3b_images():
    torch.manual_seed(0)
    net = MultiHeadNet(_factory)
    net.begin_task(1, 4)
    net.finish_task()
    net.begin_task(2, 4, head="embedding")
    model = TaskRoutedModel(net)
    x = torch.randn(5, 3, 1, SIDE, SIDE)
    out = model(x, torch.ones(5, dtype=torch.long))
    assert out.shape == (15, EMBEDDING_DIM)
    net.activate(2)
    for i in range(5):  # rows a0, p0, n0, a1, ...: what the criterion regroups
        for j in range(3):
            assert torch.allclose(out[3 * i + j], net(x[i, j : j + 1])[0], atol=1e-6)
    with pytest.raises(ClbenchError, match="must come from one task"):
        model(x, torch.tensor([0, 1, 0, 1, 1]))


# ------------------------------------------------------------- training, evaluation
class _Plain(Strategy):
    name = "plain_for_test"


def _strategy(epochs: int = 3) -> Strategy:
    config = TrainConfig(epochs=epochs, lr=0.05, batch_size=8, eval_batch_size=7)
    return _Plain(config, StrategyContext(torch.device("cpu"), _factory, num_tasks=2))


def test_training_loop_counts_triplet_accuracy():
    torch.manual_seed(0)
    strategy = _strategy(epochs=1)
    (triplet,) = _tasks(_triplet_task())
    strategy.before_task(triplet)
    frozen = strategy.train(triplet, lr=0.0)  # nothing moves: the count must match a direct one
    model = strategy.model
    direct = evaluate_triplets(model, triplet.data.train.triplets, torch.device("cpu"), batch_size=8)
    assert frozen.train_accuracy == direct and 0.2 < direct < 0.9
    trained = strategy.train(triplet, epochs=3)
    assert trained.train_accuracy > 0.9 and trained.train_loss < 0.1  # 48 triplets are easy to fit


def test_evaluate_all_scores_triplet_tasks_beside_classification():
    torch.manual_seed(0)
    strategy = _strategy()
    triplet, classification = _tasks(_triplet_task(), _classification_task())
    for task in (triplet, classification):
        strategy.before_task(task)
        strategy.train(task)
        strategy.after_task(task)
    model = strategy.model
    model.train()
    scores = strategy.evaluate_all([triplet, classification], "test")
    assert model.training  # the caller's mode is restored
    assert set(scores[1]) == {"accuracy"} and 0.0 <= scores[2]["accuracy"] <= 1.0
    model.eval()
    model.activate(1)
    cpu = torch.device("cpu")
    assert scores[1]["accuracy"] == evaluate_triplets(model, triplet.data.test, cpu, batch_size=7)
    assert strategy.evaluate([triplet], "valid")[1] == evaluate_triplets(model, triplet.data.valid, cpu, batch_size=7)


def test_evaluate_triplets_embeds_each_image_once():
    calls = []

    def embed(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x.flatten(1)[:, :2]

    images = _Images(12, 0)
    data = TripletDataset(images, np.array([[0, 4, 1], [0, 4, 2], [4, 8, 1]]))
    evaluate_triplets(embed, data, torch.device("cpu"), batch_size=100)
    assert calls == [5]  # images 0, 1, 2, 4, 8


# --------------------------------------------------------------------- checkpoints
def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # checkpoints' extra state is plain data


def test_masked_net_with_an_embedding_head_grows_and_survives_a_checkpoint():
    torch.manual_seed(0)
    net = MaskedNet(_factory)
    net.begin_task(1, 4, pick="all", head="embedding")
    old = net.heads["1"]
    net.expand(2.0)  # the training task's head widens, keeping its kind and old weights
    head = net.heads["1"]
    assert isinstance(head, EmbeddingHead) and head.out_features == EMBEDDING_DIM
    assert head.in_features > old.in_features
    assert torch.equal(head.weight[:, : old.in_features], old.weight) and torch.equal(head.bias, old.bias)
    net.finish_task()
    net.begin_task(2, 3, pick="all", head="cosine")
    net.finish_task()
    x = torch.randn(4, 1, SIDE, SIDE)
    net.eval()
    before = {}
    for k in (1, 2):
        net.activate(k)
        before[k] = net(x)
    loaded = MaskedNet.from_state_dict(_round_trip(net.state_dict()), _factory)
    loaded.eval()
    assert isinstance(loaded.heads["1"], EmbeddingHead) and isinstance(loaded.heads["2"], CosineHead)
    for k in (1, 2):
        loaded.activate(k)
        assert torch.equal(loaded(x), before[k])
    assert loaded.accounting()["tasks"][1]["state_bytes"] > 0


def test_multihead_net_checkpoint_keeps_each_heads_kind():
    torch.manual_seed(0)
    net = MultiHeadNet(_factory)
    for task, kind in enumerate(("linear", "cosine", "embedding"), start=1):
        net.begin_task(task, 5, head=kind)
        net.finish_task()
    fresh = MultiHeadNet(_factory)
    fresh.load_state_dict(_round_trip(net.state_dict()))
    assert [head_kind(fresh.heads[str(k)]) for k in (1, 2, 3)] == ["linear", "cosine", "embedding"]
    x = torch.randn(3, 1, SIDE, SIDE)
    fresh.activate(3)
    net.activate(3)
    assert torch.equal(fresh(x), net(x))


def test_packnet_keeps_a_triplet_task_bit_identical_through_a_checkpoint_and_a_later_task():
    from clbench_plugins.packnet import PackNet, PackNetConfig

    torch.manual_seed(0)
    config = PackNetConfig(epochs=2, lr=0.05, lr_milestones=(), batch_size=8, eval_batch_size=16,
                           post_prune_epochs=1, post_prune_lr=0.01, post_prune_milestones=())  # fmt: skip
    context = StrategyContext(torch.device("cpu"), _factory, num_tasks=2)
    triplet, classification = _tasks(_triplet_task(), _classification_task())
    strategy = PackNet(config, context)
    strategy.learn_task(triplet)
    batch = torch.stack([triplet.data.test[i][0] for i in range(4)])  # 4 anchors
    strategy.model.eval()
    strategy.model.activate(1)
    before, scores = strategy.model(batch), strategy.evaluate_all([triplet], "test")[1]

    resumed = PackNet(config, context)  # as a resumed run: a fresh strategy loads the checkpoint
    resumed.load_checkpoint_state(_round_trip(strategy.checkpoint_state()))
    assert isinstance(resumed.model.heads["1"], EmbeddingHead)
    resumed.learn_task(classification)
    assert resumed.model.accounting()["tasks"][2]["owned"] > 0  # task 2 trained weights of its own
    resumed.model.eval()
    resumed.model.activate(1)
    assert torch.equal(resumed.model(batch), before)
    assert resumed.evaluate_all([triplet, classification], "test")[1] == scores
