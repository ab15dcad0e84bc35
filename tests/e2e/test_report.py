"""`clbench report`: the folder, its PNGs and one offline HTML page (hand-made runs: fast)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clbench import report, results
from clbench.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path: Path, strategy: str, seed: int, final: list[float], packing: bool, grow_at: int = 0) -> Path:
    """A finished run on a 4-task benchmark; packing runs also record capacity per task."""
    path.mkdir(parents=True)
    run_id = f"toy-{strategy}-{path.name}"
    metrics = results.MetricsWriter(path / results.METRICS_FILE, results.RunKey(run_id, strategy, "toy", seed))
    tasks = len(final)
    base, params = 1000.0, 1000.0
    owned_so_far = 0.0
    for t in range(1, tasks + 1):
        for i in range(1, t + 1):
            # earlier tasks a little better right after learning them (baselines forget)
            acc = final[i - 1] + (0.0 if packing or i == t else 0.05 * (t - i) / tasks)
            metrics.add(t, i, "accuracy", min(acc, 1.0))
        if packing:
            width = 1.5 if grow_at and t >= grow_at else 1.0
            params = base * width
            owned = 0.3 * base
            owned_so_far += owned
            records = {
                "owned_fraction": owned / params,
                "free_fraction": (params - owned_so_far) / params,
                "picked_fraction": float("nan") if t == 1 else 0.5,
                "sparsity": 0.6,
                "width_mult": width,
                "parameters": params,
                "model_size_mb": params * 5 / 2**20,
            }
        else:
            records = {"parameters": 4000.0 * t, "model_size_mb": 4000.0 * t * 4 / 2**20}
        for metric, value in records.items():
            metrics.add(t, t, metric, value)
    metrics.flush()
    (path / results.CONFIG_FILE).write_text(
        f'[run]\nstrategy = "{strategy}"\nbenchmark = "toy"\nrecipe = "default"\nseed = {seed}\n'
    )
    (path / results.SUMMARY_FILE).write_text(json.dumps({"wall_seconds": 3.0 + seed}))
    return path


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [
        make_run(root / "cpg-s0", "cpg", 0, [0.90, 0.85, 0.80, 0.95], packing=True, grow_at=3),
        make_run(root / "cpg-s1", "cpg", 1, [0.88, 0.86, 0.82, 0.93], packing=True, grow_at=3),
        make_run(root / "packnet-s0", "packnet", 0, [0.80, 0.75, 0.70, 0.90], packing=True),
        make_run(root / "finetune-s0", "finetune", 0, [0.60, 0.65, 0.80, 0.97], packing=False),
    ]


@pytest.fixture(scope="module")
def report_dir(run_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "report"
    assert main(["report", *map(str, run_dirs), "--out", str(out), "--title", "Toy <report>"]) == 0
    return out


def test_folder_has_tables_plots_and_page(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "task_accuracy.png", "capacity.png", "accuracy_vs_size.png"} <= names
    assert {f"{stem}.{ext}" for stem in ("table", "per_run") for ext in ("md", "csv", "tex")} <= names
    assert {"metrics.csv", "runs.csv"} <= names
    matrices = sorted(n for n in names if n.startswith("matrix_"))
    assert len(matrices) == 3  # cpg (2 seeds) · packnet · finetune
    for name in names:
        if name.endswith(".png"):
            data = (report_dir / name).read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    table = list(csv.DictReader((report_dir / "table.csv").read_text().splitlines()))
    assert [row["n"] for row in table] == ["2", "1", "1"]
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_html_is_self_contained(report_dir):
    page = (report_dir / "index.html").read_text()
    pngs = [p for p in report_dir.iterdir() if p.suffix == ".png"]
    sources = re.findall(r"""\bsrc\s*=\s*["']([^"']*)["']""", page)
    assert len(sources) == len(pngs)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.IGNORECASE)
    assert not re.search(r"<(link|script|iframe|object|embed)\b|@import|url\(", page, re.IGNORECASE)
    assert "href=" not in page
    assert "<title>Toy &lt;report&gt;</title>" in page  # escaped
    assert "No capacity records" in page and "finetune" in page  # the baseline is named, not drawn
    assert "± " in page and "owner mask" in page  # std over seeds, the size accounting note


def test_capacity_counts_owned_weights_and_growth(run_dirs):
    from clbench import tables

    runs = tables.load_runs(run_dirs[:2])
    (group,) = report.make_groups(runs)
    table = report.capacity_table(group)
    assert list(table["parameters"]) == [1000.0, 1000.0, 1500.0, 1500.0]  # grew at task 3
    after_last = table.iloc[-1]
    owners = [after_last[f"owned_by_{j}"] for j in (1, 2, 3, 4)]
    assert owners == pytest.approx([300.0] * 4)
    assert sum(owners) + after_last["free"] == pytest.approx(1500.0)


def test_existing_report_is_refused_then_replaced(report_dir, run_dirs, capsys):
    before = (report_dir / "index.html").stat().st_mtime_ns
    assert main(["report", str(run_dirs[0]), "--out", str(report_dir)]) == 2
    assert "already holds a report" in capsys.readouterr().err
    assert (report_dir / "index.html").stat().st_mtime_ns == before
    assert main(["report", str(run_dirs[0]), "--out", str(report_dir), "--overwrite"]) == 0
    assert len([n for n in (report_dir / "runs.csv").read_text().splitlines()[1:] if n]) == 1
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".")]


def test_a_folder_that_is_no_report_is_never_replaced(run_dirs, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["report", str(run_dirs[0]), "--out", str(precious), "--overwrite"]) == 2
    assert "is not a clbench report folder" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


def test_report_on_real_run_directories_of_the_runner(tmp_path):
    """The runner's own layout (a real, tiny finetune run) renders too."""
    run = tmp_path / "ft"
    assert main(["run", "--recipe", "tiny", "--epochs", "1", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install chromium)")
def test_headless_browser_renders_the_page(report_dir, tmp_path):
    """Open the page offline in headless Chromium and take a screenshot: it must load and paint."""
    shot = tmp_path / "page.png"
    command = [
        shutil.which("chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        (report_dir / "index.html").resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    # A blank page compresses to almost nothing; tables and embedded plots do not.
    assert len(data) > 50_000, len(data)
