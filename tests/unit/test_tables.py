"""Table maths and output shape (clbench.tables, `clbench table`) on hand-made run directories."""

from __future__ import annotations

import csv
import io
import json
import math
import tomllib
from pathlib import Path

import pytest

from clbench import experiment, results, tables
from clbench.cli import main


def make_run(
    path: Path,
    matrix: list[list[float]],
    *,
    strategy: str = "packnet",
    benchmark: str = "digits",
    seed: int = 0,
    lr: float = 0.05,
    size_mb: float = 0.5,
    params: float = 1000.0,
    wall: float | None = 10.0,
    extra: dict[str, list[float]] | None = None,
) -> Path:
    """A run directory as the runner writes it: ``matrix[t][i]`` = accuracy on task i+1 after
    task t+1; ``extra`` = per-task records (metric -> value per task)."""
    path.mkdir(parents=True)
    run_id = f"{benchmark}-{strategy}-{path.name}"
    metrics = results.MetricsWriter(path / results.METRICS_FILE, results.RunKey(run_id, strategy, benchmark, seed))
    for t, row in enumerate(matrix, 1):
        for i, acc in enumerate(row, 1):
            metrics.add(t, i, "accuracy", acc)
        metrics.add(t, t, "parameters", params)
        metrics.add(t, t, "model_size_mb", size_mb)
        for metric, values in (extra or {}).items():
            metrics.add(t, t, metric, values[t - 1])
    metrics.flush()
    (path / results.CONFIG_FILE).write_text(
        f'[run]\nstrategy = "{strategy}"\nbenchmark = "{benchmark}"\nrecipe = "tiny"\nseed = {seed}\n'
        f'device = "auto"\n\n[{strategy}]\nlr = {lr}\n'
    )
    if wall is not None:
        (path / results.SUMMARY_FILE).write_text(json.dumps({"wall_seconds": wall}))
    return path


# R[t, i]: forgetting of task 1 = max(0.9, 0.8) − 0.7 = 0.2, of task 2 = 0.95 − 0.9 = 0.05 → mean 0.125;
# BWT = ((0.7 − 0.9) + (0.9 − 0.95)) / 2 = −0.125; mean accuracy = (0.7 + 0.9 + 1.0) / 3.
FORGETFUL = [[0.9], [0.8, 0.95], [0.7, 0.9, 1.0]]


def test_per_run_mean_forgetting_bwt(tmp_path):
    run = tables.load_run(make_run(tmp_path / "a", FORGETFUL, size_mb=0.25, params=1234, wall=7.5))
    record = tables.run_record(run)
    assert [record[f"T{i}"] for i in (1, 2, 3)] == pytest.approx([70.0, 90.0, 100.0])
    assert record["mean"] == pytest.approx(260 / 3)
    assert record["forgetting"] == pytest.approx(12.5)
    assert record["bwt"] == pytest.approx(-12.5)
    assert (record["size_mb"], record["params"], record["wall_s"]) == (0.25, 1234.0, 7.5)


def test_std_over_seeds_groups_runs_that_differ_only_in_the_seed(tmp_path):
    dirs = [
        make_run(tmp_path / "s0", [[0.9], [0.9, 0.8]], seed=0, wall=10.0),
        make_run(tmp_path / "s1", [[0.7], [0.7, 0.6]], seed=1, wall=14.0),
        make_run(tmp_path / "s2", [[0.8], [0.8, 1.0]], seed=2, wall=12.0),
        make_run(tmp_path / "other", [[0.5], [0.5, 0.5]], seed=0, lr=0.0),  # another config
        make_run(tmp_path / "ft", [[1.0], [0.5, 1.0]], strategy="finetune", seed=0),
    ]
    table = tables.seed_table(tables.load_runs(dirs))
    frame = table.frame
    assert list(frame["strategy"]) == ["packnet", "packnet", "finetune"]
    assert list(frame["n"]) == [3, 1, 1] and frame["seeds"][0] == "0 1 2"
    assert list(frame["config"]) == ["tiny", "tiny (lr=0.0)", "tiny"]  # lr 0.05 is the tiny recipe's
    # T1: 90, 70, 80 → mean 80, sample std 10; the run means 85, 65, 90 → mean 80, std 13.23
    assert frame["T1"][0] == pytest.approx(80.0) and table.std["T1"][0] == pytest.approx(10.0)
    assert frame["mean"][0] == pytest.approx(80.0)
    assert table.std["mean"][0] == pytest.approx(math.sqrt(((85 - 80) ** 2 + (65 - 80) ** 2 + (90 - 80) ** 2) / 2))
    assert frame["wall_s"][0] == pytest.approx(12.0) and table.std["wall_s"][0] == pytest.approx(2.0)
    assert math.isnan(table.std["T1"][1])  # one run: no std
    assert frame["forgetting"][2] == pytest.approx(50.0) and frame["bwt"][2] == pytest.approx(-50.0)


