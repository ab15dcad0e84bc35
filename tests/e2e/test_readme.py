"""The README's commands run as written (issue 14): the main job, then every `clbench …` line of
its command blocks, in order, in one empty folder, each exiting 0.

Cost: the main job (digits, default recipe: about 15 s of training on two CPU cores) plus four
`tiny` runs of a few seconds, one report and one compare, all in this process (no start-up per
command): about 100 CPU-seconds (measured: 97 s of CPU, 3 min 40 s of wall time on two cores shared with
other developers' test runs).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from clbench.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
MAIN_JOB = "clbench run"


def command_blocks() -> list[list[str]]:
    """The lines of every ```bash block, comments removed, blank lines dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [[" ".join(shlex.split(line, comments=True)) for line in b.splitlines() if line.strip()] for b in blocks]


def clbench_commands() -> list[str]:
    return [line for block in command_blocks() for line in block if line.startswith("clbench ")]


def test_the_setup_block_ends_in_the_main_job():
    (setup, *_) = command_blocks()
    assert setup[0].endswith(f".venv/bin/{MAIN_JOB}"), setup


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory) -> Path:
    """An empty folder in which the README's main job has run, exactly as written."""
    folder = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.chdir(folder)
        assert main(shlex.split(MAIN_JOB)[1:]) == 0
    return folder


def test_every_readme_command_runs_as_written(readme_folder, capsys, monkeypatch):
    commands = clbench_commands()
    assert "clbench table runs/digits" in commands and any(c.startswith("clbench compare") for c in commands)
    monkeypatch.chdir(readme_folder)
    for command in commands:
        code = main(shlex.split(command)[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"`{command}` exited {code}:\n{err}\n{out[-2000:]}"
        if command.startswith("clbench compare"):
            assert "-> ok" in out and "FAIL" not in out.replace("0 FAIL", "")


def test_readme_states_measured_times_not_placeholders():
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"\b(MAIN_JOB_TIME|SUITE_TIME|SUITE_WALL|SUITE_CPU|MEASURED_TIMES)\b", text)
    assert "about ten seconds" not in text
