from __future__ import annotations

import tomllib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clbench import config as cfg
from clbench.errors import UsageError
from clbench.strategy import TrainConfig


@dataclass(frozen=True)
class Example:
    epochs: int = 3
    lr: float = 0.1
    name: str = "x"
    flag: bool = False
    stages: tuple[float, ...] = (0.1, 0.2)
    root: str | None = None


def test_layers_later_wins_and_strings_are_parsed():
    out = cfg.resolve(
        Example, "ex", [{"epochs": 5}, {"epochs": "7", "lr": "1e-3", "flag": "true", "stages": "0.5,0.9"}]
    )
    assert out == Example(epochs=7, lr=1e-3, flag=True, stages=(0.5, 0.9))


def test_unknown_key_names_the_key_and_valid_ones():
    with pytest.raises(UsageError, match=r"unknown ex option 'lrr'; valid options: epochs, flag, lr, name, root"):
        cfg.resolve(Example, "ex", [{"lrr": 1}])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epochs", "three", "int"),
        ("epochs", 2.5, "int"),
        ("lr", "fast", "float"),
        ("flag", "maybe", "bool"),
        ("epochs", True, "int"),
        ("lr", "nan", "float"),
    ],
)
def test_bad_values_name_field_and_type(key, value, expected):
    with pytest.raises(UsageError, match=rf"ex\.{key}: expected {expected}"):
        cfg.resolve(Example, "ex", [{key: value}])


def test_optional_accepts_none_and_values():
    assert cfg.resolve(Example, "ex", [{"root": "none"}]).root is None
    assert cfg.resolve(Example, "ex", [{"root": "/data"}]).root == "/data"


def test_post_init_checks_become_usage_errors():
    with pytest.raises(UsageError, match=r"train\.epochs must be >= 0, got -1"):
        cfg.resolve(TrainConfig, "finetune", [{"epochs": -1}])


@given(
    epochs=st.integers(0, 10_000),
    lr=st.floats(0, 10, allow_nan=False),
    name=st.text(max_size=20),
    flag=st.booleans(),
    stages=st.lists(st.floats(0, 1, allow_nan=False), max_size=5).map(tuple),
)
def test_toml_round_trip(epochs, lr, name, flag, stages):
    config = Example(epochs=epochs, lr=lr, name=name, flag=flag, stages=stages)
    text = cfg.to_toml({"ex": cfg.as_dict(config)})
    parsed = tomllib.loads(text)["ex"]
    assert cfg.resolve(Example, "ex", [parsed]) == config
