"""A recipe's benchmark options (``Benchmark.recipe_config``): cifar100_20's ``cpu`` recipe narrows
the VGG16-BN, under the config file and the flags, and goals never cross widths (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clbench import experiment, goals
from clbench.cli import resolve_run
from clbench_benchmarks.cifar100_20 import Cifar100_20, Cifar100_20Config


def _spec(tmp_path: Path, *extra: str):
    (tmp_path / "train").mkdir(exist_ok=True)  # check_data wants a tree; nothing is read
    args = ["--strategy", "cpg", "--benchmark", "cifar100_20", "--data-root", str(tmp_path), *extra]
    spec, _, _ = resolve_run(args)
    return spec


def test_the_cpu_recipe_sets_the_backbone_width(tmp_path):
    assert _spec(tmp_path, "--recipe", "cpu").benchmark_config.backbone_width == 0.25
    assert _spec(tmp_path).benchmark_config.backbone_width == 1.0  # the paper recipe: the paper's network
    assert _spec(tmp_path, "--recipe", "fast").benchmark_config.backbone_width == 1.0


def test_a_flag_and_a_config_file_override_the_recipe(tmp_path):
    flag = _spec(tmp_path, "--recipe", "cpu", "--cifar100_20.backbone-width", "0.5")
    assert flag.benchmark_config.backbone_width == 0.5
    config = tmp_path / "run.toml"
    config.write_text("[cifar100_20]\nbackbone_width = 0.125\n")
    assert _spec(tmp_path, "--recipe", "cpu", "-c", str(config)).benchmark_config.backbone_width == 0.125


def test_the_width_reaches_the_network():
    pytest.importorskip("torch")
    from torch import nn

    def first_conv(width: float, grow: float = 1.0) -> int:
        net = Cifar100_20(Cifar100_20Config(backbone_width=width)).backbone(grow)
        return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).out_channels

    assert first_conv(1.0) == 64
    assert first_conv(0.25) == 16
    assert first_conv(0.25, 1.5**0.5) == 19  # growth multiplies the recipe's width (upstream truncates)


def test_goals_measured_at_one_width_are_not_used_at_another():
    assert goals.data_key(Cifar100_20Config(backbone_width=0.25)) != goals.data_key(Cifar100_20Config())


def test_a_cpu_recipe_run_does_not_list_its_recipe_width_as_an_override():
    baseline = experiment.recipe_values("cpg", "cifar100_20", "cpu")
    assert baseline is not None and baseline["cifar100_20.backbone_width"] == 0.25
    config = {
        "run": {"strategy": "cpg", "benchmark": "cifar100_20", "recipe": "cpu"},
        "cpg": {},
        "cifar100_20": {"backbone_width": 0.25},
    }
    assert "cifar100_20.backbone_width" not in experiment.overrides(config)
    config["cifar100_20"]["backbone_width"] = 0.5
    assert experiment.overrides(config)["cifar100_20.backbone_width"] == 0.5


@pytest.mark.parametrize("width", [0, -1, 0.01, 5])
def test_a_bad_width_is_refused(width):
    from clbench.errors import UsageError

    with pytest.raises(UsageError, match="backbone_width"):
        Cifar100_20Config(backbone_width=width)


def test_help_shows_the_width_the_recipe_runs_with(tmp_path, capsys):
    from clbench.cli import main

    args = ["run", "--strategy", "cpg", "--benchmark", "cifar100_20", "--recipe", "cpu", "--help"]
    with pytest.raises(SystemExit):
        main(args)
    text = " ".join(capsys.readouterr().out.split())
    assert "--cifar100_20.backbone_width FLOAT VGG16-BN channel factor" in text
    assert "Runs with 0.25 (recipe cpu)" in text
