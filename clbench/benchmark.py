"""Benchmark API: a benchmark yields its tasks' data, a backbone factory and default recipes.

Importing this module is cheap (no torch): benchmark classes are registered for
``clbench list`` without loading any data or framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class BenchmarkConfig:
    """Options every benchmark understands."""

    data_root: str | None = None  # where the benchmark's data lives (None: the benchmark's default)

    #: Fields that say where or how the data is read, not what it is: left out of the key that
    #: decides whether accuracy goals measured in one run apply to another (clbench.goals.data_key).
    NOT_DATA: ClassVar[tuple[str, ...]] = ("data_root",)


TASK_KINDS = ("classification", "verification", "triplet")


@dataclass
class TaskData:
    """One task: its name, its classes and its three splits.

    Classification: each split is a torch ``Dataset`` yielding ``(image_tensor, local_label)``
    with a ``targets`` list of local labels ``0..len(class_names)-1`` (one head per task, as in
    the CPG code). ``valid`` is carved from the training data: goal checks and model choices use
    it, never ``test``.

    Verification: ``train`` is an identity-classification dataset (``class_names`` are the
    identities) that trains the embedding with a margin loss; ``valid`` and ``test`` are
    :class:`clbench.verification.PairSplit` objects scored by embedding cosine similarity.

    Triplet: the task trains an L2-normalised embedding (``make_head("embedding")``, 16-d) with a
    triplet loss (:mod:`clbench.triplets`). ``train`` yields ``(stack([anchor, positive,
    negative]), 0)`` items, the stack ``(3, C, H, W)`` (:class:`clbench.triplets.StackedTriplets`:
    the constant target keeps Avalanche's classification-dataset machinery working; the loss
    ignores it); ``valid``
    and ``test`` are :class:`clbench.triplets.TripletDataset` objects scored by triplet accuracy.
    ``class_names`` are the categories the triplets are drawn from (informational: the embedding
    head's size is fixed and ignores ``num_classes``).

    The runner checks every task when it is loaded (:mod:`clbench.taskcheck`): no split is empty,
    classification labels are ``0..n-1`` (or ``remap_labels=True`` asks for them to be mapped),
    a classification task has at least two classes, and the first batch's inputs are finite.
    """

    name: str
    class_names: Sequence[str]
    train: Dataset[Any]
    valid: Any
    test: Any
    kind: str = "classification"
    remap_labels: bool = False  # labels are not 0..n-1: map the sorted distinct training labels onto them

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")

    @property
    def num_classes(self) -> int:
        """``len(class_names)``: the head's outputs, except for triplet tasks (see the class doc)."""
        return len(self.class_names)

    @property
    def head(self) -> str:
        """The head the task trains: a linear classifier, a cosine (margin-loss) head, or the
        L2-normalised embedding of a triplet task (kinds of :func:`clbench.nn.heads.make_head`)."""
        return {"verification": "cosine", "triplet": "embedding"}.get(self.kind, "linear")


class Benchmark:
    """Base class of every benchmark definition.

    Subclasses set ``name`` (the registry key), a one-line ``description``, optionally a
    ``Config`` dataclass (subclass :class:`BenchmarkConfig`) and ``recipes``:
    ``{recipe_name: {strategy_name_or_"*": {config_field: value}}}``. The ``"*"`` entry applies to
    every strategy whose config has those fields; a strategy's own entry must match its fields.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[BenchmarkConfig]] = BenchmarkConfig
    recipes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {"default": {}}
    default_recipe: ClassVar[str] = "default"
    # recipe name -> one line: its purpose and its cost (``clbench list recipes``).
    recipe_notes: ClassVar[dict[str, str]] = {}
    # recipe name -> values of this benchmark's own Config the recipe sets (a CPU recipe's narrower
    # backbone, say): the lowest layer, under a config file's section and the --<benchmark>.* flags.
    recipe_config: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: BenchmarkConfig) -> None:
        self.config = config

    @classmethod
    def recipe_layers(cls, recipe: str, strategy: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """The config layers recipe ``recipe`` gives ``strategy``: the ``"*"`` entry restricted to
        ``fields`` (the strategy's config fields), then the strategy's own entry.

        Raises:
            UsageError: the benchmark has no recipe of that name (the message lists them).
        """
        from clbench.errors import UsageError

        if recipe not in cls.recipes:
            raise UsageError(f"benchmark {cls.name!r} has no recipe {recipe!r}; available: {', '.join(cls.recipes)}")
        entries = cls.recipes[recipe]
        common = {k: v for k, v in entries.get("*", {}).items() if k in fields}
        return [common, dict(entries.get(strategy, {}))]

    @classmethod
    def recipe_config_layer(cls, recipe: str) -> dict[str, Any]:
        """The benchmark Config values recipe ``recipe`` sets (``recipe_config``; empty when none)."""
        return dict(cls.recipe_config.get(recipe, {}))

    def check_data(self) -> None:
        """Cheap check (no torch, no reading of images) that the data is where the config says,
        run before any heavy import; raises :class:`clbench.datasets.errors.DataError` naming the
        flag, the folder looked in and the layout expected. The default calls ``check_layout()``
        when the benchmark has one, else checks nothing."""
        check_layout = getattr(self, "check_layout", None)
        if callable(check_layout):
            check_layout()

    def load_tasks(self) -> list[TaskData]:
        """Load (or build) every task's data, in task order."""
        raise NotImplementedError

    def backbone(self, width: float = 1.0) -> nn.Module:
        """A plain feature extractor with an ``out_features`` attribute; ``width`` scales channels."""
        raise NotImplementedError
