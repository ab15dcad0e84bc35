"""Unit tests of the masked-module substrate (clbench.nn.masked): isolation must be exact."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from clbench.nn.backbones import FeatureExtractor, digits_cnn
from clbench.nn.masked import (
    DEFAULT_THRESHOLD,
    PICK_INIT,
    Binarizer,
    MaskedConv2d,
    MaskedLinear,
    MaskedNet,
    StateError,
    TaskBatchNorm,
    TaskPReLU,
    cubic_sparsity,
    mask_modules,
    pack_bits,
    unpack_bits,
)

WD = 4e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------- helpers
def _digits_batch(n: int = 16, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


def _train(
    net: MaskedNet,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 4,
    lr: float = 0.05,
    wd: float = WD,
    pick_lr: float = 1e-2,
) -> None:
    """A few CPG-style steps: SGD+nesterov on weights, Adam on piggymasks, gate, re-zero."""
    sgd = torch.optim.SGD(net.trainable_parameters(), lr=lr, momentum=0.9, nesterov=True)
    picks = net.pick_parameters()
    adam = torch.optim.Adam(picks, lr=pick_lr) if picks else None
    net.train()
    for _ in range(steps):
        sgd.zero_grad()
        if adam:
            adam.zero_grad()
        F.cross_entropy(net(x), y).backward()
        net.gate_gradients(wd)
        sgd.step()
        if adam:
            adam.step()
        net.zero_released()


def _outputs(net: MaskedNet, task: int, x: torch.Tensor) -> torch.Tensor:
    net.activate(task)
    net.eval()
    with torch.no_grad():
        return net(x)


def _snapshot(net: MaskedNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items() if k != "_extra_state"}


def _tiny_factory(cin: int = 2, c: int = 3, f: int = 5, hw: int = 4, conv_bias: bool = True):
    """Every supported layer kind: biased conv, BN2d, channel PReLU, flatten→Linear, BN1d."""

    def make(width: float = 1.0) -> FeatureExtractor:
        c_, f_ = int(c * width), int(f * width)
        return FeatureExtractor(
            [
                nn.Conv2d(cin, c_, 3, padding=1, bias=conv_bias),
                nn.BatchNorm2d(c_),
                nn.PReLU(c_),
                nn.Flatten(),
                nn.Linear(c_ * hw * hw, f_),
                nn.BatchNorm1d(f_),
                nn.ReLU(),
            ],
            f_,
        )

    return make


def _linear_factory(n_in: int = 6, n_out: int = 4):
    def make(width: float = 1.0) -> FeatureExtractor:
        return FeatureExtractor([nn.Linear(n_in, int(n_out * width))], int(n_out * width))

    return make


def _layer(net: MaskedNet, index: int = 0) -> MaskedLinear:
    layer = net.backbone[index]
    assert isinstance(layer, (MaskedLinear, MaskedConv2d))
    return layer


# ------------------------------------------------------- small primitives
def test_binarizer_forward_is_threshold_and_backward_is_identity() -> None:
    scores = torch.tensor([-1.0, 0.0, DEFAULT_THRESHOLD, 0.0051, PICK_INIT], requires_grad=True)
    out = Binarizer.apply(scores, DEFAULT_THRESHOLD)
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    (out * torch.arange(5.0)).sum().backward()
    assert scores.grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@settings(max_examples=30, deadline=None, database=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_pack_bits_round_trip(shape: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(mask.numel() / 8)
    assert torch.equal(unpack_bits(packed, shape), mask)


def test_pack_bits_is_numpy_packbits() -> None:
    np = pytest.importorskip("numpy")
    mask = torch.rand(3, 11) > 0.3
    assert pack_bits(mask).tolist() == np.packbits(mask.numpy().reshape(-1)).tolist()


def test_cubic_sparsity_matches_formula_and_clips() -> None:
    def ref(s: float) -> float:
        p = min(1.0, max(0.0, (s - 10) / (50 - 10)))
        return 0.9 + (0.1 - 0.9) * (1 - p) ** 3

    for step in (0, 10, 20, 30, 49, 50, 1000):
        assert cubic_sparsity(step, 0.1, 0.9, 10, 50) == pytest.approx(ref(step), abs=1e-12)
    assert cubic_sparsity(0, 0.1, 0.9, 10, 50) == pytest.approx(0.1)  # before: initial
    assert cubic_sparsity(999, 0.1, 0.9, 10, 50) == pytest.approx(0.9)  # after: final
    assert cubic_sparsity(30, 0.0, 0.8, 10, 50) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert cubic_sparsity(5, 0.0, 0.5, 5, 5) == 0.5  # degenerate ramp is a step


# -------------------------------------------------------------- mask_modules
def test_mask_modules_replaces_supported_layers_and_keeps_init() -> None:
    plain = _tiny_factory()()
    conv_w = plain[0].weight.detach().clone()
    masked = mask_modules(plain)
    kinds = [type(m) for m in masked]
    assert kinds[:6] == [MaskedConv2d, TaskBatchNorm, TaskPReLU, nn.Flatten, MaskedLinear, TaskBatchNorm]
    assert torch.equal(masked[0].weight, conv_w)
    assert masked.out_features == 5


@pytest.mark.parametrize("bad", [nn.GroupNorm(1, 3), nn.LayerNorm(3), nn.Conv2d(4, 4, 3, groups=2), nn.Conv1d(3, 3, 1)])
def test_mask_modules_rejects_unsupported_parametrised_modules(bad: nn.Module) -> None:
    with pytest.raises(TypeError, match="mask_modules|groups|supports"):
        mask_modules(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(bad)))


# ------------------------------------------------------------ state guard
def test_state_guard() -> None:
    net = MaskedNet(_linear_factory())
    x = torch.randn(2, 6)
    with pytest.raises(StateError, match="no active task"):
        net(x)
    for call in (
        lambda: net.prune(0.5),
        lambda: net.finish_task(),
        net.trainable_parameters,
        net.pick_parameters,
        lambda: net.gate_gradients(0.0),
        net.zero_released,
    ):
        with pytest.raises(StateError, match="TRAINING"):
            call()
    net.begin_task(1, 2)
    with pytest.raises(StateError, match="IDLE"):
        net.begin_task(2, 2)
    with pytest.raises(StateError, match="unknown task"):
        net.activate(2)
    net.finish_task()
    with pytest.raises(StateError, match="greater"):
        net.begin_task(1, 2)
    with pytest.raises(ValueError):
        net.begin_task(2, 2, pick="sometimes")
    with pytest.raises(ValueError):
        net.expand(1.0)
    net.begin_task(2, 2)
    with pytest.raises(ValueError):
        net.prune(1.5)


# ------------------------------------------------------------ ownership
def test_begin_task_claims_free_weights_and_prune_releases_them() -> None:
    torch.manual_seed(0)
    net = MaskedNet(digits_cnn)
    net.begin_task(1, 3)
    for _, layer in net._layers():
        assert bool((layer.owner == 1).all())
    net.prune(0.6)
    net.finish_task()
    net.begin_task(2, 3)
    for _, layer in net._layers():
        assert set(layer.owner.unique().tolist()) == {1, 2}


@pytest.mark.parametrize("schedule", [[0.5], [0.1, 0.3, 0.6, 0.8], [0.95]])
def test_prune_reaches_target_sparsity_per_layer(schedule: list[float]) -> None:
    torch.manual_seed(1)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y, steps=1)
    net.prune(0.4)
    net.finish_task()
    net.begin_task(2, 3, pick="learn")
    for sparsity in schedule:
        _train(net, x, y, steps=1)
        reached = net.prune(sparsity)
        for name, layer in net._layers():
            cand = int(((layer.owner == 2) | (layer.owner == 0)).sum())
            free = int((layer.owner == 0).sum())
            assert free == round(sparsity * cand), name  # random weights: no ties
            assert reached[name] == pytest.approx(sparsity, abs=1 / cand)
            # Released weights are zero, and earlier tasks' weights are untouched.
            assert bool((layer.weight[layer.owner == 0] == 0).all())
            assert int((layer.owner == 1).sum()) > 0


def test_released_weights_stay_zero_under_momentum() -> None:
    torch.manual_seed(2)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    sgd = torch.optim.SGD(net.trainable_parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for step in range(4):
        sgd.zero_grad()
        F.cross_entropy(net(x), y).backward()
        net.gate_gradients(WD)
        sgd.step()
        if step == 1:
            net.prune(0.5)  # momentum buffers now hold nonzero values for released weights
        net.zero_released()
    for _, layer in net._layers():
        assert bool((layer.weight[layer.owner == 0] == 0).all())


# ------------------------------------------------------ isolation, exactly
def test_no_weight_of_an_earlier_task_changes() -> None:
    torch.manual_seed(3)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y)
    net.prune(0.5)
    _train(net, x, y)
    net.finish_task()
    before = _snapshot(net)
    net.begin_task(2, 3, pick="learn")
    _train(net, x, y, steps=6, wd=1e-2)  # strong decay: any leak would show
    after = _snapshot(net)
    for name, layer in net._layers():
        old = layer.owner == 1
        assert torch.equal(layer.weight[old], before[f"backbone.{name}.weight"][old])
        assert not torch.equal(layer.weight[layer.owner == 2], before[f"backbone.{name}.weight"][layer.owner == 2])
    task1 = [k for k in before if ".per_task.1." in k or ".biases.1" in k or k.startswith("heads.1.")]
    assert task1
    for key in task1:
        assert torch.equal(before[key], after[key]), key


def test_zero_forgetting_through_prune_pick_expand_and_reload() -> None:
    """Tasks 1..4 with every mechanism on; earlier outputs stay bit-identical throughout."""
    torch.manual_seed(4)
    net = MaskedNet(digits_cnn)
    x, _ = _digits_batch(seed=99)  # the fixed evaluation batch
    recorded: dict[int, torch.Tensor] = {}
    plan = {1: "learn", 2: "learn", 3: "all", 4: "learn"}

    def check() -> None:
        for task, expected in recorded.items():
            assert torch.equal(_outputs(net, task, x), expected), task

    for task, pick in plan.items():
        xt, yt = _digits_batch(seed=task)
        net.begin_task(task, 3, pick=pick)
        _train(net, xt, yt)
        check()  # training a new task leaves the old ones alone
        if task == 3:
            net.expand(1.5)  # grow mid-task, as CPG does when a goal is missed
            check()
            _train(net, xt, yt)
        for sparsity in (0.3, 0.6):
            net.prune(sparsity)
            _train(net, xt, yt)
        net.finish_task()
        recorded[task] = _outputs(net, task, x)
        check()
        if task == 2:
            net.expand(1.25)  # between tasks
            check()
        if task == 3:
            buf = io.BytesIO()
            torch.save(net.state_dict(), buf)
            buf.seek(0)
            net = MaskedNet(digits_cnn)  # fresh net at width 1: the state dict rebuilds it
            net.load_state_dict(torch.load(buf, weights_only=True))
            check()
    assert net.width_mult == 1.5
    assert [net.tasks[k].in_features for k in plan] == [128, 128, 156, 156]
    check()


def test_state_dict_round_trip_mid_task_resumes_identically() -> None:
    torch.manual_seed(5)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y)
    net.finish_task()
    net.begin_task(2, 3, pick="learn")
    _train(net, x, y)
    net.prune(0.3)
    clone = MaskedNet.from_state_dict(net.state_dict(), digits_cnn)
    assert clone.state is MaskedNet.State.TRAINING and clone.training_task == 2
    assert len(clone.pick_parameters()) == len(net.pick_parameters()) == 3
    for task in (1, 2):
        assert torch.equal(_outputs(clone, task, x), _outputs(net, task, x))
    # Same state, same optimizer start: identical training continues.
    torch.manual_seed(6)
    _train(net, x, y)
    torch.manual_seed(6)
    _train(clone, x, y)
    for key, value in _snapshot(net).items():
        assert torch.equal(value, _snapshot(clone)[key]), key


def test_finished_batchnorm_is_not_updated_in_train_mode() -> None:
    torch.manual_seed(7)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y)
    net.finish_task()
    before = _snapshot(net)
    net.train()
    net.activate(1)
    net(x * 3 + 1)  # train-mode forward of a finished task
    for key, value in _snapshot(net).items():
        assert torch.equal(value, before[key]), key


# ---------------------------------------------------------------- picking
def _two_task_linear(pick: str = "learn") -> tuple[MaskedNet, MaskedLinear]:
    torch.manual_seed(8)
    net = MaskedNet(_linear_factory(6, 4))
    net.begin_task(1, 2)
    net.prune(0.5)  # half the weights free for task 2
    net.finish_task()
    net.begin_task(2, 2, pick=pick)
    return net, _layer(net)


def _effective_weight(layer: MaskedLinear) -> torch.Tensor:
    w, _ = layer._effective_params()
    return w.detach()


def test_current_task_uses_own_weights_and_picks_only_earlier_ones() -> None:
    net, layer = _two_task_linear()
    own, earlier = layer.owner == 2, layer.owner == 1
    assert own.any() and earlier.any()
    with torch.no_grad():
        layer.piggymask.fill_(-1.0)  # "pick nothing" must not drop the task's own weights
    w = _effective_weight(layer)
    assert torch.equal(w[own], layer.weight[own]) and bool((w[earlier] == 0).all())
    with torch.no_grad():
        layer.piggymask.fill_(PICK_INIT)
    w = _effective_weight(layer)
    assert torch.equal(w, layer.weight.detach())  # all picked at init
    # Push one earlier weight below the threshold: it leaves the effective weight.
    idx = earlier.nonzero()[0].tolist()
    with torch.no_grad():
        layer.piggymask[tuple(idx)] = DEFAULT_THRESHOLD - 1e-4
    w = _effective_weight(layer)
    assert w[tuple(idx)] == 0 and layer.weight[tuple(idx)] != 0
    assert int(layer.effective_mask(2).sum()) == int(own.sum() + earlier.sum()) - 1


def test_pick_gradients_only_on_earlier_weights() -> None:
    net, layer = _two_task_linear()
    x = torch.randn(5, 6)
    F.cross_entropy(net(x), torch.tensor([0, 1, 0, 1, 1])).backward()
    earlier = layer.owner == 1
    raw_pick, raw_weight = layer.piggymask.grad.clone(), layer.weight.grad.clone()
    # STE: dL/dpiggymask = dL/dW_eff * W; all earlier weights are picked at init, so there
    # dL/dW_eff equals the raw weight gradient.
    assert raw_pick[earlier].abs().sum() > 0
    assert torch.allclose(raw_pick[earlier], raw_weight[earlier] * layer.weight[earlier])
    net.gate_gradients(WD)
    assert bool((layer.piggymask.grad[~earlier] == 0).all())
    assert torch.equal(layer.piggymask.grad[earlier], raw_pick[earlier])
    assert bool((layer.weight.grad[layer.owner != 2] == 0).all())
    own = layer.owner == 2
    assert torch.allclose(layer.weight.grad[own], raw_weight[own] + WD * layer.weight[own].detach())
    net.gate_gradients(0.0, train_pick=False)
    assert bool((layer.piggymask.grad == 0).all())


def test_fused_pick_path_equals_binarizer_composition() -> None:
    net, layer = _two_task_linear()
    with torch.no_grad():
        layer.piggymask.copy_(torch.randn_like(layer.piggymask) * 0.01)
    x = torch.randn(5, 6)
    target = torch.tensor([0, 1, 0, 1, 1])
    F.cross_entropy(net(x), target).backward()
    # The fused path leaves restricting the weight gradient to the gate: compare what the
    # optimizers see.
    net.gate_gradients(0.0)
    fused = net(x).detach(), layer.weight.grad.clone(), layer.piggymask.grad.clone()
    # Reference: ALGORITHMS §1.1 written out with the public Binarizer.
    w = layer.weight.detach().clone().requires_grad_(True)
    pm = layer.piggymask.detach().clone().requires_grad_(True)
    own, earlier = layer.owner == 2, (layer.owner == 1)
    mask = torch.where(earlier, Binarizer.apply(pm, DEFAULT_THRESHOLD), own.float())
    feats = F.linear(x, w * mask, layer.biases["2"])
    logits = net.heads["2"](feats)
    F.cross_entropy(logits, target).backward()
    assert torch.equal(fused[0], logits.detach())
    gated_w = w.grad.masked_fill(~own, 0.0)
    gated_pm = pm.grad.masked_fill(~earlier, 0.0)
    assert torch.equal(fused[1], gated_w) and torch.equal(fused[2], gated_pm)


def _reference_pick_grads(net: MaskedNet, layer: MaskedLinear, x: torch.Tensor, target: torch.Tensor):
    """Gated weight and pick gradients of one batch, ALGORITHMS §1.1 written out (no buffers)."""
    w = layer.weight.detach().clone().requires_grad_(True)
    pm = layer.piggymask.detach().clone().requires_grad_(True)
    own, earlier = layer.owner == 2, layer.owner == 1
    mask = torch.where(earlier, Binarizer.apply(pm, DEFAULT_THRESHOLD), own.float())
    logits = net.heads["2"](F.linear(x, w * mask, layer.biases["2"]))
    F.cross_entropy(logits, target).backward()
    return w.grad.masked_fill(~own, 0.0), pm.grad.masked_fill(~earlier, 0.0)


def test_pick_path_keeps_its_weight_sized_results_in_persistent_buffers() -> None:
    # Fresh weight-sized tensors every step cost ~60k page faults per step at width 1 (issue 13).
    net, layer = _two_task_linear()
    opt = torch.optim.SGD(net.pick_parameters(), lr=0.5)
    x, target = torch.randn(5, 6), torch.tensor([0, 1, 0, 1, 1])
    for step in range(3):
        net.zero_grad()  # set_to_none=True, torch's default
        expected_w, expected_pm = _reference_pick_grads(net, layer, x, target)
        F.cross_entropy(net(x), target).backward()
        net.gate_gradients(0.0)
        plan = layer._training_plan(2)
        assert layer.piggymask.grad.data_ptr() == plan._pick_grad.data_ptr(), step
        assert torch.equal(layer.weight.grad, expected_w) and torch.equal(layer.piggymask.grad, expected_pm), step
        opt.step()  # the picks move, so each step's mask differs


def test_pick_path_accumulates_correctly_when_gradients_are_not_set_to_none() -> None:
    # The persistent buffer is autograd's piggymask.grad: with set_to_none=False the next
    # product must not be written into the gradient autograd then adds it to (a doubled grad).
    net, layer = _two_task_linear()
    x, target = torch.randn(5, 6), torch.tensor([0, 1, 0, 1, 1])
    for step in range(3):
        net.zero_grad(set_to_none=False)
        _, expected_pm = _reference_pick_grads(net, layer, x, target)
        F.cross_entropy(net(x), target).backward()
        net.gate_gradients(0.0)
        assert torch.equal(layer.piggymask.grad, expected_pm), step
    # Two backward passes before a step add up, as for any parameter.
    net.zero_grad()
    F.cross_entropy(net(x), target).backward()
    F.cross_entropy(net(x), target).backward()
    net.gate_gradients(0.0)
    assert torch.equal(layer.piggymask.grad, 2 * expected_pm)


def test_pick_path_survives_two_forwards_before_one_backward() -> None:
    # A second forward while the first graph still holds the masked weight must not overwrite it
    # (a distillation loss, or two views of a batch, before one backward).
    net, layer = _two_task_linear()
    # An input that needs a gradient makes autograd save the masked weight for the backward.
    x, target = torch.randn(5, 6, requires_grad=True), torch.tensor([0, 1, 0, 1, 1])
    expected_w, expected_pm = _reference_pick_grads(net, layer, x.detach(), target)
    first = F.cross_entropy(net(x), target)
    with torch.no_grad():
        layer.piggymask.mul_(-1.0)  # the second forward computes with another mask ...
    second = F.cross_entropy(net(x), target)
    with torch.no_grad():
        layer.piggymask.mul_(-1.0)  # ... and the first graph must still hold its own weight
    net.zero_grad()
    first.backward()
    net.gate_gradients(0.0)
    assert torch.equal(layer.weight.grad, expected_w) and torch.equal(layer.piggymask.grad, expected_pm)
    second.backward()  # its graph is intact too


def test_pick_path_sums_the_gradients_of_two_forwards_in_one_backward() -> None:
    # Both pick gradients wait in autograd's buffer for piggymask's accumulation: the second must
    # not be written over the first (a loss over two views of a batch, or a distillation term).
    net, layer = _two_task_linear()
    x1, x2, target = torch.randn(5, 6), torch.randn(5, 6), torch.tensor([0, 1, 0, 1, 1])
    w1, pm1 = _reference_pick_grads(net, layer, x1, target)
    w2, pm2 = _reference_pick_grads(net, layer, x2, target)
    net.zero_grad()
    (F.cross_entropy(net(x1), target) + F.cross_entropy(net(x2), target)).backward()
    net.gate_gradients(0.0)
    assert torch.allclose(layer.piggymask.grad, pm1 + pm2) and torch.allclose(layer.weight.grad, w1 + w2)
    # torch.autograd.grad hands the buffer's alias to the caller, who keeps it across the next call.
    first = torch.autograd.grad(F.cross_entropy(net(x1), target), layer.piggymask)[0]
    torch.autograd.grad(F.cross_entropy(net(x2), target), layer.piggymask)
    assert torch.equal(first, pm1)


@pytest.mark.parametrize("pick", ["all", "none"])
def test_fixed_pick_modes(pick: str) -> None:
    net, layer = _two_task_linear(pick)
    assert net.pick_parameters() == [] and layer.piggymask is None
    w = _effective_weight(layer)
    used = (layer.owner == 2) | ((layer.owner == 1) if pick == "all" else (layer.owner == 2))
    assert torch.equal(w[used], layer.weight.detach()[used]) and bool((w[~used] == 0).all())


def test_packed_pick_bits_reproduce_binarized_mask() -> None:
    net, layer = _two_task_linear()
    with torch.no_grad():
        layer.piggymask.copy_(torch.randn_like(layer.piggymask) * 0.01)
    expected_pick = layer.piggymask.detach() > DEFAULT_THRESHOLD
    w_train = _effective_weight(layer)
    mask_train = layer.effective_mask(2)
    net.finish_task()
    assert layer.piggymask is None
    assert torch.equal(unpack_bits(layer.pick_2, layer.weight.shape), expected_pick)
    assert torch.equal(layer.effective_mask(2), mask_train)
    assert torch.equal(_effective_weight(layer), w_train)
    acc = net.accounting()
    earlier = layer.owner == 1
    assert acc["tasks"][2]["picked"] == int((expected_pick & earlier).sum())


# ----------------------------------------------------------------- growth
def test_growth_follows_sqrt_and_copies_top_left() -> None:
    torch.manual_seed(9)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y)
    net.prune(0.5)
    net.finish_task()
    old = {n: (m.weight.detach().clone(), m.owner.clone()) for n, m in net._layers()}
    net.expand(1.5)
    shapes = {n: tuple(m.weight.shape) for n, m in net._layers()}
    assert shapes == {"0": (39, 1, 3, 3), "3": (78, 39, 3, 3), "8": (156, 78 * 16)}
    assert net.out_features == 156 and net.heads["1"].in_features == 128
    for name, layer in net._layers():
        w, o = old[name]
        region = tuple(slice(0, d) for d in w.shape)
        assert torch.equal(layer.weight[region], w) and torch.equal(layer.owner[region], o)
        new = torch.ones_like(layer.owner, dtype=torch.bool)
        new[region] = False
        assert bool((layer.owner[new] == 0).all())  # new entries are free
        assert layer.weight[new].abs().sum() > 0  # and keep their fresh init
    net.begin_task(2, 3)
    for _, layer in net._layers():
        assert set(layer.owner.unique().tolist()) == {1, 2}


def test_growth_across_flatten_is_channel_major() -> None:
    """Zeroing every new weight after growth must leave the open task's function unchanged."""
    torch.manual_seed(10)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    net.begin_task(1, 3)
    _train(net, x, y)
    net.eval()
    with torch.no_grad():
        before = net(x)
    old_shapes = {n: m.weight.shape for n, m in net._layers()}
    old_head = net.heads["1"].weight.detach().clone()
    net.expand(2.0)
    for name, layer in net._layers():
        region = tuple(slice(0, d) for d in old_shapes[name])
        assert bool((layer.owner == 1).all())  # the open task claims the new entries
        keep = torch.zeros_like(layer.weight, dtype=torch.bool)
        keep[region] = True
        with torch.no_grad():
            layer.weight.masked_fill_(~keep, 0.0)
    head = net.heads["1"]
    assert head.in_features == 181 and torch.equal(head.weight[:, :128], old_head)
    with torch.no_grad():
        head.weight[:, 128:] = 0.0  # new features (fresh biases) must not reach the logits
    net.eval()
    with torch.no_grad():
        after = net(x)
    # Only float summation order may differ; a wrong flatten mapping would be far off.
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- accounting
def test_accounting_is_consistent() -> None:
    net, layer = _two_task_linear()
    acc = net.accounting()
    entry = acc["layers"]["0"]
    assert entry["free"] + sum(entry["owned"].values()) == entry["numel"] == 24
    assert acc["tasks"][1]["owned"] == 12 and acc["tasks"][2]["owned"] == 12
    assert acc["tasks"][2]["picked"] == 12 and acc["tasks"][1]["picked"] == 0
    bias_and_head = 4 * 4 + (2 * 4 + 2) * 4
    assert acc["tasks"][1]["state_bytes"] == bias_and_head
    assert acc["tasks"][2]["state_bytes"] == bias_and_head + math.ceil(24 / 8)
    assert acc["total_bytes"] == 24 * 4 + 24 + 2 * bias_and_head + 3
    assert acc["total_mb"] == acc["total_bytes"] / 2**20
    # As the papers count: 2 tasks → ⌈log2 3⌉ = 2 owner bits per weight; task 2's pick mask needs
    # one bit per weight of task 1 only (12), not per weight of the layer (24).
    assert acc["paper_bytes"] == 24 * 4 + 24 * 2 / 8 + 12 / 8 + 2 * bias_and_head
    assert acc["paper_mb"] == acc["paper_bytes"] / 2**20


