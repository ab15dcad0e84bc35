"""The device engine (clbench.engine): augmentation, normalisation, epochs, training through the
runner, zero forgetting, refusals, and evaluation equal to Avalanche's.

The ``engine`` / ``precision`` / ``channels_last`` options are ``TrainConfig`` fields.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

import clbench
from clbench import config as cfg
from clbench import results
from clbench.datasets.arrays import ArrayDataset, Augment, channel_stats
from clbench.datasets.tensors import TensorTaskDataset
from clbench.engine import (
    augment_batch,
    device_generator,
    device_tensors,
    epoch_batches,
    evaluate_on_device,
    fit_on_device,
)
from clbench.errors import UsageError
from clbench.fitting import iterations_per_epoch
from clbench.manager import load_plugins
from clbench.runner import RunSpec, run
from clbench.strategy import StrategyContext, Task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------- augmentation
def _offset_of(out: torch.Tensor, padded: torch.Tensor, flipped: bool) -> list[tuple[int, int]]:
    """Every (top, left) whose window of ``padded`` (read right to left if ``flipped``) is ``out``."""
    h, w = out.shape[-2:]
    found = []
    for top in range(padded.shape[-2] - h + 1):
        for left in range(padded.shape[-1] - w + 1):
            window = padded[..., top : top + h, left : left + w]
            if torch.equal(window.flip(-1) if flipped else window, out):
                found.append((top, left))
    return found


def test_crop_keeps_the_shape_and_shifts_content_with_zero_padding():
    image = torch.arange(1, 1 + 2 * 5 * 6, dtype=torch.uint8).view(1, 2, 5, 6)  # distinct, non-zero
    batch = image.expand(300, -1, -1, -1).contiguous()
    out = augment_batch(batch, Augment(crop_padding=2), torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(image[0], (2, 2, 2, 2))
    offsets = []
    for sample in out:
        match = _offset_of(sample, padded, flipped=False)
        assert len(match) == 1  # each output is exactly one crop of the zero-padded image
        offsets.append(match[0])
    assert set(offsets) == {(t, left) for t in range(5) for left in range(5)}  # uniform over 0..2p
    centred = out[[i for i, o in enumerate(offsets) if o == (2, 2)][0]]
    assert torch.equal(centred, image[0])
    # Shifted one pixel down and right: the first row and column come from the zero padding.
    shifted = out[[i for i, o in enumerate(offsets) if o == (1, 1)][0]]
    assert (shifted[:, 0, :] == 0).all() and (shifted[:, :, 0] == 0).all()
    assert torch.equal(shifted[:, 1:, 1:], image[0, :, :-1, :-1])


def test_flip_mirrors_about_half_the_samples():
    image = torch.arange(12, dtype=torch.uint8).view(1, 1, 3, 4)
    batch = image.expand(400, -1, -1, -1).contiguous()
    out = augment_batch(batch, Augment(hflip=True), torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, image[0].flip(-1)) for o in out])
    same = torch.tensor([torch.equal(o, image[0]) for o in out])
    assert bool((flipped ^ same).all())  # each sample is the image or its mirror, never else
    assert 150 < int(flipped.sum()) < 250


def test_crop_and_flip_together_read_a_window_right_to_left():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    out = augment_batch(image.expand(200, -1, -1, -1).contiguous(), Augment(1, True), torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(image[0], (1, 1, 1, 1))
    kinds = [(len(_offset_of(o, padded, False)), len(_offset_of(o, padded, True))) for o in out]
    assert all(k in ((1, 0), (0, 1)) for k in kinds)
    assert set(kinds) == {(1, 0), (0, 1)}


def test_augmentation_is_deterministic_per_seed():
    batch = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    aug = Augment(crop_padding=3, hflip=True)

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return augment_batch(batch, aug, device_generator(torch.device("cpu")))

    assert torch.equal(draw(4), draw(4))
    assert not torch.equal(draw(4), draw(5))


# ---------------------------------------------------------------------- normalisation
def _array_dataset(n: int = 20, seed: int = 0, **kwargs) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    return ArrayDataset(images, rng.integers(0, 3, n), mean=mean, std=std, **kwargs)


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalisation_matches_the_per_sample_path(channels_last):
    dataset = _array_dataset()
    data = device_tensors(dataset, "cpu")
    x, y = data.batch(torch.arange(len(dataset)), None, channels_last)
    expected = torch.stack([dataset[i][0] for i in range(len(dataset))])
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    assert y.tolist() == dataset.targets and y.dtype == torch.long
    assert x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_read_only_image_arrays_are_copied(tmp_path):
    dataset = _array_dataset()
    path = tmp_path / "images.u8"
    dataset.images.tofile(path)
    mapped = np.memmap(path, np.uint8, "r", shape=dataset.images.shape)
    readonly = ArrayDataset(mapped, dataset.targets, mean=(0.5,) * 3, std=(0.25,) * 3)
    x, _ = device_tensors(readonly, "cpu").batch(slice(0, 4))  # no non-writable warning (an error here)
    torch.testing.assert_close(x, torch.stack([readonly[i][0] for i in range(4)]), rtol=1e-5, atol=1e-5)


def test_device_tensors_are_built_once_per_dataset():
    dataset = _array_dataset()
    assert device_tensors(dataset, "cpu") is device_tensors(dataset, "cpu")
    assert device_tensors(_array_dataset(), "cpu") is not device_tensors(dataset, "cpu")


def test_tensor_datasets_are_used_as_they_are():
    inputs = torch.randn(7, 1, 4, 4)
    data = device_tensors(TensorTaskDataset(inputs, [0, 1] * 3 + [0]), "cpu")
    x, y = data.batch(torch.tensor([3, 1]))
    assert torch.equal(x, inputs[[3, 1]]) and y.tolist() == [1, 1]


def test_a_transform_without_augment_is_refused():
    flip = v2.RandomHorizontalFlip()
    with pytest.raises(UsageError, match="no declarative augment"):
        device_tensors(_array_dataset(transform=flip), "cpu")
    data = device_tensors(_array_dataset(transform=flip, augment=Augment(hflip=True)), "cpu")
    assert data.augment == Augment(hflip=True)
    with pytest.raises(UsageError, match="ArrayDataset or TensorTaskDataset"):
        device_tensors(torch.utils.data.TensorDataset(torch.zeros(2)), "cpu")


# ---------------------------------------------------------------------------- epochs
@pytest.mark.parametrize(("n", "batch"), [(10, 3), (11, 3), (12, 4), (1, 4), (9, 9)])
def test_an_epoch_visits_every_sample_once_but_a_last_batch_of_one(n, batch):
    generator = torch.Generator().manual_seed(0)
    batches = list(epoch_batches(n, batch, generator, torch.device("cpu")))
    seen = torch.cat(batches).tolist() if batches else []
    assert len(batches) == iterations_per_epoch(n, batch)
    assert len(seen) == len(set(seen))
    assert len(seen) == (n - 1 if n % batch == 1 else n)
    assert all(len(b) > 1 for b in batches)


# --------------------------------------------------------------- training and evaluation
def _engine_layer(engine: str = "device", precision: str = "fp32", channels_last: bool = False) -> dict:
    return {"engine": engine, "precision": precision, "channels_last": channels_last}


def _spec(strategy: str, out: Path, overrides: dict | None = None, **engine) -> tuple[RunSpec, object]:
    plugins = load_plugins()
    strategy_cls = plugins.strategies.get(strategy)
    bench_cls = plugins.benchmarks.get("digits")
    config_cls = strategy_cls.Config
    recipe = bench_cls.recipes["tiny"]
    fields = cfg.fields_of(config_cls)
    common = {k: v for k, v in recipe["*"].items() if k in fields}
    layers = [common, recipe.get(strategy, {}), overrides or {}, _engine_layer(**engine)]
    config = cfg.resolve(config_cls, strategy, layers)
    spec = RunSpec(
        strategy=strategy,
        benchmark="digits",
        strategy_config=config,
        benchmark_config=bench_cls.Config(),
        recipe="tiny",
        seed=3,
        device="cpu",
        out=out,
        quiet=True,
    )
    return spec, plugins


@pytest.fixture(scope="module")
def digits_tasks():
    from clbench.loop import build_scenario
    from clbench_benchmarks.digits import Digits, DigitsConfig

    data = Digits(DigitsConfig()).load_tasks()[:2]
    exps = build_scenario(data)
    return [Task(i, d, exps["train"][i], exps["valid"][i], exps["test"][i]) for i, d in enumerate(data, start=1)]


def _strategy(name: str, digits_tasks, **engine):
    from clbench_benchmarks.digits import Digits, DigitsConfig

    strategy_cls = load_plugins().strategies.get(name)
    config = cfg.resolve(strategy_cls.Config, name, [{"batch_size": 32, "lr": 0.05}, _engine_layer(**engine)])
    context = StrategyContext(torch.device("cpu"), Digits(DigitsConfig()).backbone, num_tasks=len(digits_tasks))
    return strategy_cls(config, context)


@pytest.mark.parametrize(
    ("name", "precision", "channels_last"),
    [("finetune", "fp32", False), ("finetune", "bf16", True), ("cpg", "fp32", False)],
)
def test_training_lowers_the_loss(name, precision, channels_last, digits_tasks):
    torch.manual_seed(0)
    strategy = _strategy(name, digits_tasks, precision=precision, channels_last=channels_last)
    task = digits_tasks[0]
    strategy.before_task(task)
    optimizer = strategy.make_optimizer(0.05)

    def epochs(n: int):
        return fit_on_device(
            strategy, task, optimizer=optimizer, schedulers=[], criterion=task.criterion(),
            epochs=n, batch_size=32, phase="train",
        )  # fmt: skip

    first, later = epochs(1), epochs(3)
    assert later.train_loss < 0.5 * first.train_loss
    assert later.train_accuracy > 0.95
    assert strategy.model.training
    if channels_last:
        conv = next(p for p in strategy.model.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)


def test_same_seed_same_training(digits_tasks):
    def losses() -> list[float]:
        torch.manual_seed(0)
        strategy = _strategy("finetune", digits_tasks)
        task = digits_tasks[0]
        strategy.before_task(task)
        optimizer = strategy.make_optimizer(0.05)
        return [
            fit_on_device(
                strategy, task, optimizer=optimizer, schedulers=[], criterion=task.criterion(),
                epochs=1, batch_size=32, phase="train",
            ).train_loss
            for _ in range(2)
        ]  # fmt: skip

    assert losses() == losses()


def test_a_non_finite_loss_stops_training(digits_tasks):
    from clbench.loop import NonFiniteLossError

    strategy = _strategy("finetune", digits_tasks)
    task = digits_tasks[0]
    strategy.before_task(task)
    with pytest.raises(NonFiniteLossError, match=r"task 1 \(digits_01\), phase train, epoch 1, step \d+: lower"):
        fit_on_device(
            strategy, task, optimizer=strategy.make_optimizer(1e30), schedulers=[], criterion=task.criterion(),
            epochs=2, batch_size=32, phase="train",
        )  # fmt: skip


def test_schedulers_step_once_per_epoch(digits_tasks):
    strategy = _strategy("finetune", digits_tasks)
    task = digits_tasks[0]
    strategy.before_task(task)
    optimizer = strategy.make_optimizer(0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    fit_on_device(
        strategy, task, optimizer=optimizer, schedulers=[scheduler], criterion=task.criterion(),
        epochs=3, batch_size=32, phase="train",
    )  # fmt: skip
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 / 8)


def test_evaluation_equals_avalanches(digits_tasks):
    from clbench.loop import evaluate

    torch.manual_seed(0)
    strategy = _strategy("finetune", digits_tasks)
    for task in digits_tasks:
        strategy.before_task(task)
        fit_on_device(
            strategy, task, optimizer=strategy.make_optimizer(0.05), schedulers=[], criterion=task.criterion(),
            epochs=1, batch_size=32, phase="train",
        )  # fmt: skip
        strategy.after_task(task)
    strategy.model.train()
    for split in ("valid", "test"):
        mine = evaluate_on_device(strategy, digits_tasks, split, batch_size=50)
        assert strategy.model.training  # train/eval flags restored, as Avalanche's eval does
        reference = evaluate(strategy, digits_tasks, split, batch_size=50)  # the Avalanche engine
        assert mine.keys() == reference.keys() == {1, 2}
        for k in mine:
            assert mine[k] == pytest.approx(reference[k], abs=1e-9)
        assert evaluate_on_device(strategy, digits_tasks, split, batch_size=7) == pytest.approx(mine, abs=1e-9)


# ------------------------------------------------------------------ through the runner
@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "overrides"), [("finetune", {}), ("cpg", {"goals": "self", "min_train_accuracy": 0.5})]
)
def test_runs_through_the_runner(strategy, overrides, tmp_path):
    spec, plugins = _spec(strategy, tmp_path / "run", overrides)
    run(spec, plugins)
    matrix = results.accuracy_matrix(results.load_metrics(tmp_path / "run"))
    assert matrix.shape == (5, 5)
    assert min(matrix.loc[t, t] for t in matrix.index) > 0.8


class _OwnedWeights:
    """Records, when each task finishes, every task's owned weights; later tasks must not move them."""

    def __init__(self) -> None:
        self.owned: dict[int, dict[str, torch.Tensor]] = {}
        self.checks = 0

    @clbench.hookimpl
    def clbench_after_task(self, run, task, rows):
        model = run.strategy.model
        for k in range(1, task + 1):
            owned = {
                name: layer.weight.detach()[layer.owner == k].clone()
                for name, layer in model.named_modules()
                if hasattr(layer, "owner")
            }
            if k == task:
                self.owned[k] = owned
            else:
                for name, values in owned.items():
                    assert torch.equal(values, self.owned[k][name]), f"task {k} weights moved in {name}"
                self.checks += 1


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "channels_last"), [("fp32", False), ("bf16", True)])
def test_packnet_keeps_earlier_weights_exactly(precision, channels_last, tmp_path):
    spec, _ = _spec(
        "packnet", tmp_path / "run", {"weight_decay": 5e-3, "momentum": 0.9},
        precision=precision, channels_last=channels_last,
    )  # fmt: skip
    recorder = _OwnedWeights()
    run(spec, load_plugins(modules=[recorder]))
    assert recorder.checks == 10  # every earlier task after each of tasks 2..5
    assert all(sum(v.numel() for v in owned.values()) > 0 for owned in recorder.owned.values())


