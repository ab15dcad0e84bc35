"""facial4_mini: the four facial tasks of the CPG/PAE papers on small public data at 64×64.

Face verification → gender → expression → age (8 Adience groups), the order of the CPG facial
experiments (ALGORITHMS.md §1.9, §5.3), on the data in ``../shared/data`` (its README):

* **face verification**: LFW (Huang et al., 2007). LFW has no identity-disjoint training set,
  so the embedding is trained on LFW identities in the *unrestricted* protocol: every identity
  with ≥ ``min_identity_images`` images except those in the validation and test folds of
  ``pairs.txt``. Validation = the pairs of ``valid_fold`` (threshold chosen on them), test = the
  pairs of ``test_fold`` with the validation fold's threshold. This is the data README's
  "cheaper documented variant": one held-out fold instead of ten embeddings (no std).
* **gender** and **age**: UTKFace (Zhang et al., CVPR 2017), labels from the file names, age binned
  into the eight Adience groups (nearest group; clbench.datasets.faces); one class-stratified
  train/valid/test partition of the images shared by both tasks.
* **expression**: FER2013 (Goodfellow et al., 2013), 7 emotions; train = Training,
  valid = PublicTest, test = PrivateTest.
* **expression similarity** (optional fifth task, ``expression_similarity = True``; off by
  default, so the four-task benchmark is unchanged): the compact expression embedding of
  Vemulapalli & Agarwala (CVPR 2019), a 16-d L2-normalised embedding trained with a triplet loss
  and scored by triplet accuracy (task kind ``"triplet"``, :mod:`clbench.triplets`). **FER2013
  emotion triplets stand in for the FEC dataset**, which is not in the shared data: anchor and
  positive share an emotion, the negative has another (anchor emotions drawn uniformly), built
  on the expression task's images (same splits and limits, the training flip applied per image).
  This measures emotion-level similarity, coarser than FEC's human within-category judgements.
  ``train_triplets`` fixed triplets train it (default: one per training image); validation and
  test score ``eval_triplets`` triplets each (at most ``eval_limit``).

Every image is decoded once into the uint8 cache as 64×64 RGB (greyscale replicated), flipped
horizontally for training and normalised with mean = std = 0.5 (the original's face recipe).
Backbone: the 20-layer SphereFace CNN with PReLU at 64×64 input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

SPLIT_SEED = 0
IMAGE_SIZE = 64
FACE_MEAN = (0.5, 0.5, 0.5)  # CPG face recipe: mean/std 0.5 (ALGORITHMS.md §1.9)
FACE_STD = (0.5, 0.5, 0.5)

LAYOUT = """\
  {root}/
    lfw/<Person_Name>/<Person_Name>_0001.jpg     (lfw-mini64.tgz)
    lfw-pairs.txt                                (or pairs.txt)
    UTKFace/<age>_<gender>_<race>_<date>.jpg.chip.jpg   (utkface-mini64.tar.gz)
    fer2013/{{train,val,test}}/<emotion>/*.jpg     (fer2013-images.tar.gz)"""


@dataclass(frozen=True)
class Facial4MiniConfig(BenchmarkConfig):
    test_fold: int = 10  # LFW fold whose pairs are the verification test
    valid_fold: int = 9  # LFW fold whose pairs validate the embedding and choose the test threshold
    min_identity_images: int = 2  # data README: 1,505 identities / 7,829 images for fold 10
    utk_test_fraction: float = 0.2  # UTKFace has no official split
    utk_valid_fraction: float = 0.1  # of what remains after the test carve
    train_limit: int | None = None  # at most N training images per task, class-stratified (quick runs)
    eval_limit: int | None = None  # at most N validation/test images (classification), pairs or triplets per task
    expression_similarity: bool = False  # add a fifth task: FER2013 emotion triplets (a stand-in for FEC)
    train_triplets: int | None = None  # expression_similarity training triplets (None: one per training image)
    eval_triplets: int = 2000  # expression_similarity validation and test triplets each

    def __post_init__(self) -> None:
        s = "facial4_mini"
        check(1 <= self.test_fold <= 10, s, "test_fold", "in 1..10", self.test_fold)
        check(1 <= self.valid_fold <= 10 and self.valid_fold != self.test_fold, s, "valid_fold",
              "in 1..10 and not the test fold", self.valid_fold)  # fmt: skip
        check(self.min_identity_images >= 2, s, "min_identity_images", ">= 2", self.min_identity_images)
        check(0 < self.utk_test_fraction < 1, s, "utk_test_fraction", "in (0, 1)", self.utk_test_fraction)
        check(0 < self.utk_valid_fraction < 1, s, "utk_valid_fraction", "in (0, 1)", self.utk_valid_fraction)
        check(self.train_limit is None or self.train_limit >= 10, s, "train_limit", ">= 10", self.train_limit)
        check(self.eval_limit is None or self.eval_limit >= 10, s, "eval_limit", ">= 10", self.eval_limit)
        check(self.train_triplets is None or self.train_triplets >= 1, s, "train_triplets", ">= 1", self.train_triplets)
        check(self.eval_triplets >= 1, s, "eval_triplets", ">= 1", self.eval_triplets)


_SMALL_PACKING = {
    "prune_stages": (0.5, 0.8),
    "prune_epochs": 1,
    "prune_interval": 1,
    "prune_frequency": 1,
    "min_train_accuracy": 0.0,  # identity classification of few images per person stays near 0
    "allow_acc_loss": 0.02,
    "capacity_rule": False,  # the face main has no "must prune" reserve (CIFAR main only)
}


class Facial4Mini(Benchmark):
    """Face verification (LFW), gender and age (UTKFace), expression (FER2013) at 64×64 on CNN20."""

    name = "facial4_mini"
    Config = Facial4MiniConfig
    recipe_notes: ClassVar[dict[str, str]] = {
        "small": "CPU-sized: 2 epochs on the 64×64 faces in ../shared/data; use --facial4_mini.train-limit "
        "and --facial4_mini.eval-limit for minutes-long runs (not measured here)",
    }
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        # CPU-sized: a couple of epochs on capped data, the original structure otherwise.
        "small": {
            # From scratch and without BatchNorm (CNN20 has none; the papers start from a trained
            # face model) the later tasks' linear heads diverge within a few steps on raw
            # features, so this recipe caps the gradient norm (a clbench deviation).
            "*": {
                "epochs": 2,
                "lr": 0.01,
                "lr_milestones": (),
                "batch_size": 64,
                "eval_batch_size": 256,
                "clip_grad_norm": 5.0,
            },  # fmt: skip
            "packnet": {"post_prune_epochs": 1, "post_prune_lr": 0.01, "post_prune_milestones": ()},
            "pae": _SMALL_PACKING,
            "cpg": {**_SMALL_PACKING, "retrain_epochs": 1, "retrain_patience": 1, "lr_mask": 5e-3},
        },
    }
    default_recipe = "small"

    def check_data(self) -> None:
        """The data root is given and holds every folder (no image is read)."""
        from clbench.datasets.errors import DataError

        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        if cfg.data_root is None:
            raise DataError(
                "facial4_mini needs --data-root DIR (--verbose shows the expected layout)"
                f"\nExpected layout:\n{LAYOUT.format(root='DIR')}"
            )
        _check_layout(Path(cfg.data_root).expanduser())

    def load_tasks(self) -> list[TaskData]:
        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        self.check_data()
        root = Path(cfg.data_root or ".").expanduser()
        gender, age = self._utkface(root)
        expression = self._expression(root)
        tasks = [self._verification(root), gender, expression, age]
        if cfg.expression_similarity:
            tasks.append(self._expression_similarity(expression))
        return tasks

    def backbone(self, width: float = 1.0) -> nn.Module:
        from clbench.nn.backbones import spherenet20

        return spherenet20(width, input_size=IMAGE_SIZE)

    # ------------------------------------------------------------------ tasks
    def _verification(self, root: Path) -> TaskData:
        import numpy as np

        from clbench.datasets.arrays import ArrayDataset
        from clbench.datasets.cache import load_images
        from clbench.datasets.faces import lfw_training_set, load_lfw_pairs
        from clbench.verification import PairSplit

        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        pairs = load_lfw_pairs(root)
        people = lfw_training_set(pairs, cfg.test_fold, cfg.min_identity_images)
        held_out = pairs.identities(cfg.valid_fold)
        keep = [i for i, name in enumerate(people.class_names) if name not in held_out]
        relabel = {old: new for new, old in enumerate(keep)}
        rows = [j for j, label in enumerate(people.labels) if int(label) in relabel]
        rows = self._limit(rows, people.labels[rows], cfg.train_limit)
        paths = [people.paths[j] for j in rows]
        labels = np.asarray([relabel[int(people.labels[j])] for j in rows], dtype=np.int64)
        images = load_images(paths, (IMAGE_SIZE, IMAGE_SIZE), "RGB")

        def pair_split(folds: list[int], eval_fold: int, threshold_fold: int) -> PairSplit:
            index: dict[Path, int] = {}
            pair_rows, same, fold_ids = [], [], []
            for fold in folds:
                fold_pairs = list(pairs.fold(fold))
                if cfg.eval_limit is not None and len(fold_pairs) > cfg.eval_limit:
                    # Equal shares of matched and mismatched pairs (a fold lists matched first).
                    half = cfg.eval_limit // 2
                    fold_pairs = fold_pairs[:half] + fold_pairs[-half:]
                for p in fold_pairs:
                    pair_rows.append((index.setdefault(p.path_a, len(index)), index.setdefault(p.path_b, len(index))))
                    same.append(p.same)
                    fold_ids.append(fold)
            pair_images = load_images(list(index), (IMAGE_SIZE, IMAGE_SIZE), "RGB")
            dataset = ArrayDataset(pair_images, np.zeros(len(pair_images), dtype=np.int64), None, FACE_MEAN, FACE_STD)
            return PairSplit(dataset, np.asarray(pair_rows), np.asarray(same), np.asarray(fold_ids), [eval_fold],
                             {eval_fold: [threshold_fold]})  # fmt: skip

        # Validation chooses its threshold on itself; the test fold uses the validation fold's
        # threshold (LFW protocol: the threshold comes from pairs other than the scored ones).
        valid = pair_split([cfg.valid_fold], cfg.valid_fold, cfg.valid_fold)
        test = pair_split([cfg.valid_fold, cfg.test_fold], cfg.test_fold, cfg.valid_fold)
        return TaskData(
            name="face_verification",
            class_names=[people.class_names[i] for i in keep],
            train=ArrayDataset(images, labels, _flip(), FACE_MEAN, FACE_STD, augment=_flip_augment()),
            valid=valid,
            test=test,
            kind="verification",
        )

    def _utkface(self, root: Path) -> tuple[TaskData, TaskData]:

        from clbench.datasets.arrays import split_validation
        from clbench.datasets.cache import load_images
        from clbench.datasets.faces import load_utkface

        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        utk = load_utkface(root)
        images = load_images(utk.paths, (IMAGE_SIZE, IMAGE_SIZE), "RGB")
        # One partition for both tasks, stratified by age group (the finer label).
        age = utk.age_task()
        rest, test = split_validation(age.labels, cfg.utk_test_fraction, SPLIT_SEED)
        train_rel, valid_rel = split_validation(age.labels[rest], cfg.utk_valid_fraction, SPLIT_SEED)
        parts = {"train": rest[train_rel], "valid": rest[valid_rel], "test": test}
        gender = utk.gender_task()
        return (
            self._classification("gender", images, gender.labels, gender.class_names, parts),
            self._classification("age", images, age.labels, age.class_names, parts),
        )

    def _expression(self, root: Path) -> TaskData:
        import numpy as np

        from clbench.datasets.cache import load_images
        from clbench.datasets.folders import fer2013_files

        splits = {"train": "train", "valid": "val", "test": "test"}
        files = {name: fer2013_files(root, split) for name, split in splits.items()}
        images, labels, parts, start = [], [], {}, 0
        for name, f in files.items():
            images.append(load_images(f.paths, (IMAGE_SIZE, IMAGE_SIZE), "RGB"))
            labels.append(f.labels)
            parts[name] = np.arange(start, start + len(f.paths))
            start += len(f.paths)
        return self._classification(
            "expression", np.concatenate(images), np.concatenate(labels), files["train"].class_names, parts
        )

    def _expression_similarity(self, expression: TaskData) -> TaskData:
        """FER2013 emotion triplets over the expression task's images (a stand-in for FEC)."""
        from clbench.datasets.errors import DataError
        from clbench.triplets import StackedTriplets, TripletDataset, sample_label_triplets

        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        evaluated = cfg.eval_triplets if cfg.eval_limit is None else min(cfg.eval_triplets, cfg.eval_limit)
        trained = cfg.train_triplets if cfg.train_triplets is not None else len(expression.train)
        count = {"train": trained, "valid": evaluated, "test": evaluated}
        data: dict[str, Any] = {}
        # A seed per split, so the valid and test triplets do not repeat the same index pattern.
        for seed, split in enumerate(("train", "valid", "test"), start=SPLIT_SEED):
            images = getattr(expression, split)  # ArrayDatasets: train ones flip each image
            try:
                rows = sample_label_triplets(images.targets, count[split], seed)
            except ValueError as error:  # e.g. an eval_limit leaving one image per emotion
                raise DataError(f"expression_similarity: no {split} triplets from {len(images)} FER2013 images "
                                f"({error}); raise the image limits") from None  # fmt: skip
            triplets = TripletDataset(images, rows)
            data[split] = StackedTriplets(triplets) if split == "train" else triplets
        return TaskData(name="expression_similarity", class_names=list(expression.class_names), kind="triplet", **data)

    def _classification(
        self, name: str, images: np.ndarray, labels: np.ndarray, classes: list[str], parts: dict[str, np.ndarray]
    ) -> TaskData:
        import numpy as np

        from clbench.datasets.arrays import ArrayDataset

        cfg: Facial4MiniConfig = self.config  # type: ignore[assignment]
        limits = {"train": cfg.train_limit, "valid": cfg.eval_limit, "test": cfg.eval_limit}
        data = {}
        for split, rows in parts.items():
            rows = np.asarray(self._limit(list(rows), labels[rows], limits[split]), dtype=np.int64)
            transform, augment = (_flip(), _flip_augment()) if split == "train" else (None, None)
            data[split] = ArrayDataset(
                np.asarray(images[rows]), labels[rows], transform, FACE_MEAN, FACE_STD, augment=augment
            )
        return TaskData(name=name, class_names=list(classes), **data)

    @staticmethod
    def _limit(rows: list[int], labels: Any, limit: int | None) -> list[int]:
        """At most ``limit`` of ``rows``, class-stratified and deterministic (every task kind: the
        verification task's identities outnumber small limits, so the share per class is trimmed)."""
        from clbench.datasets.arrays import stratified_subset

        if limit is None or len(rows) <= limit:
            return list(rows)
        return [rows[i] for i in stratified_subset(labels, limit, SPLIT_SEED)]


def _flip_augment() -> Any:
    """The training flip, declared for the device engine (clbench.engine)."""
    from clbench.datasets.arrays import Augment

    return Augment(hflip=True)


def _flip() -> Any:
    from torchvision.transforms import v2

    return v2.RandomHorizontalFlip()


def _check_layout(root: Path) -> None:
    """Name every missing part at once, with the whole expected layout."""
    from clbench.datasets.errors import missing_data_error

    wanted = {
        "lfw/": (root / "lfw").is_dir(),
        "lfw-pairs.txt (or pairs.txt)": (root / "lfw-pairs.txt").is_file() or (root / "pairs.txt").is_file(),
        "UTKFace/": (root / "UTKFace").is_dir(),
        "fer2013/": (root / "fer2013").is_dir(),
    }
    missing = [name for name, present in wanted.items() if not present]
    if missing:
        raise missing_data_error("facial4_mini data", root, missing, LAYOUT.format(root=root))
