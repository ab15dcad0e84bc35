"""Strategy API: the per-task lifecycle every method follows, with compact / pick / grow steps.

``learn_task`` runs, for each task in order::

    before_task → pick → train → (grow → train)* → compact → after_task

``pick``, ``grow`` and ``compact`` are no-ops here; parameter-isolation strategies override
them (PackNet only ``compact``). Training and evaluation run on the engine the config names:
Avalanche's ``SupervisedTemplate`` loop (:mod:`clbench.loop`) or the device engine
(:mod:`clbench.engine`). :meth:`Strategy.fit` and :meth:`Strategy.evaluate_all` pick it, and
import it only when a run starts, so that registering and listing strategies stays cheap. The
engines sit below this module: they name its types only under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.config import check
from clbench.fitting import FitResult, iterations_per_epoch

# FitResult and iterations_per_epoch live in clbench.fitting, below both engines; plugins import
# them from here.
__all__ = [
    "FitResult",
    "Scenario",
    "Strategy",
    "StrategyContext",
    "Task",
    "TrainConfig",
    "check_strategy_class",
    "iterations_per_epoch",
]

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from clbench.benchmark import TaskData
    from clbench.journal import PhaseJournal


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters shared by every gradient-trained strategy."""

    epochs: int = 5  # training epochs per task
    lr: float = 0.01  # SGD learning rate
    lr_milestones: tuple[int, ...] = ()  # epochs at which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    batch_size: int = 32
    eval_batch_size: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None  # clbench option (none in the papers): cap the gradient norm
    engine: str = "avalanche"  # training loop: Avalanche's SupervisedTemplate, or "device" (clbench.engine)
    precision: str = "fp32"  # "bf16": autocast around forward and loss (device engine)
    channels_last: bool = False  # model and inputs in channels-last memory format (device engine)

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "train", "epochs", ">= 0", self.epochs)
        check(self.lr >= 0, "train", "lr", ">= 0", self.lr)
        check(self.batch_size >= 1, "train", "batch_size", ">= 1", self.batch_size)
        check(self.eval_batch_size >= 1, "train", "eval_batch_size", ">= 1", self.eval_batch_size)
        check(0 <= self.momentum < 1, "train", "momentum", "in [0, 1)", self.momentum)
        check(self.weight_decay >= 0, "train", "weight_decay", ">= 0", self.weight_decay)
        check(0 < self.lr_gamma <= 1, "train", "lr_gamma", "in (0, 1]", self.lr_gamma)
        clip = self.clip_grad_norm
        check(clip is None or clip > 0, "train", "clip_grad_norm", "> 0 or none", clip)
        check(self.engine in ("avalanche", "device"), "train", "engine", "avalanche or device", self.engine)
        check(self.precision in ("fp32", "bf16"), "train", "precision", "fp32 or bf16", self.precision)
        device_only = self.engine == "device" or (self.precision == "fp32" and not self.channels_last)
        options = (self.precision, self.channels_last)
        check(device_only, "train", "precision/channels_last", "fp32/false unless engine is device", options)


class Scenario:
    """The Avalanche experiences of a run's tasks, built on first use.

    ``clbench.loop.build_scenario`` needs Avalanche (about 7 s of CPU and 960 MB of RSS to
    import), which only the Avalanche engine and its plugins use: the device engine and the
    CLI never pay for it. All tasks' experiences are built at once, as the runner used to.
    """

    def __init__(self, tasks: Sequence[TaskData]) -> None:
        self._tasks = list(tasks)
        self._exps: dict[str, dict[int, Any]] | None = None

    def get(self, split: str, index: int) -> Any:
        """Task ``index``'s (from 1) experience of ``split``; None where the task has none."""
        if self._exps is None:
            from clbench.loop import build_scenario

            self._exps = build_scenario(self._tasks)
        return self._exps[split].get(index)


