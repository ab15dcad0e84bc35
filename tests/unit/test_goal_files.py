"""Goal files (clbench.goals): provenance round trip, the data key, and bad files in one error."""

from __future__ import annotations

import pytest

from clbench import goals as goalfiles
from clbench.errors import UsageError
from clbench_benchmarks.cifar100_20 import Cifar100_20Config

KEY = goalfiles.GoalKey("individual", "digits", "tiny", 2, "abcd1234", "0123abcd")


def test_provenance_round_trip(tmp_path):
    path = goalfiles.goal_path(tmp_path, KEY, 3)
    goalfiles.write(path, {"a": 0.5, "b": 0.75}, "individual run x, y", KEY, [3])
    found = goalfiles.read(path)
    assert found.values == {"a": 0.5, "b": 0.75} and found.key == KEY and found.seeds == (3,)
    assert goalfiles.find(tmp_path, KEY, 7) == path  # another seed: the lowest one found
    again = goalfiles.Goals.from_provenance({**found.provenance(), "trained_now": True})
    assert again.values == found.values and again.key == KEY and again.trained_now


def test_data_key_ignores_where_and_how_data_is_read():
    base = goalfiles.data_key(Cifar100_20Config())
    assert goalfiles.data_key(Cifar100_20Config(data_root="/elsewhere", download=True)) == base
    assert goalfiles.data_key(Cifar100_20Config(num_tasks=2)) != base
    assert goalfiles.data_key(Cifar100_20Config(train_limit=100)) != base


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("task,goal,source\na,0.5,x\na,0.6,x\n", "twice"),
        ("task,goal,source\na,1.5,x\n", "fraction"),
        ("task,goal,source\na,nan,x\n", "fraction"),
        ("task,goal,source\na,abc,x\n", "no number"),
        ("task,score\na,0.5\n", "columns"),
        (
            "task,goal,source,producer,benchmark,recipe,tasks,data_key,config_key,seeds\n"
            "a,0.5,x,individual,digits,tiny,five,k,c,0\n",
            "whole numbers",
        ),
    ],
)
def test_bad_goal_files_are_one_usage_error(tmp_path, text, said):
    path = tmp_path / "goals.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=said):
        goalfiles.read(path)


def test_unreadable_goal_files_are_usage_errors(tmp_path):
    path = tmp_path / "goals.csv"
    path.write_bytes(b"task,goal\n\xff\xfe,0.5\n")
    with pytest.raises(UsageError, match="UTF-8"):
        goalfiles.read(path)
    with pytest.raises(UsageError, match="does not exist"):
        goalfiles.read(tmp_path / "missing.csv")