def test_seeds_read_from_different_data_folders_are_one_row(tmp_path):
    """The same images in another folder (another machine) are the same experiment; the folder
    is not a setting worth a config column either."""
    dirs = [make_run(tmp_path / f"s{seed}", [[0.9], [0.9, 0.8]], seed=seed) for seed in (0, 1)]
    for seed, path in enumerate(dirs):
        config = path / results.CONFIG_FILE
        text = config.read_text().replace("[run]\n", f'[run]\ndata_root = "/data{seed}"\n')
        config.write_text(text + f'\n[digits]\ndata_root = "/machine{seed}/digits"\n')
    frame = tables.seed_table(tables.load_runs(dirs)).frame
    assert list(frame["n"]) == [2]
    assert list(frame["config"]) == ["tiny"]


@pytest.mark.parametrize(
    ("bench", "field", "values"),
    [
        ("cifar100_20", "download", ("true", "false")),
        ("facial4", "cache_images", ("true", "false")),
        ("fine_grained6", "weights", ('"/a/resnet50.pth"', '"/b/resnet50.pth"')),
    ],
)
def test_where_or_how_data_is_read_is_not_part_of_the_experiment(bench, field, values):
    """Every field a benchmark declares NOT_DATA (as the goals' data key does), not only data_root."""
    assert field in experiment.not_data_fields(bench)
    configs = [
        tomllib.loads(
            f'[run]\nbenchmark = "{bench}"\nseed = {seed}\n[{bench}]\n{field} = {value}\nnum_tasks = 2\n'
        )
        for seed, value in enumerate(values)
    ]
    assert experiment.experiment_config(configs[0]) == experiment.experiment_config(configs[1])
    configs[1][bench]["num_tasks"] = 3  # a data setting still separates experiments
    assert experiment.experiment_config(configs[0]) != experiment.experiment_config(configs[1])


def test_the_same_directory_twice_is_one_run_in_a_group(tmp_path):
    run = make_run(tmp_path / "a", FORGETFUL)
    runs = tables.load_runs([run, run])
    assert len(tables.per_run_table(runs).frame) == 2  # the per-run view shows what was asked for
    grouped = tables.seed_table(runs)
    assert list(grouped.frame["n"]) == [1]


def test_unequal_task_counts_leave_blanks(tmp_path):
    runs = tables.load_runs(
        [make_run(tmp_path / "a", FORGETFUL), make_run(tmp_path / "b", [[0.5]], strategy="finetune", wall=None)]
    )
    table = tables.per_run_table(runs)
    assert table.values[:3] == ["T1", "T2", "T3"]
    text = tables.to_markdown(table, footnotes=False)
    finetune_row = next(line for line in text.splitlines() if "finetune" in line)
    assert finetune_row.count("|") == len(table.keys) + len(table.values) + 1


def _runs(tmp_path):
    return tables.load_runs(
        [
            make_run(tmp_path / "s0", [[0.9], [0.9, 0.8]], seed=0),
            make_run(tmp_path / "s1", [[0.7], [0.7, 0.6]], seed=1),
            make_run(tmp_path / "ft", [[1.0], [0.5, 1.0]], strategy="fine_tune", seed=0),
        ]
    )


