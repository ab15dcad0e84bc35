"""``python -m clbench.record_bytes``: bad arguments end in one line and exit 2; a run is counted."""

from __future__ import annotations

import pytest

from clbench import record_bytes


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--strategy", "cpg"],
        ["run", "--strategy", "cpg"],
        ["run", "--out"],
        ["table", "--out", "x"],
        ["run", "--out", "a", "--out", "b"],
        ["run", "--out="],
    ],  # fmt: skip
)
def test_arguments_without_a_run_and_one_out_folder_exit_2_with_one_line(args, capsys) -> None:
    assert record_bytes.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--out DIR" in err


def test_help_prints_the_usage(capsys) -> None:
    assert record_bytes.main(["--help"]) == 0
    assert "usage: python -m clbench.record_bytes run" in capsys.readouterr().out


@pytest.mark.usefixtures("one_torch_thread")
def test_counts_the_phase_records_and_task_checkpoints_of_a_run(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["run", "--strategy", "packnet", "--benchmark", "digits", "--recipe", "tiny", "--device", "cpu"]
    assert record_bytes.main([*args, "--quiet", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 5  # digits has 5 tasks
    assert all(float(row.split("|")[5]) > 0 for row in rows)  # every task checkpoint counted
    assert "mean per task:" in printed
