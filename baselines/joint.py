"""Joint multi-task training: one shared backbone with a head per task, trained on the data of
several tasks at once. Not continual learning: the upper bound the continual methods are
measured against (the "Joint" rows of Li & Hoiem, LwF, ECCV 2016, and of the CPG paper).

**What a row of the accuracy matrix means.** The runner hands over one task at a time and
evaluates after each. At step t these strategies train a network jointly on tasks 1 … t (by
default from a fresh initialisation, ``warm_start = False``), so row t is "joint training on
the first t tasks" and the last row is the joint upper bound on the whole benchmark. This
costs 1 + 2 + … + T task-passes per epoch budget; ``train_at = "last"`` trains only at the
last task instead (earlier rows then show untrained heads: chance accuracy).

Three ways to build the batches and the loss, one registered strategy each:

* ``joint_alternating``: each batch comes from one task and trains that task's head; batches
  alternate between the tasks round-robin until every task's data is used once per epoch
  ("alternating training" for multi-task learning with disjoint datasets; Hong et al., "Beyond
  without Forgetting: Multi-Task Learning for Classification with Disjoint Datasets", ICME 2020,
  arXiv:2003.06746, Sec. 1).
* ``joint_mixed`` (the "confusion" set-up: images of every task mixed in one batch): one
  shuffled stream over all tasks' images; every head sees the whole batch, and its loss applies
  only where its label exists (Hong et al.'s "joint training"). Optionally the missing labels
  are filled with **pseudo-labels** from single-task models (one per classification task,
  trained on that task alone when it first arrives), kept where the model's confidence is at
  least ``pseudo_threshold`` (as in Hong et al.'s MTL-SA, which keeps confident pseudo-labels),
  and every head is **distilled** from its single-task model on the other tasks' images
  (``distill_weight``; Hinton et al., "Distilling the Knowledge in a Neural Network", 2015, with
  the T² factor). The verification task's head (identity classes) takes neither.
* ``joint_dynamic``: mixed batches, task losses weighted by a dynamic-weight unit: a linear
  layer on the (detached, L2-normalised) shared features, L2-normalised logits, softmax,
  averaged over the batch. The unit minimises ``Σ w_i / (L_i + σ)``, so the task with the larger
  current loss gets the larger weight; the network minimises ``T · Σ w_i L_i`` with the weights
  held constant. No hyperparameter to tune (Ming et al., "Dynamic Multi-Task Learning for Face
  Recognition with Facial Expression", ICCV-W 2019, arXiv:1911.03281; σ = 0.01 and the unit's
  10× learning rate from hengxyz/Dynamic_multi-task-learning
  ``src/facenet_expression_realdynamic_L1L2.py``). Deviations: the upstream unit reads
  features that are not detached and clips the weights to [0.01, 0.99] for two tasks; here the
  features are detached (only the unit's loss moves the unit) and there is no clip (the
  L2-normalised logits already keep every weight away from 0 and 1); the factor T makes equal
  weights reproduce ``joint_mixed``'s loss.

Each task keeps its own criterion (``task.criterion()``: cross-entropy, or the cosine-margin
loss of a verification task's identity head). Training runs in a plain PyTorch loop here
(Avalanche's loop trains one experience at a time); evaluation is the runner's, unchanged.
``clip_grad_norm`` caps one gradient norm over the network and the dynamic-weight unit.

Triplet tasks (``(B, 3, C, H, W)`` batches of embedding triplets, :mod:`clbench.triplets`)
train only in ``joint_alternating``, whose batches hold one task; the mixed-batch strategies
refuse them in ``validate`` (a mixed batch cannot hold triplets beside single images).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from clbench.config import check
from clbench.errors import UsageError
from clbench.strategy import FitResult, Strategy, Task, TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

IGNORE = -100  # cross-entropy's ignore_index: "no label for this head here"
DYNAMIC_SIGMA = 0.01  # realdynamic_L1L2.py: sigma = 0.01 in loss_for_weights
DYNAMIC_LR_FACTOR = 10.0  # realdynamic_L1L2.py: learning_rate_dyn = learning_rate * 10


@dataclass(frozen=True)
class JointConfig(TrainConfig):
    warm_start: bool = False  # False: step t trains tasks 1..t from a fresh network (clean row t)
    train_at: Literal["every", "last"] = "every"  # last: only after the last task arrives (cheap)


@dataclass(frozen=True)
class JointMixedConfig(JointConfig):
    pseudo_threshold: float | None = None  # None: no pseudo-labels (plain mixed batches)
    distill_weight: float = 0.0  # 0: no distillation from the single-task models
    distill_temperature: float = 2.0  # Hinton et al. 2015 / Li & Hoiem 2016 use T = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        t = self.pseudo_threshold
        check(t is None or 0 < t <= 1, "joint_mixed", "pseudo_threshold", "in (0, 1] or none", t)
        check(self.distill_weight >= 0, "joint_mixed", "distill_weight", ">= 0", self.distill_weight)
        check(self.distill_temperature > 0, "joint_mixed", "distill_temperature", "> 0", self.distill_temperature)


# ------------------------------------------------------------------ building blocks
def pseudo_labels(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Argmax class per row where the softmax confidence is ``>= threshold``, else ``IGNORE``."""
    import torch

    confidence, label = torch.softmax(logits.detach().float(), dim=1).max(dim=1)
    return torch.where(confidence >= threshold, label, torch.full_like(label, IGNORE))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher^T ‖ student^T) · T², mean over rows (Hinton et al. 2015)."""
    import torch.nn.functional as F

    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher.detach() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


@functools.cache
def dynamic_weights_class() -> type:
    """The ``DynamicTaskWeights`` module class (built on first use: this module must not
    import torch when ``clbench list`` loads it)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DynamicTaskWeights(nn.Module):
        """Ming et al.'s dynamic-weight unit: one weight per task from the shared features."""

        def __init__(self, in_features: int, num_tasks: int) -> None:
            super().__init__()
            self.linear = nn.Linear(in_features, num_tasks)
            nn.init.trunc_normal_(self.linear.weight, std=0.1)  # upstream: truncated_normal(stddev=0.1)
            nn.init.zeros_(self.linear.bias)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            """Task weights (summing to 1) for a batch of features; the features are detached."""
            z = F.normalize(self.linear(F.normalize(features.detach(), dim=1)), dim=1)
            return torch.softmax(z, dim=1).mean(dim=0)

        @staticmethod
        def unit_loss(weights: torch.Tensor, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
            """``Σ_i w_i / (L_i + σ)`` over the tasks present in the batch (losses held constant):
            minimised by moving weight to the task with the larger loss."""
            return (weights[present] / (losses[present].detach() + DYNAMIC_SIGMA)).sum()

    return DynamicTaskWeights


# ----------------------------------------------------------------------- strategies
class _Joint(Strategy):
    """Shared backbone + a head per task, trained jointly on every task seen so far."""

    mode: ClassVar[str] = ""
    kind = "joint"
    Config = JointConfig
    supports_triplets: ClassVar[bool] = False  # only one-task batches can carry (B, 3, C, H, W) triplets

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.known: dict[int, Task] = {}  # every task by index (the runner passes all to validate)
        self.seen: list[Task] = []  # the tasks trained on at this step: 1 … t
        self.last_weights: list[float] = []  # joint_dynamic: task weights of the last batch

    def validate(self, tasks: Sequence[Task]) -> None:
        super().validate(tasks)
        triplets = [t.name for t in tasks if t.kind == "triplet"]
        if triplets and not self.supports_triplets:
            raise UsageError(
                f"{self.name} mixes tasks' images in one batch; triplet tasks ({', '.join(triplets)}) are not "
                "supported: use joint_alternating (one task per batch) or leave them out"
            )
        if self.config.engine != "avalanche":
            raise UsageError(f"{self.name} trains in its own loop; --{self.name}.engine device does not apply to it")
        self.known.update({t.index: t for t in tasks})  # so a resumed run still has tasks 1 … t−1

    def before_task(self, task: Task) -> None:
        self.known[task.index] = task
        missing = [i for i in range(1, task.index) if i not in self.known]
        if missing:
            raise UsageError(f"{self.name} needs the data of tasks {missing} to train jointly on task {task.index}")
        self.seen = [self.known[i] for i in range(1, task.index + 1)]
        if self.config.warm_start or task.index == 1:
            super().before_task(task)
            return
        # A fresh network with a head for every task so far: row t = joint training on 1..t.
        self.model = self.build_model().to(self.context.device)
        for t in self.seen:
            self.model.begin_task(t.index, t.num_classes, head=t.data.head)

    def train(self, task: Task, **overrides: Any) -> FitResult:
        if self.config.train_at == "last" and task.index < self.context.num_tasks:
            return FitResult(train_accuracy=math.nan, train_loss=math.nan)
        get = overrides.get
        cfg = self.config
        return self.fit_jointly(
            self.model,
            self.seen,
            epochs=get("epochs", cfg.epochs),
            lr=get("lr", cfg.lr),
            milestones=get("lr_milestones", cfg.lr_milestones),
        )

    # ------------------------------------------------------------------ the loop
    def fit_jointly(
        self, model: nn.Module, tasks: Sequence[Task], epochs: int, lr: float, milestones: Sequence[int]
    ) -> FitResult:
        """``epochs`` passes over every task's training data; one SGD over the network (and the
        dynamic-weight unit), lr × ``lr_gamma`` at each milestone epoch."""
        import torch

        from clbench.errors import NonFiniteLossError

        cfg = self.config
        device = self.context.device
        unit = self.make_unit(model, tasks)
        groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
        if unit is not None:
            groups.append({"params": list(unit.parameters()), "lr": lr * DYNAMIC_LR_FACTOR})
        optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        params = [p for group in groups for p in group["params"]]  # one norm over network and unit
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), cfg.lr_gamma)
        criteria = {t.index: t.criterion().to(device) for t in tasks}
        acc, loss_value = math.nan, math.nan
        for epoch in range(epochs):
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            for x, y, k in self.batches(tasks):
                x, y, k = x.to(device), y.to(device), k.to(device)
                loss, hits = self.batch_loss(model, unit, tasks, criteria, x, y, k)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                optimizer.step()
                loss_sum += loss.detach().double() * len(y)
                correct += hits
                seen += len(y)
            scheduler.step()
            loss_value, acc = float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"non-finite training loss in {self.name} on tasks 1-{len(tasks)}, epoch {epoch + 1}: "
                    "lower the learning rate"
                )
        return FitResult(train_accuracy=acc, train_loss=loss_value)

    def make_unit(self, model: nn.Module, tasks: Sequence[Task]) -> nn.Module | None:
        return None

    def batches(self, tasks: Sequence[Task]) -> Iterator[tuple[Any, Any, Any]]:
        """Mixed batches: one shuffled stream over every task's images, each tagged with its task."""
        from torch.utils.data import ConcatDataset, DataLoader

        data = ConcatDataset([_Tagged(t.data.train, t.index) for t in tasks])
        yield from _loader(data, self.config.batch_size, DataLoader)

    def batch_loss(
        self, model: nn.Module, unit: nn.Module | None, tasks: Sequence[Task], criteria: dict[int, nn.Module],
        x: torch.Tensor, y: torch.Tensor, k: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Sum over the tasks in the batch of each task's loss on its own labelled images."""
        features = model.features(x)
        total = features.new_zeros(())
        hits = _zeros_long(features)
        for t in tasks:
            sel = k == t.index
            if bool(sel.any()):
                logits = model.heads[str(t.index)](features[sel])
                total = total + criteria[t.index](logits, y[sel])
                hits = hits + (logits.argmax(1) == y[sel]).sum()
        return total, hits


class JointAlternating(_Joint):
    """Joint multi-task upper bound: batches alternate between tasks (one task per batch)."""

    name = "joint_alternating"
    mode = "alternating"
    supports_triplets = True

    def batches(self, tasks: Sequence[Task]) -> Iterator[tuple[Any, Any, Any]]:
        """Round-robin over the tasks' own loaders; a task drops out when its data is used up."""
        from torch.utils.data import DataLoader

        streams = [_loader(_Tagged(t.data.train, t.index), self.config.batch_size, DataLoader) for t in tasks]
        while streams:
            for stream in list(streams):
                batch = next(stream, None)
                if batch is None:
                    streams.remove(stream)
                else:
                    yield batch

    def batch_loss(
        self, model: nn.Module, unit: nn.Module | None, tasks: Sequence[Task], criteria: dict[int, nn.Module],
        x: torch.Tensor, y: torch.Tensor, k: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        if x.dim() != 5:
            return super().batch_loss(model, unit, tasks, criteria, x, y, k)
        from clbench.triplets import as_images, triplet_correct

        # A triplet task's batch (every batch here holds one task): embed its 3B images, rows
        # a0, p0, n0, a1, ... as the task's criterion expects; hits count triplets.
        index = int(k[0])
        output = model.heads[str(index)](model.features(as_images(x)))
        return criteria[index](output, y), triplet_correct(output)


class JointMixed(_Joint):
    """Joint multi-task upper bound: mixed-task batches, optional pseudo-labels and distillation."""

    name = "joint_mixed"
    mode = "mixed"
    Config = JointMixedConfig

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.teachers: dict[int, nn.Module] = {}  # task index → its single-task model

    @property
    def uses_teachers(self) -> bool:
        return self.config.pseudo_threshold is not None or self.config.distill_weight > 0

    def train(self, task: Task, **overrides: Any) -> FitResult:
        if self.uses_teachers and task.kind == "classification" and task.index not in self.teachers:
            self.teachers[task.index] = self.train_teacher(task, **overrides)
        return super().train(task, **overrides)

    def extra_state(self) -> dict[str, Any]:
        return {"teachers": {i: teacher.state_dict() for i, teacher in self.teachers.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        from clbench.nn.multihead import MultiHeadNet

        for i, weights in state["teachers"].items():
            teacher = MultiHeadNet(self.context.backbone_factory)
            teacher.load_state_dict(weights)  # its extra state rebuilds the head first
            self.teachers[int(i)] = _frozen(teacher.to(self.context.device))

    def train_teacher(self, task: Task, **overrides: Any) -> nn.Module:
        """A single-task model (fresh backbone + the task's head) trained on the task alone."""
        from clbench.nn.multihead import MultiHeadNet

        cfg = self.config
        teacher = MultiHeadNet(self.context.backbone_factory).to(self.context.device)
        teacher.begin_task(task.index, task.num_classes, head=task.data.head)
        get = overrides.get
        epochs, lr, milestones = get("epochs", cfg.epochs), get("lr", cfg.lr), get("lr_milestones", cfg.lr_milestones)
        self.timed("teachers", lambda: self.fit_jointly(teacher, [task], epochs, lr, milestones))
        teacher.finish_task()  # stays routed to its task's head
        return _frozen(teacher)

    def batch_loss(
        self, model: nn.Module, unit: nn.Module | None, tasks: Sequence[Task], criteria: dict[int, nn.Module],
        x: torch.Tensor, y: torch.Tensor, k: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        if not self.uses_teachers or len(tasks) == 1:
            return super().batch_loss(model, unit, tasks, criteria, x, y, k)
        import torch
        import torch.nn.functional as F

        cfg: JointMixedConfig = self.config
        features = model.features(x)
        total = features.new_zeros(())
        hits = _zeros_long(features)
        for t in tasks:
            own = k == t.index
            teacher = self.teachers.get(t.index)
            head = model.heads[str(t.index)]
            if teacher is None:  # verification (identity) head: own labels only
                if bool(own.any()):
                    logits = head(features[own])
                    total = total + criteria[t.index](logits, y[own])
                    hits = hits + (logits.argmax(1) == y[own]).sum()
                continue
            logits = head(features)
            hits = hits + (logits[own].argmax(1) == y[own]).sum()
            other = ~own
            target = torch.where(own, y, torch.full_like(y, IGNORE))
            if bool(other.any()):
                with torch.no_grad():
                    teacher_logits = teacher(x[other])
                if cfg.pseudo_threshold is not None:
                    target[other] = pseudo_labels(teacher_logits, cfg.pseudo_threshold)
                if cfg.distill_weight > 0:
                    total = total + cfg.distill_weight * distillation_loss(
                        logits[other], teacher_logits, cfg.distill_temperature
                    )
            if bool((target != IGNORE).any()):
                total = total + F.cross_entropy(logits, target, ignore_index=IGNORE)
        return total, hits


class JointDynamic(_Joint):
    """Joint multi-task upper bound: mixed batches, task losses weighted by a dynamic-weight unit."""

    name = "joint_dynamic"
    mode = "dynamic"

    def make_unit(self, model: nn.Module, tasks: Sequence[Task]) -> nn.Module | None:
        if len(tasks) == 1:
            return None
        unit = dynamic_weights_class()(model.backbone.out_features, len(tasks))
        return unit.to(self.context.device)

    def batch_loss(
        self, model: nn.Module, unit: nn.Module | None, tasks: Sequence[Task], criteria: dict[int, nn.Module],
        x: torch.Tensor, y: torch.Tensor, k: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        if unit is None:
            return super().batch_loss(model, unit, tasks, criteria, x, y, k)
        import torch

        features = model.features(x)
        losses = features.new_zeros(len(tasks))
        present = torch.zeros(len(tasks), dtype=torch.bool, device=features.device)
        hits = _zeros_long(features)
        for i, t in enumerate(tasks):
            sel = k == t.index
            if bool(sel.any()):
                logits = model.heads[str(t.index)](features[sel])
                losses[i] = criteria[t.index](logits, y[sel])
                present[i] = True
                hits = hits + (logits.argmax(1) == y[sel]).sum()
        weights = unit(features)
        self.last_weights = weights.detach().cpu().tolist()
        network_loss = len(tasks) * (weights.detach() * losses)[present].sum()
        return network_loss + unit.unit_loss(weights, losses, present), hits


# --------------------------------------------------------------------------- helpers
def _zeros_long(like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.zeros((), dtype=torch.long, device=like.device)


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _Tagged:
    """A task's training set whose items carry the task index: ``(x, y, task)``."""

    def __init__(self, dataset: Any, task: int) -> None:
        self.dataset = dataset
        self.task = task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        x, y = self.dataset[i][:2]
        return x, y, self.task


def _loader(dataset: Any, batch_size: int, loader_cls: Any) -> Iterator[Any]:
    """Shuffled batches; a last batch of one sample is dropped (it breaks BatchNorm)."""
    drop_last = len(dataset) % batch_size == 1
    return iter(loader_cls(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last))
