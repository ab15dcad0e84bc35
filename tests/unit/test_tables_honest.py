"""Tables that cannot mislead (issue 14): finished runs only, a repeated seed counted once,
labels that name every difference whatever else is in the table; compare checks comparability."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_compare import make_run as compare_make_run

from clbench import tables
from clbench.cli import main


def make_run(path: Path, final: list[float], **kw) -> Path:
    """test_compare's run maker without a strategy section: the config holds run.* and ``section``."""
    return compare_make_run(path, final, lr=None, **kw)


def test_unfinished_run_and_repeated_seed_are_not_samples(tmp_path, capsys):
    # The Ctrl-C-then-rerun sequence, by hand: a stopped run and a finished rerun, same seed.
    stopped = make_run(tmp_path / "runs" / "a", [0.99, 0.98], finished=False)
    rerun = make_run(tmp_path / "runs" / "b", [0.9778, 0.9778, 0.9778])
    assert main(["table", str(tmp_path / "runs"), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()
    assert len(rows) == 2, out  # header + one row
    row = dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert row["n"] == "1" and row["seeds"] == "0"
    assert float(row["mean"]) == pytest.approx(97.78) and row["mean_std"] == ""
    assert err.count("\n") == 1 and f"left out {stopped}: unfinished" in err and "--include-unfinished" in err
    assert str(rerun) not in err


def test_include_unfinished_shows_them_marked(tmp_path, capsys):
    make_run(tmp_path / "a", [0.5], finished=False)
    make_run(tmp_path / "b", [0.9, 0.9])
    assert main(["table", str(tmp_path), "--include-unfinished", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    configs = [line.split(",")[2] for line in out.strip().splitlines()[1:]]
    assert sorted(configs) == ["tiny", "tiny [unfinished]"] and err == ""


def test_only_unfinished_runs_is_one_line_error(tmp_path, capsys):
    make_run(tmp_path / "a", [0.5], finished=False)
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--include-unfinished" in err


def test_repeated_seed_counts_once_and_says_which(tmp_path, capsys):
    first = make_run(tmp_path / "1", [0.8])
    second = make_run(tmp_path / "2", [0.6])
    other = make_run(tmp_path / "3", [0.7], seed=1)
    runs, notes = tables.select_runs(tables.load_runs([first, second, other]))
    assert [r.path for r in runs] == [first, other]
    assert notes == [
        f"left out {second}: seed 0 of the same experiment is already counted from {first} "
        "(a repeated seed is one sample, not two)"
    ]
    table = tables.seed_table(runs)
    assert table.frame["n"].tolist() == [2] and table.frame["mean"].tolist() == pytest.approx([75.0])


@pytest.mark.parametrize("limits", [(100, 200), (100, None)])
def test_groups_differing_only_in_a_data_limit_name_it(tmp_path, limits):
    dirs = []
    for i, limit in enumerate(limits):
        section = "[cifar100_20]\n" + (f"train_limit = {limit}\n" if limit is not None else "")
        dirs.append(make_run(tmp_path / f"r{i}", [0.5], benchmark="cifar100_20", recipe="small", section=section))
    labels = tables.seed_table(tables.load_runs(dirs)).frame["config"].tolist()
    expected = [f"small (train_limit={limit})" if limit else "small" for limit in limits]
    assert labels == expected
    # The same run reads the same whatever else is in the table.
    alone = tables.seed_table(tables.load_runs(dirs[:1])).frame["config"].tolist()
    assert alone == expected[:1]


def test_label_names_every_override_of_the_recipe(tmp_path):
    section = '[packnet]\nepochs = 3\nlr = 0.05\nengine = "device"\n\n[digits]\nclasses_per_task = 5\n'
    run = make_run(tmp_path / "r", [0.5, 0.5], recipe="tiny", section=section)
    (label,) = tables.seed_table(tables.load_runs([run])).frame["config"].tolist()
    # lr 0.05 is what the tiny recipe sets: not news. Everything else is named.
    assert label == "tiny (epochs=3, engine=device, classes_per_task=5)"


# ----------------------------------------------------------------------- compare
def _reference(tmp_path: Path, setup: str) -> Path:
    path = tmp_path / "ref.csv"
    path.write_text(
        f"# {setup}\nstrategy,benchmark,task,metric,value,tol,source\n"
        "packnet,digits,1,accuracy,0.5,0.1,measured\npacknet,digits,all,mean_accuracy,0.5,0.1,measured\n"
    )
    return path


@pytest.mark.parametrize(
    ("setup", "run_kw", "named"),
    [
        ("comparable: recipe=tiny; tasks=2; limits=none", {"recipe": "default"}, "recipe default (reference: tiny)"),
        ("comparable: recipe=any; tasks=5; limits=none", {}, "tasks 2 (reference: 5)"),
        ("comparable: recipe=tiny; tasks=2; limits=none", {"benchmark": "cifar100_20"}, "benchmark cifar100_20"),
        (
            "comparable: recipe=tiny; tasks=2; limits=train_limit:100",
            {},
            "data limits none (reference: train_limit=100)",
        ),
    ],
)
def test_compare_refuses_what_the_reference_did_not_measure(tmp_path, capsys, setup, run_kw, named):
    run = make_run(tmp_path / "run", [0.5, 0.5], **run_kw)
    assert main(["compare", str(run), "--reference", str(_reference(tmp_path, setup))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "not comparable" in err


def test_compare_accepts_the_same_setup(tmp_path, capsys):
    run = make_run(tmp_path / "run", [0.5, 0.5], section="[digits]\n")
    ref = _reference(tmp_path, "comparable: recipe=tiny; tasks=2; limits=none")
    assert main(["compare", str(run), "--reference", str(ref)]) == 0


def test_packaged_references_declare_their_setup():
    from clbench import compare

    for name, recipe, tasks in (("digits", "tiny", 5), ("cifar100_20", None, 20)):
        text = compare._reference_text(name)
        setup = compare.parse_setup(text, compare.parse_reference(text))
        assert (setup.recipe, setup.tasks, setup.limits) == (recipe, tasks, {})
