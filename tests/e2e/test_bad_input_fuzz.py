"""Bad input, fuzzed: every malformed flag, config file or option value ends in exit code 2 with
a clear message (never a traceback) and leaves no results behind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import _run_cli, cifar_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clbench import config as cfg
from clbench.datasets.folders import CIFAR100_SUPERCLASSES
from clbench.manager import load_plugins

PLUGINS = load_plugins()
STRATEGY_FIELDS = {name: sorted(cfg.fields_of(cls.Config)) for name, cls in
                   ((e.name, e.obj) for e in PLUGINS.strategies)}  # fmt: skip

values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["-1", "0", "1.5", "-0.5", "1e9", "nan", "inf", "true", "none", "", "0.1,2", "[1]", "1,,2"]),
)


_call = _run_cli


def _assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert "error" in err, err


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(sorted(STRATEGY_FIELDS)), data=st.data(), value=values)
def test_any_strategy_flag_value_is_accepted_or_a_clear_error(strategy, data, value):
    field = data.draw(st.sampled_from(STRATEGY_FIELDS[strategy]))
    code, err = _call(["run", "--strategy", strategy, f"--{strategy}.{field}", value, "--print-config"])
    _assert_clean(code, err)
    if code == 2:
        assert field in err or "argument" in err, err


@settings(max_examples=60, deadline=None)
@given(
    option=st.sampled_from(["--seed", "--epochs", "--device", "--recipe", "--digits.classes-per-task",
                            "--digits.test-fraction", "--digits.valid-fraction"]),
    value=values,
)  # fmt: skip
def test_any_run_option_value_is_accepted_or_a_clear_error(option, value):
    code, err = _call(["run", option, value, "--print-config"])
    _assert_clean(code, err)


toml_scalars = st.one_of(
    st.integers(-1000, 1000), st.floats(allow_nan=False, width=32), st.booleans(), st.text(max_size=8),
    st.lists(st.floats(-2, 2, allow_nan=False, width=32), max_size=4),
)  # fmt: skip
keys = st.one_of(st.sampled_from(sorted({f for fs in STRATEGY_FIELDS.values() for f in fs})),
                 st.from_regex(r"[a-z_]{1,10}", fullmatch=True))  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(["run", "cpg", "finetune", "digits", "packnet", "nope"]),
    table=st.dictionaries(keys, toml_scalars, max_size=4),
)
def test_any_config_file_is_accepted_or_a_clear_error(tmp_path, section, table):
    path = tmp_path / "run.toml"
    path.write_text(cfg.to_toml({section: table}))
    code, err = _call(["run", "--strategy", "cpg" if section != "finetune" else "finetune", "-c", str(path),
                       "--print-config"])  # fmt: skip
    _assert_clean(code, err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "-1"], "run.epochs must be >= 0"),
        (["--strategy", "cpg", "--cpg.prune-stages", "0.5,1.5"], "cpg.prune_stages must be sparsities in (0, 1)"),
        (["--strategy", "pae", "--pae.prune-stages", ""], "pae.prune_stages must be a non-empty list"),
        (["--strategy", "packnet", "--packnet.prune-ratio", "1"], "packnet.prune_ratio must be in [0, 1)"),
        (["--strategy", "cpg", "--cpg.goals", "maybe"], "cpg.goals: expected Literal"),
        (["--digits.classes-per-task", "3"], "digits.classes_per_task must be 2 or 5"),
        (["--benchmark", "cifar100_20", "--cifar100_20.num-tasks", "0"], "cifar100_20.num_tasks must be in 1..20"),
        (["--finetune.batch-size", "0"], "train.batch_size must be >= 1"),
        (["--finetune.lr", "inf", "--finetune.momentum", "1.5"], "train.momentum must be in [0, 1)"),
    ],
)
def test_named_bad_values(tmp_path, argv, message):
    out = tmp_path / "run"
    code, err = _call(["run", *argv, "--out", str(out), "--quiet"])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()  # no partial result


def _cifar_tree(root: Path, odd: str) -> None:
    cifar_tree(root, size=40 if odd == "size" else 32)
    if odd == "classes":  # a class missing from test: train and test disagree
        import shutil

        shutil.rmtree(root / "test" / CIFAR100_SUPERCLASSES[3] / "c4")
    if odd == "unreadable":
        (root / "train" / CIFAR100_SUPERCLASSES[0] / "c0" / "0.png").write_bytes(b"not a png")


@pytest.mark.parametrize(
    ("odd", "message"),
    [
        ("size", "CIFAR-100 images are 32x32 RGB"),
        ("classes", "has classes"),
        ("unreadable", "cannot read image"),
    ],
)
def test_bad_data_is_a_clear_error_and_no_partial_result(tmp_path, odd, message):
    _cifar_tree(tmp_path / "data", odd)
    out = tmp_path / "run"
    code, err = _call(["run", "--benchmark", "cifar100_20", "--data-root", str(tmp_path / "data"), "--out", str(out),
                       "--quiet"])  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()
    assert math.isfinite(0.0)
