"""``clbench report``: a folder of tables and plots for finished runs, plus one offline HTML page.

Everything is re-rendered from the runs' ``metrics.csv`` (and ``config.toml``,
``summary.json``); nothing is recomputed from models. The folder holds:

* ``table.{md,csv,tex}`` — one row per seed group (mean ± std over seeds), and
  ``per_run.{md,csv,tex}`` — one row per run (see :mod:`clbench.tables`);
* ``metrics.csv`` — the runs' long tables concatenated (same columns), ``runs.csv`` — which run
  is in which group;
* ``matrix_<benchmark>_<strategy>_<config id>.png`` — accuracy matrix per group (mean over seeds);
* ``task_accuracy.png`` — final per-task accuracy per group, with std over seeds;
* ``capacity.png`` — for the packing strategies, weights owned by each task / free after each
  task (absolute, so growth shows) and the picked / released fractions (baselines record
  none and are listed as such);
* ``accuracy_vs_size.png`` — mean accuracy against model size;
* ``index.html`` — all of it on one page: images as base64 ``data:`` URIs, tables inline, no
  external resources, so it opens offline and can be mailed as one file.

The folder is built under a temporary name beside ``--out`` and renamed into place, so a
crash never leaves a half-written report; an existing report is replaced only with
``overwrite``, and a folder that is not a clbench report is never replaced.
"""

from __future__ import annotations

import base64
import html
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import __version__, results, tables
from clbench.errors import ResultsExistError, UsageError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from clbench.tables import Run

MARKER = ".clbench-report"  # marks a folder this module wrote, the only kind it may replace
CAPACITY_METRICS = ("owned_fraction", "free_fraction", "picked_fraction", "sparsity", "width_mult", "parameters")
DPI = 120
ACCURACY_RANGE = (0.0, 100.0)  # every accuracy axis and colour scale, so plots compare at a glance


@dataclass
class Group:
    key: tuple[str, str, str]
    label: str
    runs: list[Run]
    color: Any = None

    @property
    def strategy(self) -> str:
        return self.key[0]

    @property
    def benchmark(self) -> str:
        return self.key[1]

    @property
    def name(self) -> str:
        return f"{self.strategy} · {self.label}"

    @property
    def slug(self) -> str:
        return f"{self.benchmark}_{self.strategy}_{self.key[2]}"


