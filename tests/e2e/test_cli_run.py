"""End-to-end: `clbench run` on the offline default, through `main(argv)` (as FACIL's tests do)."""

from __future__ import annotations

import tomllib

import pytest

from clbench import results
from clbench.cli import main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "finetune"
    assert main(["run", "--recipe", "tiny", "--epochs", "2", "--out", str(out), "--quiet", "--seed", "1"]) == 0
    return out


def test_run_writes_its_files(finished_run):
    for name in ("config.toml", "environment.json", "metrics.csv", "summary.json", "summary.md"):
        assert (finished_run / name).is_file(), name
    config = tomllib.loads((finished_run / "config.toml").read_text())
    assert config["run"] == {
        "strategy": "finetune",
        "benchmark": "digits",
        "recipe": "tiny",
        "seed": 1,
        "device": "auto",
        "deterministic": False,
        "phase_checkpoints": True,
    }
    assert config["finetune"]["epochs"] == 2 and config["finetune"]["batch_size"] == 64


def test_accuracy_matrix_shape_and_diagonal_floor(finished_run):
    metrics = results.load_metrics(finished_run)
    matrix = results.accuracy_matrix(metrics)
    assert matrix.shape == (5, 5)
    diagonal = [matrix.loc[t, t] for t in matrix.index]
    assert min(diagonal) > 0.8  # each class pair is easy right after learning it
    assert set(metrics["metric"]) >= {"accuracy", "val_accuracy", "model_size_mb", "seconds_train"}


def test_same_seed_same_table(finished_run, tmp_path):
    again = tmp_path / "again"
    assert main(["run", "--recipe", "tiny", "--epochs", "2", "--out", str(again), "--quiet", "--seed", "1"]) == 0
    a, b = (results.load_metrics(d) for d in (finished_run, again))
    acc = a["metric"].str.endswith("accuracy")
    assert a[acc]["value"].tolist() == b[acc]["value"].tolist()


def test_existing_results_are_never_silently_overwritten(finished_run, capsys):
    before = (finished_run / "metrics.csv").read_bytes()
    assert main(["run", "--out", str(finished_run), "--quiet"]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (finished_run / "metrics.csv").read_bytes() == before


def test_table_command(finished_run, capsys):
    assert main(["table", "--per-run", str(finished_run), str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert out.count("| finetune") == 1 and "mean" in out  # the same directory twice is one run


def test_config_file_feeds_back(finished_run, tmp_path, capsys):
    assert main(["run", "-c", str(finished_run / "config.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == (finished_run / "config.toml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--strategy", "nope"], "unknown strategy 'nope'; available: cpg,"),
        (["run", "--benchmark", "nope"], "unknown benchmark 'nope'; available: cifar100_20, digits,"),
        (["run", "--finetune.lr", "fast"], "finetune.lr: expected float, got 'fast'"),
        (["run", "--epochs", "-3"], "run.epochs must be >= 0"),
        (["run", "--recipe", "huge"], "no recipe 'huge'; available: default, tiny"),
        (["run", "--device", "tpu"], "run.device must be auto, cpu, cuda or cuda:N"),
        (["table", "/nonexistent/run"], "metrics.csv not found"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_flag_is_one_line_naming_the_closest(capsys):
    assert main(["run", "--finetune.lrr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --finetune.lrr" in err and "did you mean --finetune.lr?" in err
    assert err.count("\n") == 1


def test_config_file_unknown_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[finetune]\nepoch = 3\n")
    assert main(["run", "-c", str(path)]) == 2
    assert "unknown finetune option 'epoch'" in capsys.readouterr().err


def test_list_shows_name_description_provider(capsys):
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "description", "provider"]
    assert "finetune" in out and "entry point baselines" in out
