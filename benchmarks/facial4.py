"""Facial 4: face verification → gender → expression → age on SphereNet-20.

The third CPG experiment (Hung et al., "Compacting, Picking and Growing for Unforgetting
Continual Learning", NeurIPS 2019, arXiv:1910.06562; ivclab/CPG ``experiment3/FvGeEmAg*_CPG_face.sh``),
which follows PAE (Hung et al., ICMR 2019). Published results: ALGORITHMS.md §5.3.

Data, from the layouts users have (all under ``data_root``)::

    vggface2/train/<identity>/*.jpg    aligned VGGFace2 (Cao et al., FG 2018): verification training
    lfw/<Name>/<Name>_0001.jpg          LFW (Huang et al., 2007) with its View-2 ``pairs.txt``: verification test
    adience/fold_{0..4}_data.txt        Adience (Eidinger, Enbar & Hassner, TIFS 2014), as released
    adience/aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>
    expression/{train,val}/<emotion>/*  an expression set sorted by class, e.g. AffectNet (val = test)

Tasks, named as upstream (the keys of its goals file): ``face_verification`` (identity
classification with a cosine-margin head, scored on LFW pairs), ``gender`` (Adience, male/
female), ``emotion`` (expression classes in folder order) and ``age<k>`` (Adience, 8 groups, test
fold k). Inputs are ``image_size``² RGB (112, §1.9), normalised with mean = std = 0.5
(CPG ``utils/face_dataset.py``), flipped at random for training.

Deviations from upstream, each deliberate:

- **Verification training.** Upstream task 1 is a given VGGFace2 model (``face_weight.pth``,
  4630 identities), not trained; here the embedding trains on the VGGFace2 identities present.
- **Validation never touches test.** Upstream validates on the test data. Here: verification
  validation is 10 identity-disjoint folds of pairs (``valid_pairs_per_fold``) drawn from
  ``valid_identities`` VGGFace2 identities held out of training, scored like LFW; Adience
  validation is a whole other fold (subject-disjoint, as the folds are); expression validation
  is a class-stratified ``expression_valid_fraction`` of its train folder.
- **LFW test** is the standard 10-fold View-2 protocol: each fold's threshold is chosen on the
  other nine. VGGFace2 and LFW share some identities; as usual for this protocol, not removed.
- **Adience labels.** Gender keeps m/f (rows marked u or blank are left out); upstream's gender
  head has 3 outputs, with no record of the third class. Age keeps the eight canonical groups;
  rows with another label (single ages such as "35", off-grid ranges such as "(38, 48)",
  "None") are left out, as in the usual Levi & Hassner protocol, and counted in the log.
- **Per-task hyperparameters** (lr, batch, margins) are one value per field; see the recipes.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check
from clbench.datasets.errors import DataError, missing_data_error

if TYPE_CHECKING:
    import numpy as np
    from torch import nn
    from torch.utils.data import Dataset

    from clbench.verification import PairSplit

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # fixed: splits and validation pairs never depend on the run's seed
ADIENCE_FOLDS = 5  # fold_0_data.txt … fold_4_data.txt
VALID_FOLDS = 10  # verification validation folds, as LFW View 2

#: Adience age labels as written in the fold files → group index (clbench.datasets.faces
#: ADIENCE_AGE_GROUPS order); whitespace is ignored when matching.
ADIENCE_AGE_LABELS: dict[str, int] = {
    "(0,2)": 0, "(4,6)": 1, "(8,12)": 2, "(15,20)": 3, "(25,32)": 4, "(38,43)": 5, "(48,53)": 6, "(60,100)": 7,
}  # fmt: skip

#: Adience gender codes → index into clbench.datasets.faces.GENDER_NAMES (male, female).
ADIENCE_GENDERS: dict[str, int] = {"m": 0, "f": 1}

#: Image file prefix per Adience image folder (the release's two variants).
ADIENCE_PREFIX: dict[str, str] = {"aligned": "landmark_aligned_face", "faces": "coarse_tilt_aligned_face"}

_ADIENCE_COLUMNS = ("user_id", "original_image", "face_id", "age", "gender")
_PAIRS_NAMES = ("pairs.txt", "lfw-pairs.txt")
FACE_MEAN: tuple[float, ...] = (0.5, 0.5, 0.5)  # CPG utils/face_dataset.py VGGFACE_MEAN
FACE_STD: tuple[float, ...] = (0.5, 0.5, 0.5)  # VGGFACE_STD

_LAYOUT = """\
  {root}/
    vggface2/train/<identity>/*.jpg           aligned VGGFace2: identities for the verification embedding
    lfw/<Person_Name>/<Person_Name>_0001.jpg   LFW images
    lfw/pairs.txt                             LFW View-2 pairs (or {root}/pairs.txt; lfw-pairs.txt also read)
    adience/fold_0_data.txt … fold_4_data.txt Adience folds, tab-separated, as released
    adience/aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>
      (or adience/faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>
       with --facial4.adience-images faces)
    expression/train/<emotion>/*.jpg          expression classes, e.g. AffectNet
    expression/val/<emotion>/*.jpg            (its validation set, used as test)"""


@dataclass(frozen=True)
class Facial4Config(BenchmarkConfig):
    NOT_DATA: ClassVar[tuple[str, ...]] = ("data_root", "cache_images")  # where/how the data is read (clbench.goals)
    image_size: int = 112  # §1.9: MTCNN-aligned faces, Resize 112; SphereNet-20 takes 112×112
    adience_test_fold: int = 0  # FvGeEmAg0_CPG_face.sh: age0 (FvGeEmAg1..4 test folds 1..4)
    adience_valid_fold: int | None = None  # clbench: None = (test fold + 1) mod 5; the other three train
    adience_images: Literal["aligned", "faces"] = "aligned"  # clbench: landmark-aligned, nearest to MTCNN's
    valid_identities: int = 200  # clbench: VGGFace2 identities held out for verification validation
    valid_pairs_per_fold: int = 600  # as LFW View 2: 300 matched + 300 mismatched per fold
    expression_valid_fraction: float = 0.1  # clbench: per class, of expression/train/
    cache_images: bool = True  # clbench: decode Adience and LFW once into the uint8 cache (False: per sample)

    def __post_init__(self) -> None:
        check(self.image_size >= 16, "facial4", "image_size", ">= 16", self.image_size)
        folds = f"in 0..{ADIENCE_FOLDS - 1}"
        test = self.adience_test_fold
        check(0 <= test < ADIENCE_FOLDS, "facial4", "adience_test_fold", folds, test)
        if self.adience_valid_fold is not None:
            ok = 0 <= self.adience_valid_fold < ADIENCE_FOLDS and self.adience_valid_fold != test
            check(ok, "facial4", "adience_valid_fold", f"{folds} and not the test fold", self.adience_valid_fold)
        check(
            self.valid_identities >= 2 * VALID_FOLDS,
            "facial4",
            "valid_identities",
            f">= {2 * VALID_FOLDS} (two per validation fold)",
            self.valid_identities,
        )
        check(
            self.valid_pairs_per_fold >= 2 and self.valid_pairs_per_fold % 2 == 0,
            "facial4",
            "valid_pairs_per_fold",
            "even and >= 2",
            self.valid_pairs_per_fold,
        )
        frac = self.expression_valid_fraction
        check(0 < frac < 1, "facial4", "expression_valid_fraction", "in (0, 1)", frac)

    @property
    def valid_fold(self) -> int:
        if self.adience_valid_fold is not None:
            return self.adience_valid_fold
        return (self.adience_test_fold + 1) % ADIENCE_FOLDS


# ---------------------------------------------------------------- Adience


class AdienceFold(NamedTuple):
    """One fold file's faces: ``age`` and ``gender`` are label indices, -1 where unusable."""

    paths: list[Path]
    age: np.ndarray  # int64, ADIENCE_AGE_GROUPS index or -1
    gender: np.ndarray  # int64, GENDER_NAMES index or -1
    off_grid_ages: int  # rows whose age is not one of the eight groups


def adience_age_label(text: str) -> int:
    """The group index of an Adience age label such as ``"(25, 32)"``; -1 for any other value."""
    return ADIENCE_AGE_LABELS.get(re.sub(r"\s+", "", text), -1)


def read_adience_fold(fold_file: Path, image_dir: Path, prefix: str) -> AdienceFold:
    """Parse a released ``fold_<k>_data.txt``: tab-separated with a header row naming (at least)
    ``user_id, original_image, face_id, age, gender``; ages like ``(25, 32)``, gender m/f/u.

    Image ``i`` is ``image_dir/<user_id>/<prefix>.<face_id>.<original_image>``. Existence is
    not checked here.

    Raises:
        DataError: the file is unreadable, lacks a column, or a row is short (line named).
    """
    import numpy as np

    try:
        text = fold_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read Adience fold file {fold_file}: {exc.strerror or exc}") from exc
    rows = csv.reader(text.splitlines(), delimiter="\t")
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in _ADIENCE_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{fold_file}: header lacks column(s) {', '.join(missing)} (expected {', '.join(header)})")
    col = {c: header.index(c) for c in _ADIENCE_COLUMNS}
    need = max(col.values()) + 1
    paths: list[Path] = []
    ages: list[int] = []
    genders: list[int] = []
    for lineno, row in enumerate(rows, start=2):
        if not any(field.strip() for field in row):
            continue
        if len(row) < need:
            raise DataError(f"{fold_file} line {lineno}: {len(row)} fields, expected at least {need}")
        user, original, face = (row[col[c]].strip() for c in ("user_id", "original_image", "face_id"))
        paths.append(image_dir / user / f"{prefix}.{face}.{original}")
        ages.append(adience_age_label(row[col["age"]]))
        genders.append(ADIENCE_GENDERS.get(row[col["gender"]].strip().lower(), -1))
    age = np.asarray(ages, dtype=np.int64)
    return AdienceFold(paths, age, np.asarray(genders, dtype=np.int64), int((age < 0).sum()))


# ---------------------------------------------------------------- transforms and datasets


def face_transform(size: int, train: bool) -> Any:
    """PIL face → normalised 3×size×size tensor (CPG ``utils/face_dataset.py``: Resize 112,
    HFlip for training, mean = std = 0.5). Resizes to a square: upstream's faces are aligned
    squares, where ``Resize(112)`` is the same."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [v2.Resize((size, size))]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(FACE_MEAN, FACE_STD)]
    return v2.Compose(steps)


def _check_exist(paths: list[Path], what: str) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{len(missing)} image(s) listed in {what} not found: {shown}")


class Facial4(Benchmark):
    """Face verification → gender → expression → age on SphereNet-20 (CPG experiment 3)."""

    name = "facial4"
    description = "VGGFace2/LFW verification → Adience gender → expression → Adience age, SphereNet-20, 112 px"
    Config = Facial4Config
    default_recipe = "paper"

    _paper_stages = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # FvGeEmAg*_CPG_face.sh: 0→0.1 … 0.9→0.95
    recipe_notes: ClassVar[dict[str, str]] = {
        "paper": "FvGeEmAg*_CPG_face.sh (ALGORITHMS.md §1.9): up to 100 epochs per task on the full face "
        "data at 112×112; GPU, many hours (not measured by clbench)",
        "small": "a short schedule on the same data to check a setup; still GPU-sized (not measured)",
    }
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        # FvGeEmAg*_CPG_face.sh (ALGORITHMS.md §1.9), one value per field:
        # - lr is 1e-3 for verification and 5e-4 for the others; batch 256 and 128: the others';
        # - finetuning runs ≤ 100 epochs, ×0.1 after 10 without gain, stop after 3 decays
        #   (CPG_face_main.py L462); clbench has no plateau schedule, so 100 is the cap;
        # - pruning: 10 epochs/stage every 1000 iterations for verification, 20/100 for the
        #   others (the others' here), lr 5e-4;
        # - pass test best − goal > −margin, margins 0.005/0.015/0.005/0.010 per task
        #   (--acc_margin of each FvGeEmAg script); no capacity rule (CIFAR main only).
        "paper": {
            "*": {
                "epochs": 100,
                "lr": 5e-4,
                "lr_milestones": (),
                "batch_size": 128,
                "eval_batch_size": 100,
                "momentum": 0.9,  # CPG_face_main.py: SGD momentum 0.9, nesterov
                "nesterov": True,
                "weight_decay": 4e-5,  # --weight_decay 4e-5
                "prune_stages": _paper_stages,
                "prune_epochs": 20,
                "prune_interval": 4,  # --pruning_interval=4
                "prune_frequency": 100,
                "prune_lr": 5e-4,
                "min_train_accuracy": 0.0,
                "task_goal_margins": (0.005, 0.015, 0.005, 0.010),  # CPG_face_main.py L114, L483
                "capacity_rule": False,
            },
            "cpg": {"lr_mask": 5e-4, "retrain": False},  # --lr_mask 5e-4; no retrain stage in experiment 3
        },
        # A CPU smoke test on a tiny tree (tests build one): every phase runs once.
        "small": {
            "*": {
                "epochs": 1,
                "lr": 5e-4,
                "lr_milestones": (),
                "batch_size": 8,
                "eval_batch_size": 16,
                "goals": "self",
                "prune_stages": (0.5,),
                "prune_epochs": 1,
                "prune_interval": 1,
                "prune_frequency": 1,
                "prune_lr": 5e-4,
                "min_train_accuracy": 0.0,
                "goal_margin": 0.01,
                "capacity_rule": False,
                "max_width": 1.0,
            },
            "cpg": {"lr_mask": 5e-4, "retrain": False},
            "packnet": {"prune_ratio": 0.5, "post_prune_epochs": 1, "post_prune_lr": 5e-4, "post_prune_milestones": ()},
        },
    }

    @property
    def root(self) -> Path:
        """``data_root``, or ``./data`` as upstream (``data/<dataset>/train``)."""
        return Path(self.config.data_root or "data").expanduser()

    def _pairs_file(self) -> Path | None:
        root = self.root
        candidates = [d / n for d in (root / "lfw", root) for n in _PAIRS_NAMES]
        return next((c for c in candidates if c.is_file()), None)

    def check_layout(self) -> None:
        """Raise :class:`DataError` naming every missing folder or file of the layout."""
        cfg: Facial4Config = self.config  # type: ignore[assignment]
        root = self.root
        folders = ["vggface2/train/", "lfw/", "adience/", f"adience/{cfg.adience_images}/"]
        folders += ["expression/train/", "expression/val/"]
        missing = [f for f in folders if not (root / f).is_dir()]
        missing += [f"adience/fold_{k}_data.txt" for k in range(ADIENCE_FOLDS)
                    if not (root / "adience" / f"fold_{k}_data.txt").is_file()]  # fmt: skip
        if self._pairs_file() is None:
            missing.append("lfw/pairs.txt")
        if missing:
            raise missing_data_error("facial4 data", root, missing, _LAYOUT.format(root=root))

    def load_tasks(self) -> list[TaskData]:
        self.check_layout()
        gender, age = self._adience_tasks()
        return [self._verification_task(), gender, self._expression_task(), age]

    # ------------------------------------------------------------ verification
    def _verification_task(self) -> TaskData:
        import numpy as np

        from clbench.datasets.folders import scan_image_folder
        from clbench.datasets.lazy import ImageFileDataset
        from clbench.verification import PairSplit

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        size = cfg.image_size
        files = scan_image_folder(self.root / "vggface2" / "train")
        counts = np.bincount(files.labels, minlength=len(files.class_names))
        eligible = np.flatnonzero(counts >= 2)  # matched pairs need two images of a person
        if len(eligible) <= cfg.valid_identities:
            raise DataError(
                f"{self.root / 'vggface2' / 'train'} has {len(eligible)} identities with >= 2 images; "
                f"facial4 holds out valid_identities = {cfg.valid_identities} for validation and needs "
                "more to train on"
            )
        rng = np.random.default_rng(SPLIT_SEED)
        held = rng.choice(eligible, cfg.valid_identities, replace=False)  # rng order deals the folds
        is_held = np.zeros(len(files.class_names), dtype=bool)
        is_held[held] = True
        kept_ids = np.flatnonzero(~is_held)
        new_label = np.full(len(files.class_names), -1, dtype=np.int64)
        new_label[kept_ids] = np.arange(len(kept_ids))
        train_idx = np.flatnonzero(~is_held[files.labels])
        train = ImageFileDataset(
            [files.paths[i] for i in train_idx.tolist()], new_label[files.labels[train_idx]], face_transform(size, True)
        )
        paths, pairs, same, folds = self._identity_pairs(files.labels, held, rng)
        images = ImageFileDataset([files.paths[i] for i in paths], [0] * len(paths), face_transform(size, False))
        valid = PairSplit(images, pairs, same, folds, range(1, VALID_FOLDS + 1))
        test = self._lfw_pairs()
        class_names = [files.class_names[i] for i in kept_ids.tolist()]
        return TaskData("face_verification", class_names, train, valid, test, kind="verification")

    def _identity_pairs(
        self, labels: np.ndarray, held: np.ndarray, rng: Any
    ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Validation pairs among the held-out identities, LFW-style: identity-disjoint folds
        (identities dealt round-robin in ``held`` order), each with as many matched as mismatched
        pairs. Returns (file indices the pairs use, M×2 indices into that list, same, folds)."""
        import numpy as np

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        by_id = {int(i): np.flatnonzero(labels == i) for i in held.tolist()}
        index: dict[int, int] = {}
        pairs: list[tuple[int, int]] = []
        same: list[bool] = []
        folds: list[int] = []
        half = cfg.valid_pairs_per_fold // 2
        for fold in range(1, VALID_FOLDS + 1):
            ids = held[fold - 1 :: VALID_FOLDS]
            for _ in range(half):
                a, b = rng.choice(by_id[int(rng.choice(ids))], 2, replace=False)
                pairs.append((index.setdefault(int(a), len(index)), index.setdefault(int(b), len(index))))
            for _ in range(half):
                first, second = rng.choice(ids, 2, replace=False)
                a, b = rng.choice(by_id[int(first)]), rng.choice(by_id[int(second)])
                pairs.append((index.setdefault(int(a), len(index)), index.setdefault(int(b), len(index))))
            same += [True] * half + [False] * half
            folds += [fold] * (2 * half)
        used = list(index)  # dict order is the local index order
        return used, np.asarray(pairs, dtype=np.int64), np.asarray(same, dtype=bool), np.asarray(folds, dtype=np.int64)

    def _lfw_pairs(self) -> PairSplit:
        """LFW View 2, all ten folds evaluated, each fold's threshold from the other nine."""
        import numpy as np

        from clbench.datasets.faces import load_lfw_pairs
        from clbench.verification import PairSplit

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        lfw = load_lfw_pairs(self.root, self._pairs_file())
        index: dict[Path, int] = {}
        pairs, same, folds = [], [], []
        for k in range(1, len(lfw.folds) + 1):
            for p in lfw.fold(k):
                pairs.append((index.setdefault(p.path_a, len(index)), index.setdefault(p.path_b, len(index))))
                same.append(p.same)
                folds.append(k)
        images = self._eval_images(list(index), [0] * len(index), cfg.image_size)
        return PairSplit(images, np.asarray(pairs), np.asarray(same), np.asarray(folds), range(1, len(lfw.folds) + 1))

    def _eval_images(self, paths: list[Path], labels: Any, size: int, train: bool = False) -> Dataset[Any]:
        """A dataset over ``paths``: decoded once at size² into the uint8 cache when
        ``cache_images``, else per sample."""
        cfg: Facial4Config = self.config  # type: ignore[assignment]
        if cfg.cache_images:
            from torchvision.transforms import v2

            from clbench.datasets.arrays import ArrayDataset, Augment
            from clbench.datasets.cache import load_images

            images = load_images(paths, (size, size), "RGB")
            flip = v2.RandomHorizontalFlip() if train else None
            on_device = Augment(hflip=True) if train else None  # the same flip, for the device engine
            return ArrayDataset(images, labels, flip, FACE_MEAN, FACE_STD, augment=on_device)
        from clbench.datasets.lazy import ImageFileDataset

        return ImageFileDataset(paths, labels, face_transform(size, train))

    # ------------------------------------------------------------------ Adience
    def _adience_tasks(self) -> tuple[TaskData, TaskData]:
        import numpy as np

        from clbench.datasets.faces import ADIENCE_AGE_GROUPS, GENDER_NAMES

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        base = self.root / "adience"
        image_dir = base / cfg.adience_images
        prefix = ADIENCE_PREFIX[cfg.adience_images]
        folds = [read_adience_fold(base / f"fold_{k}_data.txt", image_dir, prefix) for k in range(ADIENCE_FOLDS)]
        off_grid = sum(f.off_grid_ages for f in folds)
        if off_grid:
            log.info("facial4: left out %d Adience faces whose age is not one of the 8 groups", off_grid)
        roles = {cfg.adience_test_fold: "test", cfg.valid_fold: "valid"}
        out = []
        for task, names, column in (
            ("gender", GENDER_NAMES, "gender"),
            (f"age{cfg.adience_test_fold}", ADIENCE_AGE_GROUPS, "age"),
        ):
            split_paths: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
            split_labels: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
            for k, fold in enumerate(folds):
                role = roles.get(k, "train")
                values = getattr(fold, column)
                keep = np.flatnonzero(values >= 0)
                split_paths[role] += [fold.paths[i] for i in keep.tolist()]
                split_labels[role] += values[keep].tolist()
            for role, paths in split_paths.items():
                _check_exist(paths, f"the Adience fold files under {base} ({cfg.adience_images}/)")
                if not paths:
                    raise DataError(f"Adience {role} split for task {task} is empty (fold files under {base})")
            splits = {
                role: self._eval_images(paths, split_labels[role], cfg.image_size, train=role == "train")
                for role, paths in split_paths.items()
            }
            out.append(TaskData(task, list(names), **splits))
        return out[0], out[1]

    # --------------------------------------------------------------- expression
    def _expression_task(self) -> TaskData:
        from clbench.datasets.arrays import split_validation
        from clbench.datasets.folders import scan_image_folder
        from clbench.datasets.lazy import ImageFileDataset

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        base = self.root / "expression"
        train = scan_image_folder(base / "train")
        test = scan_image_folder(base / "val")
        if train.class_names != test.class_names:
            raise DataError(
                f"expression/train/ and expression/val/ under {self.root} hold different classes: "
                f"{', '.join(train.class_names)} vs {', '.join(test.class_names)}"
            )
        train_idx, valid_idx = split_validation(train.labels, cfg.expression_valid_fraction, SPLIT_SEED)
        all_train = ImageFileDataset(train.paths, train.labels)
        size = cfg.image_size
        return TaskData(
            "emotion",
            list(train.class_names),
            all_train.subset(train_idx, face_transform(size, True)),
            all_train.subset(valid_idx, face_transform(size, False)),
            ImageFileDataset(test.paths, test.labels, face_transform(size, False)),
        )

    def backbone(self, width: float = 1.0) -> nn.Module:
        from clbench.nn.backbones import spherenet20

        cfg: Facial4Config = self.config  # type: ignore[assignment]
        return spherenet20(width, input_size=cfg.image_size)
