"""`clbench --help` and `clbench list` must not pay for torch, avalanche or ray (time them in tests/perf)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "avalanche", "pandas", "sklearn", "ray")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list"],
        ["list", "plugins"],
        ["list", "recipes"],
        ["run", "--help"],
        ["run", "--recipe", "tiny", "--help"],
        ["sweep", "--help"],
        # Bad input is refused before any heavy import (issue 14): data root, flags, commands.
        ["run", "--benchmark", "cifar100_20", "--data-root", "/nonexistent"],
        ["run", "--benchmark", "facial4_mini", "--data-root", "/nonexistent"],
        ["run", "--finetune.lrr", "3"],
        ["tabel"],
    ],
)
def test_cheap_commands_import_no_heavy_module(args):
    code = (
        "import sys, contextlib, io\n"
        "from clbench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        main({args!r})\n    except SystemExit:\n        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mapped_import_names_and_no_generic_top_level_modules(tmp_path):
    code = (
        "import importlib.util as u\n"
        "import clbench, clbench_plugins, clbench_benchmarks, clbench_baselines\n"
        "print([n for n in ('plugins', 'benchmarks', 'baselines') if u.find_spec(n) is not None])\n"
    )
    # Run outside the checkout so the repository folders themselves are not on sys.path.
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_device_engine_run_never_imports_avalanche(tmp_path):
    """A run on the device engine builds no Avalanche scenario and imports no Avalanche (issue 13:
    the import costs about 7 s of CPU and 960 MB of RSS), nor scikit-learn for the digits data."""
    out = tmp_path / "run"
    code = (
        "import sys\n"
        "from clbench.cli import main\n"
        f"rc = main(['run', '--recipe', 'tiny', '--finetune.engine', 'device', '--quiet', '--out', {str(out)!r}])\n"
        "print(rc, sorted(m for m in ('avalanche', 'torchvision', 'torchmetrics', 'sklearn') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    assert (out / "summary.json").is_file()
