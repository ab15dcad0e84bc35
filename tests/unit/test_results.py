from __future__ import annotations

import math

import pandas as pd
import pytest

from clbench import results


def _metrics(matrix: list[list[float | None]]) -> pd.DataFrame:
    rows = []
    for t, row in enumerate(matrix, start=1):
        for i, value in enumerate(row, start=1):
            if value is not None:
                rows.append(("r", "s", "b", 0, t, i, "accuracy", value))
    return pd.DataFrame(rows, columns=results.COLUMNS)


HAND_MADE = [
    [0.9, None, None],
    [0.8, 0.7, None],
    [0.6, 0.75, 0.5],
]


def test_mean_of_per_task_final_accuracy():
    matrix = results.accuracy_matrix(_metrics(HAND_MADE))
    assert results.mean_accuracy(matrix) == pytest.approx((0.6 + 0.75 + 0.5) / 3)


def test_forgetting_is_drop_from_best_earlier_accuracy():
    forgets = results.forgetting(results.accuracy_matrix(_metrics(HAND_MADE)))
    # task 1: best 0.9 -> 0.6; task 2: best 0.7 -> 0.75 (negative forgetting = improvement)
    assert forgets.to_dict() == pytest.approx({1: 0.3, 2: -0.05})


def test_backward_transfer():
    bwt = results.backward_transfer(results.accuracy_matrix(_metrics(HAND_MADE)))
    assert bwt == pytest.approx(((0.6 - 0.9) + (0.75 - 0.7)) / 2)


def test_single_task_has_no_forgetting():
    summary = results.summarize(_metrics([[0.5]]))
    assert summary["mean_accuracy"] == 0.5
    assert math.isnan(summary["forgetting"]) and math.isnan(summary["bwt"])


def test_writer_rewrites_atomically_with_exact_columns(tmp_path):
    key = results.RunKey("run", "finetune", "digits", 3)
    writer = results.MetricsWriter(tmp_path / "metrics.csv", key)
    writer.add(1, 1, "accuracy", 0.5)
    writer.flush()
    writer.add(2, 1, "accuracy", 0.25)
    writer.flush()
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == ",".join(results.COLUMNS)
    frame = results.load_metrics(tmp_path)
    assert frame["value"].tolist() == [0.5, 0.25]
    assert not list(tmp_path.glob(".metrics.csv.*"))  # no temporary file left behind


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    results.atomic_write_json(path, {"a": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        results.atomic_write_json(path, {"a": 2})
    assert path.read_text().strip().endswith("}") and '"a": 1' in path.read_text()
    assert not list(tmp_path.glob(".summary.json.*"))


def _write_run(run_dir, matrix, repeat=()):
    """A hand-made run through MetricsWriter; ``repeat``: (trained, eval) rows written twice."""
    writer = results.MetricsWriter(run_dir / results.METRICS_FILE, results.RunKey("r", "s", "b", 0))
    for t, row in enumerate(matrix, start=1):
        for i, value in enumerate(row, start=1):
            if value is not None:
                writer.add(t, i, "accuracy", value)
                if (t, i) in repeat:
                    writer.add(t, i, "accuracy", 1.0 - value)
    run_dir.mkdir(parents=True, exist_ok=True)
    writer.flush()


def test_duplicated_metric_rows_are_an_error_naming_the_keys(tmp_path, run_cli):
    _write_run(tmp_path / "run", HAND_MADE, repeat={(3, 1), (2, 2)})
    with pytest.raises(results.UsageError, match=r"repeats 2 key\(s\).*trained_task=2 eval_task=2 metric=accuracy"):
        results.load_metrics(tmp_path / "run")
    code, err = run_cli(["table", str(tmp_path / "run")])
    assert code == 2 and err.count("\n") == 1 and "trained_task=3 eval_task=1 metric=accuracy run_id=r" in err, err


def test_unique_metric_rows_load(tmp_path):
    _write_run(tmp_path / "run", HAND_MADE)
    assert len(results.load_metrics(tmp_path / "run")) == 6
