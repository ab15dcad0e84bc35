"""The clbench strategy contract, run on this package's strategies with clbench's test kit
(`pip install -e .[test] && pytest`)."""

from __future__ import annotations

from clbench_example import feature_extraction, piggyback

pytest_plugins = ["clbench.testing"]


def test_piggyback_meets_the_contract(clbench_contract):
    # The module, not the class: its recipe entries for digits come with it.
    run = clbench_contract.check("piggyback", modules=[piggyback])
    assert run.spec.strategy_config.lr_mask == 5e-3  # the plugin's digits/tiny entry


def test_feature_extraction_learns(clbench_contract):
    clbench_contract.check("feature_extraction", modules=[feature_extraction], resume=False)