def test_strategies_with_avalanche_plugins_are_refused_before_anything_is_written(tmp_path, capsys):
    from clbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--strategy", "ewc", "--recipe", "tiny", "--ewc.engine", "device", "--out", str(out)]) == 2
    assert "strategy 'ewc' trains with Avalanche plugins" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_engine_options_are_refused():
    strategy_cls = load_plugins().strategies.get("finetune")
    with pytest.raises(UsageError, match="precision must be fp32 or bf16"):
        cfg.resolve(strategy_cls.Config, "finetune", [_engine_layer(precision="fp8")])
    with pytest.raises(UsageError, match="fp32/false unless engine is device"):
        cfg.resolve(strategy_cls.Config, "finetune", [_engine_layer(engine="avalanche", channels_last=True)])


# -------------------------------------------------------------------------- the recipe
def test_the_fast_cifar_recipe_resolves_for_every_strategy():
    from clbench_benchmarks.cifar100_20 import Cifar100_20

    recipe = Cifar100_20.recipes["fast"]
    strategies = load_plugins().strategies
    for name in strategies.names():
        config_cls = strategies.get(name).Config
        fields = cfg.fields_of(config_cls)
        common = {k: v for k, v in recipe["*"].items() if k in fields}
        config = cfg.resolve(config_cls, name, [common, recipe.get(name, {})])
        assert config.batch_size == 128
        own_loop = name in ("ewc", "si", "lwf") or name.startswith("joint")
        assert config.engine == ("avalanche" if own_loop else "device"), name
    cpg = cfg.resolve(strategies.get("cpg").Config, "cpg", [recipe["*"], recipe["cpg"]])
    assert (cpg.engine, cpg.precision, cpg.channels_last) == ("device", "bf16", True)
    assert max(cpg.lr_milestones) < cpg.epochs and cpg.lr_mask_stop_epoch < cpg.epochs
    assert math.isclose(cpg.lr / cpg.batch_size, 1e-2 / 32)  # linear lr scaling from the paper's


