"""The masked-module substrate shared by PackNet, PAE and CPG (ALGORITHMS.md §1-§3).

One weight tensor per layer is shared by all tasks; a uint8 ``owner`` mask of the same shape
says which task owns each weight (0 = free, k = task k, tasks numbered from 1). Task k computes
with ``W_k = weight * M_k`` where ``M_k`` is 1 on its own weights, its pick mask on earlier tasks'
weights, and 0 elsewhere. BatchNorm, PReLU, biases and heads are copied per task. The three
methods differ only in configuration:

============  =====================  ==============  =================================
strategy      ``begin_task(pick=)``  ``expand``      ``prune``
============  =====================  ==============  =================================
PackNet       ``"all"``              never           once, fixed fraction
PAE           ``"all"``              up to ×2.0      gradually, ``cubic_sparsity``
CPG           ``"learn"``            up to ×1.5      gradually, ``cubic_sparsity``
============  =====================  ==============  =================================

Training protocol for task ``t`` (one fresh optimizer pair per task, so no momentum or Adam
state can carry over to weights owned by earlier tasks)::

    net.begin_task(t, num_classes, pick="learn")
    sgd = SGD(net.trainable_parameters(), lr, momentum=0.9, nesterov=True, weight_decay=0.0)
    adam = Adam(net.pick_parameters(), lr_mask)          # skip when the list is empty
    for x, y in loader:
        loss = F.cross_entropy(net(x), y)
        sgd.zero_grad(); adam.zero_grad(); loss.backward()
        net.gate_gradients(weight_decay=4e-5)            # manual decay, then freeze (§1.4)
        sgd.step(); adam.step()
        net.zero_released()                              # keep pruned weights at zero
        net.prune(cubic_sparsity(step, 0.0, 0.5, s0, s1))  # when the schedule says so
    net.finish_task()                                    # task t's outputs are now final
    net.activate(k); net.eval(); net(x)                  # evaluate any finished task k

``begin_task``, ``expand`` and ``load_state_dict`` replace parameters: build new optimizers
after any of them.

Checkpoints: ``state_dict()`` carries the whole structure in ``MaskedNet``'s extra state
(``get_extra_state``), so ``MaskedNet(factory).load_state_dict(sd)`` (or
``MaskedNet.from_state_dict(sd, factory)``) rebuilds a grown multi-task net and reproduces every
task's outputs bit for bit. The extra state holds only ints, floats, strings, lists and dicts,
so ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from clbench.nn.heads import make_head

__all__ = [
    "DEFAULT_THRESHOLD",
    "PICK_INIT",
    "PICK_MODES",
    "Binarizer",
    "MaskedConv2d",
    "MaskedLinear",
    "MaskedNet",
    "StateError",
    "TaskBatchNorm",
    "TaskInfo",
    "TaskPReLU",
    "cubic_sparsity",
    "mask_modules",
    "pack_bits",
    "unpack_bits",
]

#: Piggymask binarization threshold; upstream never wires its ``--threshold`` flag (§1.1).
DEFAULT_THRESHOLD = 5e-3
#: Initial piggymask value: above the threshold, so every earlier weight starts picked (§1.3).
PICK_INIT = 1e-2
#: ``learn``: CPG piggymask; ``all``: PAE/PackNet use every earlier weight; ``none``: own only.
PICK_MODES = ("learn", "all", "none")
#: The owner mask is uint8 and 0 means free.
MAX_TASKS = 255
_EXTRA_STATE_VERSION = 1
_BIT_SHIFTS = (7, 6, 5, 4, 3, 2, 1, 0)


class StateError(RuntimeError):
    """A ``MaskedNet`` method was called in a state where it would corrupt task isolation."""


class Binarizer(torch.autograd.Function):
    """Straight-through binarizer: forward ``x > threshold`` as 0/1, backward identity (§1.1)."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output, None


