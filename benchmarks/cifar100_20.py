"""CIFAR-100 as 20 tasks, one per super-class, on the CIFAR VGG16-BN (the CPG paper's experiment 1).

Cite: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR-100);
the 20-task split, recipe and backbone of ivclab/CPG ``experiment1/`` (ALGORITHMS.md §1.9):
tasks are the 20 super-classes in alphabetical order (aquatic_mammals … vehicles_2), 5 fine
classes each, read from the cifar2png ``cifar100superclass`` folder tree the original code reads
with ``ImageFolder``, or from torchvision's official ``cifar-100-python`` files.

Per-task normalisation (mean/std of the task's training images) and RandomCrop(32, padding 4) +
horizontal flip, as the original. Deviation: a class-stratified validation split is carved from
each task's training images for goal checks and model choices; the original used the test set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # the validation carve never depends on the run's seed


@dataclass(frozen=True)
class Cifar100_20Config(BenchmarkConfig):
    NOT_DATA: ClassVar[tuple[str, ...]] = ("data_root", "download")  # where/how the data is read (clbench.goals)
    source: str = "auto"  # "superclass" (cifar2png tree), "python" (torchvision files) or "auto"
    download: bool = False  # let torchvision download the official files (needs internet)
    valid_fraction: float = 0.1  # per class, of the 500 training images (clbench: the original validated on test)
    num_tasks: int | None = None  # only the first N super-classes (quick runs); None: all 20
    train_limit: int | None = None  # at most N training images per task, class-stratified (quick CPU runs)
    # 1.0 is the paper's 64 … 512 convs and 4096-wide FC layers. Part of the goals' data key
    # (clbench.goals.data_key), so goals measured at one width are never used at another.
    backbone_width: float = 1.0  # VGG16-BN channel factor (paper 1.0; the cpu recipe 0.25)

    def __post_init__(self) -> None:
        section = "cifar100_20"
        check(
            self.source in ("auto", "superclass", "python"),
            section,
            "source",
            "auto, superclass or python",
            self.source,
        )
        check(0 < self.valid_fraction < 1, section, "valid_fraction", "in (0, 1)", self.valid_fraction)
        check(self.num_tasks is None or 1 <= self.num_tasks <= 20, section, "num_tasks", "in 1..20", self.num_tasks)
        check(self.train_limit is None or self.train_limit >= 10, section, "train_limit", ">= 10", self.train_limit)
        # Below 1/64 the first conv would have int(64 * width) = 0 channels.
        check(1 / 64 <= self.backbone_width <= 4, section, "backbone_width", "in [0.015625, 4]", self.backbone_width)


# CPU-sized schedules with the original structure; `paper` is every strategy's own default.
_SMALL_PACKING = {
    "prune_stages": (0.5, 0.8),
    "prune_epochs": 1,
    "prune_interval": 1,
    "prune_frequency": 5,
    "min_train_accuracy": 0.0,
}

# `fast`: the device engine on one GPU (docs/speed.md). Aim: CPG >= 79 % mean test accuracy
# (paper 80.9) with all 20 tasks in <= 10 minutes on one H100 (~15,000 img/s). NOT VALIDATED:
# this environment has no GPU, so neither the wall time nor the accuracy has been measured.
# Budget: 10 min x 15,000 img/s = 9 M images; 2,250 training images per task, 20 tasks, so
# <= 200 epochs per task with nothing else; the values below plan ~100 (finetune 60, at most
# 30 of pruning, at most 10 of retraining), leaving room for growth restarts (a goal miss
# reruns the finetune on a net 1.5x the size) and evaluation.
_FAST_COMMON: dict[str, Any] = {
    "engine": "device",  # data, augmentation and metrics on the GPU (clbench.engine)
    "precision": "bf16",  # bf16 autocast: tensor-core convolutions; weights and optimizer stay fp32
    "channels_last": True,  # the memory format tensor-core convolutions want
    # 4x the paper's 32: keeps the GPU busy on 32x32 images, still 18 steps per epoch on 2,250
    # images (256 would leave 9 and hurt a from-scratch task 1 more than it speeds it up).
    "batch_size": 128,
    "eval_batch_size": 500,  # inference only; 500 = one task's test split per batch
    "lr": 4e-2,  # linear scaling with the batch: paper 1e-2 at 32
    "epochs": 60,  # paper 100; CPG's later tasks start from picked earlier weights and converge sooner
    "lr_milestones": (30, 48),  # the paper's 50 and 80 of 100, scaled to 60
}
_FAST_PACKING: dict[str, Any] = {
    # Fewer, coarser stages (paper 0.1 ... 0.9, 0.95 in ten runs of 20 epochs): the early stages
    # rarely cost accuracy, and the loop stops at the first stage that no longer fits the
    # training data (train accuracy <= min_train_accuracy) anyway.
    "prune_stages": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95),
    "prune_epochs": 5,  # paper 20; the ramp is 2 of them, the rest recover at the held sparsity
    "prune_interval": 2,  # paper 4 of 20: the ramp keeps its share (40 %) of a shorter stage
    "prune_frequency": 3,  # iterations between mask updates: ~6 updates per ramp epoch (paper ~7)
    "prune_lr": 4e-3,  # paper 1e-3 at batch 32, scaled like lr
    "lr_mask_decay_epoch": 30,  # paper 50 of 100 -> 30 of 60
    "lr_mask_stop_epoch": 42,  # paper 70 of 100 -> 42 of 60
}

_AVALANCHE_LOOP: dict[str, Any] = {"engine": "avalanche", "precision": "fp32", "channels_last": False}

# `cpu`: the whole table (nine strategies, all 20 tasks, all their images, one seed) in <= 2.5 h of
# a 2-core CPU, two runs side by side at one thread each (issue 15; baselines/results/
# cifar100_20-cpu.md has the measured wall times). Measured here: VGG16-BN at width 0.25 trains
# at ~177 img/s per core at batch 32 and ~195 at batch 128 (python -m clbench.throughput), so the
# table has ~2.6 M training images: ~58 passes over the 20 tasks' 45,000 training images, for all
# nine strategies together. The network is narrowed (backbone_width in recipe_config below); the
# data and the protocol are not. Every structural element of the paper recipe stays: goals, growth
# (x1.5 in weights, sqrt on channels), staged gradual pruning with the ratio choice, retrain and
# the CIFAR capacity rule.
_CPU_COMMON: dict[str, Any] = {
    # Paper batch and lr: batch 32 costs only ~10 % throughput against 128 here and gives 4x the
    # steps per epoch, which a 2-epoch schedule needs more than the speed.
    "batch_size": 32,
    "lr": 1e-2,
    # Paper 100 epochs. 2 per task keeps the table in budget (measured: 4 epochs projected 3.3 h of
    # the 2.5 and 3 about 2.7 h, from per-task times; docs/algorithms.md deviation 17). In passes over
    # a task's 2,250 training images at width 1 (~18 s each with both lanes busy): individual,
    # finetune, EWC, SI and joint ~2, LwF ~4 (its teacher), PackNet ~3, CPG ~6 at x1.5 width
    # (2 + 3 stages + 1 retrain), PAE ~5 at up to x2 plus ~2 for its goal sequence; evaluating the
    # accuracy matrix (test and validation splits of every learned task) adds ~1-2 per run.
    "epochs": 2,
    # The paper drops x0.1 at 50 % and 80 % of its epochs: here one drop, after epoch 1.
    "lr_milestones": (1,),
    "eval_batch_size": 500,  # inference only: one task's test split per batch
    # clbench's own loop: ~12 % less wall than Avalanche's for the same accuracy here (individual,
    # task 1, one epoch: 43.6 s against 50.1 s, both 35.0 %). EWC, SI, LwF and joint keep theirs.
    "engine": "device",
}
_CPU_PACKING: dict[str, Any] = {
    # Paper: ten stages 0.1 ... 0.95 of 20 epochs each. Three stages of one epoch each, ramp over
    # the whole epoch; the ratio choice still keeps the largest stage that meets the goal.
    "prune_stages": (0.5, 0.8, 0.9),
    "prune_epochs": 1,
    "prune_interval": 1,
    # Paper 0.95: after 4 epochs (the first cpu recipe) no task fit 95 % of its training images,
    # so the paper's train-accuracy stop would end every task's pruning at stage 0 and leave no
    # free weights for the next. 0 leaves the choice to the goal check alone, as `small` does.
    "min_train_accuracy": 0.0,
    # Paper 0 (CIFAR main L478: val >= goal). A task's validation split has 250 images (one image
    # = 0.4 points, a binomial standard error of ~3 points at 45 %), and after 4 epochs (the first
    # cpu recipe) two trainings of one network differed by about a point: with no margin, CPG's
    # task 1 (the individual model's own network) missed its goal by 0.8 points and grew to the
    # maximum width on noise alone (measured, 2-task calibration; not re-measured at 2 epochs).
    # 2 points, as upstream's margin for the facial and ImageNet mains (``accuracy − goal >
    # −margin``), for the grow decision and the ratio choice alike.
    "goal_margin": 0.02,
    # Paper: x0.2 after 50 of 100 epochs, stop after 70. x0.2 after epoch 1 of 2; a stop at 70 % has
    # no whole epoch, so the picks learn in both (stop after epoch 2, the end).
    "lr_mask_decay_epoch": 1,
    "lr_mask_stop_epoch": 2,
}


class Cifar100_20(Benchmark):
    """CIFAR-100 (re-split) as 20 super-class tasks of 5 classes on VGG16-BN (CPG experiment 1)."""

    name = "cifar100_20"
    Config = Cifar100_20Config
    default_recipe = "paper"
    recipe_notes: ClassVar[dict[str, str]] = {
        "paper": "the CPG paper's schedule (ALGORITHMS.md), 20 tasks of 2,500 images; GPU, hours "
        "(not measured by clbench)",
        "small": "CPU smoke run: 1 epoch, short pruning; cost scales with --cifar100_20.num-tasks and "
        "--cifar100_20.train-limit (not measured)",
        "fast": "GPU: the device engine, bf16, channels_last and halved schedules (docs/speed.md)",
        "cpu": "the CPU table: VGG16-BN at width 0.25, all 20 tasks and images, 2-epoch schedules; "
        "measured 2.41 h for eight of the nine strategies on 2 cores, EWC's chosen lambda 1,967 s beside one other "
        "run (baselines/results/cifar100_20-cpu.md)",
    }
    recipe_config: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"backbone_width": 0.25}}
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {},
        "small": {
            "*": {"epochs": 1, "lr_milestones": (), "batch_size": 64, "eval_batch_size": 200},
            "packnet": {"post_prune_epochs": 1, "post_prune_milestones": ()},
            "pae": _SMALL_PACKING,
            "cpg": {**_SMALL_PACKING, "retrain_epochs": 1, "retrain_patience": 1},
        },
        "cpu": {
            "*": _CPU_COMMON,
            # Paper: 30 epochs at 1e-3 after the one-shot prune (x0.1 at 25); 1 here, no drop.
            "packnet": {"post_prune_epochs": 1, "post_prune_lr": 1e-3, "post_prune_milestones": ()},
            # Goals: the paper takes the best of 5 finetune-previous sequences per task; one here
            # (each costs as much as a finetune run). Deviation, docs/algorithms.md.
            "pae": {**_CPU_PACKING, "goal_sequences": 1},
            # Retrain: paper <= 30 epochs, patience 5, keeping only an improvement; 1 epoch here
            # (the 4-epoch attempt's second retrain epoch cost ~1,000 s over 20 tasks).
            # Measured (the table's ablation): this 1-epoch retrain costs CPG about 10 points, since it
            # restarts the pick mask, which one epoch does not relearn; kept as a structural element.
            "cpg": {**_CPU_PACKING, "retrain_epochs": 1, "retrain_patience": 1},
            # EWC: chosen on this benchmark's validation split among 1, 10 and 30 (mean final val
            # accuracy 26.3 / 23.0 / 25.4 %; baselines/results/cifar100_20-cpu.md). Digits' 100
            # diverged at task 19: the penalty's curvature passed SGD's stability limit (ewc_stiffness).
            "ewc": {"ewc_lambda": 1.0, **_AVALANCHE_LOOP},
            # Not tuned on CIFAR (no budget): the value digits chose on its validation split.
            "si": {"si_lambda": 1e4, **_AVALANCHE_LOOP},
            # The joint upper bound trains once, on all 20 tasks, at the last task; a row per step
            # would cost 1 + 2 + ... + 20 = 210 task-passes per epoch. Earlier rows show untrained
            # heads, so its forgetting and BWT mean nothing.
            "joint_mixed": {"train_at": "last", **_AVALANCHE_LOOP},
            **{name: _AVALANCHE_LOOP for name in ("lwf", "joint_alternating", "joint_dynamic")},
        },
        "fast": {
            "*": _FAST_COMMON,
            # Post-prune training halved like the finetune (paper 30 epochs, x0.1 at 25), lr scaled.
            "packnet": {"post_prune_epochs": 15, "post_prune_lr": 4e-3, "post_prune_milestones": (12,)},
            "pae": _FAST_PACKING,
            # Retrain: paper <= 30 epochs with patience 5; it keeps only an improvement, which
            # comes early if at all. Adam's lr_mask (5e-4, 1e-4) is left as in the paper: Adam's
            # step size does not scale with the batch the way SGD's does.
            "cpg": {**_FAST_PACKING, "retrain_epochs": 10, "retrain_patience": 3, "retrain_lr": 4e-3},
            # Avalanche's plugins (EWC, SI, LwF) and the joint trainers' own loops do not run on
            # the device engine: they keep the larger batch and shorter schedule only.
            **{
                name: _AVALANCHE_LOOP
                for name in ("ewc", "si", "lwf", "joint_alternating", "joint_mixed", "joint_dynamic")
            },
        },
    }

    def check_data(self) -> None:
        """Refuse a missing ``--data-root`` (or one that does not exist) before any heavy import."""
        from clbench.datasets.errors import DataError

        cfg: Cifar100_20Config = self.config  # type: ignore[assignment]
        if cfg.download:
            return
        if cfg.data_root is None:
            raise DataError(
                "cifar100_20 needs --data-root DIR: a cifar2png super-class tree (DIR/train/<superclass>/<class>/"
                "*.png and DIR/test/...) or the folder holding torchvision's cifar-100-python/"
            )
        root = Path(cfg.data_root).expanduser()
        # Any part of a tree (also the nested cifar100/ folder the shared archives extract to):
        # the loader then says what of it is missing.
        tree = any((root / part).is_dir() for part in ("train", "test", "cifar100/train", "cifar100/test"))
        if not tree and not (root / "cifar-100-python").is_dir():
            raise DataError(
                f"no CIFAR-100 data under {root} (--data-root): expected {root}/train/<superclass>/<class>/*.png "
                f"and {root}/test/... (cifar2png), or {root}/cifar-100-python/ (torchvision; --cifar100_20.download "
                "fetches it)"
            )

    def load_tasks(self) -> list[TaskData]:
        import numpy as np
        from torchvision.transforms import v2

        from clbench.datasets.arrays import ArrayDataset, Augment, channel_stats, split_validation, stratified_subset
        from clbench.datasets.errors import DataError

        cfg: Cifar100_20Config = self.config  # type: ignore[assignment]
        if cfg.data_root is None and not cfg.download:
            raise DataError(
                "cifar100_20 needs --data-root DIR: a cifar2png super-class tree (DIR/train/<superclass>/<class>/"
                "*.png and DIR/test/...) or the folder holding torchvision's cifar-100-python/"
            )
        root = Path(cfg.data_root or ".").expanduser()
        train, test = self._read(root)
        for split, data in (("train", train), ("test", test)):
            for name, (images, _, _) in data.items():
                if tuple(images.shape[1:]) != (32, 32, 3):
                    raise DataError(
                        f"CIFAR-100 images are 32x32 RGB, but {split}/{name} under {root} holds "
                        f"{images.shape[2]}x{images.shape[1]} images with {images.shape[3]} channel(s)"
                    )
        names = list(train)[: cfg.num_tasks]
        augment = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
        on_device = Augment(crop_padding=4, hflip=True)  # the same, for the device engine
        tasks = []
        for name in names:
            images, labels, classes = train[name]
            keep, valid = split_validation(labels, cfg.valid_fraction, SPLIT_SEED)
            if cfg.train_limit is not None:
                keep = keep[stratified_subset(labels[keep], cfg.train_limit, SPLIT_SEED)]
            train_images = np.asarray(images[keep])
            mean, std = channel_stats(train_images)  # per-task normalisation, as the original
            test_images, test_labels, _ = test[name]
            tasks.append(
                TaskData(
                    name=name,
                    class_names=list(classes),
                    train=ArrayDataset(train_images, labels[keep], augment, mean, std, augment=on_device),
                    valid=ArrayDataset(np.asarray(images[valid]), labels[valid], None, mean, std),
                    test=ArrayDataset(test_images, test_labels, None, mean, std),
                )
            )
        return tasks

    def _read(self, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        from clbench.datasets.errors import DataError
        from clbench.datasets.folders import load_cifar100_python, load_superclass_split

        cfg: Cifar100_20Config = self.config  # type: ignore[assignment]
        tree = (root / "train").is_dir() or (root / "cifar100" / "train").is_dir()
        if cfg.source == "superclass" or (cfg.source == "auto" and tree):
            # A tree that is there but broken is reported as such, not hidden by the fallback.
            return load_superclass_split(root, "train"), load_superclass_split(root, "test")
        try:
            return (
                load_cifar100_python(root, "train", download=cfg.download),
                load_cifar100_python(root, "test", download=cfg.download),
            )
        except DataError as exc:
            if cfg.source == "python":
                raise
            raise DataError(
                f"no CIFAR-100 data under {root}: neither the cifar2png super-class tree "
                f"({root}/train/<superclass>/<class>/*.png, {root}/test/...) nor torchvision's "
                f"cifar-100-python/ files were found ({exc})"
            ) from None

    def backbone(self, width: float = 1.0) -> nn.Module:
        from clbench.nn.backbones import vgg16_bn_cifar

        cfg: Cifar100_20Config = self.config  # type: ignore[assignment]
        return vgg16_bn_cifar(cfg.backbone_width * width)
