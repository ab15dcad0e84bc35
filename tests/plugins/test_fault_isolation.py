"""One broken plugin cannot take down the others (issue 18, item 1): a package whose import raises,
one whose hook has a wrong signature, one with a misspelt hook, one whose registration raises and a
``--plugin`` file with a syntax error each leave ``clbench list`` working (exit 0, the plugin marked
broken) with one line on stderr naming it and how to disable it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.manager import load_plugins

GOOD = '''
import clbench
from clbench.strategy import Strategy

class Good(Strategy):
    """A strategy from a healthy third-party package."""
    name = "good_one"

@clbench.hookimpl
def clbench_register_strategies(register):
    register(Good)
'''

BROKEN = {
    "import": "raise RuntimeError('boom at import')\n",
    "signature": textwrap.dedent(
        """
        import clbench

        @clbench.hookimpl
        def clbench_register_strategies(register, extra):
            pass
        """
    ),
    "misspelt": textwrap.dedent(
        """
        import clbench

        @clbench.hookimpl
        def clbench_register_strategy(register):
            pass
        """
    ),
    "raises": textwrap.dedent(
        """
        import clbench
        from clbench.strategy import Strategy

        class Half(Strategy):
            name = "half_registered"

        @clbench.hookimpl
        def clbench_register_strategies(register):
            register(Half)
            raise ValueError("boom while registering")
        """
    ),
}


def install(site: Path, dist: str, module: str, source: str, entry: str | None = None) -> None:
    """A fake installed distribution ``dist`` 1.2.3 whose entry point ``entry`` names ``module``."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[clbench]\n{entry or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delenv("CLBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("CLBENCH_NO_THIRD_PARTY_PLUGINS", raising=False)
    install(path, "clbench-good", "clbench_good", GOOD, entry="good")
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_package_leaves_list_working_and_is_named_in_one_line(case, site, capsys):
    install(site, f"clbench-bad-{case}", f"clbench_bad_{case}", BROKEN[case], entry=f"bad_{case}")
    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"clbench-bad-{case} 1.2.3 (entry point bad_{case})" in lines[0]
    assert f"CLBENCH_DISABLE_PLUGINS=clbench-bad-{case}" in lines[0]
    row = next(line for line in out.splitlines() if line.startswith(f"bad_{case} "))
    assert "BROKEN" in row
    assert "good_one" in out and "finetune" in out  # everything else still loads
    if case == "raises":
        assert "half_registered" not in out  # nothing of a half-registered plugin is kept


def test_a_plugin_file_with_a_syntax_error_is_reported_not_fatal(tmp_path, site, capsys):
    bad = tmp_path / "mine.py"
    bad.write_text("def oops(:\n")
    assert main(["list", "plugins", "--plugin", str(bad)]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "file:mine.py failed to import: SyntaxError" in err and str(bad) in err
    assert "BROKEN" in next(line for line in out.splitlines() if line.startswith("file:mine.py"))


def test_a_run_that_needs_the_broken_plugin_stops_with_exit_2_naming_it(site, capsys):
    install(site, "clbench-bad", "clbench_bad", BROKEN["import"], entry="bad")
    assert main(["run", "--strategy", "bad_strategy", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'bad_strategy'" in err
    assert "clbench-bad 1.2.3 (entry point bad) did not load (RuntimeError: boom at import)" in err


def test_a_run_of_another_strategy_is_not_affected(site, capsys):
    install(site, "clbench-bad", "clbench_bad", BROKEN["import"], entry="bad")
    assert main(["run", "--strategy", "finetune", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert "[finetune]" in out and "clbench-bad" in err


@pytest.mark.parametrize("name", ["clbench-bad", "Clbench_Bad", "bad"])
def test_disable_by_distribution_or_entry_point_name(name, site, monkeypatch, capsys):
    install(site, "clbench-bad", "clbench_bad", BROKEN["import"], entry="bad")
    monkeypatch.setenv("CLBENCH_DISABLE_PLUGINS", f"other, {name}")
    assert main(["list", "plugins"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "disabled" in next(line for line in out.splitlines() if line.startswith("bad "))


def test_one_switch_turns_off_every_third_party_plugin(site, monkeypatch):
    install(site, "clbench-bad", "clbench_bad", BROKEN["import"], entry="bad")
    monkeypatch.setenv("CLBENCH_NO_THIRD_PARTY_PLUGINS", "1")
    plugins = load_plugins()
    assert plugins.broken == [] and "good_one" not in plugins.strategies and "finetune" in plugins.strategies
    assert {o.distribution for o in plugins.disabled} == {"clbench-good", "clbench-bad"}
    assert "good_one" not in load_plugins(third_party=False).strategies


def test_provenance_names_the_distribution_and_version(site):
    record = load_plugins().provenance("good_one", "digits")
    assert record["strategy"]["distribution"] == "clbench-good" and record["strategy"]["version"] == "1.2.3"
    assert record["strategy"]["accounting"]["kind"] == "other"
    assert record["benchmark"]["distribution"] == "clbench"
