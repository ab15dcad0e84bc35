"""Issue 14: `run --help` shows the values that run, `list recipes`, one-line errors that name
the closest flag, data-root errors in one line."""

from __future__ import annotations

import pytest

from clbench.cli import main


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main(["run", *args, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize(
    ("args", "epochs", "lr"),
    [
        ((), "runs with 4 (recipe default)", "runs with 0.05 (recipe default)"),
        (("--recipe", "tiny"), "runs with 1 (recipe tiny)", "runs with 0.05 (recipe tiny)"),
    ],
)
def test_run_help_shows_the_values_that_run(capsys, args, epochs, lr):
    text = _help(capsys, *args).lower()
    assert f"--finetune.epochs int training epochs per task. {epochs}" in text
    assert f"--finetune.lr float sgd learning rate. {lr}" in text
    assert "--finetune.momentum float runs with 0.9 (default)" in text


def test_run_help_shows_each_fields_cited_comment(capsys):
    text = _help(capsys, "--strategy", "packnet")
    assert "--packnet.prune-ratio FLOAT, --packnet.prune_ratio FLOAT script: one-shot prune 0.6. Runs with 0.6" in text
    # The catch-all replaced PackNet's own 100 epochs: --help says so.
    assert "script: 100 epochs. Runs with 4 (recipe default; replaces the strategy's own default 100)" in text


def test_run_help_shows_config_file_values(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[finetune]\nlr = 0.2\n")
    assert "--finetune.lr FLOAT SGD learning rate. Runs with 0.2 (config file)" in _help(capsys, "-c", str(path))


def test_list_recipes_names_purpose_and_cost(capsys):
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out
    from clbench.manager import load_plugins

    for entry in load_plugins().benchmarks:
        for recipe in entry.obj.recipes:
            line = next(x for x in out.splitlines() if x.split()[:2] == [entry.name, recipe])
            assert "(no description)" not in line, f"{entry.name}/{recipe} has no recipe_notes entry"
    assert "digits         default *" in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "--finetune.lrr", "3"], "did you mean --finetune.lr?"),
        (["run", "--seeed", "3"], "did you mean --seed?"),
        (["table", "x", "--per-rn"], "did you mean --per-run?"),
        (["compare", "x", "--refrence", "digits"], "did you mean --reference?"),
        (["tabel", "x"], "did you mean table?"),
        (["list", "recipe"], "did you mean recipes?"),
        (["run", "--strategy", "packnt"], "did you mean packnet?"),
        (["run", "--recipe", "tny"], "did you mean tiny?"),
    ],
)
def test_mistyped_names_are_one_line_with_the_closest_match(capsys, argv, hint):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and hint in captured.err


@pytest.mark.parametrize("bench", ["cifar100_20", "facial4_mini", "facial4", "fine_grained6"])
def test_data_root_errors_are_one_line_naming_the_folder(capsys, tmp_path, bench):
    missing = tmp_path / "nowhere"
    assert main(["run", "--benchmark", bench, "--data-root", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err


@pytest.mark.parametrize("layout", ["train", "cifar100/train"])
def test_early_data_check_leaves_a_partial_or_nested_cifar_tree_to_the_loader(tmp_path, layout):
    """The shared archives extract to DIR/cifar100/{train,test}; a tree missing its test/ split is
    for the loader to describe ("missing test/"), not "no CIFAR-100 data"."""
    from clbench_benchmarks.cifar100_20 import Cifar100_20, Cifar100_20Config

    (tmp_path / layout).mkdir(parents=True)
    Cifar100_20(Cifar100_20Config(data_root=str(tmp_path))).check_data()  # raises nothing
