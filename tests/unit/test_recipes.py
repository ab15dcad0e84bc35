"""Recipes from plugins and their precedence (issue 18, item 3)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

import clbench
from clbench.cli import main
from clbench.errors import RegistryError
from clbench.manager import load_plugins
from clbench.strategy import Strategy, TrainConfig


@dataclass(frozen=True)
class BigBatchConfig(TrainConfig):
    batch_size: int = 128  # the strategy's own default
    lr: float = 0.001  # its own as well
    width: int = 3  # a field no recipe knows


class BigBatch(Strategy):
    name = "big_batch"
    Config = BigBatchConfig


class KeepsBatch(BigBatch):
    name = "keeps_batch"
    own_defaults = ("batch_size",)


class Plugin:
    __name__ = "test_recipes_plugin"

    def __init__(self, recipes):
        self.recipes = recipes

    @clbench.hookimpl
    def clbench_register_strategies(self, register):
        register(BigBatch)
        register(KeepsBatch)

    @clbench.hookimpl
    def clbench_register_recipes(self, register):
        for args in self.recipes:
            register(*args)


def _layers(plugins, strategy, recipe="tiny"):
    bench = plugins.benchmarks.get("digits")
    return plugins.recipes.layers(bench, recipe, strategy, plugins.strategies.get(strategy))


def test_a_plugin_entry_sits_between_the_catch_all_and_flags():
    plugins = load_plugins(modules=[Plugin([("digits", "tiny", "big_batch", {"width": 5, "lr": 0.2})])])
    layers = _layers(plugins, "big_batch")
    assert layers[0].values["batch_size"] == 64  # digits' tiny "*"
    assert layers[1].values == {"width": 5, "lr": 0.2} and "test_recipes_plugin" in layers[1].origin


def test_own_defaults_are_left_alone_by_the_catch_all():
    plugins = load_plugins(modules=[Plugin([])])
    assert "batch_size" not in _layers(plugins, "keeps_batch")[0].values
    assert _layers(plugins, "big_batch")[0].values["batch_size"] == 64


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("digits", "tiny", "*", {"lr": 1.0}), "named strategy only"),
        (("digits", "tiny", "finetune", {"lr": 1.0}), "its own strategies only"),
        (("digits", "tiny", "big_batch", {"lr": 1.0}), "registered twice"),
        (("digits", "brand_new", "big_batch", {"lr": 1.0}), "without a note"),
        (("digits", "tiny", "big_batch", {"lr_mask": 1.0}), r"sets \['lr_mask'\], which are not fields"),
    ],
)
def test_entries_a_plugin_may_not_add(entry, message):
    recipes = [entry, ("digits", "tiny", "big_batch", {"lr": 0.5})] if "twice" in message else [entry]
    with pytest.raises(RegistryError, match=message):
        load_plugins(modules=[Plugin(recipes)])


def test_an_entry_the_benchmark_defines_cannot_be_replaced():
    from clbench.recipes import RecipeBook

    book = RecipeBook()
    with pytest.raises(RegistryError, match="defines itself"):
        book.add("digits", "tiny", "ewc", {"ewc_lambda": 1.0}, provider="x", benchmarks=load_plugins().benchmarks)


def test_a_new_recipe_with_a_note_is_listed(capsys, tmp_path):
    plugin = tmp_path / "long.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import clbench
            from clbench.strategy import Strategy

            class Long(Strategy):
                name = "long_one"

            @clbench.hookimpl
            def clbench_register_strategies(register):
                register(Long)

            @clbench.hookimpl
            def clbench_register_recipes(register):
                register("digits", "paper_long", "long_one", {"epochs": 50}, note="50 epochs; minutes on a CPU")
            """
        )
    )
    assert main(["list", "recipes", "--plugin", str(plugin)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "paper_long" in x)
    assert "50 epochs; minutes on a CPU (from file:long.py)" in line
    argv = ["run", "--plugin", str(plugin), "--strategy", "long_one", "--recipe", "paper_long", "--print-config"]
    assert main(argv) == 0
    assert "epochs = 50" in capsys.readouterr().out


def test_print_config_notes_a_catch_all_that_replaced_the_strategys_own_default(tmp_path, capsys):
    plugin = tmp_path / "big.py"
    plugin.write_text(
        "import clbench\nfrom tests_recipes_shared import BigBatch\n"
        "@clbench.hookimpl\ndef clbench_register_strategies(register):\n    register(BigBatch)\n"
    )
    (tmp_path / "tests_recipes_shared.py").write_text(
        "from dataclasses import dataclass\nfrom clbench.strategy import Strategy, TrainConfig\n"
        "@dataclass(frozen=True)\nclass C(TrainConfig):\n    batch_size: int = 128  # own\n"
        "class BigBatch(Strategy):\n    name = 'big_batch'\n    Config = C\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert (
            main(["run", "--plugin", str(plugin), "--strategy", "big_batch", "--recipe", "tiny", "--print-config"]) == 0
        )
        out = capsys.readouterr().out
        assert out.startswith('# note: recipe tiny (catch-all "*") sets big_batch.batch_size = 64, replacing')
        assert "own default 128" in out and "batch_size = 64" in out
        argv = ["run", "--plugin", str(plugin), "--strategy", "big_batch", "--recipe", "tiny", "--print-config"]
        assert main([*argv, "--big_batch.batch-size", "32"]) == 0
        assert "# note" not in capsys.readouterr().out  # a flag set it: nothing was replaced silently
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tests_recipes_shared", None)