# ----------------------------------------------------------------------------- entry
def write_report(
    run_dirs: Sequence[Path],
    out: Path,
    overwrite: bool = False,
    title: str | None = None,
    include_unfinished: bool = False,
    notes: list[str] | None = None,
) -> Path:
    """Write the report folder ``out`` for the runs in ``run_dirs`` and return it. Runs are
    chosen as for ``clbench table`` (:func:`clbench.tables.select_runs`); one line per run left out
    is appended to ``notes`` and shown on the page. Raises ``UsageError`` / ``ResultsExistError``."""
    out = Path(out)
    _check_target(out, overwrite)  # refuse before spending time on plots
    runs, left_out = tables.select_or_refuse(tables.load_runs(run_dirs), include_unfinished)
    if notes is not None:
        notes.extend(left_out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise UsageError(f"cannot write a report to {out}: {exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary folder
    try:
        build(runs, staging, title or "clbench report", left_out)
        _check_target(out, overwrite)  # again: someone may have written there meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise ResultsExistError(f"{out} exists and is not a clbench report folder; choose another --out")
    if not overwrite:
        raise ResultsExistError(f"{out} already holds a report; choose another --out, or pass --overwrite")


def build(runs: Sequence[Run], folder: Path, title: str, left_out: Sequence[str] = ()) -> None:
    """Write every file of the report into ``folder`` (which exists and is empty); ``left_out``:
    one note per run not shown (listed on the page)."""
    import pandas as pd

    seed_table = tables.seed_table(runs)
    per_run = tables.per_run_table(runs)
    for stem, table in (("table", seed_table), ("per_run", per_run)):
        (folder / f"{stem}.md").write_text(tables.to_markdown(table) + "\n", encoding="utf-8")
        (folder / f"{stem}.csv").write_text(tables.to_csv(table), encoding="utf-8")
        (folder / f"{stem}.tex").write_text(tables.to_latex(table) + "\n", encoding="utf-8")
    pd.concat([r.metrics for r in runs]).to_csv(folder / results.METRICS_FILE, index=False, lineterminator="\n")

    groups = make_groups(runs)
    rows = [
        {"run_dir": str(r.path), "strategy": r.strategy, "benchmark": r.benchmark, "seed": r.seed, "group": g.name}
        for g in groups
        for r in g.runs
    ]
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False, lineterminator="\n")

    figures: list[tuple[str, str, str]] = []  # (file, heading, caption)
    _save(plot_task_accuracy(groups), folder / "task_accuracy.png")
    figures.append(
        (
            "task_accuracy.png",
            "Final accuracy per task",
            "Accuracy on each task after the last task (R[T, i]) and their unweighted mean; "
            "error bars: std over seeds.",
        )
    )
    packing = [g for g in groups if has_capacity(g)]
    if packing:
        _save(plot_capacity(packing), folder / "capacity.png")
        figures.append(
            (
                "capacity.png",
                "Capacity per task",
                "Left: weights of the shared masked layers after learning each task, by owner, and the free "
                "ones (bar height grows when the network grows; ×w = width multiplier). Right: picked = share "
                "of earlier tasks' weights the task computes with; released = share of its allocation it "
                "pruned (sparsity).",
            )
        )
    _save(plot_accuracy_vs_size(groups), folder / "accuracy_vs_size.png")
    figures.append(
        (
            "accuracy_vs_size.png",
            "Accuracy vs. model size",
            "Mean final accuracy against the model size recorded after the last task (how each strategy counts it: "
            "the size_mb note under the summary table); error bars: std over seeds.",
        )
    )
    for group in groups:
        name = f"matrix_{group.slug}.png"
        _save(plot_matrix(group), folder / name)
        figures.append(
            (
                name,
                f"Accuracy matrix: {group.name} on {group.benchmark}",
                f"Row t: accuracy on each task after learning task t (mean over {len(group.runs)} run(s)).",
            )
        )
    page = render_html(
        title, runs, groups, seed_table, per_run, figures, folder, [g for g in groups if g not in packing], left_out
    )
    (folder / "index.html").write_text(page, encoding="utf-8")
    (folder / MARKER).write_text(f"clbench {__version__}\n", encoding="utf-8")


def make_groups(runs: Sequence[Run]) -> list[Group]:
    from matplotlib import colormaps

    labels = tables.group_labels(runs)
    groups = [Group(key, labels[key], members) for key, members in tables.group_runs(runs).items()]
    # One colour per experiment name (strategy · label), the same on every benchmark, so a legend
    # lists each name once: tab10 while it lasts, then tab20, then an evenly cut hue wheel.
    names = list(dict.fromkeys(g.name for g in groups))
    if len(names) <= 10:
        palette = list(colormaps["tab10"].colors)
    elif len(names) <= 20:
        palette = list(colormaps["tab20"].colors)
    else:
        palette = [colormaps["hsv"](i / len(names)) for i in range(len(names))]
    for group in groups:
        group.color = palette[names.index(group.name) % len(palette)]
    return groups


# ------------------------------------------------------------------------ the maths
def mean_matrix(group: Group) -> pd.DataFrame:
    """The accuracy matrix (%) averaged over the group's runs."""
    import pandas as pd

    stacked = pd.concat([results.accuracy_matrix(r.metrics) for r in group.runs])
    return 100 * stacked.groupby(level=0).mean()


def final_stats(group: Group) -> tuple[pd.Series, pd.Series]:
    """Mean and std (over runs) of the final per-task accuracy (%), with a ``mean`` entry."""
    import pandas as pd

    finals = []
    for run in group.runs:
        final = 100 * results.final_accuracies(results.accuracy_matrix(run.metrics))
        final.index = [f"T{int(t)}" for t in final.index]
        final["mean"] = final.mean()
        finals.append(final)
    frame = pd.DataFrame(finals)
    std = frame.std(ddof=1) if len(frame) > 1 else frame.iloc[0] * math.nan
    return frame.mean(), std


def has_capacity(group: Group) -> bool:
    return all(r.metrics["metric"].eq("owned_fraction").any() for r in group.runs)


def capacity_table(group: Group) -> pd.DataFrame:
    """Per task (mean over runs): the capacity records the packing strategies write when they
    finish a task, plus ``owned_by_<j>`` weights (absolute) after each task and ``free``."""
    import pandas as pd

    per_run = []
    for run in group.runs:
        m = run.metrics
        own = m[(m["trained_task"] == m["eval_task"]) & m["metric"].isin(CAPACITY_METRICS)]
        table = own.pivot_table(index="trained_task", columns="metric", values="value", aggfunc="mean")
        # A task's owned weights never change once it is learned (isolation), so its count
        # when learned is its count later too; the total only grows (width).
        owned = table["owned_fraction"] * table["parameters"]
        for j in table.index:
            table[f"owned_by_{int(j)}"] = [owned[j] if k >= j else 0.0 for k in table.index]
        table["free"] = table["free_fraction"] * table["parameters"]
        per_run.append(table)
    return pd.concat(per_run).groupby(level=0).mean()


# ------------------------------------------------------------------------- plotting
def task_label(index: int, names: dict[str, str]) -> str:
    """``3 aquatic_mammals`` where the run recorded the name (tasks.csv), else ``3``."""
    name = names.get(f"T{index}")
    return f"{index} {name}" if name else str(index)


def dedup_legend(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Handles and labels of all ``axes``, each label once (its first handle)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    # Object-oriented Figure: Agg rendering without pyplot's global state or a display.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _benchmarks(groups: Sequence[Group]) -> list[str]:
    return list(dict.fromkeys(g.benchmark for g in groups))


def plot_matrix(group: Group) -> Figure:
    import numpy as np

    matrix = mean_matrix(group)
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    side = min(12.0, max(4.5, 1.6 + 0.5 * max(n_rows, n_cols)))
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    low = ACCURACY_RANGE[0]  # one colour scale for every matrix of every report
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=low, vmax=ACCURACY_RANGE[1], aspect="equal")
    fontsize = max(5.0, 10.0 - 0.25 * max(n_rows, n_cols))
    for r in range(n_rows):
        for c in range(n_cols):
            v = values[r, c]
            if np.isfinite(v):
                dark = (v - low) / (100.0 - low or 1.0) < 0.6
                ax.text(
                    c, r, f"{v:.1f}", ha="center", va="center", fontsize=fontsize, color="white" if dark else "black"
                )
    names = tables.task_names(group.runs)
    ax.set_xticks(range(n_cols), [task_label(int(t), names) for t in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), [task_label(int(t), names) for t in matrix.index])
    ax.set_xlabel("task evaluated")
    ax.set_ylabel("after learning task")
    ax.set_title(f"{group.name}\n{group.benchmark}, n = {len(group.runs)}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="accuracy (%)")
    return fig


def plot_task_accuracy(groups: Sequence[Group]) -> Figure:
    import numpy as np

    benchmarks = _benchmarks(groups)
    stats = {id(g): final_stats(g) for g in groups}
    widest = max(len(stats[id(g)][0]) for g in groups)
    fig = _figure(min(18.0, max(7.0, 1.2 + widest * (0.35 + 0.12 * len(groups)))), 3.4 * len(benchmarks) + 0.6)
    axes = fig.subplots(len(benchmarks), 1, squeeze=False)[:, 0]
    for ax, benchmark in zip(axes, benchmarks, strict=True):
        members = [g for g in groups if g.benchmark == benchmark]
        columns = list(dict.fromkeys(c for g in members for c in stats[id(g)][0].index))
        columns = [c for c in columns if c != "mean"] + ["mean"]
        x = np.arange(len(columns), dtype=float)
        x[-1] += 0.5  # set the mean apart from the tasks
        width = 0.8 / len(members)
        for i, group in enumerate(members):
            mean, std = stats[id(group)]
            heights = mean.reindex(columns).to_numpy(dtype=float)
            errors = std.reindex(columns).to_numpy(dtype=float)
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                heights,
                width,
                # No caps at all for single runs: a zero-length error bar reads as "measured spread 0".
                yerr=np.where(np.isfinite(errors), errors, 0.0) if np.isfinite(errors).any() else None,
                capsize=2,
                color=group.color,
                label=group.name,
                edgecolor="white",
                linewidth=0.5,
            )
        names = tables.task_names([r for g in members for r in g.runs])
        ax.set_xticks(x, [f"{c} {names[c]}" if c in names else c for c in columns], rotation=30 if names else 0,
                      ha="right" if names else "center")  # fmt: skip
        ax.set_ylim(*ACCURACY_RANGE)
        ax.set_ylabel("final accuracy (%)")
        ax.set_title(benchmark, fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_capacity(groups: Sequence[Group]) -> Figure:
    import numpy as np
    from matplotlib import colormaps

    fig = _figure(12.0, 3.3 * len(groups) + 0.4)
    axes = fig.subplots(len(groups), 2, squeeze=False, width_ratios=(1.3, 1.0))
    tasks_palette = colormaps["tab20"].colors
    for (left, right), group in zip(axes, groups, strict=True):
        table = capacity_table(group)
        tasks = [int(t) for t in table.index]
        x = np.arange(len(tasks), dtype=float)
        bottom = np.zeros(len(tasks))
        scale = 1e3 if table["parameters"].max() < 1e7 else 1e6
        unit = "thousand" if scale == 1e3 else "million"
        for j in tasks:
            part = table[f"owned_by_{j}"].to_numpy() / scale
            left.bar(x, part, 0.7, bottom=bottom, color=tasks_palette[(j - 1) % 20], label=f"task {j}")
            bottom += part
        free = table["free"].to_numpy() / scale
        left.bar(x, free, 0.7, bottom=bottom, color="#e6e6e6", hatch="//", edgecolor="#b0b0b0", label="free")
        for xi, top, w in zip(x, bottom + free, table["width_mult"], strict=True):
            if w > 1 + 1e-9:
                left.annotate(
                    f"×{w:g}",
                    (xi, top),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        left.set_xticks(x, [str(t) for t in tasks])
        left.set_xlabel("after learning task")
        left.set_ylabel(f"weights ({unit})")
        left.set_ylim(0, float((bottom + free).max()) * 1.12)
        left.set_title(f"{group.name} on {group.benchmark}: owners", fontsize=10, loc="left")
        handles, names = left.get_legend_handles_labels()
        # Reversed, so the legend reads top-down like the stack (free on top).
        left.legend(
            handles[::-1],
            names[::-1],
            fontsize=7,
            ncols=1 if len(tasks) < 8 else 2,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )

        width = 0.38
        picked = table["picked_fraction"].to_numpy(dtype=float)
        released = table["sparsity"].to_numpy(dtype=float)
        right.bar(x - width / 2, np.nan_to_num(picked), width, color="#4c72b0", label="picked (of earlier tasks')")
        right.bar(x + width / 2, released, width, color="#dd8452", label="released (sparsity)")
        for xi, p in zip(x, picked, strict=True):
            if not np.isfinite(p):  # task 1 has no earlier weights to pick
                right.annotate("n/a", (xi - width / 2, 0), ha="center", va="bottom", fontsize=7, color="#555555")
        right.set_xticks(x, [str(t) for t in tasks])
        right.set_ylim(0, 1.15)
        right.set_xlabel("task")
        right.set_ylabel("fraction")
        right.set_title("picked / released", fontsize=10, loc="left")
        right.grid(axis="y", alpha=0.3)
        right.set_axisbelow(True)
        right.legend(fontsize=7, loc="upper center", ncols=2, frameon=False)
    return fig


def plot_accuracy_vs_size(groups: Sequence[Group]) -> Figure:
    import numpy as np

    benchmarks = _benchmarks(groups)
    fig = _figure(5.2 * len(benchmarks) + 2.8, 4.2)
    axes = fig.subplots(1, len(benchmarks), squeeze=False)[0]
    markers = "osD^v<>pP*Xh"
    for ax, benchmark in zip(axes, benchmarks, strict=True):
        members = [g for g in groups if g.benchmark == benchmark]
        sizes = []
        for i, group in enumerate(members):
            records = [tables.run_record(r) for r in group.runs]
            size = np.array([r["size_mb"] for r in records], dtype=float)
            acc = np.array([r["mean"] for r in records], dtype=float)
            if not np.isfinite(size).any():
                continue
            sizes.append(np.nanmean(size))
            ax.errorbar(
                np.nanmean(size),
                np.nanmean(acc),
                yerr=np.nanstd(acc, ddof=1) if len(acc) > 1 else None,
                fmt=markers[i % len(markers)],
                color=group.color,
                markersize=8,
                capsize=3,
                label=group.name,
                clip_on=False,  # a point at 100 % stays whole on the 0-100 axis
            )
        ax.margins(x=0.15, y=0.2)
        if sizes and max(sizes) / max(min(sizes), 1e-12) > 20:
            ax.set_xscale("log")
        else:
            ax.set_xlim(left=0)  # sizes read as proportions only from a zero baseline
        ax.set_ylim(*ACCURACY_RANGE)
        ax.set_xlabel("model size (MB)")
        ax.set_ylabel("mean final accuracy (%)")
        ax.set_title(benchmark, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    handles, labels = dedup_legend(axes)
    fig.legend(handles, labels, fontsize=8, loc="outside right upper", frameon=False)
    return fig


# ----------------------------------------------------------------------------- html
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
.notes { font-size: 0.85em; color: #444; } .meta { color: #666; font-size: 0.9em; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 60em; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _table_html(table: tables.Table) -> str:
    return _html_table([*table.keys, *table.values], tables.formatted_rows(table, " ± "), len(table.keys))


def _capacity_html(group: Group) -> str:
    table = capacity_table(group)
    header = ["task", "owned", "free", "picked", "released (sparsity)", "width ×", "masked weights"]
    rows = [
        [
            str(int(task)),
            _fraction(row["owned_fraction"]),
            _fraction(row["free_fraction"]),
            _fraction(row["picked_fraction"]),
            _fraction(row["sparsity"]),
            f"{row['width_mult']:g}",
            f"{row['parameters']:,.0f}",
        ]
        for task, row in table.iterrows()
    ]
    return _html_table(header, rows, 1)


def _fraction(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def render_html(
    title: str,
    runs: Sequence[Run],
    groups: Sequence[Group],
    seed_table: tables.Table,
    per_run: tables.Table,
    figures: Sequence[tuple[str, str, str]],
    folder: Path,
    without_capacity: Sequence[Group],
    left_out: Sequence[str] = (),
) -> str:
    esc = html.escape
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<li>{esc(n)}</li>" for n in tables.table_notes(seed_table))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{len(runs)} run(s) in {len(groups)} group(s) · clbench {esc(__version__)} · {stamp}</p>',
        "<h2>Summary: mean ± std over seeds</h2>",
        _table_html(seed_table),
        f'<ol class="notes">{notes}</ol>',
    ]
    if left_out:
        items = "".join(f"<li>{esc(n)}</li>" for n in left_out)
        parts.append(f'<p class="notes">Not counted:</p><ul class="notes">{items}</ul>')
    for file, heading, caption in figures:
        if file == "capacity.png" or file.startswith("matrix_"):
            continue  # placed in their own sections below
        parts.append(
            f'<h2>{esc(heading)}</h2><figure><img alt="{esc(heading)}" src="{_image(folder / file)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    parts.append("<h2>Capacity per task</h2>")
    capacity = [f for f in figures if f[0] == "capacity.png"]
    if capacity:
        file, heading, caption = capacity[0]
        parts.append(
            f'<figure><img alt="{esc(heading)}" src="{_image(folder / file)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
        for group in groups:
            if group not in without_capacity:
                parts.append(
                    f"<h3>{esc(group.name)} on {esc(group.benchmark)} (mean over {len(group.runs)} run(s))</h3>"
                )
                parts.append(_capacity_html(group))
    if without_capacity:
        names = ", ".join(f"{g.name} ({g.benchmark})" for g in without_capacity)
        parts.append(
            f'<p class="notes">No capacity records (owned / free / picked fractions, width) for: {esc(names)}. '
            "Only the packing strategies record them; a baseline uses all of its weights for every task.</p>"
        )
    parts.append("<h2>Accuracy matrices</h2>")
    for file, heading, caption in figures:
        if file.startswith("matrix_"):
            parts.append(
                f'<h3>{esc(heading)}</h3><figure><img alt="{esc(heading)}" src="{_image(folder / file)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    parts += ["<h2>Per run</h2>", _table_html(per_run), "<h2>Runs</h2>"]
    run_rows = [[str(r.path), r.strategy, r.benchmark, str(r.seed), g.name] for g in groups for r in g.runs]
    parts.append(_html_table(["run directory", "strategy", "benchmark", "seed", "group"], run_rows, 99))
    parts.append(
        '<p class="notes">Files beside this page: table.{md,csv,tex}, per_run.{md,csv,tex}, metrics.csv '
        "(the runs' long tables), runs.csv and the PNGs shown here.</p></body></html>"
    )
    return "\n".join(parts) + "\n"