@dataclass
class Task:
    """A task as a strategy sees it: 1-based index, its data and its Avalanche experiences
    (``valid_exp``/``test_exp`` are None for verification and triplet tasks, scored by clbench
    itself). The runner passes a :class:`Scenario` instead of the experiences, so they are
    built only if the Avalanche loop runs; read them through :meth:`experience`."""

    index: int
    data: TaskData
    train_exp: Any = None
    valid_exp: Any = None
    test_exp: Any = None
    scenario: Scenario | None = field(default=None, repr=False, compare=False)

    def experience(self, split: str) -> Any:
        """The Avalanche experience of ``split`` (``"train"``, ``"valid"``, ``"test"``)."""
        given = getattr(self, f"{split}_exp")
        if given is None and self.scenario is not None:
            return self.scenario.get(split, self.index)
        return given

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def kind(self) -> str:
        return self.data.kind

    def criterion(self) -> nn.Module:
        """The training loss: cross-entropy, the cosine-margin loss of verification tasks, or the
        triplet loss of triplet tasks (on ``(3B, D)`` embeddings; the target is ignored)."""
        from torch import nn

        from clbench.nn.heads import MarginCrossEntropy

        if self.kind == "triplet":
            from clbench.triplets import TripletCriterion

            return TripletCriterion()
        return MarginCrossEntropy() if self.kind == "verification" else nn.CrossEntropyLoss()


@dataclass
class StrategyContext:
    """What the runner hands a strategy: device, backbone factory, progress settings."""

    device: torch.device
    backbone_factory: Callable[[float], nn.Module]
    num_tasks: int
    benchmark: str = ""
    run_dir: Path | None = None
    goals_dir: Path | None = None  # runs/goals: where the runner keeps keyed goal files (clbench.goals)
    quiet: bool = True
    phase_seconds: dict[str, float] = field(default_factory=dict)
    journal: PhaseJournal | None = None  # phase checkpoints of the running task (set by the runner)


def check_strategy_class(cls: type) -> None:
    """What registration checks of a strategy class, before anything runs.

    Raises:
        TypeError: ``cls`` is not a :class:`Strategy` subclass, or its ``Config`` not a dataclass.
        ValueError: an unknown ``kind``, or ``own_defaults`` naming no Config field.
    """
    import dataclasses

    from clbench.accounting import check_kind

    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"registered {cls!r}, which is not a clbench.api.Strategy subclass")
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"strategy {cls.name!r}: its Config {cls.Config!r} is not a dataclass")
    check_kind(cls.kind, cls.name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(cls.own_defaults) - fields)
    if unknown:
        raise ValueError(f"strategy {cls.name!r}: own_defaults names {unknown}, not fields of its Config")


