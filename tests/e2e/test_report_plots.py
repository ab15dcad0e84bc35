"""Issue 14: report plots on one accuracy scale (axes and colours 0-100), each legend entry once,
task names (tasks.csv) on the axes and in the tables; old runs without tasks.csv still load."""

from __future__ import annotations

import shutil

import pytest
from test_report import make_run

from clbench import report, results, tables


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    dirs = [
        make_run(root / "cpg-s0", "cpg", 0, [0.95, 0.97, 0.96, 0.99], packing=True),  # all high
        make_run(root / "ft-s0", "finetune", 0, [0.10, 0.20, 0.15, 0.97], packing=False),  # very low
    ]
    # The same cpg experiment on a second benchmark: its legend entry must appear once.
    other = make_run(root / "cpg-other", "cpg", 0, [0.5, 0.6, 0.7, 0.8], packing=True)
    for path in [*dirs, other]:
        results.write_tasks(path, [(i, name, "classification", 5) for i, name in enumerate(NAMES, 1)])
    frame = results.load_metrics(other)
    frame["benchmark"] = "toy2"
    frame.to_csv(other / results.METRICS_FILE, index=False, lineterminator="\n")
    (other / results.CONFIG_FILE).write_text((dirs[0] / results.CONFIG_FILE).read_text().replace("toy", "toy2"))
    return report.make_groups(tables.load_runs([*dirs, other]))


NAMES = ["aquatic_mammals", "fish", "flowers", "food_containers"]


def test_accuracy_axes_are_0_to_100(groups):
    for fig in (report.plot_task_accuracy(groups), report.plot_accuracy_vs_size(groups)):
        for ax in fig.axes:
            assert ax.get_ylim() == (0.0, 100.0), ax.get_title()


def test_one_colour_scale_for_every_matrix(groups):
    limits = {report.plot_matrix(g).axes[0].images[0].get_clim() for g in groups}
    assert limits == {(0.0, 100.0)}


def test_legends_name_each_experiment_once(groups):
    fig = report.plot_accuracy_vs_size(groups)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == len(set(labels)) == 2


def test_task_names_on_axes_and_in_tables(groups):
    matrix = report.plot_matrix(groups[0]).axes[0]
    assert [t.get_text() for t in matrix.get_xticklabels()] == [f"{i} {n}" for i, n in enumerate(NAMES, 1)]
    bars = report.plot_task_accuracy(groups).axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()][:2] == ["T1 aquatic_mammals", "T2 fish"]
    text = tables.to_markdown(tables.seed_table([r for g in groups for r in g.runs]))
    assert "Tasks: T1 = aquatic_mammals, T2 = fish, T3 = flowers, T4 = food_containers." in text


def test_runs_without_tasks_file_still_load(groups, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(groups[0].runs[0].path, old)
    (old / results.TASKS_FILE).unlink()
    run = tables.load_run(old)
    assert run.task_names == {}
    assert "Tasks:" not in tables.to_markdown(tables.seed_table([run]))
