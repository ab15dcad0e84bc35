"""Provenance (issue 18, item 5): a run records who provided its strategy (distribution and
version, or plugin file and sha256), and ``--resume`` reloads a ``--plugin`` file the run used,
saying so."""

from __future__ import annotations

import json
import textwrap

import pytest

from clbench import checkpoint, results
from clbench.cli import main
from clbench.manager import file_sha256

PLUGIN = textwrap.dedent(
    '''
    import clbench
    from clbench_baselines.finetune import Finetune

    class Mine(Finetune):
        """Finetune under another name, from an unpublished file."""
        name = "mine"

    @clbench.hookimpl
    def clbench_register_strategies(register):
        register(Mine)
    '''
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    plugin, out = root / "mine.py", root / "run"
    plugin.write_text(PLUGIN)
    argv = ["run", "--plugin", str(plugin), "--strategy", "mine", "--recipe", "tiny", "--quiet", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    return plugin, out


def _unfinish(run_dir):
    """Drop the last task's checkpoint and the summary: as if the run stopped before task 5."""
    for name in ("task-005.pt", "task-005.pt.sha256"):
        (run_dir / checkpoint.CHECKPOINT_DIR / name).unlink()
    (run_dir / results.SUMMARY_FILE).unlink()


def test_environment_records_the_plugin_file_and_its_hash(finished):
    plugin, out = finished
    providers = json.loads((out / results.ENVIRONMENT_FILE).read_text())["providers"]
    assert providers["strategy"]["kind"] == "file" and providers["strategy"]["name"] == "mine"
    assert providers["strategy"]["path"] == str(plugin.resolve())
    assert providers["strategy"]["sha256"] == file_sha256(plugin)
    assert providers["strategy"]["accounting"]["kind"] == "shared"
    assert providers["benchmark"]["distribution"] == "clbench" and providers["benchmark"]["version"]
    assert providers["plugin_files"] == [{k: providers["strategy"][k] for k in ("plugin", "kind", "path", "sha256")}]


def test_resume_reloads_the_recorded_plugin_file_and_says_so(finished, capsys):
    _, out = finished
    _unfinish(out)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"reloading plugin file {finished[0].resolve()} recorded in the run" in err
    assert (out / results.SUMMARY_FILE).is_file()


def test_resume_without_the_file_names_it(finished, capsys):
    plugin, out = finished
    _unfinish(out)
    plugin.rename(plugin.with_name("moved.py"))
    try:
        assert main(["run", "--resume", str(out)]) == 2
    finally:
        plugin.with_name("moved.py").rename(plugin)
    err = capsys.readouterr().err
    assert "which is gone" in err
    assert "unknown strategy 'mine'" in err and f"the run loaded it from plugin file {plugin.resolve()}" in err
