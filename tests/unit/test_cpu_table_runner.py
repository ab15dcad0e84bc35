"""baselines/results/cifar100_20-cpu.sh, the CPU table's runner, with a stand-in for clbench."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "baselines" / "results" / "cifar100_20-cpu.sh"
STRATEGIES = {"individual", "cpg", "pae", "lwf", "packnet", "ewc", "si", "finetune", "joint_mixed"}

# Records each call, then finishes the run (summary.json) or, with FAKE_SLEEP, waits first.
FAKE = """#!/usr/bin/env bash
while (($#)); do
    case $1 in --strategy) strategy=$2; shift ;; --out|--resume) out=$2; shift ;; esac
    shift
done
echo "$strategy $$" >> "$FAKE_LOG"
mkdir -p "$out" && touch "$out/config.toml"
[[ -n "${FAKE_SLEEP:-}" ]] && exec sleep "$FAKE_SLEEP"  # one process, as clbench is
echo '{}' > "$out/summary.json"
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    exe = tmp_path / "fake-clbench"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    (tmp_path / "data" / "train").mkdir(parents=True)
    return {**os.environ, "CLBENCH": str(exe), "FAKE_LOG": str(tmp_path / "calls.log")}


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_every_strategy_runs_once_across_the_two_lanes(tmp_path, fake):
    work = tmp_path / "work"
    done = _run(tmp_path, fake, str(tmp_path / "data"), str(work), "3")
    assert done.returncode == 0, done.stderr
    calls = [line.split()[0] for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert sorted(calls) == sorted(STRATEGIES)  # the shared queue: no strategy twice, none left out
    rows = list(csv.reader((work / "times.csv").read_text().splitlines()))
    assert {r[0] for r in rows} == STRATEGIES and {r[1] for r in rows} == {"3"} and {r[5] for r in rows} == {"0"}
    again = _run(tmp_path, fake, str(tmp_path / "data"), str(work), "3")  # finished runs are skipped
    assert again.returncode == 0 and len((tmp_path / "calls.log").read_text().splitlines()) == len(STRATEGIES)


@pytest.mark.parametrize(
    ("args", "says"),
    [((), "usage"), (("/nonexistent", "w"), "no CIFAR-100 tree"), (("DATA", "w", "x"), "SEED must be")],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, fake, args, says):
    args = tuple(str(tmp_path / "data") if a == "DATA" else a for a in args)
    done = _run(tmp_path, fake, *args)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_stopping_the_script_stops_the_runs_in_its_lanes(tmp_path, fake):
    """A lane's run is the lane's child: killing the lanes alone would leave runs going on."""
    env = {**fake, "FAKE_SLEEP": "60"}
    proc = subprocess.Popen(["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "work")], env=env)
    log = tmp_path / "calls.log"
    deadline = time.monotonic() + 20
    while (not log.is_file() or len(log.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(line.split()[1]) for line in log.read_text().splitlines()]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    time.sleep(0.5)
    alive = [pid for pid in pids if _running(pid)]
    for pid in alive:  # leave nothing behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped (a killed child whose parent died too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