def _from_scratch(net: MaskedNet) -> dict:
    """``accounting()`` with no cached counts (what every call computed before issue 13)."""
    for _, layer in net._layers():
        layer._counts.clear()
    return net.accounting()


def test_incremental_accounting_equals_from_scratch_through_the_lifecycle() -> None:
    """Finished tasks' counts are cached (issue 13: accounting was O(T) weight-sized work per
    call); the cache must stay exact across begin, prune, finish, expand and load_state_dict."""
    torch.manual_seed(0)
    net = MaskedNet(digits_cnn)
    x, y = _digits_batch()
    checks = 0

    def check() -> None:
        nonlocal checks
        assert net.accounting() == _from_scratch(net)
        assert net.accounting() == _from_scratch(net)  # and again, from the freshly filled cache
        checks += 1

    for task, pick in ((1, "learn"), (2, "learn"), (3, "all"), (4, "learn")):
        net.begin_task(task, 3, pick=pick)
        check()
        _train(net, x, y, steps=2)
        net.prune(0.5)
        check()
        if task == 3:
            net.expand(1.5)  # mid-task growth: the new entries go to task 3
            _train(net, x, y, steps=2)
            check()
        net.finish_task()
        check()
        if task == 2:
            net.expand(1.25)  # growth between tasks
            check()
            reloaded = MaskedNet.from_state_dict(net.state_dict(), digits_cnn)
            assert reloaded.accounting() == net.accounting()
            net = reloaded
            check()
    # load_state_dict into a net whose cache holds another run's counts must not reuse them
    other = MaskedNet(digits_cnn)
    for task in (1, 2):
        other.begin_task(task, 3, pick="all")
        other.prune(0.9)
        other.finish_task()
    assert other.accounting()["tasks"][2]["picked"] != net.accounting()["tasks"][2]["picked"]  # cache filled
    other.load_state_dict(net.state_dict())
    assert other.accounting() == _from_scratch(net)
    assert checks == 15