def test_throughput_report_gives_each_repetition_and_the_ratio_of_medians():
    from clbench.throughput import Measurement, report

    speeds = {"bare": [10.0, 20.0, 40.0], "cpg": [5.0, 16.0, 10.0], "eval_bare": [8.0, 8.0, 8.0], "eval_cpg": [4.0] * 3}
    faults = {name: [100.0, 300.0, 200.0] for name in speeds}
    table = report(Measurement(speeds, faults), "width 1, batch 32")
    assert table.startswith("### width 1, batch 32")
    assert "| cpg | 5.0 | 16.0 | 10.0 | 10.0 | 0.500 × bare | 200 |" in table  # median 10 / median 20
    assert "| eval_cpg | 4.0 | 4.0 | 4.0 | 4.0 | 0.500 × eval_bare | 200 |" in table
    assert "| bare | 10.0 | 20.0 | 40.0 | 20.0 | 1.000 × bare | 200 |" in table


@pytest.mark.parametrize("engine", ["device", "avalanche"])
def test_iteration_and_loss_hooks_run_on_both_engines(engine, digits_tasks):
    task = digits_tasks[0]
    steps = iterations_per_epoch(len(task.train_exp.dataset), 32)

    def trained(weight: float) -> tuple[list[str], float, float]:
        torch.manual_seed(0)
        strategy = _strategy("finetune", digits_tasks, engine=engine)
        strategy.before_task(task)
        calls: list[str] = []
        head = strategy.model.heads["1"]

        def training_loss(loss, output, target, loop):
            calls.append("loss")
            assert output.shape[0] == target.shape[0]
            return loss + 10.0 + weight * sum((p**2).sum() for p in head.parameters())

        strategy.before_iteration = lambda loop: calls.append("iteration")
        strategy.training_loss = training_loss
        result = strategy.fit(task, strategy.make_optimizer(0.05), [], 1, "train")
        norm = float(sum((p.detach() ** 2).sum() for p in head.parameters()))
        return calls, result.train_loss, norm

    calls, logged, plain_norm = trained(0.0)
    assert calls == ["iteration", "loss"] * steps
    assert logged > 10.0  # the logged loss is the one the hook returned
    _, _, shrunk_norm = trained(5.0)
    assert shrunk_norm < 0.5 * plain_norm  # and it is the one back-propagated


@pytest.mark.parametrize("engine", ["device", "avalanche"])
def test_pick_masks_train_under_a_strategys_own_optimizer(engine, digits_tasks):
    """Issue 18: pick masks used to train only inside run_phase (a private flag); a strategy with
    its own optimizer got masks that silently never moved."""
    from clbench.optim import OptimizerGroup

    torch.manual_seed(0)
    strategy = _strategy("cpg", digits_tasks, engine=engine)
    first, second = digits_tasks
    strategy.before_task(first)
    strategy.model.prune(0.5)  # task 2 then picks from half of every layer
    strategy.after_task(first)
    strategy.before_task(second)
    picks = strategy.model.pick_parameters()
    before = [p.detach().clone() for p in picks]
    sgd = torch.optim.SGD(strategy.model.trainable_parameters(), lr=0.01)
    strategy.fit(second, OptimizerGroup([sgd, torch.optim.Adam(picks, lr=0.01)]), [], 1, "own loop")
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, picks, strict=True))
