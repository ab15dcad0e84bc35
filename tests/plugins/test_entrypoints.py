"""Plugin discovery through the ``clbench`` entry-point group, as a third-party package uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import clbench
from clbench.errors import RegistryError
from clbench.manager import load_plugins
from clbench.strategy import Strategy

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "clbench-example"


def fake_distribution(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """Write a minimal installed-distribution record (what pip leaves in site-packages)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[clbench]\n{lines}\n")


def test_first_party_plugins_come_through_entry_points():
    plugins = load_plugins()
    assert "finetune" in plugins.strategies
    assert "digits" in plugins.benchmarks
    assert "entry point" in plugins.strategies.entry("finetune").provider


def test_isolated_module_registration():
    class Mine(Strategy):
        """A strategy only this test knows."""

        name = "mine"

    class Module:
        @staticmethod
        @clbench.hookimpl
        def clbench_register_strategies(register):
            register(Mine)

    plugins = load_plugins(entrypoints=False, modules=[Module])
    assert plugins.strategies.names() == ["mine"]
    assert plugins.strategies.entry("mine").description == "A strategy only this test knows."


def test_duplicate_name_from_a_plugin_file_breaks_that_file_and_names_both(tmp_path):
    plugin = tmp_path / "dupe.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import clbench
            from clbench.strategy import Strategy

            class Other(Strategy):
                name = "finetune"

            @clbench.hookimpl
            def clbench_register_strategies(register):
                register(Other)
            """
        )
    )
    plugins = load_plugins(files=[plugin])
    (broken,) = plugins.broken
    assert broken.stage == "register" and "entry point baselines" in broken.error and "file:dupe.py" in broken.error
    assert plugins.strategies.get("finetune").__module__ == "clbench_baselines.finetune"  # clbench's own kept


def test_duplicate_name_from_modules_passed_in_code_raises():
    class Module:
        @staticmethod
        @clbench.hookimpl
        def clbench_register_strategies(register):
            class Other(Strategy):
                name = "finetune"

            register(Other)

    with pytest.raises(RegistryError, match="registered twice"):
        load_plugins(modules=[Module])


def _env_with(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(EXAMPLE), env.get("PYTHONPATH", "")])
    return env


def test_installed_example_package_is_discovered_and_listed(tmp_path):
    fake_distribution(tmp_path, "clbench-example", "0.1.0", {"example": "clbench_example.feature_extraction"})
    out = subprocess.run(
        [sys.executable, "-m", "clbench.cli", "list", "strategies"],
        env=_env_with(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("feature_extraction"))
    assert "clbench-example 0.1.0 (entry point example)" in line


def test_disable_env_blocks_an_entry_point(tmp_path):
    fake_distribution(tmp_path, "clbench-example", "0.1.0", {"example": "clbench_example.feature_extraction"})
    env = _env_with(tmp_path) | {"CLBENCH_DISABLE_PLUGINS": "example"}
    out = subprocess.run(
        [sys.executable, "-m", "clbench.cli", "list", "strategies"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "feature_extraction" not in out and "finetune" in out


@pytest.mark.slow
def test_example_plugin_runs_end_to_end_through_clbench_run(tmp_path):
    fake_distribution(tmp_path / "site", "clbench-example", "0.1.0", {"example": "clbench_example.feature_extraction"})
    out_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clbench.cli",
            "run",
            "--strategy",
            "feature_extraction",
            "--recipe",
            "tiny",
            "--feature_extraction.head-lr",
            "0.2",
            "--out",
            str(out_dir),
            "--quiet",
        ],
        env=_env_with(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "feature_extraction" in proc.stdout
    config = (out_dir / "config.toml").read_text()
    assert "[feature_extraction]" in config and "head_lr = 0.2" in config
    from clbench import results

    matrix = results.accuracy_matrix(results.load_metrics(out_dir))
    assert matrix.shape == (5, 5)
    # Frozen features: later tasks cannot change task 2..5's heads' inputs -> no forgetting after task 2.
    assert results.forgetting(matrix.loc[2:, 2:]).abs().max() == 0
