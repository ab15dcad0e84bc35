"""facial4_mini's optional fifth task, expression similarity (FER2013 triplets, task kind
"triplet"), loaded and run end to end on a tiny synthetic data tree."""

from __future__ import annotations

import numpy as np
import pytest

from clbench import results
from clbench.cli import main
from clbench.datasets.errors import DataError
from clbench.datasets.folders import FER2013_EMOTIONS
from clbench.triplets import StackedTriplets, TripletDataset
from clbench_benchmarks.facial4_mini import IMAGE_SIZE, Facial4Mini, Facial4MiniConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FER_IMAGES = {"train": 3, "val": 2, "test": 2}  # per emotion, as the `faces` fixture (tests/conftest.py) makes them


def _load(faces, **options):
    return Facial4Mini(Facial4MiniConfig(data_root=str(faces), **options)).load_tasks()


def test_expression_similarity_is_an_optional_fifth_triplet_task(faces):
    assert [t.name for t in _load(faces)] == ["face_verification", "gender", "expression", "age"]
    tasks = _load(faces, expression_similarity=True, train_triplets=30, eval_triplets=12)
    assert [t.kind for t in tasks] == ["verification", "classification", "classification", "classification",
                                       "triplet"]  # fmt: skip
    similarity, expression = tasks[4], tasks[2]
    assert similarity.name == "expression_similarity" and similarity.head == "embedding"
    assert list(similarity.class_names) == list(expression.class_names)
    assert isinstance(similarity.train, StackedTriplets) and len(similarity.train) == 30
    x, y = similarity.train[0]
    assert x.shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE) and y == 0
    for split in ("valid", "test"):
        data = getattr(similarity, split)
        assert isinstance(data, TripletDataset) and len(data) == 12
        assert data.images is getattr(expression, split)  # the expression task's images, not a copy
        labels = np.asarray(data.images.targets)[data.triplets]
        assert (labels[:, 0] == labels[:, 1]).all() and (labels[:, 0] != labels[:, 2]).all()
    assert not np.array_equal(similarity.valid.triplets, similarity.test.triplets)
    # Defaults: one training triplet per training image; evaluation triplets capped by eval_limit.
    default = _load(faces, expression_similarity=True, eval_limit=14)[4]
    assert len(default.train) == FER_IMAGES["train"] * len(FER2013_EMOTIONS)
    assert len(default.valid) == len(default.test) == 14


def test_too_few_images_for_triplets_is_a_data_error(faces):
    with pytest.raises(DataError, match="no valid triplets from 7 FER2013 images"):
        _load(faces, expression_similarity=True, eval_limit=10)  # one image per emotion is left


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["finetune", "lwf", "packnet", "cpg"])
def test_strategies_run_the_triplet_task(strategy, faces, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--strategy", strategy, "--benchmark", "facial4_mini", "--data-root", str(faces),
            "--epochs", "1", f"--{strategy}.batch-size", "8", "--facial4_mini.expression-similarity", "true",
            "--facial4_mini.train-limit", "14", "--facial4_mini.eval-limit", "14",
            "--facial4_mini.train-triplets", "8", "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    if strategy == "cpg":
        # One pruning stage and no growth (random identities never reach a train accuracy > 0)
        # keep it short; the triplet task still learns pick masks, is pruned and retrained.
        argv += ["--cpg.goals", "self", "--cpg.prune-stages", "0.5", "--cpg.max-width", "1.0"]
    assert main(argv) == 0
    metrics = results.load_metrics(out)
    matrix = results.accuracy_matrix(metrics)
    assert matrix.shape == (5, 5)
    assert matrix.notna().values[np.tril_indices(5)].all()
    similarity = metrics[metrics["eval_task"] == 5]
    assert set(similarity["metric"]) >= {"accuracy", "val_accuracy"}
    assert 0.0 <= matrix.loc[5, 5] <= 1.0
    if strategy in ("packnet", "cpg"):
        for task in matrix.columns:  # parameter isolation: no task forgets
            assert matrix.loc[task:, task].nunique() == 1, matrix
    if strategy == "cpg":
        assert {"seconds_retrain", "seconds_compact"} <= set(similarity["metric"])