class _PickedWeight(torch.autograd.Function):
    """The training task's effective weight under a learned pick mask: ``weight * mask`` with
    ``mask = piggymask > thresholds`` (CPG training hot path, §1.1, §1.3).

    ``thresholds`` is ``-inf`` on the task's own weights, the binarizer threshold on earlier
    tasks' weights and ``+inf`` elsewhere, so one compare gives ``own | (earlier & pick)``:
    the same mask, values and straight-through gradients as composing ``Binarizer``, ``where``
    and ``*`` (``test_fused_pick_path_equals_binarizer_composition``), with two passes over the
    weight instead of five.

    Backward returns the incoming gradient for ``weight`` unmultiplied: the gate
    (``gate_gradients``) keeps only the task's own entries, where the mask is 1, so the product
    would change nothing it keeps. The pick gradient is ``grad * frozen`` with ``frozen =
    weight * earlier``, the straight-through ``grad * weight`` already gated to earlier weights.

    Both weight-sized results are written into the plan's persistent buffers
    (:meth:`_TrainingPlan.output`, :meth:`_TrainingPlan.pick_gradient`): two fresh weight-sized
    tensors per layer and step cost about 60,000 page faults per step at width 1 (glibc hands
    the freed blocks back to the kernel), which is what kept CPG's step slower than PackNet's.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, piggymask: Tensor, plan: _TrainingPlan) -> Tensor:
        out = plan.output()
        torch.gt(piggymask, plan.thresholds, out=out)
        ctx.plan = plan
        return plan.hand_out(out.mul_(weight))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_pick = ctx.plan.pick_gradient(grad) if ctx.needs_input_grad[1] else None
        return grad, grad_pick, None


class _FixedMaskWeight(torch.autograd.Function):
    """``weight * mask`` for a fixed 0/1 ``mask`` (PackNet/PAE, or CPG while its pick mask is
    frozen); backward passes the gradient through for the gate to restrict (see ``_PickedWeight``)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, mask: Tensor) -> Tensor:
        return weight * mask

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return grad, None


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a bool tensor into uint8, 8 entries a byte, most significant bit first (as numpy)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = F.pad(flat, (0, pad))
    shifts = torch.tensor(_BIT_SHIFTS, dtype=torch.uint8, device=flat.device)
    # Distinct powers of two never carry, so a plain sum is a bitwise OR.
    return (flat.view(-1, 8) << shifts).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`pack_bits`: a bool tensor of ``shape``."""
    n = math.prod(shape)
    shifts = torch.tensor(_BIT_SHIFTS, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(-1)[:n].view(*shape).bool()


def cubic_sparsity(step: float, initial: float, final: float, begin_step: float, end_step: float) -> float:
    """Gradual-pruning schedule of CPG/PAE (§1.6): ``final + (initial-final)·(1-p)³``.

    ``p = clip((step-begin)/(end-begin), 0, 1)``; with ``end <= begin`` the ramp is a step at
    ``begin`` (upstream would divide by zero).
    """
    if end_step <= begin_step:
        p = 1.0 if step >= begin_step else 0.0
    else:
        p = min(1.0, max(0.0, (step - begin_step) / (end_step - begin_step)))
    return final + (initial - final) * (1.0 - p) ** 3


def _region(shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(0, int(d)) for d in shape)


def _copy_top_left(dst: Tensor, src: Tensor) -> None:
    """Copy ``src`` into the leading corner of ``dst`` (growth keeps old entries at old indices)."""
    if src.dim() != dst.dim() or any(s > d for s, d in zip(src.shape, dst.shape, strict=True)):
        raise ValueError(f"cannot copy shape {tuple(src.shape)} into {tuple(dst.shape)}")
    with torch.no_grad():
        dst[_region(src.shape)] = src.to(dst.dtype)


def _key_eq(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # Tensors in cache keys compare by identity: `==` would compare them elementwise.
    return len(a) == len(b) and all(
        x is y if isinstance(x, Tensor) or isinstance(y, Tensor) else x == y for x, y in zip(a, b, strict=True)
    )


def _tensor_bytes(module: nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class _TaskModule(nn.Module):
    """Base of every module holding per-task state; ``MaskedNet`` tells it which task runs."""

    def __init__(self) -> None:
        super().__init__()
        self._active: int | None = None
        self._training_task: int | None = None
        self._cache: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def _set_tasks(self, active: int | None, training: int | None) -> None:
        self._active = active
        self._training_task = training

    def _require_active(self) -> int:
        if self._active is None:
            raise StateError("no active task: call MaskedNet.begin_task() or activate() first")
        return self._active

    @property
    def _frozen(self) -> bool:
        """The active task is finished: its state must be read, never written."""
        return self._active != self._training_task

    def _cached(self, kind: str, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """One cached value per kind, rebuilt when the key changes.

        Keys hold the owner tensor and its version counter, so any in-place change of the
        owner mask (begin_task, prune, load_state_dict) invalidates masks derived from it, and
        the inference-mode flag, since inference tensors cannot be saved for backward.
        """
        key = (*key, torch.is_inference_mode_enabled())
        hit = self._cache.get(kind)
        if hit is not None and _key_eq(hit[0], key):
            return hit[1]
        with torch.no_grad():
            value = build()
        self._cache[kind] = (key, value)
        return value

    # Overridden by subclasses; MaskedNet drives them.
    def _begin(self, task: int, pick: str) -> None:
        raise NotImplementedError

    def _finish(self, task: int) -> None:
        raise NotImplementedError

    def _absorb(self, old: _TaskModule, training_task: int | None) -> None:
        raise NotImplementedError

    def _structure(self) -> dict[str, Any]:
        raise NotImplementedError

    def _rebuild(self, structure: dict[str, Any], training_task: int | None) -> None:
        raise NotImplementedError

    def _task_bytes(self, task: int) -> int:
        raise NotImplementedError


@dataclass
class _TrainingPlan:
    """Float masks of the training task over one layer's weight (all shaped like the weight).

    ``own``: 1 on the task's weights (the gate). ``mask``: the fixed 0/1 mask of pick modes
    "all"/"none"; ``dense`` when it is all ones. ``thresholds``/``frozen``: the learned pick
    path (``_PickedWeight``): -inf / binarizer threshold / +inf on own / earlier / other weights,
    and ``weight * earlier`` (earlier tasks' weights never change while the owner mask stands),
    built only while the pick mask trains (``train_picks``), with ``piggymask`` the parameter
    whose gradient :meth:`pick_gradient` writes.
    Float products instead of bool indexing: on CPU ``masked_fill_`` with a scattered bool mask
    costs about 7 times a multiply.
    """

    own: Tensor
    mask: Tensor | None = None
    dense: bool = False
    thresholds: Tensor | None = None
    frozen: Tensor | None = None
    piggymask: nn.Parameter | None = None
    # Persistent buffers of the learned pick path, made on first use (see _PickedWeight).
    _out: Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _out_user: weakref.ref[Tensor] | None = field(default=None, init=False, repr=False, compare=False)
    _pick_grad: Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _pick_grad_user: weakref.ref[Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def output(self) -> Tensor:
        """The buffer for this forward's masked weight: the persistent one unless the tensor
        handed out by the last forward is still alive (a graph not yet back-propagated holds
        it), in which case a fresh one, so that graph's saved weight is never overwritten."""
        in_use = self._out_user is not None and self._out_user() is not None
        if in_use or self._out is None:
            fresh = torch.empty_like(self.own)
            if self._out is None:
                self._out = fresh
            return fresh
        return self._out

    def hand_out(self, out: Tensor) -> Tensor:
        """A new alias of ``out`` for autograd to attach this forward's history to; the
        persistent buffer is tracked through it (it shares the buffer's version counter, so an
        overwrite the check above misses would still fail loudly in backward)."""
        alias = out.detach()
        if out is self._out:
            self._out_user = weakref.ref(alias)
        return alias

    def pick_gradient(self, grad: Tensor) -> Tensor:
        """``grad * frozen``, written into the persistent buffer when the pick mask holds no
        gradient (``zero_grad(set_to_none=True)``, the default) and the alias handed out last
        time is gone: autograd then keeps the buffer as ``piggymask.grad``. A fresh tensor
        otherwise: with a gradient present (``set_to_none=False``, or a second backward before
        ``step``) autograd adds into it, and the buffer may *be* it; an alias still alive is a
        first product waiting in autograd's buffer (two forwards, one backward) or one that
        ``torch.autograd.grad`` returned. Like torch's own ``set_to_none=False``, a reference to
        ``piggymask.grad`` kept past the next ``zero_grad`` and backward sees it change."""
        assert self.frozen is not None and self.piggymask is not None
        in_use = self._pick_grad_user is not None and self._pick_grad_user() is not None
        if self.piggymask.grad is not None or in_use:
            return grad * self.frozen
        if self._pick_grad is None:
            self._pick_grad = torch.empty_like(self.frozen)
        alias = torch.mul(grad, self.frozen, out=self._pick_grad).detach()
        self._pick_grad_user = weakref.ref(alias)
        return alias

    @classmethod
    def build(cls, layer: _MaskedLayer, task: int) -> _TrainingPlan:
        owner, dtype = layer.owner, layer.weight.dtype
        own = owner == task
        if layer.piggymask is None:
            fixed = layer.effective_mask(task)
            return cls(own.to(dtype), mask=fixed.to(dtype), dense=bool(fixed.all()))
        if not layer._train_picks:
            return cls(own.to(dtype))  # a frozen pick mask uses the "frozen_pick" mask instead
        earlier = (owner >= 1) & (owner < task)
        thresholds = torch.full_like(layer.weight, math.inf, dtype=dtype)
        thresholds.masked_fill_(earlier, DEFAULT_THRESHOLD).masked_fill_(own, -math.inf)
        frozen = layer.weight.detach() * earlier
        return cls(own.to(dtype), thresholds=thresholds, frozen=frozen, piggymask=layer.piggymask)


class _MaskedLayer(_TaskModule):
    """Shared weight + owner mask + per-task bias + per-task pick mask (§1.1-§1.4)."""

    weight: nn.Parameter
    owner: Tensor
    bias_seed: Tensor | None
    piggymask: nn.Parameter | None

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.register_buffer("owner", torch.zeros_like(weight, dtype=torch.uint8))
        # The next task's bias starts from this: the last finished task's bias (upstream loads
        # the previous checkpoint), padded with fresh init after growth.
        self.register_buffer("bias_seed", None if bias is None else bias.detach().clone())
        self.biases = nn.ParameterDict()
        # Only the training task has a real-valued piggymask; finished tasks keep packed bits
        # in buffers named ``pick_<task>``.
        self.register_parameter("piggymask", None)
        self.task_shapes: dict[int, tuple[int, ...]] = {}
        self.task_modes: dict[int, str] = {}
        self._train_picks = True  # MaskedNet.train_picks
        # (picked, earlier) counts of finished tasks, which never change (see _finished_counts).
        self._counts: dict[int, tuple[int, int]] = {}

    # ----------------------------------------------------------------- forward
    def _task_shape(self, task: int) -> tuple[int, ...]:
        if task == self._training_task:
            return tuple(self.weight.shape)
        return self.task_shapes[task]

    def _pick_buffer(self, task: int) -> Tensor | None:
        return self._buffers.get(f"pick_{task}")

    def effective_mask(self, task: int) -> Tensor:
        """Bool mask ``M_task`` over the weights task ``task`` computes with, at its own shape."""
        shape = self._task_shape(task)
        owner = self.owner[_region(shape)]
        own = owner == task
        mode = self.task_modes[task]
        if mode == "none" or task == 1:
            return own
        earlier = (owner >= 1) & (owner < task)
        if mode == "all":
            return own | earlier
        if task == self._training_task and self.piggymask is not None:
            pick = self.piggymask.detach() > DEFAULT_THRESHOLD
        else:
            packed = self._pick_buffer(task)
            if packed is None:
                return own
            pick = unpack_bits(packed, shape)
        return own | (earlier & pick)

    def _training_plan(self, task: int) -> _TrainingPlan:
        """The training task's float masks, rebuilt whenever the owner mask changes (begin_task,
        prune, load_state_dict) or the layer is replaced (expand, restore)."""
        key = (task, self.owner, self.owner._version, self.weight, self.weight.dtype, self.piggymask)
        key = (*key, self.piggymask is not None and self._train_picks)
        return self._cached("train", key, lambda: _TrainingPlan.build(self, task))

    def _effective_params(self) -> tuple[Tensor, Tensor | None]:
        task = self._require_active()
        bias = self.biases[str(task)] if self.bias_seed is not None else None
        if torch.is_grad_enabled():
            # Training resumed: the weights are about to change (fused optimizer steps do not bump
            # version counters), and the copy need not sit beside the training state.
            self._cache.pop("eval", None)
            if task == self._training_task:
                return self._training_weight(task), bias
            packed = self._pick_buffer(task)
            key = (task, self.owner, self.owner._version, packed, -1 if packed is None else packed._version)
            key = (*key, self.weight.dtype)
            mask = self._cached("forward", key, lambda: self.effective_mask(task).to(self.weight.dtype))
            return self.weight[_region(mask.shape)] * mask, bias
        # Evaluation: the masked weight itself is cached, so evaluating costs what the plain layer
        # costs. Keyed on version counters, which fused optimizer steps do not bump: the cache is
        # also dropped by every grad-enabled forward (above) and by a train_picks switch.
        pm = self.piggymask if task == self._training_task else self._pick_buffer(task)
        key = (
            task,
            self._training_task,
            self.owner,
            self.owner._version,
            self.weight,
            self.weight._version,
            self.weight.dtype,
            pm,
            -1 if pm is None else pm._version,
        )
        return self._cached("eval", key, lambda: self._masked_weight(task)), bias

    def _masked_weight(self, task: int) -> Tensor:
        """``weight * M_task`` at the task's own shape: slicing to it keeps old tasks
        bit-identical after growth."""
        mask = self.effective_mask(task).to(self.weight.dtype)
        return self.weight.detach()[_region(mask.shape)] * mask

    def _training_weight(self, task: int) -> Tensor:
        plan = self._training_plan(task)
        pm = self.piggymask
        if pm is not None and self._train_picks:
            return _PickedWeight.apply(self.weight, pm, plan)
        if pm is not None:
            # A frozen pick mask (prune stages): one fixed mask per pick-mask version.
            key = (task, self.owner, self.owner._version, pm, pm._version, self.weight.dtype)
            mask = self._cached("frozen_pick", key, lambda: self.effective_mask(task).to(self.weight.dtype))
            return _FixedMaskWeight.apply(self.weight, mask)
        if plan.dense:
            # Every entry is the task's own or an earlier one it uses (no released weights yet):
            # the masked weight is the weight, and the gate restricts its gradient.
            return self.weight
        return _FixedMaskWeight.apply(self.weight, plan.mask)

    # -------------------------------------------------------- task lifecycle
    def _begin(self, task: int, pick: str) -> None:
        self._cache.clear()  # weight-sized masks and products of the last task
        with torch.no_grad():
            self.owner.masked_fill_(self.owner == 0, task)  # §1.2: a new task claims free weights
        self.task_modes[task] = pick
        if self.bias_seed is not None:
            self.biases[str(task)] = nn.Parameter(self.bias_seed.clone())
        if pick == "learn" and task > 1:
            self.piggymask = nn.Parameter(torch.full_like(self.weight, PICK_INIT))

    def _finish(self, task: int) -> None:
        self._cache.clear()
        self.task_shapes[task] = tuple(self.weight.shape)
        if self.piggymask is not None:
            bits = pack_bits(self.piggymask.detach() > DEFAULT_THRESHOLD)
            self.register_buffer(f"pick_{task}", bits)
            self.piggymask = None
        self._zero_released()
        if self.bias_seed is not None:
            bias = self.biases[str(task)]
            bias.requires_grad_(False)
            with torch.no_grad():
                self.bias_seed.copy_(bias)

    def _gate(self, weight_decay: float, train_pick: bool) -> Tensor | None:
        """Decay and gate this layer's gradients in place; returns the 0-d sum of the gated
        gradients (``None`` without any): it is finite only if they all are, which
        ``MaskedNet.gate_gradients`` checks for ``_gate_non_finite``. A sum reads each gradient
        once and allocates nothing weight-sized (``isfinite().all()`` cost 15 % of a CPG step)."""
        own = self._training_plan(self._training_task).own  # type: ignore[arg-type]
        checks: list[Tensor] = []
        with torch.no_grad():
            grad = self.weight.grad
            if grad is not None:
                if weight_decay:
                    grad.add_(self.weight, alpha=weight_decay)  # decay first, then gate (§1.4)
                # A float product, not masked_fill_: bit-identical on own entries (x·1 = x) and 7×
                # faster on CPU. Only a non-finite gradient differs (0·inf = NaN off own weights):
                # MaskedNet.gate_gradients then takes _gate_non_finite.
                grad.mul_(own)
                checks.append(grad.sum())
            pm = self.piggymask
            if pm is not None and pm.grad is not None:
                if train_pick:
                    # Pick gradients come from _PickedWeight, zero off earlier weights (frozen is
                    # zero there), and pick entries there are never read (thresholds ±inf).
                    checks.append(pm.grad.sum())
                else:
                    pm.grad.zero_()
        return torch.stack(checks).sum() if checks else None

    def _gate_non_finite(self) -> None:
        """The exact gate for a step whose gradients are not all finite: zero (not NaN) off the
        training task's own weights, and off earlier weights for the pick mask, as upstream's
        indexed assignment does, so a NaN never reaches a finished task's weights."""
        task = self._training_task
        with torch.no_grad():
            if self.weight.grad is not None:
                self.weight.grad.masked_fill_(self.owner != task, 0.0)
            pm = self.piggymask
            if pm is not None and pm.grad is not None:
                pm.grad.masked_fill_((self.owner == 0) | (self.owner >= task), 0.0)

    def _prune(self, task: int, ratio: float) -> tuple[int, int]:
        """CPG ``_pruning_mask`` (§1.6); returns (free, candidates) after pruning."""
        with torch.no_grad():
            w_abs = self.weight.abs()
            mine = self.owner == task
            candidates = mine | (self.owner == 0)
            n = int(candidates.sum())
            k = round(ratio * n)
            if k > 0:
                cutoff = w_abs[candidates].kthvalue(k).values
                remove = (w_abs <= cutoff) & mine
                self.owner.masked_fill_(remove, 0)
                # Upstream zeroes released weights later (apply_mask); doing it now keeps the
                # next cutoff from counting stale values.
                self.weight.masked_fill_(remove, 0.0)
            return int((self.owner == 0).sum()), n

    def _zero_released(self) -> None:
        free = self._cached("free", (self.owner, self.owner._version), lambda: self.owner == 0)
        with torch.no_grad():
            self.weight.masked_fill_(free, 0.0)

    def reset_pick(self, value: float = PICK_INIT) -> None:
        """Reset the training task's piggymask (CPG's retrain stage restarts it at 0.01)."""
        if self.piggymask is not None:
            with torch.no_grad():
                self.piggymask.fill_(value)

    # ------------------------------------------------------------- growth
    def _absorb(self, old: _TaskModule, training_task: int | None) -> None:
        if not isinstance(old, type(self)):
            raise TypeError(f"cannot grow {type(old).__name__} into {type(self).__name__}")
        _copy_top_left(self.weight, old.weight)
        _copy_top_left(self.owner, old.owner)
        if training_task is not None:
            # New entries are free and a task being trained claims free weights, as at its start.
            new = torch.ones_like(self.owner, dtype=torch.bool)
            new[_region(old.owner.shape)] = False
            self.owner.masked_fill_(new, training_task)
        self.task_shapes = dict(old.task_shapes)
        self.task_modes = dict(old.task_modes)
        self._counts = dict(old._counts)  # growth copies old entries top-left: same counts
        for name, buf in old._buffers.items():
            if name.startswith("pick_") and buf is not None:
                self.register_buffer(name, buf.clone())
        if self.bias_seed is not None:
            if old.bias_seed is None:
                raise TypeError("bias presence differs between widths")
            fresh = self.bias_seed.clone()
            for key, bias in old.biases.items():
                if int(key) == training_task:
                    grown = fresh.clone()
                    _copy_top_left(grown, bias.detach())
                    self.biases[key] = nn.Parameter(grown)
                else:
                    self.biases[key] = nn.Parameter(bias.detach().clone(), requires_grad=False)
            _copy_top_left(self.bias_seed, old.bias_seed)
        if old.piggymask is not None:
            pm = torch.full_like(self.weight, PICK_INIT)
            _copy_top_left(pm, old.piggymask.detach())
            self.piggymask = nn.Parameter(pm)

    # ------------------------------------------------------- serialization
    def _structure(self) -> dict[str, Any]:
        return {
            "shapes": {k: list(s) for k, s in self.task_shapes.items()},
            "modes": dict(self.task_modes),
            "picks": sorted(int(n[5:]) for n, b in self._buffers.items() if n.startswith("pick_") and b is not None),
            "piggymask": self.piggymask is not None,
        }

    def _rebuild(self, structure: dict[str, Any], training_task: int | None) -> None:
        self.task_shapes = {int(k): tuple(int(d) for d in s) for k, s in structure["shapes"].items()}
        self.task_modes = {int(k): str(m) for k, m in structure["modes"].items()}
        self._counts = {}  # new tensors are about to load
        dev = self.weight.device
        for task in structure["picks"]:
            n = math.prod(self.task_shapes[int(task)])
            self.register_buffer(f"pick_{int(task)}", torch.zeros((n + 7) // 8, dtype=torch.uint8, device=dev))
        if self.bias_seed is not None:
            for task in self.task_modes:
                if task == training_task:
                    self.biases[str(task)] = nn.Parameter(torch.zeros_like(self.bias_seed))
                else:
                    size = self.task_shapes[task][0]
                    self.biases[str(task)] = nn.Parameter(self.bias_seed.new_zeros(size), requires_grad=False)
        if structure["piggymask"]:
            self.piggymask = nn.Parameter(torch.zeros_like(self.weight))

    # ---------------------------------------------------------- accounting
    def picked_count(self, task: int) -> int:
        """Weights of earlier tasks that ``task`` computes with."""
        cached = self._finished_counts(task)
        if cached is not None:
            return cached[0]
        shape = self._task_shape(task)
        owner = self.owner[_region(shape)]
        earlier = (owner >= 1) & (owner < task)
        return int((self.effective_mask(task) & earlier).sum())

    def _finished_counts(self, task: int) -> tuple[int, int] | None:
        """``(picked, earlier)`` counts of a finished task, computed once: within its shape, the
        weights of tasks before it never change owner (prune releases only the training task's
        weights, ``begin_task`` claims only free ones, growth adds entries outside the shape), and
        its pick bits are frozen. Without this cache ``accounting()`` did weight-sized work for
        every finished task, about 4 times per task: O(T²) over a run. None for the training task
        (its counts change while it trains) and unknown tasks. Cleared by ``_rebuild``
        (``load_state_dict``)."""
        if task == self._training_task or task not in self.task_shapes:
            return None
        if task not in self._counts:
            owner = self.owner[_region(self.task_shapes[task])]
            earlier = (owner >= 1) & (owner < task)
            picked = int((self.effective_mask(task) & earlier).sum())
            self._counts[task] = (picked, int(earlier.sum()))
        return self._counts[task]

    def _task_bytes(self, task: int) -> int:
        size = 0
        if self.bias_seed is not None and str(task) in self.biases:
            bias = self.biases[str(task)]
            size += bias.numel() * bias.element_size()
        return size + self.pick_bytes(task)

    def pick_bytes(self, task: int) -> int:
        """Bytes of ``task``'s stored pick mask: one bit per weight of its shape, packed."""
        packed = self._pick_buffer(task)
        if packed is not None:
            return packed.numel()
        if task == self._training_task and self.piggymask is not None:
            return (self.piggymask.numel() + 7) // 8  # what finish_task will store
        return 0

    def earlier_count(self, task: int) -> int:
        """Weights owned by tasks before ``task`` within its shape: the entries a pick mask needs."""
        cached = self._finished_counts(task)
        if cached is not None:
            return cached[1]
        owner = self.owner[_region(self._task_shape(task))]
        return int(((owner >= 1) & (owner < task)).sum())

    def extra_repr(self) -> str:
        tasks = ",".join(str(k) for k in self.task_modes) or "-"
        return f"weight={tuple(self.weight.shape)}, bias={self.bias_seed is not None}, tasks={tasks}"


class MaskedConv2d(_MaskedLayer):
    """Conv2d with a shared weight, owner mask, per-task bias and pick mask."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, ...] | int = 1,
        padding: tuple[int, ...] | int | str = 0,
        dilation: tuple[int, ...] | int = 1,
    ) -> None:
        super().__init__(weight, bias)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    @classmethod
    def from_plain(cls, conv: nn.Conv2d) -> MaskedConv2d:
        """Wrap a plain ``nn.Conv2d``, keeping its initial weight and bias."""
        if conv.groups != 1:
            # Growing a grouped conv top-left would mix groups; CPG grows groups=1 only.
            raise TypeError("MaskedConv2d supports groups=1 only")
        if conv.padding_mode != "zeros":
            raise TypeError("MaskedConv2d supports padding_mode='zeros' only")
        return cls(conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._effective_params()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)


class MaskedLinear(_MaskedLayer):
    """Linear with a shared weight, owner mask, per-task bias and pick mask."""

    @classmethod
    def from_plain(cls, linear: nn.Linear) -> MaskedLinear:
        """Wrap a plain ``nn.Linear``, keeping its initial weight and bias."""
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._effective_params()
        return F.linear(x, weight, bias)


class _PerTaskCopies(_TaskModule):
    """A module copied per task: the current task trains its copy, finished copies are read-only.

    ``seed`` is the module the next task starts from: the plain module at first, then the last
    finished task's copy (upstream loads the previous task's checkpoint), padded with fresh init
    after growth.
    """

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        self.seed = plain
        self.per_task = nn.ModuleDict()

    def _fresh(self, size: int) -> nn.Module:
        raise NotImplementedError

    def _size(self, module: nn.Module) -> int:
        raise NotImplementedError

    def _current(self) -> nn.Module:
        return self.per_task[str(self._require_active())]

    def _begin(self, task: int, pick: str) -> None:
        copy_ = copy.deepcopy(self.seed)
        copy_.requires_grad_(True)
        copy_.train(self.training)
        self.per_task[str(task)] = copy_

    def _finish(self, task: int) -> None:
        done = self.per_task[str(task)]
        done.requires_grad_(False)
        self.seed.load_state_dict(done.state_dict())

    def _absorb(self, old: _TaskModule, training_task: int | None) -> None:
        if not isinstance(old, type(self)):
            raise TypeError(f"cannot grow {type(old).__name__} into {type(self).__name__}")
        fresh_state = copy.deepcopy(self.seed.state_dict())
        for key, module in old.per_task.items():
            if int(key) == training_task:
                grown = copy.deepcopy(self.seed)
                grown.load_state_dict(fresh_state)
                for name, tensor in module.state_dict().items():
                    _copy_top_left(grown.state_dict()[name], tensor)
                grown.requires_grad_(True)
            else:
                grown = copy.deepcopy(module)  # finished copies keep their own width
            grown.train(self.training)
            self.per_task[key] = grown.to(self._device())
        seed_state = self.seed.state_dict()
        for name, tensor in old.seed.state_dict().items():
            _copy_top_left(seed_state[name], tensor)

    def _device(self) -> torch.device:
        tensors = list(self.seed.parameters()) + list(self.seed.buffers())
        return tensors[0].device if tensors else torch.device("cpu")

    def _structure(self) -> dict[str, Any]:
        return {"sizes": {int(k): self._size(m) for k, m in self.per_task.items()}}

    def _rebuild(self, structure: dict[str, Any], training_task: int | None) -> None:
        for task, size in structure["sizes"].items():
            module = self._fresh(int(size)).to(self._device())
            module.requires_grad_(int(task) == training_task)
            module.train(self.training)
            self.per_task[str(int(task))] = module

    def _task_bytes(self, task: int) -> int:
        module = self.per_task[str(task)] if str(task) in self.per_task else None
        return 0 if module is None else _tensor_bytes(module)


class TaskBatchNorm(_PerTaskCopies):
    """Per-task BatchNorm1d/2d (§1.5): the training task's copy trains freely; a finished task's
    copy always normalizes with its running statistics and never updates them, even in train
    mode, so evaluating an old task can't leak into it."""

    seed: nn.BatchNorm1d | nn.BatchNorm2d

    def __init__(self, plain: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
        super().__init__(plain)

    def _size(self, module: nn.Module) -> int:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        return module.num_features

    def _fresh(self, size: int) -> nn.Module:
        s = self.seed
        return type(s)(size, eps=s.eps, momentum=s.momentum, affine=s.affine, track_running_stats=s.track_running_stats)

    def forward(self, x: Tensor) -> Tensor:
        bn = self._current()
        if not self._frozen:
            return bn(x)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        # Same call as BatchNorm in eval mode, so outputs match those recorded at finish.
        use_batch_stats = bn.running_mean is None
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch_stats, 0.0, bn.eps)


class TaskPReLU(_PerTaskCopies):
    """Per-task PReLU slopes (SphereFace-style nets, §1.5)."""

    seed: nn.PReLU

    def __init__(self, plain: nn.PReLU) -> None:
        super().__init__(plain)

    def _size(self, module: nn.Module) -> int:
        assert isinstance(module, nn.PReLU)
        return module.num_parameters

    def _fresh(self, size: int) -> nn.Module:
        return nn.PReLU(size)

    def forward(self, x: Tensor) -> Tensor:
        prelu = self._current()
        assert isinstance(prelu, nn.PReLU)
        return F.prelu(x, prelu.weight)


_CONVERTERS: dict[type[nn.Module], Callable[[Any], _TaskModule]] = {
    nn.Conv2d: MaskedConv2d.from_plain,
    nn.Linear: MaskedLinear.from_plain,
    nn.BatchNorm1d: TaskBatchNorm,
    nn.BatchNorm2d: TaskBatchNorm,
    nn.PReLU: TaskPReLU,
}


def mask_modules(module: nn.Module, _path: str = "") -> nn.Module:
    """Replace Conv2d/Linear/BatchNorm1d/2d/PReLU in ``module`` (in place) by masked versions.

    Exact types only: a subclass may compute differently. Any other module holding its own
    parameters or buffers (GroupNorm, LayerNorm, Embedding, ...) raises ``TypeError``, since it
    would otherwise be silently shared and overwritten by every task.
    """
    convert = _CONVERTERS.get(type(module))
    if convert is not None:
        return convert(module)
    if isinstance(module, _TaskModule):
        return module
    own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    if own:
        where = _path or "<root>"
        raise TypeError(
            f"mask_modules: {type(module).__name__} at '{where}' holds parameters or buffers "
            "and has no masked version; supported: Conv2d, Linear, BatchNorm1d/2d, PReLU"
        )
    for name, child in list(module.named_children()):
        setattr(module, name, mask_modules(child, f"{_path}.{name}" if _path else name))
    return module


@dataclass
class TaskInfo:
    """What ``MaskedNet`` remembers about one task."""

    num_classes: int
    pick: str
    in_features: int
    finished: bool = False
    head: str = "linear"  # "linear", "cosine" or "embedding" (see clbench.nn.heads)


class MaskedNet(nn.Module):
    """A masked backbone plus one linear head per task; the whole parameter-isolation substrate.

    ``backbone_factory(channel_multiplier)`` returns a plain feature extractor with an int
    attribute ``out_features``; its parameter-free ops must not depend on the width (use
    ``nn.Flatten``, not ``view(-1, C)``) because finished tasks run at their own width.
    ``width_mult`` multiplies the *parameters* as in CPG: channels scale by ``sqrt(width_mult)``.
    """

    class State(Enum):
        IDLE = "idle"  # no task open: evaluate, expand, begin_task
        TRAINING = "training"  # a task is open: train, prune, expand, finish_task

    def __init__(self, backbone_factory: Callable[[float], nn.Module], width_mult: float = 1.0) -> None:
        super().__init__()
        self._factory = backbone_factory
        self.width_mult = float(width_mult)
        self.backbone = self._build_backbone(self.width_mult)
        self.heads = nn.ModuleDict()
        self.tasks: dict[int, TaskInfo] = {}
        self.training_task: int | None = None
        self.active_task: int | None = None
        self._train_picks = True

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], backbone_factory: Callable[[float], nn.Module]) -> MaskedNet:
        """Rebuild a net from ``state_dict()`` output; same as ``load_state_dict`` on a fresh one."""
        net = cls(backbone_factory)
        net.load_state_dict(state)
        return net

    # ------------------------------------------------------------- helpers
    def _build_backbone(self, width_mult: float) -> nn.Module:
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        backbone = self._factory(math.sqrt(width_mult))
        if not isinstance(getattr(backbone, "out_features", None), int):
            raise TypeError("backbone_factory must return a module with an int `out_features`")
        return mask_modules(backbone)

    @property
    def out_features(self) -> int:
        return int(self.backbone.out_features)

    @property
    def state(self) -> MaskedNet.State:
        return self.State.IDLE if self.training_task is None else self.State.TRAINING

    @property
    def finished_tasks(self) -> list[int]:
        return [k for k, info in self.tasks.items() if info.finished]

    def _task_modules(self) -> Iterator[tuple[str, _TaskModule]]:
        for name, module in self.backbone.named_modules():
            if isinstance(module, _TaskModule):
                yield name, module

    def _layers(self) -> Iterator[tuple[str, _MaskedLayer]]:
        for name, module in self._task_modules():
            if isinstance(module, _MaskedLayer):
                yield name, module

    def _broadcast(self) -> None:
        for _, module in self._task_modules():
            module._set_tasks(self.active_task, self.training_task)
            if isinstance(module, _MaskedLayer):
                module._train_picks = self._train_picks

    @property
    def train_picks(self) -> bool:
        """Whether the training task's pick masks get gradients (default ``True``).

        Set it to ``False`` for phases that keep the pick mask fixed (CPG's prune stages, §1.3):
        the forward then uses the binarized mask as a constant, no pick gradient is computed,
        and an optimizer over ``pick_parameters()`` leaves them unchanged (a ``None`` gradient
        is skipped), whatever optimizer the strategy builds.
        """
        return self._train_picks

    @train_picks.setter
    def train_picks(self, value: bool) -> None:
        self._train_picks = bool(value)
        # Fused optimizers update in place without bumping version counters, so caches derived
        # from the pick mask's values cannot trust them across a switch: rebuild.
        for _, layer in self._layers():
            layer._cache.pop("frozen_pick", None)
            layer._cache.pop("eval", None)
        self._broadcast()

    def _guard(self, method: str, needed: MaskedNet.State) -> None:
        if self.state is not needed:
            hint = (
                "call begin_task() first"
                if needed is self.State.TRAINING
                else f"call finish_task() for task {self.training_task} first"
            )
            raise StateError(
                f"MaskedNet.{method}() needs state {needed.name}, but the net is {self.state.name}: {hint}"
            )

    def _new_head(self, in_features: int, num_classes: int, kind: str = "linear") -> nn.Linear:
        return make_head(kind, in_features, num_classes, device=next(self.backbone.parameters()).device)

    # ----------------------------------------------------------- lifecycle
    def begin_task(self, task: int, num_classes: int, pick: str = "learn", head: str = "linear") -> None:
        """Open task ``task``: it claims every free weight and gets fresh per-task state and head
        (``head``: "linear" classifier, "cosine" for margin-loss embeddings, "embedding" for the
        L2-normalised embedding of triplet tasks, whose size ignores ``num_classes``)."""
        self._guard("begin_task", self.State.IDLE)
        if pick not in PICK_MODES:
            raise ValueError(f"pick must be one of {PICK_MODES}, got {pick!r}")
        if not 1 <= task <= MAX_TASKS:
            raise ValueError(f"task ids run from 1 to {MAX_TASKS}, got {task}")
        if self.tasks and task <= max(self.tasks):
            # Picking reads owner < task as "earlier", so ids must increase.
            raise StateError(f"task {task} must be greater than every earlier task ({max(self.tasks)})")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for _, module in self._task_modules():
            module._begin(task, pick)
        self.heads[str(task)] = self._new_head(self.out_features, num_classes, head)
        self.tasks[task] = TaskInfo(num_classes, pick, self.out_features, head=head)
        self.training_task = task
        self.active_task = task
        self._broadcast()

    def finish_task(self) -> None:
        """Close the training task: pack its pick mask, record its shapes, freeze its state."""
        self._guard("finish_task", self.State.TRAINING)
        task = self.training_task
        assert task is not None
        for _, module in self._task_modules():
            module._finish(task)
        self.heads[str(task)].requires_grad_(False)
        self.tasks[task].finished = True
        self.training_task = None
        self._broadcast()

    def activate(self, task: int) -> None:
        """Make ``forward`` compute task ``task`` (a finished task or the training task)."""
        if task not in self.tasks:
            raise StateError(f"unknown task {task}; known: {sorted(self.tasks)}")
        self.active_task = task
        self._broadcast()

    def forward(self, x: Tensor) -> Tensor:
        task = self.active_task
        if task is None:
            raise StateError("no active task: call begin_task() or activate() first")
        return self.heads[str(task)](self.backbone(x))

    def features(self, x: Tensor) -> Tensor:
        """The active task's backbone features (the embedding of a verification task)."""
        if self.active_task is None:
            raise StateError("no active task: call begin_task() or activate() first")
        return self.backbone(x)

    # ----------------------------------------------------------- training
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters for the SGD optimizer: shared weights (gated) and the training task's
        bias/BN/PReLU copies and head. Earlier tasks' per-task state is never returned."""
        self._guard("trainable_parameters", self.State.TRAINING)
        key = str(self.training_task)
        params: list[nn.Parameter] = []
        for _, module in self._task_modules():
            if isinstance(module, _MaskedLayer):
                params.append(module.weight)
                if module.bias_seed is not None:
                    params.append(module.biases[key])
            elif isinstance(module, _PerTaskCopies):
                params.extend(module.per_task[key].parameters())
        params.extend(self.heads[key].parameters())
        return params

    def task_parameters(self, task: int | None = None) -> dict[str, list[nn.Parameter]]:
        """A task's own parameters by kind, in module order (the training task by default).

        Keys: ``"biases"`` (masked layers' per-task biases), ``"norms"`` (per-task BatchNorm and
        PReLU copies), ``"head"``, ``"picks"`` (the live piggymasks; the training task only: a
        finished task's pick mask is stored as packed bits, a buffer). The shared ``weight`` of
        every masked layer belongs to no single task and is left out: ``trainable_parameters()``
        has it. Raises ``StateError`` for an unknown task.
        """
        task = self.training_task if task is None else task
        if task not in self.tasks:
            raise StateError(f"unknown task {task}; known: {sorted(self.tasks)}")
        key = str(task)
        found: dict[str, list[nn.Parameter]] = {"biases": [], "norms": [], "head": [], "picks": []}
        for _, module in self._task_modules():
            if isinstance(module, _MaskedLayer):
                if module.bias_seed is not None and key in module.biases:
                    found["biases"].append(module.biases[key])
                if task == self.training_task and module.piggymask is not None:
                    found["picks"].append(module.piggymask)
            elif isinstance(module, _PerTaskCopies) and key in module.per_task:
                found["norms"].extend(module.per_task[key].parameters())
        found["head"].extend(self.heads[key].parameters())
        return found

    def pick_parameters(self) -> list[nn.Parameter]:
        """The training task's piggymasks (for Adam); empty unless pick="learn" and task > 1."""
        self._guard("pick_parameters", self.State.TRAINING)
        return [m.piggymask for _, m in self._layers() if m.piggymask is not None]

    def gate_gradients(self, weight_decay: float = 0.0, train_pick: bool | None = None) -> None:
        """Call between ``backward()`` and ``step()`` (§1.3, §1.4).

        Adds ``weight_decay * W`` to every masked weight's gradient, then zeroes it wherever
        ``owner != training task``. Piggymask gradients are zero outside earlier tasks' weights
        by construction (``_PickedWeight``); ``train_pick=False`` zeroes all of them, as
        upstream's prune stage does. ``train_pick=None`` follows :attr:`train_picks`; note that
        with ``train_picks = False`` no pick gradient exists to keep, whatever ``train_pick`` says.
        A step whose gradients are not all finite is gated exactly (zeros, not NaN, off the
        task's own weights): one host sync per call decides.
        """
        self._guard("gate_gradients", self.State.TRAINING)
        picks = self._train_picks if train_pick is None else train_pick
        layers = [layer for _, layer in self._layers()]
        checks = [c for c in (layer._gate(weight_decay, picks) for layer in layers) if c is not None]
        # One host sync per step: a float gate turns inf/NaN off own weights into NaN (0·inf),
        # so a non-finite step takes the exact (slower) gate and frozen weights stay untouched.
        # (A finite sum that overflows to inf only takes the exact gate needlessly.)
        if checks and not bool(torch.isfinite(torch.stack(checks)).all()):
            for layer in layers:
                layer._gate_non_finite()

    def zero_released(self) -> None:
        """Re-zero released (owner 0) weights; call after ``optimizer.step()`` once pruning has
        begun, since momentum can still move a weight after its gradient is gated (PackNet
        re-zeroes after every step)."""
        self._guard("zero_released", self.State.TRAINING)
        for _, layer in self._layers():
            layer._zero_released()

    def prune(self, sparsity: float) -> dict[str, float]:
        """Release the training task's smallest weights, per masked layer (§1.6).

        Candidates are weights owned by the training task or free; the cutoff is the
        ``round(sparsity·n)``-th smallest ``|w|`` among them; owned weights at or below it become
        free and zero. Heads, BN and biases are never pruned. Calling it once is PackNet's
        one-shot prune; calling it on a ``cubic_sparsity`` schedule is CPG/PAE's gradual one.
        Returns each layer's free fraction among the candidates.
        """
        self._guard("prune", self.State.TRAINING)
        if not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must lie in [0, 1], got {sparsity}")
        task = self.training_task
        assert task is not None
        reached: dict[str, float] = {}
        for name, layer in self._layers():
            free, n = layer._prune(task, sparsity)
            reached[name] = free / n if n else 0.0
        return reached

    def reset_pick(self, value: float = PICK_INIT) -> None:
        """Reset the training task's piggymasks (CPG retrain stage, §1.3)."""
        self._guard("reset_pick", self.State.TRAINING)
        for _, layer in self._layers():
            layer.reset_pick(value)

    # ------------------------------------------------------------- growth
    def expand(self, width_mult: float) -> None:
        """Grow to a larger parameter multiplier (§1.8).

        Builds a wider plain backbone, masks it and copies every old tensor top-left: weights,
        owners, pick bits/piggymask, per-task bias/BN/PReLU. New weights keep their fresh init
        and are free; if a task is being trained it claims them (as ``begin_task`` would have).
        Finished tasks keep their own width and run sliced to it, so their outputs stay
        bit-identical. The training task's head grows to the new feature size with its old
        weights top-left; finished heads keep their input size. Rebuild optimizers afterwards.
        """
        if width_mult <= self.width_mult:
            raise ValueError(f"expand needs a larger multiplier than {self.width_mult}, got {width_mult}")
        ref = next(self.backbone.parameters())
        backbone = self._build_backbone(width_mult).to(device=ref.device)
        backbone.train(self.training)
        old = dict(self._task_modules())
        new = {n: m for n, m in backbone.named_modules() if isinstance(m, _TaskModule)}
        if old.keys() != new.keys():
            raise TypeError("backbone_factory builds different layers at different widths")
        for name, module in new.items():
            module._absorb(old[name], self.training_task)
        self.backbone = backbone
        self.width_mult = float(width_mult)
        task = self.training_task
        if task is not None:
            old_head = self.heads[str(task)]
            assert isinstance(old_head, nn.Linear)
            head = self._new_head(self.out_features, old_head.out_features, self.tasks[task].head)
            _copy_top_left(head.weight, old_head.weight.detach())
            if old_head.bias is not None:
                _copy_top_left(head.bias, old_head.bias.detach())
            head.train(self.training)
            self.heads[str(task)] = head
            self.tasks[task].in_features = self.out_features
        self._broadcast()

    # ------------------------------------------------------ serialization
    def get_extra_state(self) -> dict[str, Any]:
        """Everything needed to rebuild the structure before tensors load (see module doc)."""
        return {
            "version": _EXTRA_STATE_VERSION,
            "width_mult": self.width_mult,
            "training_task": self.training_task,
            "active_task": self.active_task,
            "tasks": {
                k: {
                    "num_classes": i.num_classes,
                    "pick": i.pick,
                    "in_features": i.in_features,
                    "finished": i.finished,
                    "head": i.head,
                }
                for k, i in self.tasks.items()
            },
            "modules": {name: module._structure() for name, module in self._task_modules()},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # torch loads a module's own extra state before its children, so rebuilding the
        # backbone and heads here lets the rest of the state dict load into them.
        if state.get("version") != _EXTRA_STATE_VERSION:
            raise ValueError(f"unsupported MaskedNet state version {state.get('version')!r}")
        ref = next(self.backbone.parameters())
        self.width_mult = float(state["width_mult"])
        self.backbone = self._build_backbone(self.width_mult).to(device=ref.device)
        self.backbone.train(self.training)
        self.training_task = state["training_task"]
        self.active_task = state["active_task"]
        self.tasks = {
            int(k): TaskInfo(
                int(v["num_classes"]),
                str(v["pick"]),
                int(v["in_features"]),
                bool(v["finished"]),
                str(v.get("head", "linear")),
            )
            for k, v in state["tasks"].items()
        }
        modules = dict(self._task_modules())
        if modules.keys() != state["modules"].keys():
            raise ValueError("state dict does not match this backbone_factory's layers")
        for name, module in modules.items():
            module._rebuild(state["modules"][name], self.training_task)
        self.heads = nn.ModuleDict()
        for task, info in self.tasks.items():
            head = self._new_head(info.in_features, info.num_classes, info.head)
            head.requires_grad_(not info.finished)
            head.train(self.training)
            self.heads[str(task)] = head
        self._broadcast()

    # --------------------------------------------------------- accounting
    def accounting(self) -> dict[str, Any]:
        """Parameter and memory accounting as a plain dict.

        ``tasks[k]``: ``owned`` weights, ``picked`` earlier-task weights it computes with,
        ``state_bytes`` of its per-task state (BN/PReLU tensors, biases, head, packed pick bits;
        a live piggymask counts as the bits ``finish_task`` will store).
        ``layers[name]``: shape, ``numel``, ``free`` count, ``owned`` per task and ``sparsity``
        (free fraction). Model size::

            total_bytes = 4·Σ weights (float32; element size in general)
                        + 1·Σ weights (uint8 owner masks)
                        + Σ_tasks state_bytes
            total_mb = total_bytes / 2**20

        Seeds (the copy the next task starts from) are left out: they duplicate the last task's
        state or fresh init.
        """
        tasks: dict[int, dict[str, Any]] = {
            k: {
                "num_classes": i.num_classes,
                "pick": i.pick,
                "finished": i.finished,
                "owned": 0,
                "picked": 0,
                "state_bytes": 0,
            }
            for k, i in self.tasks.items()
        }
        layers: dict[str, dict[str, Any]] = {}
        weight_bytes = owner_bytes = 0
        for name, module in self._task_modules():
            for k, entry in tasks.items():
                entry["state_bytes"] += module._task_bytes(k)
            if not isinstance(module, _MaskedLayer):
                continue
            counts = torch.bincount(module.owner.reshape(-1), minlength=MAX_TASKS + 1).tolist()
            numel = module.owner.numel()
            layers[name] = {
                "shape": list(module.weight.shape),
                "numel": numel,
                "free": counts[0],
                "owned": {k: counts[k] for k in tasks},
                "sparsity": counts[0] / numel,
            }
            weight_bytes += numel * module.weight.element_size()
            owner_bytes += numel * module.owner.element_size()
            for k, entry in tasks.items():
                entry["owned"] += counts[k]
                entry["picked"] += module.picked_count(k)
        for k, entry in tasks.items():
            entry["state_bytes"] += _tensor_bytes(self.heads[str(k)])
        total = weight_bytes + owner_bytes + sum(e["state_bytes"] for e in tasks.values())
        paper = self._paper_bytes(weight_bytes, sum(e["state_bytes"] for e in tasks.values()))
        return {
            "width_mult": self.width_mult,
            "tasks": tasks,
            "layers": layers,
            "weight_bytes": weight_bytes,
            "owner_bytes": owner_bytes,
            "total_bytes": total,
            "total_mb": total / 2**20,
            "paper_bytes": paper,
            "paper_mb": paper / 2**20,
        }

    def _paper_bytes(self, weight_bytes: int, state_bytes: int) -> float:
        """Model size counted as the papers count it (docs/results.md, "Model size"): the weights,
        owner masks at ⌈log2(T+1)⌉ bits per weight, each learned pick mask at one bit per
        *earlier* task's weight (a task's own weights need none), per-task BN/biases/heads."""
        layers = [layer for _, layer in self._layers()]
        numel = sum(layer.owner.numel() for layer in layers)
        owner_bits = math.ceil(math.log2(len(self.tasks) + 1)) * numel if self.tasks else 0
        pick_bits = pick_bytes = 0
        for layer in layers:
            for task, mode in layer.task_modes.items():
                if mode == "learn" and task > 1:
                    pick_bits += layer.earlier_count(task)
                    pick_bytes += layer.pick_bytes(task)
        return weight_bytes + owner_bits / 8 + pick_bits / 8 + state_bytes - pick_bytes