def test_markdown_shape(tmp_path):
    table = tables.seed_table(_runs(tmp_path))
    text = tables.to_markdown(table)
    lines = text.splitlines()
    columns = [*table.keys, *table.values]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == columns
    assert set(lines[1]) <= set("|:-")
    body = lines[2:4]
    assert all(line.count("|") == len(columns) + 1 for line in body)
    assert "80.00 ± 14.14" in body[0]  # T1 over seeds 0, 1
    assert "±" not in body[1]  # one run: a plain number
    assert "size_mb / params" in text and "owner mask" in text  # the size footnote
    assert "size_mb" not in tables.to_markdown(table, footnotes=False).split("\n", 1)[1]


def test_csv_shape(tmp_path):
    runs = _runs(tmp_path)
    table = tables.seed_table(runs)
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(table))))
    assert len(rows) == 2
    assert list(rows[0])[:5] == ["strategy", "benchmark", "config", "n", "seeds"]
    assert list(rows[0])[5:9] == ["T1", "T1_std", "T2", "T2_std"]
    assert float(rows[0]["T1"]) == pytest.approx(80.0) and float(rows[0]["T1_std"]) == pytest.approx(14.1421, 1e-4)
    assert rows[1]["T1_std"] == ""  # undefined for one run, not 0
    per_run = list(csv.DictReader(io.StringIO(tables.to_csv(tables.per_run_table(runs)))))
    assert len(per_run) == 3 and "T1_std" not in per_run[0] and per_run[1]["seed"] == "1"


def test_latex_shape(tmp_path):
    table = tables.seed_table(_runs(tmp_path))
    text = tables.to_latex(table)
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("%")]
    assert len(comments) == len(tables.table_notes(table))
    body = lines[len(comments) :]
    n = len(table.keys) + len(table.values)
    assert body[0] == r"\begin{tabular}{" + "l" * len(table.keys) + "r" * len(table.values) + "}"
    assert body[1] == r"\toprule" and body[-2:] == [r"\bottomrule", r"\end{tabular}"]
    rows = [line for line in body if line.endswith(r"\\")]
    assert len(rows) == 3 and all(row.count(" & ") == n - 1 for row in rows)
    assert r"size\_mb" in rows[0] and r"fine\_tune" in text and r"80.00 $\pm$ 14.14" in rows[1]
    assert "_" not in "".join(rows).replace(r"\_", "")


def test_table_command_formats(tmp_path, capsys):
    _runs(tmp_path)
    assert main(["table", str(tmp_path)]) == 0  # a folder holding runs
    out = capsys.readouterr().out
    assert out.count("| packnet") == 1 and "80.00 ± 14.14" in out
    assert main(["table", "--per-run", "--format", "csv", str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["table", "--format", "latex", "--no-notes", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(r"\begin{tabular}")


def test_table_command_errors(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    assert "metrics.csv not found there or below it" in capsys.readouterr().err
    make_run(tmp_path / "a", FORGETFUL)
    (tmp_path / "a" / "metrics.csv").write_text(",".join(results.COLUMNS) + "\n")
    assert main(["table", str(tmp_path / "a")]) == 2
    assert "holds no rows" in capsys.readouterr().err


def test_size_note_follows_the_kind_each_strategy_declared(tmp_path):
    """Issue 18, item 6: a plugin strategy's declared accounting, as its run recorded it, reaches the
    footnote; clbench's own strategies by their declared kind, not by a list of names."""
    mine = make_run(tmp_path / "mine", [[0.9], [0.9, 0.8]], strategy="replayer")
    note = "the network + its 200-sample buffer at 1 byte per pixel"
    record = {"strategy": {"name": "replayer", "accounting": {"kind": "replay", "size_note": note}}}
    (mine / results.ENVIRONMENT_FILE).write_text(json.dumps({"providers": record}))
    packnet = make_run(tmp_path / "packnet", [[0.9], [0.9, 0.9]])
    text = tables.to_markdown(tables.seed_table(tables.load_runs([mine, packnet])))
    assert f"replay (replayer): {note}" in text
    assert "packing (packnet): 4 bytes per weight" in text


def test_no_view_names_the_packing_strategies():
    root = Path(tables.__file__).parent
    for module in ("tables.py", "results.py", "report.py", "cli.py"):
        source = (root / module).read_text().lower()
        assert '"packnet"' not in source and "(packnet, pae, cpg)" not in source, module