# ------------------------------------------------------- property-based
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cin=st.integers(1, 3),
    c=st.integers(1, 4),
    f=st.integers(1, 5),
    conv_bias=st.booleans(),
    n_tasks=st.integers(1, 4),
    sparsities=st.lists(st.floats(0.0, 0.95), min_size=4, max_size=4),
    picks=st.lists(st.sampled_from(["learn", "all", "none"]), min_size=4, max_size=4),
    grow_after=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_isolation_properties(
    cin: int,
    c: int,
    f: int,
    conv_bias: bool,
    n_tasks: int,
    sparsities: list[float],
    picks: list[str],
    grow_after: int,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    factory = _tiny_factory(cin, c, f, hw=3, conv_bias=conv_bias)
    net = MaskedNet(factory)
    x = torch.randn(4, cin, 3, 3)
    y = torch.randint(0, 2, (4,))
    recorded: dict[int, torch.Tensor] = {}
    owned: dict[int, dict[str, torch.Tensor]] = {}
    weights: dict[int, dict[str, torch.Tensor]] = {}
    for task in range(1, n_tasks + 1):
        net.begin_task(task, 2, pick=picks[task - 1])
        _train(net, x, y, steps=2, wd=1e-2)
        net.prune(sparsities[task - 1])
        _train(net, x, y, steps=1, wd=1e-2)
        net.finish_task()
        if task == grow_after:
            net.expand(2.0)
        recorded[task] = _outputs(net, task, x)
        owned[task] = {n: (m.owner == task).clone() for n, m in net._layers()}
        weights[task] = {n: m.weight.detach().clone() for n, m in net._layers()}
        for k in recorded:
            assert torch.equal(_outputs(net, k, x), recorded[k])
        for name, layer in net._layers():
            # Ownership partitions the weights among free and the tasks seen so far...
            assert set(layer.owner.unique().tolist()) <= set(range(task + 1))
            for k in range(1, task + 1):
                # ...no task's ownership ever changes after it finishes, nor its weights.
                region = tuple(slice(0, d) for d in owned[k][name].shape)
                assert torch.equal(layer.owner[region] == k, owned[k][name])
                mine = owned[k][name]
                assert torch.equal(layer.weight[region][mine], weights[k][name][mine])
    clone = MaskedNet.from_state_dict(net.state_dict(), factory)
    for k, expected in recorded.items():
        assert torch.equal(_outputs(clone, k, x), expected)


def test_task_parameters_name_each_tasks_own_state_and_the_live_pick_masks():
    net, layer = _two_task_linear()
    own = net.task_parameters()
    assert own["picks"] == [layer.piggymask] and own["biases"] == [layer.biases["2"]]
    assert own["head"] == list(net.heads["2"].parameters())
    trainable = {id(p) for p in net.trainable_parameters()}
    assert all(id(p) in trainable for kind in ("biases", "norms", "head") for p in own[kind])
    first = net.task_parameters(1)
    assert first["picks"] == [] and first["biases"] == [layer.biases["1"]]
    with pytest.raises(StateError, match="unknown task 7"):
        net.task_parameters(7)


def test_train_picks_off_computes_no_pick_gradient_and_keeps_the_forward():
    net, layer = _two_task_linear()
    with torch.no_grad():
        layer.piggymask.copy_(torch.randn_like(layer.piggymask) * 0.01)
    x, target = torch.randn(5, 6), torch.tensor([0, 1, 0, 1, 1])
    learning = net(x)
    net.train_picks = False
    frozen = net(x)
    F.cross_entropy(frozen, target).backward()
    assert torch.equal(learning, frozen) and layer.piggymask.grad is None
    assert layer.weight.grad is not None
    net.train_picks = True
    F.cross_entropy(net(x), target).backward()
    assert layer.piggymask.grad is not None


def test_a_non_finite_gradient_never_reaches_finished_weights():
    """The float gate (grad × own) would turn inf/NaN off own weights into NaN (0·inf); a step
    with non-finite gradients takes the exact gate, so finished tasks' weights stay as they are."""
    net, layer = _two_task_linear()
    F.cross_entropy(net(torch.randn(5, 6)), torch.tensor([0, 1, 0, 1, 1])).backward()
    own, earlier = layer.owner == 2, layer.owner == 1
    layer.weight.grad[earlier.nonzero()[0].tolist()[0], earlier.nonzero()[0].tolist()[1]] = float("nan")
    layer.weight.grad[tuple(own.nonzero()[0].tolist())] = float("inf")
    layer.piggymask.grad[tuple(own.nonzero()[0].tolist())] = float("nan")
    frozen = layer.weight.detach()[earlier].clone()
    net.gate_gradients(WD)
    assert bool((layer.weight.grad[~own] == 0).all()) and bool((layer.piggymask.grad[~earlier] == 0).all())
    torch.optim.SGD(net.trainable_parameters(), lr=0.1, momentum=0.9, fused=True).step()
    assert torch.equal(layer.weight.detach()[earlier], frozen)


def test_switching_train_picks_rebuilds_masks_derived_from_the_pick_mask():
    """Fused Adam moves the pick mask without bumping its version counter: a frozen-pick mask
    cached before must not be reused after picks trained again."""
    net, layer = _two_task_linear()
    x, target = torch.randn(5, 6), torch.tensor([0, 1, 0, 1, 1])
    net.train_picks = False
    net(x)  # caches the frozen-pick mask
    net.train_picks = True
    adam = torch.optim.Adam(net.pick_parameters(), lr=1.0, fused=True)
    F.cross_entropy(net(x), target).backward()
    net.gate_gradients(0.0)
    adam.step()
    net.train_picks = False
    w, _ = layer._effective_params()
    assert torch.equal(w.detach(), (layer.weight * layer.effective_mask(2)).detach())
