"""Fine-grained 6: ImageNet → CUBS → Stanford Cars → Flowers → WikiArt → Sketch on ResNet-50.

The second CPG experiment (Hung et al., "Compacting, Picking and Growing for Unforgetting
Continual Learning", NeurIPS 2019, arXiv:1910.06562; ivclab/CPG ``experiment2/CPG_imagenet.sh``),
itself the sequence of Piggyback (Mallya, Davis & Lazebnik, ECCV 2018, arXiv:1801.06519) and
PackNet (Mallya & Lazebnik, CVPR 2018) with ImageNet as task 1. Published results: ALGORITHMS.md §5.2.

Data: the Piggyback/CPG release (arunmallya/piggyback README, "Datasets in PyTorch format"), one
ImageFolder tree per data set under ``data_root``, with ILSVRC-2012 beside it. Folder names are
the upstream dataset names, which are also the task names and the keys of the goals file::

    imagenet/{train,val}/<wnid>/*.JPEG       1000 classes (val sorted into <wnid> folders)
    cubs_cropped/{train,test}/<class>/*       200 classes (birds cropped to their boxes)
    stanford_cars_cropped/{train,test}/...    196 classes (cars cropped to their boxes)
    flowers/{train,test}/...                  102 classes (Oxford Flowers 102)
    wikiart/{train,test}/...                  195 classes (artists)
    sketches/{train,test}/...                 250 classes (TU-Berlin sketches)

``val`` for ImageNet, ``test`` otherwise, as piggyback ``src/utils.py`` ``set_dataset_paths``.
Images are decoded per sample (:class:`clbench.datasets.lazy.ImageFileDataset`): 224-px random
crops of full-size images cannot go through the uint8 cache.

Deviations from upstream, each deliberate:

- **Validation.** Upstream validates on the test set (goal checks and checkpoint choice; §1.9).
  Here ``valid`` is carved from ``train/``, class-stratified (``valid_fraction``, 10 % per
  class). For ImageNet it is carved from ``val/`` instead (``imagenet_valid_fraction``, 10 of
  the 50 images per class): the pretrained weights were trained on all of ``train/``, so a split
  of it would score the training data. ImageNet's ``test`` is the other 40 val images per class.
- **Task 1 is validated only** (CPG_imagenet_main.py L208-235, L411-414: torchvision's ImageNet
  weights, backbone and head, no finetuning; ImageNet is still pruned). The backbone factory
  loads the weights at width 1; the head goes to :data:`PRETRAINED_HEADS` until ``TaskData``
  carries it. ``pretrained = false`` trains task 1 from scratch instead (logged as a warning;
  the saved config records it).
- **Weights.** Upstream loads ``resnet50-19c8e357.pth`` from the model zoo; offline, this looks
  in ``--fine_grained6.weights`` or the torch hub cache and never downloads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check
from clbench.datasets.errors import DataError, missing_data_error

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    from torch import nn

    from clbench.datasets.lazy import PILTransform

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # fixed: the validation split never depends on the run's seed

#: Task order and names: experiment2/CPG_imagenet.sh ``dataset=(...)``.
TASKS: tuple[str, ...] = ("imagenet", "cubs_cropped", "stanford_cars_cropped", "flowers", "wikiart", "sketches")

#: Classes per task in the released data (CPG_imagenet.sh ``num_classes=(...)``); a different
#: count is logged, since it usually means a partial extraction.
PUBLISHED_CLASSES: dict[str, int] = dict(zip(TASKS, (1000, 200, 196, 102, 195, 250), strict=True))

#: torchvision's ImageNet statistics (CPG utils/fine_grained_dataset.py IMAGENET_MEAN/STD).
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)

#: Weight files preferred in the torch hub cache, best first: the one CPG loads (model zoo
#: ``resnet50-19c8e357.pth``, 76.15 % top-1), then torchvision's IMAGENET1K_V1 (76.13 %).
#: Any other ``resnet50-*.pth`` (e.g. IMAGENET1K_V2, 80.86 %) is used only without these.
PREFERRED_WEIGHTS: tuple[str, ...] = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")

#: Prototype of a ``TaskData`` field the strategies need: task name -> (fc.weight, fc.bias) of a
#: task whose backbone (from the factory, width 1) and head arrive trained, so the task is
#: validated, not trained (upstream ImageNet). Rewritten by every ``load_tasks``.
PRETRAINED_HEADS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

_LAYOUT = """\
  {root}/
    imagenet/train/<wnid>/*.JPEG    imagenet/val/<wnid>/*.JPEG    (ILSVRC-2012, 1000 classes)
    cubs_cropped/{{train,test}}/<class>/*.jpg                        (200 classes)
    stanford_cars_cropped/{{train,test}}/<class>/*.jpg               (196 classes)
    flowers/{{train,test}}/<class>/*.jpg                             (102 classes)
    wikiart/{{train,test}}/<class>/*.jpg                             (195 classes)
    sketches/{{train,test}}/<class>/*.png                            (250 classes)
  (the Piggyback/CPG release, see arunmallya/piggyback README; pass --data-root DIR)"""


def held_out_folder(task: str) -> str:
    """The folder holding a task's test images (piggyback src/utils.py set_dataset_paths)."""
    return "val" if task == "imagenet" else "test"


@dataclass(frozen=True)
class FineGrained6Config(BenchmarkConfig):
    NOT_DATA: ClassVar[tuple[str, ...]] = ("data_root", "weights")  # where/how the data is read (clbench.goals)
    tasks: tuple[str, ...] = TASKS  # CPG_imagenet.sh task order; a subset keeps this order
    pretrained: bool = True  # CPG_imagenet.sh task 1: --use_imagenet_pretrained
    weights: str | None = None  # torchvision resnet50 state dict; None: <torch hub dir>/checkpoints/resnet50-*.pth
    valid_fraction: float = 0.1  # clbench: per class, of train/, for validation (upstream validated on test)
    imagenet_valid_fraction: float = 0.2  # clbench: per class, of ImageNet val/ (10 of 50), see the module docstring
    cutout: int = 16  # fine_grained_dataset.py: Cutout(16) after Normalize in both train loaders; 0 = off

    def __post_init__(self) -> None:
        known = set(TASKS)
        check(bool(self.tasks), "fine_grained6", "tasks", "a non-empty list", self.tasks)
        check(set(self.tasks) <= known, "fine_grained6", "tasks", f"names from {', '.join(TASKS)}", self.tasks)
        ordered = [t for t in TASKS if t in self.tasks]
        check(list(self.tasks) == ordered, "fine_grained6", "tasks", "unique and in the upstream order", self.tasks)
        check(0 < self.valid_fraction < 1, "fine_grained6", "valid_fraction", "in (0, 1)", self.valid_fraction)
        check(
            0 < self.imagenet_valid_fraction < 1,
            "fine_grained6",
            "imagenet_valid_fraction",
            "in (0, 1)",
            self.imagenet_valid_fraction,
        )
        check(self.cutout >= 0, "fine_grained6", "cutout", ">= 0", self.cutout)


class Cutout:
    """Zero a ``length``×``length`` square (clipped at the border) at a uniformly random centre of
    a C×H×W tensor (DeVries & Taylor 2017), as CPG ``utils/fine_grained_dataset.py`` ``Cutout``;
    applied after normalisation there, so the square reads as the mean colour. Uses torch's
    generator (seeded per DataLoader worker), not NumPy's as upstream."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import torch

        h, w = img.shape[-2], img.shape[-1]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        out = img.clone()
        out[..., max(y - half, 0) : min(y + half, h), max(x - half, 0) : min(x + half, w)] = 0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def transforms(cropped: bool, train: bool, cutout: int = 16) -> PILTransform:
    """PIL image → normalised 3×224×224 tensor, as CPG ``utils/fine_grained_dataset.py``.

    Cropped data sets (CUBS, Cars: ``'cropped' in dataset``): resize to 224×224 for training and
    evaluation. Others: shorter side to 256, then ``RandomResizedCrop(224)`` for training,
    ``CenterCrop(224)`` for evaluation. Training adds a horizontal flip and, after normalising,
    ``Cutout(cutout)`` (0 leaves it out).
    """
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [v2.Resize((224, 224))] if cropped else [v2.Resize(256)]
    if not cropped:
        steps.append(v2.RandomResizedCrop(224) if train else v2.CenterCrop(224))
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and cutout > 0:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)


class FineGrained6(Benchmark):
    """ImageNet → CUBS → Cars → Flowers → WikiArt → Sketch on ResNet-50 (CPG experiment 2)."""

    name = "fine_grained6"
    description = "ImageNet (pretrained) → CUBS → Cars → Flowers → WikiArt → Sketch, ResNet-50, 224 px"
    Config = FineGrained6Config
    default_recipe = "paper"

    _paper_stages = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # CPG_imagenet.sh: 0→0.1 … 0.9→0.95
    recipe_notes: ClassVar[dict[str, str]] = {
        "paper": "CPG_imagenet.sh (ALGORITHMS.md §1.9): ResNet-50 from ImageNet, up to 300 epochs per task; "
        "GPU, days (not measured by clbench)",
        "small": "a short schedule on the same data to check a setup; GPU-sized (not measured)",
    }
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        # CPG_imagenet.sh (ALGORITHMS.md §1.9), as far as one value per field allows:
        # - lr is per task upstream (Cars 1e-2, the others 1e-3): 1e-3 here;
        # - finetuning runs ≤ 300 epochs with ×0.1 after 5 epochs without gain and stops after 3
        #   decays (L439-477); clbench has no plateau schedule, so 300 is the cap, run in full;
        # - pruning is 10 epochs/stage, every 1000 iterations, lr 3e-4 for ImageNet and 20/50/1e-3
        #   for the others: the others' values here;
        # - the grow test and the stage keep rule are best − goal > −0.005 (goal_margin) and growth
        #   is off (the script breaks after the increment), hence max_width 1; no train-accuracy
        #   test; no "must prune" capacity rule (that is in the CIFAR main only).
        "paper": {
            "*": {
                "epochs": 300,
                "lr": 1e-3,
                "lr_milestones": (),
                "batch_size": 32,  # CPG_imagenet_main.py --batch_size 32
                "eval_batch_size": 100,  # --val_batch_size 100
                "momentum": 0.9,
                "nesterov": True,
                "weight_decay": 4e-5,  # CPG_imagenet.sh --weight_decay 4e-5
                "prune_stages": _paper_stages,
                "prune_epochs": 20,
                "prune_interval": 4,  # --pruning_interval=4
                "prune_frequency": 50,
                "prune_lr": 1e-3,
                "min_train_accuracy": 0.0,
                "goal_margin": 0.005,  # L494-503: grow if best − goal <= −0.005; L380-395 keep rule
                "capacity_rule": False,
                "max_width": 1.0,
            },
            "cpg": {"lr_mask": 1e-4, "retrain": False},  # lr_mask=1e-4; no retrain stage in experiment 2
            # PackNet's own ResNet-50 sequence (packnet src/scripts/run_sequence.sh L60, L68-69):
            # 20 epochs at 1e-3 ×0.1 after 10, prune, 10 epochs at 1e-4; wd 0. Its fraction is 0.5
            # for ImageNet and 0.75 for the tasks after; one value only: ImageNet's.
            "packnet": {
                "epochs": 20,
                "lr": 1e-3,
                "lr_milestones": (10,),
                "nesterov": False,
                "weight_decay": 0.0,
                "prune_ratio": 0.5,
                "post_prune_epochs": 10,
                "post_prune_lr": 1e-4,
                "post_prune_milestones": (),
            },
        },
        # A CPU smoke test on a tiny tree (tests build one): every phase runs once.
        "small": {
            "*": {
                "epochs": 1,
                "lr": 1e-3,
                "lr_milestones": (),
                "batch_size": 8,
                "eval_batch_size": 16,
                "goals": "self",
                "prune_stages": (0.5,),
                "prune_epochs": 1,
                "prune_interval": 1,
                "prune_frequency": 1,
                "prune_lr": 1e-3,
                "min_train_accuracy": 0.0,
                "goal_margin": 0.005,
                "capacity_rule": False,
                "max_width": 1.0,
            },
            "cpg": {"lr_mask": 1e-4, "retrain": False},
            "packnet": {"prune_ratio": 0.5, "post_prune_epochs": 1, "post_prune_lr": 1e-4, "post_prune_milestones": ()},
        },
    }

    def __init__(self, config: BenchmarkConfig) -> None:
        super().__init__(config)
        self._weights: tuple[Mapping[str, torch.Tensor], Path] | None = None

    # ------------------------------------------------------------------ data
    @property
    def root(self) -> Path:
        """``data_root``, or ``./data`` as upstream (``data/<dataset>/train``)."""
        return Path(self.config.data_root or "data").expanduser()

    def check_layout(self) -> None:
        """Raise :class:`DataError` naming every missing ``<task>/<split>/`` folder."""
        cfg: FineGrained6Config = self.config  # type: ignore[assignment]
        root = self.root
        wanted = [f"{t}/{s}/" for t in cfg.tasks for s in ("train", held_out_folder(t))]
        missing = [w for w in wanted if not (root / w).is_dir()]
        if missing:
            raise missing_data_error("fine_grained6 data", root, missing, _LAYOUT.format(root=root))

    def load_tasks(self) -> list[TaskData]:
        from clbench.datasets.arrays import split_validation
        from clbench.datasets.folders import scan_image_folder
        from clbench.datasets.lazy import ImageFileDataset

        cfg: FineGrained6Config = self.config  # type: ignore[assignment]
        self.check_layout()
        PRETRAINED_HEADS.clear()
        # Read the weights first, to fail before scanning a million files.
        weights = self.imagenet_weights() if cfg.pretrained else None
        if weights is None and "imagenet" in cfg.tasks:
            log.warning(
                "fine_grained6: pretrained = false: task 1 (ImageNet) trains from scratch instead of "
                "starting from torchvision's weights; results are not comparable to the published ones"
            )
        tasks = []
        for name in cfg.tasks:
            train = scan_image_folder(self.root / name / "train")
            test = scan_image_folder(self.root / name / held_out_folder(name))
            if train.class_names != test.class_names:
                only = sorted(set(train.class_names) ^ set(test.class_names))
                raise DataError(
                    f"{name}: train/ and {held_out_folder(name)}/ under {self.root / name} hold different classes "
                    f"(in one only: {', '.join(only[:5])}{' …' if len(only) > 5 else ''}): partial extraction?"
                )
            if len(train.class_names) != PUBLISHED_CLASSES[name]:
                log.warning(
                    "fine_grained6: %s has %d classes; the published benchmark has %d",
                    name, len(train.class_names), PUBLISHED_CLASSES[name],
                )  # fmt: skip
            cropped = "cropped" in name  # upstream picks the cropped loaders by this test
            train_tf = transforms(cropped, train=True, cutout=cfg.cutout)
            eval_tf = transforms(cropped, train=False)
            if name == "imagenet":
                test_idx, valid_idx = split_validation(test.labels, cfg.imagenet_valid_fraction, SPLIT_SEED)
                test_all = ImageFileDataset(test.paths, test.labels)
                splits = {
                    "train": ImageFileDataset(train.paths, train.labels, train_tf),
                    "valid": test_all.subset(valid_idx, eval_tf),
                    "test": test_all.subset(test_idx, eval_tf),
                }
            else:
                train_idx, valid_idx = split_validation(train.labels, cfg.valid_fraction, SPLIT_SEED)
                train_all = ImageFileDataset(train.paths, train.labels)
                splits = {
                    "train": train_all.subset(train_idx, train_tf),
                    "valid": train_all.subset(valid_idx, eval_tf),
                    "test": ImageFileDataset(test.paths, test.labels, eval_tf),
                }
            if name == "imagenet" and weights is not None:
                (state, source) = weights
                weight, bias = state["fc.weight"], state["fc.bias"]
                if weight.shape[0] != len(train.class_names):
                    raise DataError(
                        f"the ImageNet head in {source} has {weight.shape[0]} classes but "
                        f"{self.root / name / 'train'} has {len(train.class_names)} class folders; "
                        "its rows follow the sorted wnids of all 1000 ILSVRC-2012 classes"
                    )
                PRETRAINED_HEADS[name] = (weight.detach().clone(), bias.detach().clone())
            tasks.append(TaskData(name=name, class_names=list(train.class_names), **splits))
        return tasks

    # --------------------------------------------------------------- weights
    def weights_file(self) -> Path:
        """``weights`` if set, else the preferred ``resnet50-*.pth`` in the torch hub cache."""
        cfg: FineGrained6Config = self.config  # type: ignore[assignment]
        if cfg.weights:
            path = Path(cfg.weights).expanduser()
            if not path.is_file():
                raise DataError(f"ImageNet weights file not found: {path} (from fine_grained6.weights)")
            return path
        import torch

        folder = Path(torch.hub.get_dir()) / "checkpoints"  # $TORCH_HOME/hub, default ~/.cache/torch/hub
        found = sorted(folder.glob("resnet50-*.pth")) if folder.is_dir() else []
        if not found:
            raise DataError(
                "fine_grained6 starts task 1 (ImageNet) from torchvision's ImageNet ResNet-50 weights, "
                f"and none were found: fine_grained6.weights is unset and {folder} holds no resnet50-*.pth "
                "(the torch hub cache: $TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints). "
                "Put https://download.pytorch.org/models/resnet50-0676ba61.pth there, or pass "
                "--fine_grained6.weights PATH, or --fine_grained6.pretrained false to train task 1 from scratch."
            )
        by_name = {p.name: p for p in found}
        path = next((by_name[n] for n in PREFERRED_WEIGHTS if n in by_name), found[0])
        if path.name not in PREFERRED_WEIGHTS:
            log.warning("fine_grained6: using %s, not the V1 weights of the published results", path)
        return path

    def imagenet_weights(self) -> tuple[Mapping[str, torch.Tensor], Path]:
        """The torchvision ResNet-50 state dict (read once per benchmark) and its file."""
        if self._weights is None:
            import torch

            path = self.weights_file()
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch.load raises many types (pickle, zip, OSError)
                raise DataError(f"cannot read ImageNet weights {path}: {exc}") from exc
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]  # a training checkpoint wrapping the weights
            if not isinstance(state, dict) or not {"fc.weight", "fc.bias"} <= set(state):
                raise DataError(f"{path} is not a torchvision resnet50 state dict (no fc.weight/fc.bias)")
            log.info("fine_grained6: ImageNet weights from %s", path)
            self._weights = (state, path)
        return self._weights

    # -------------------------------------------------------------- backbone
    def backbone(self, width: float = 1.0) -> nn.Module:
        """ResNet-50 features; at width 1 with ``pretrained``, holding the ImageNet weights.

        Wider backbones (growth) start from the usual init: the masked network copies the
        narrower one's weights into them.
        """
        from clbench.nn.backbones import load_torchvision_resnet50_weights, resnet50

        cfg: FineGrained6Config = self.config  # type: ignore[assignment]
        net = resnet50(width)
        if cfg.pretrained and width == 1.0:
            state, path = self.imagenet_weights()
            try:
                load_torchvision_resnet50_weights(net, state)
            except ValueError as exc:
                raise DataError(f"ImageNet weights {path}: {exc}") from None
        return net