class Strategy:
    """Base class of every continual-learning strategy.

    Subclasses set ``name`` (registry key, snake_case), ``description`` (one line) and a
    ``Config`` dataclass; the CLI derives ``--<name>.<field>`` flags from it. They declare, for
    tables and the contract test kit (:mod:`clbench.testing`):

    * ``kind``: how its model size is counted, one of :data:`clbench.accounting.KINDS`
      (``size_note`` replaces the kind's wording with the strategy's own);
    * ``zero_forgetting``: True when every finished task keeps its accuracy exactly;
    * ``own_defaults``: Config fields a benchmark's catch-all ``"*"`` recipe entry must leave
      alone (:mod:`clbench.recipes`).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = TrainConfig
    kind: ClassVar[str] = "other"
    size_note: ClassVar[str] = ""
    zero_forgetting: ClassVar[bool] = False
    own_defaults: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, context: StrategyContext) -> None:
        from clbench.network import check_network

        self.config = config
        self.context = context
        model = self.build_model()
        check_network(model, self.name)
        self.model = model.to(context.device)

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        """The network trained over all tasks (default: shared backbone + a head per task)."""
        from clbench.nn.multihead import MultiHeadNet

        return MultiHeadNet(self.context.backbone_factory)

    def validate(self, tasks: Sequence[Task]) -> None:
        """Check, before anything is written, that the strategy can run on ``tasks``
        (e.g. that every task has an accuracy goal); raise a ClbenchError if not."""

    # ------------------------------------------------------------- lifecycle
    def learn_task(self, task: Task) -> None:
        self.before_task(task)
        self.pick(task)
        self.phase("train", self.train, task)
        while self.phase("grow", self.grow, task):
            self.phase("train", self.train, task)
        self.phase("compact", self.compact, task)
        self.after_task(task)

    def before_task(self, task: Task) -> None:
        self.model.begin_task(task.index, task.num_classes, head=task.data.head)

    def pick(self, task: Task) -> None:
        """Choose which earlier tasks' weights the new task may use (no-op by default)."""

    def grow(self, task: Task) -> bool:
        """Widen the network when the task missed its goal; return True to train again."""
        return False

    def compact(self, task: Task) -> None:
        """Free capacity after training, e.g. by pruning the task's weights (no-op by default)."""

    def after_task(self, task: Task) -> None:
        self.model.finish_task()

    def task_records(self, task: Task) -> dict[str, float]:
        """Per-task numbers for the results table besides accuracy (model size by default)."""
        params = sum(p.numel() for p in self.model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in self.model.buffers())
        size = sum(p.numel() * p.element_size() for p in self.model.parameters()) + buffers
        return {"parameters": float(params), "model_size_mb": size / 2**20}

    # ----------------------------------------------------------- checkpoints
    def extra_state(self) -> dict[str, Any]:
        """State besides the model that must survive a resume (override with ``load_extra_state``)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def phase_state(self) -> dict[str, Any]:
        """Attributes a strategy sets inside a task and reads in a later phase of the same task
        (e.g. the accuracy before pruning that decides growth): saved with every phase
        checkpoint, restored by :meth:`load_phase_state` when a resumed task replays."""
        return {}

    def load_phase_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`phase_state` returned."""

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "extra": self.extra_state()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint taken after a task: the model's own extra state rebuilds
        its per-task structure (heads, masks, widths) before the tensors load."""
        self.model.load_state_dict(state["model"])
        self.model.to(self.context.device)
        self.load_extra_state(state["extra"])

    # -------------------------------------------------------------- training
    def train(self, task: Task, **overrides: Any) -> FitResult:
        """Train on ``task`` with the config's schedule (``overrides`` replace config fields)."""
        import torch

        cfg = self.config
        get = overrides.get
        optimizer = self.make_optimizer(get("lr", cfg.lr))
        milestones = list(get("lr_milestones", cfg.lr_milestones))
        schedulers = [torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, get("lr_gamma", cfg.lr_gamma))]
        return self.fit(task, optimizer, schedulers, get("epochs", cfg.epochs), phase=get("phase", "train"))

    def fit(self, task: Task, optimizer: Any, schedulers: Sequence[Any], epochs: int, phase: str) -> FitResult:
        """Run ``epochs`` of the config's engine (Avalanche's training loop, or the device
        engine); schedulers step once per epoch."""
        from clbench.engine import engine_of

        # The device engine is called directly: clbench.loop would import Avalanche.
        if engine_of(self.config) == "device":
            from clbench.engine import fit_on_device as fit
        else:
            from clbench.loop import fit
        return fit(
            self,
            task,
            optimizer=optimizer,
            schedulers=schedulers,
            criterion=task.criterion(),
            epochs=epochs,
            batch_size=self.config.batch_size,
            phase=phase,
        )

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """A fresh optimizer per phase, so no momentum carries over from an earlier task."""
        import torch

        cfg = self.config
        return torch.optim.SGD(
            list(self.model.trainable_parameters()),
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )

    def avalanche_plugins(self) -> list[Any]:
        """Avalanche ``SupervisedPlugin`` instances added to every training loop of this strategy
        (e.g. ``EWCPlugin``); keep them on ``self`` so their state spans tasks."""
        return []

    # Loop callbacks (Avalanche plugin events), no-ops by default. Both engines call them in
    # this order every training iteration: before_iteration, forward, training_loss, backward,
    # after_backward, clip_gradients, step, after_update. ``loop`` is typed Any: it is either
    # engine's object (clbench.loop.Loop or clbench.engine.StepInfo), and the engines sit below.
    def before_iteration(self, loop: Any) -> None:
        """At the start of every training iteration, before the forward pass: per-batch
        schedules (e.g. HAT's annealing of its gate temperature). ``loop`` is Avalanche's
        ``SupervisedTemplate`` or the device engine's ``StepInfo`` (``task``, ``phase``,
        ``epoch``, ``iteration``: iterations finished in this phase)."""

    def training_loss(self, loss: Tensor, output: Tensor, target: Tensor, loop: Any) -> Tensor:
        """The loss to back-propagate and log for this batch: ``loss`` (a scalar tensor) plus
        any term the strategy adds (a regulariser). ``loss`` is the criterion's on the model's
        ``output`` (classification (B, C); triplet (3B, D)) and ``target`` (B,); on the Avalanche
        engine it already includes what Avalanche plugins (EWC, SI, LwF) added, since this hook
        runs after them, so add to it rather than rescale it. Runs under the phase's autocast on
        the device engine. Default: ``loss`` unchanged."""
        return loss

    def after_backward(self, loop: Any) -> None:
        """Between ``backward()`` and ``step()``: gate gradients, add manual weight decay."""

    def updated_parameters(self) -> list[nn.Parameter]:
        """The parameters this task's optimizers update (what :meth:`clip_gradients` caps):
        ``model.trainable_parameters()`` by default."""
        return list(self.model.trainable_parameters())

    def clip_gradients(self) -> None:
        """Cap the gradient norm of the parameters the optimizers update when the config asks
        for it (after the gate, so only what may train counts). Not every gradient: an earlier
        task's head is in no later optimizer, so nothing clears its gradient, and LwF's
        distillation adds to it every step; counted, it shrank every step's update."""
        limit = getattr(self.config, "clip_grad_norm", None)
        if limit is not None:
            import torch

            params = [p for p in self.updated_parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, limit)

    def after_update(self, loop: Any) -> None:
        """After ``step()``: re-apply masks, advance pruning schedules."""

    # ------------------------------------------------------------ evaluation
    def evaluate(self, tasks: Sequence[Task], split: str = "test") -> dict[int, float]:
        """The primary metric (accuracy) per task index on ``split`` (``"test"`` or ``"valid"``)."""
        return {index: scores["accuracy"] for index, scores in self.evaluate_all(tasks, split).items()}

    def evaluate_all(self, tasks: Sequence[Task], split: str = "test") -> dict[int, dict[str, float]]:
        """Every metric per task: classification through Avalanche's evaluator, verification
        by clbench's pair scoring (accuracy and its std over folds), triplet tasks by triplet
        accuracy of their embedding."""
        from clbench import triplets, verification
        from clbench.engine import engine_of

        if engine_of(self.config) == "device":
            from clbench.engine import evaluate_on_device as evaluate
        else:
            from clbench.loop import evaluate
        batch = self.config.eval_batch_size
        device = self.context.device
        self.evaluation_layout()
        classified = [t for t in tasks if t.kind == "classification"]
        scores = {i: {"accuracy": acc} for i, acc in evaluate(self, classified, split, batch_size=batch).items()}
        for task in tasks:
            if task.kind == "verification":
                pairs = getattr(task.data, split)
                scores[task.index] = verification.evaluate(self.model, task.index, pairs, device, batch)
            elif task.kind == "triplet":
                scores[task.index] = triplets.evaluate(self.model, task.index, getattr(task.data, split), device, batch)
        return scores

    def evaluation_layout(self) -> None:
        """Put the model's 4-D tensors in one memory format before any evaluation: channels-last
        when the config trains in it, contiguous otherwise. Training leaves them channels-last
        while a restored snapshot is contiguous, and the two layouts sum convolutions in another
        order (fp32 outputs ~4e-7 apart), so a finished task must always be scored in the same one."""
        import torch

        channels_last = bool(getattr(self.config, "channels_last", False))
        self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    # ---------------------------------------------------------------- phases
    def phase(self, name: str, fn: Callable[..., Any], *args: Any, timed: bool = True) -> Any:
        """Run ``fn(*args)`` as one phase of the task: timed under ``name`` (unless ``timed`` is
        False) and, when the runner keeps a phase journal, checkpointed once it returns. When a
        resumed task replays a phase that finished before the interruption, ``fn`` is not run:
        the saved state is loaded and the saved return value returned (see clbench.journal).
        A phase must not share live objects (an optimizer, a data iterator) with later phases."""
        journal = self.context.journal
        run = (lambda: self.timed(name, fn, *args)) if timed else (lambda: fn(*args))
        if journal is None:
            return run()
        ordinal, saved = journal.begin(name)
        if saved is not None:
            self.load_phase(saved)
            journal.skip(ordinal, saved)
            return saved["result"]
        try:
            result = run()
        except BaseException:
            journal.abandon(ordinal)
            raise
        from clbench.checkpoint import rng_state

        journal.end(
            ordinal,
            {
                "phase": name,
                "result": result,
                "strategy": self.checkpoint_state(),
                "phase_state": self.phase_state(),
                "rng": rng_state(),
                "phase_seconds": dict(self.context.phase_seconds),
            },
        )
        return result

    def load_phase(self, saved: dict[str, Any]) -> None:
        """Put the strategy where it was when the saved phase ended."""
        from clbench.checkpoint import set_rng_state

        self.load_checkpoint_state(saved["strategy"])
        self.load_phase_state(saved["phase_state"])
        set_rng_state(saved["rng"])
        self.context.phase_seconds.clear()
        self.context.phase_seconds.update(saved["phase_seconds"])

    # --------------------------------------------------------------- helpers
    def timed(self, phase: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            seconds = self.context.phase_seconds
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start
