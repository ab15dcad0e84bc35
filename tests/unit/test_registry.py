from __future__ import annotations

import pytest

from clbench.errors import RegistryError
from clbench.registry import Registry


def test_duplicate_names_both_providers():
    registry: Registry[int] = Registry("strategy")
    registry.add("cpg", 1, "first", provider="clbench 0.1 (entry point cpg)")
    with pytest.raises(RegistryError) as info:
        registry.add("cpg", 2, "second", provider="clbench-other 1.0 (entry point other)")
    message = str(info.value)
    assert "clbench 0.1 (entry point cpg)" in message
    assert "clbench-other 1.0 (entry point other)" in message


def test_unknown_name_lists_available():
    registry: Registry[int] = Registry("benchmark")
    registry.add("digits", 1, "", provider="p")
    registry.add("cifar100_20", 2, "", provider="p")
    with pytest.raises(RegistryError, match=r"unknown benchmark 'cifar'; available: cifar100_20, digits"):
        registry.get("cifar")


@pytest.mark.parametrize("name", ["CPG", "fine-grained", "1task", ""])
def test_names_must_be_snake_case(name):
    with pytest.raises(RegistryError, match="snake_case"):
        Registry("strategy").add(name, 1, "", provider="p")
