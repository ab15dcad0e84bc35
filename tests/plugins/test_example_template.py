"""The example package is a template (issue 18, item 7): its Piggyback strategy reuses the masked
layer in under 80 lines, imports only what docs/plugins.md calls public, contributes recipe
entries that `--recipe tiny` picks up, and meets the contract through clbench's test kit."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clbench.api import PUBLIC_MODULES
from clbench.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "clbench-example"
MODULES = sorted((EXAMPLE / "clbench_example").glob("*.py"))
PIGGYBACK = EXAMPLE / "clbench_example" / "piggyback.py"


def _clbench_imports(path: Path) -> set[str]:
    """Modules of clbench a file imports (``import clbench.x``, ``from clbench.x import y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {n for n in names if n == "clbench" or n.startswith("clbench.")}
    return found


def test_the_template_is_short():
    assert len(PIGGYBACK.read_text().splitlines()) < 80


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_examples_import_only_the_documented_public_api(path):
    internal = _clbench_imports(path) - set(PUBLIC_MODULES)
    assert not internal, f"{path.name} imports internal modules {sorted(internal)} (docs/plugins.md)"


def test_the_docs_state_what_is_public():
    text = (REPO / "docs" / "plugins.md").read_text()
    section = text[text.index("## What a plugin may import") :]
    assert all(f"`{module}`" in section for module in PUBLIC_MODULES)
    assert "internal" in section


def test_a_plugin_recipe_for_digits_is_picked_up_by_recipe_tiny(capsys):
    argv = ["run", "--plugin", str(PIGGYBACK), "--strategy", "piggyback", "--print-config"]
    assert main([*argv, "--recipe", "tiny"]) == 0
    tiny = capsys.readouterr().out
    assert "lr_mask = 0.005" in tiny and "lr_mask_milestones = []" in tiny and "epochs = 1" in tiny
    assert main(argv) == 0  # the default recipe has its own entry
    assert "lr_mask_milestones = [3]" in capsys.readouterr().out
    assert main(["list", "recipes", "--plugin", str(PIGGYBACK)]) == 0
    assert "[plugin entries: piggyback]" in capsys.readouterr().out


@pytest.mark.slow
def test_the_example_packages_own_contract_tests_pass(tmp_path):
    """What an author runs in their package: pytest with ``pytest_plugins = ["clbench.testing"]``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t")],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
