"""`clbench compare`: one-sided tolerance, missing and published rows, exit codes (hand-made runs)."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

import pytest

from clbench import compare, results, tables
from clbench.cli import main
from clbench.errors import UsageError

HEADER = ",".join(compare.REFERENCE_COLUMNS)


def make_run(
    path: Path,
    final: list[float],
    strategy: str = "packnet",
    seed: int = 0,
    lr: float | None = 0.05,
    *,
    benchmark: str = "digits",
    recipe: str = "tiny",
    section: str = "",
    finished: bool = True,
) -> Path:
    """A run whose accuracy matrix has ``final`` as its last row (and the same diagonal: no
    forgetting); ``section`` is appended to its config.toml, ``finished=False`` leaves out
    summary.json (an interrupted run)."""
    path.mkdir(parents=True)
    run_id = f"{benchmark}-{strategy}-{path.name}"
    metrics = results.MetricsWriter(path / results.METRICS_FILE, results.RunKey(run_id, strategy, benchmark, seed))
    for t in range(1, len(final) + 1):
        for i in range(1, t + 1):
            metrics.add(t, i, "accuracy", final[i - 1])
    metrics.flush()
    own = f"[{strategy}]\nlr = {lr}\n" if lr is not None else ""
    (path / results.CONFIG_FILE).write_text(
        f'[run]\nstrategy = "{strategy}"\nbenchmark = "{benchmark}"\nrecipe = "{recipe}"\nseed = {seed}\n\n'
        f"{own}{section}"
    )
    if finished:
        (path / results.SUMMARY_FILE).write_text(json.dumps({"wall_seconds": 1.0}))
    return path


def reference(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "ref.csv"
    path.write_text("# a comment line, skipped\n" + HEADER + "\n" + "\n".join(lines) + "\n")
    return path


def statuses(run_dirs, ref_path, **kw) -> list[str]:
    runs = tables.load_runs(run_dirs)
    return [o.status for o in compare.compare(runs, compare.read_reference(ref_path), **kw).outcomes]


def test_one_sided_tolerance(tmp_path):
    run = make_run(tmp_path / "run", [0.90, 0.80, 0.70])
    ref = reference(
        tmp_path,
        "packnet,digits,1,accuracy,0.92,0.03,measured",  # 0.90 ≥ 0.92 − 0.03: pass
        "packnet,digits,2,accuracy,0.84,0.03,measured",  # 0.80 < 0.84 − 0.03: FAIL
        "packnet,digits,3,accuracy,0.60,0.03,measured",  # 0.70 > 0.60 + 0.03: better, passes
        "packnet,digits,3,accuracy,0.725,0.025,measured",  # exactly at the bound: pass
        "packnet,digits,all,mean_accuracy,0.80,0.0,measured",  # (0.9 + 0.8 + 0.7) / 3 = 0.8: pass
        "packnet,digits,all,forgetting,0.0,0.0,measured",  # lower is better; 0: pass
    )
    assert statuses([run], ref) == ["pass", "FAIL", "better", "pass", "pass", "pass"]


def test_lower_is_better_for_forgetting(tmp_path):
    path = make_run(tmp_path / "run", [0.5, 0.9])
    metrics = results.load_metrics(path)
    metrics.loc[(metrics.trained_task == 1) & (metrics.eval_task == 1), "value"] = 0.8  # forgot 0.3
    metrics.to_csv(path / results.METRICS_FILE, index=False)
    ref = reference(
        tmp_path,
        "packnet,digits,all,forgetting,0.0,0.1,measured",
        "packnet,digits,all,forgetting,0.5,0.1,measured",
        "packnet,digits,all,bwt,-0.3,0.0,measured",
    )
    assert statuses([path], ref) == ["FAIL", "better", "pass"]


def test_seeds_are_averaged(tmp_path):
    runs = [make_run(tmp_path / "s0", [0.8], seed=0), make_run(tmp_path / "s1", [0.9], seed=1)]
    ref = reference(tmp_path, "packnet,digits,1,accuracy,0.85,0.0,measured")
    outcome = compare.compare(tables.load_runs(runs), compare.read_reference(ref)).outcomes[0]
    assert outcome.measured == pytest.approx(0.85) and outcome.runs == 2 and outcome.status == "pass"


def test_missing_rows_fail_unless_allowed(tmp_path):
    run = make_run(tmp_path / "run", [0.9, 0.9])
    ref = reference(
        tmp_path,
        "packnet,digits,1,accuracy,0.9,0.03,measured",
        "packnet,digits,3,accuracy,0.9,0.03,measured",  # the run has only two tasks
        "cpg,digits,1,accuracy,0.9,0.03,measured",  # no cpg run at all
    )
    result = compare.compare(tables.load_runs([run]), compare.read_reference(ref))
    assert [o.status for o in result.outcomes] == ["pass", "missing", "missing"]
    assert result.exit_code == 1
    assert compare.compare(tables.load_runs([run]), compare.read_reference(ref), allow_missing=True).exit_code == 0


def test_published_rows_never_fail(tmp_path):
    run = make_run(tmp_path / "run", [0.5])
    ref = reference(
        tmp_path,
        "packnet,digits,1,accuracy,0.99,0.0,published: some paper",
        "cpg,digits,1,accuracy,0.99,0.0,Published in a README",  # no run: still not missing
        "packnet,digits,all,mean_accuracy,0.5,0.0,measured",
    )
    result = compare.compare(tables.load_runs([run]), compare.read_reference(ref))
    assert [o.status for o in result.outcomes] == ["published", "published", "pass"]
    assert result.outcomes[0].delta == pytest.approx(-0.49)
    assert result.exit_code == 0


def test_exit_codes_through_main(tmp_path, capsys):
    run = make_run(tmp_path / "run", [0.9, 0.8])
    good = reference(tmp_path, "packnet,digits,1,accuracy,0.9,0.02,measured", "packnet,digits,2,accuracy,0.8,0.02,m")
    assert main(["compare", str(run), "--reference", str(good)]) == 0
    out = capsys.readouterr().out
    assert "| packnet" in out and "2 pass" in out and "-> ok" in out
    for name in ("reference", "measured", "delta", "tol", "status"):
        assert name in out.splitlines()[0]

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\npacknet,digits,2,accuracy,0.9,0.02,measured\n")
    assert main(["compare", str(run), "--reference", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "-> REGRESSION" in out and "-0.1000" in out

    assert main(["compare", str(run), "--reference", str(bad), "--format", "csv"]) == 1
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert rows[0]["status"] == "FAIL" and rows[0]["source"] == "measured" and "REGRESSION" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("strategy,benchmark,task,metric,value\n", "expected strategy,benchmark,task,metric,value,tol,source"),
        (HEADER + "\npacknet,digits,1,top5,0.9,0.0,x\n", "unknown metric 'top5'"),
        (HEADER + "\npacknet,digits,all,accuracy,0.9,0.0,x\n", "needs a task number"),
        (HEADER + "\npacknet,digits,1,mean_accuracy,0.9,0.0,x\n", "its task must be 'all'"),
        (HEADER + "\npacknet,digits,1,accuracy,high,0.0,x\n", "are not numbers"),
        (HEADER + "\npacknet,digits,1,accuracy,0.9,-0.1,x\n", "tol must be >= 0"),
        (HEADER + "\npacknet,digits,1,accuracy,0.9\n", "does not have 7 fields"),
    ],
)
def test_bad_reference_is_one_clear_error(tmp_path, capsys, content, message):
    run = make_run(tmp_path / "run", [0.9])
    path = tmp_path / "ref.csv"
    path.write_text(content)
    assert main(["compare", str(run), "--reference", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_refuses_ambiguous_and_unfinished_runs(tmp_path, capsys):
    ref = reference(tmp_path, "packnet,digits,1,accuracy,0.9,0.02,measured")
    a = make_run(tmp_path / "a", [0.9], lr=0.05)
    b = make_run(tmp_path / "b", [0.9], lr=0.0)
    assert main(["compare", str(a), str(b), "--reference", str(ref)]) == 2
    assert "2 different configurations" in capsys.readouterr().err
    (a / results.SUMMARY_FILE).unlink()
    assert main(["compare", str(a), "--reference", str(ref)]) == 2
    assert "unfinished run" in capsys.readouterr().err
    assert main(["compare", str(b), "--reference", str(tmp_path / "nope.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_unreferenced_runs_are_named(tmp_path, capsys):
    run = make_run(tmp_path / "run", [0.9], strategy="finetune")
    ref = reference(tmp_path, "packnet,digits,1,accuracy,0.9,0.02,measured")
    assert main(["compare", str(run), "--reference", str(ref), "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "missing (allowed)" in out and "no reference row (not checked): finetune/digits" in out


# ------------------------------------------------------------ the committed tables
def test_committed_reference_tables_parse_and_are_packaged():
    folder = resources.files("clbench_baselines") / "reference"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".csv"))
    assert {"digits.csv", "cifar100_20.csv"} <= set(names)
    for name in names:
        rows = compare.read_reference(name.removesuffix(".csv"))  # resolved through importlib.resources
        assert rows and all(r.benchmark == name.removesuffix(".csv") for r in rows)


def test_cifar_published_rows():
    rows = compare.read_reference("cifar100_20")
    assert all(r.published for r in rows)
    for strategy, stated in (("packnet", 0.675), ("pae", 0.771), ("cpg", 0.809)):
        mine = [r for r in rows if r.strategy == strategy]
        tasks = [r for r in mine if r.metric == "accuracy"]
        assert [int(r.task) for r in tasks] == list(range(1, 21))
        assert [r.value for r in mine if r.metric == "mean_accuracy"] == [stated]
    cpg16 = next(r for r in rows if r.strategy == "cpg" and r.task == "16")
    assert "typo" in cpg16.source.lower()
    # Nothing to compare with: every row is shown as published context, and the command passes.
    result = compare.compare([], rows)
    assert {o.status for o in result.outcomes} == {"published"} and result.exit_code == 0


def test_digits_reference_covers_every_first_party_strategy():
    rows = compare.read_reference("digits")
    measured = [r for r in rows if not r.published]
    assert {r.strategy for r in measured} == {"finetune", "individual", "packnet", "pae", "cpg"}
    for strategy in {r.strategy for r in measured}:
        mine = {(r.metric, r.task) for r in measured if r.strategy == strategy}
        assert {("accuracy", str(t)) for t in range(1, 6)} | {("mean_accuracy", "all")} <= mine


def test_parse_reference_skips_comments_and_blank_lines():
    text = "# provenance\n\n" + HEADER + "\n# inline note\npacknet,digits,1,accuracy,0.9,0.01,measured\n"
    (row,) = compare.parse_reference(text)
    assert (row.task, row.value, row.tol, row.published) == ("1", 0.9, 0.01, False)
    with pytest.raises(UsageError):
        compare.parse_reference("a,b\n1,2\n")
