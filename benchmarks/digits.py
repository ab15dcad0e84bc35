"""The offline default benchmark: scikit-learn's handwritten digits split into class-pair tasks.

Real data (1,797 8×8 greyscale scans from the UCI optical-recognition set) that ships inside
scikit-learn, so it runs with no download, in seconds, on any machine. Tasks are the class
pairs (0,1), (2,3), …, (8,9), each with local labels 0/1 and its own head, in the style of
Split-MNIST (Zenke et al., ICML 2017), the smallest task-incremental benchmark in common use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.benchmark import Benchmark, BenchmarkConfig, TaskData
from clbench.config import check

if TYPE_CHECKING:
    from torch import nn

SPLIT_SEED = 0  # fixed: the data split never depends on the run's seed


def load_digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's digits as ``(images, target)``: float64 N×8×8 in 0..16 and int labels
    (N = 1797), the arrays ``sklearn.datasets.load_digits()`` returns.

    Read straight from the CSV that ships inside scikit-learn, parsed as ``load_digits`` parses
    it (``gzip`` + ``np.loadtxt``), because importing ``sklearn`` (which pulls in SciPy) costs
    more CPU than the whole default run trains. Falls back to ``load_digits`` when the file is
    not where this scikit-learn keeps it.
    """
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(folders)), "datasets", "data", "digits.csv.gz") if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)


@dataclass(frozen=True)
class DigitsConfig(BenchmarkConfig):
    classes_per_task: int = 2
    test_fraction: float = 0.25  # per class, held out for test
    valid_fraction: float = 0.15  # per class, of what remains, for validation (goal checks)

    def __post_init__(self) -> None:
        check(self.classes_per_task in (2, 5), "digits", "classes_per_task", "2 or 5", self.classes_per_task)
        check(0 < self.test_fraction < 1, "digits", "test_fraction", "in (0, 1)", self.test_fraction)
        check(0 < self.valid_fraction < 1, "digits", "valid_fraction", "in (0, 1)", self.valid_fraction)


class Digits(Benchmark):
    """Offline default: scikit-learn digits as 5 class-pair tasks (no download, seconds on CPU)."""

    name = "digits"
    Config = DigitsConfig
    # Small recipes sized for a 2-core CPU: every strategy's default run finishes in well under
    # two minutes. The packing strategies keep the original structure (finetune, staged gradual
    # pruning, goal check, retrain) with every schedule shortened.
    _packing = {
        "prune_stages": (0.5, 0.75, 0.9),
        "prune_epochs": 2,
        "prune_interval": 1,
        "prune_frequency": 2,
        "lr_mask": 5e-3,
        "min_train_accuracy": 0.9,
        "allow_acc_loss": 0.02,
    }
    recipe_notes: ClassVar[dict[str, str]] = {
        "default": "the main job: every strategy's structure with short schedules; finetune about 15 s of "
        "training + 10-16 s start-up on 2 shared CPU cores (measured, README)",
        "tiny": "smoke runs and the committed reference table (1 epoch, 2 prune stages); finetune about 8 s "
        "of training + start-up on 2 shared CPU cores (measured)",
    }
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "default": {
            "*": {"epochs": 4, "lr": 0.05, "batch_size": 32, "lr_milestones": (3,)},
            "packnet": {"prune_ratio": 0.6, "post_prune_epochs": 2, "post_prune_lr": 0.01, "post_prune_milestones": ()},
            "pae": _packing,
            "cpg": {
                **_packing,
                "retrain_epochs": 2,
                "retrain_patience": 1,
                "retrain_lr": 0.01,
                "retrain_lr_mask": 1e-3,
            },
            # Chosen on the validation split (seed 0; mean final val accuracy): ewc_lambda 1 → 96.1,
            # 100 → 99.5, 1000 → 99.0, 1e4 diverges. si_lambda 1 → 97.5, 100 → 97.0, 1e4 → 97.5,
            # 1e6 diverges: a tie, so the value at which the penalty acts (Avalanche clips SI
            # importances at 1e-3, so lambda 1 adds ~1e-3 per step and reproduces finetune). LwF's
            # alpha 1 / T 2 and the joint strategies need no entry.
            "ewc": {"ewc_lambda": 100.0},
            "si": {"si_lambda": 1e4},
        },
        "tiny": {
            "*": {"epochs": 1, "lr": 0.05, "batch_size": 64, "lr_milestones": ()},
            "packnet": {"post_prune_epochs": 1, "post_prune_lr": 0.01, "post_prune_milestones": ()},
            "pae": {**_packing, "prune_stages": (0.5, 0.8), "prune_epochs": 1, "min_train_accuracy": 0.5},
            "cpg": {
                **_packing,
                "prune_stages": (0.5, 0.8),
                "prune_epochs": 1,
                "min_train_accuracy": 0.5,
                "retrain_epochs": 1,
                "retrain_patience": 1,
            },
            "ewc": {"ewc_lambda": 100.0},
        },
    }

    def load_tasks(self) -> list[TaskData]:
        import numpy as np

        from clbench.datasets.tensors import TensorTaskDataset

        cfg: DigitsConfig = self.config  # type: ignore[assignment]
        raw, target = load_digits_arrays()
        images = (raw / 16.0).astype(np.float32)[:, None]  # N×1×8×8 in [0, 1]
        labels = target.astype(np.int64)
        rng = np.random.default_rng(SPLIT_SEED)
        k = cfg.classes_per_task
        tasks = []
        for first in range(0, 10, k):
            classes = list(range(first, first + k))
            split: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
            for c in classes:
                idx = rng.permutation(np.flatnonzero(labels == c))
                n_test = round(len(idx) * cfg.test_fraction)
                n_valid = round((len(idx) - n_test) * cfg.valid_fraction)
                split["test"] += idx[:n_test].tolist()
                split["valid"] += idx[n_test : n_test + n_valid].tolist()
                split["train"] += idx[n_test + n_valid :].tolist()
            train_x = images[split["train"]]
            mean, std = float(train_x.mean()), float(train_x.std())  # per-task normalisation
            datasets = {
                name: TensorTaskDataset((images[ids] - mean) / std, labels[ids] - first) for name, ids in split.items()
            }
            tasks.append(
                TaskData(
                    name="digits_" + "".join(map(str, classes)),
                    class_names=[str(c) for c in classes],
                    **datasets,
                )
            )
        return tasks

    def backbone(self, width: float = 1.0) -> nn.Module:
        from clbench.nn.backbones import digits_cnn

        return digits_cnn(width)
