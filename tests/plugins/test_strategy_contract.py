"""Every first-party strategy meets the contract (clbench.testing), on the offline default.

Only clbench's own strategies: the contract of an installed third-party plugin is its author's
to run (with the same kit), so installing one never adds to, or breaks, this suite.
"""

from __future__ import annotations

import pytest

from clbench.manager import load_plugins

pytest_plugins = ["clbench.testing"]

STRATEGIES = load_plugins(third_party=False).strategies.names()
# Resume bit-exactness is checked here for the strategies tests/e2e/test_resume.py does not
# already interrupt and resume (cpg, packnet, ewc), to keep the suite's time in check.
RESUMED_ELSEWHERE = {"cpg", "packnet", "ewc"}


def test_first_party_strategies_are_registered():
    assert {"finetune", "individual", "packnet", "pae", "cpg"} <= set(STRATEGIES)


def test_a_third_party_strategy_is_not_in_this_suite(monkeypatch, tmp_path):
    (tmp_path / "clbench_other.py").write_text(
        "import clbench\nfrom clbench.strategy import Strategy\nclass O(Strategy):\n    name = 'other_one'\n"
        "@clbench.hookimpl\ndef clbench_register_strategies(register):\n    register(O)\n"
    )
    info = tmp_path / "clbench_other-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clbench-other\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[clbench]\nother = clbench_other\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "other_one" in load_plugins().strategies
    assert "other_one" not in load_plugins(third_party=False).strategies


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_meets_the_contract(strategy, clbench_contract, monkeypatch):
    monkeypatch.setenv("CLBENCH_NO_THIRD_PARTY_PLUGINS", "1")
    options = {"goals": "self"} if strategy in {"pae", "cpg"} else {}
    run = clbench_contract.check(strategy, options=options, seed=3, resume=strategy not in RESUMED_ELSEWHERE)
    assert run.matrix.shape == (5, 5)
    if run.strategy.kind == "packing":
        from clbench import results

        table = results.task_table(run.metrics)
        assert (table["sparsity"] > 0).all()
        assert table["model_size_mb"].notna().all()
