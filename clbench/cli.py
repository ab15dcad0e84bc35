"""The ``clbench`` command line: ``run``, ``list`` and ``table``.

Parsing is two-phase (as in timm, FACIL, Mammoth): the first pass finds the strategy, the
benchmark and plugin files; the second adds ``--<strategy>.<field>`` and
``--<benchmark>.<field>`` flags derived from their ``Config`` dataclasses. ``--help`` and
``list`` never import torch or avalanche.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from clbench import __version__
from clbench import config as cfg
from clbench.errors import ClbenchError, RegistryError, RunInterrupted, UsageError
from clbench.runspec import RunOptions

if TYPE_CHECKING:
    from clbench.manager import Plugins
    from clbench.runspec import RunSpec

DEFAULT_STRATEGY = "finetune"
DEFAULT_BENCHMARK = "digits"
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _top_parser()
    if not argv:
        parser.print_help()
        return 0
    command, rest = argv[0], argv[1:]
    handlers = {
        "run": _cmd_run,
        "list": _cmd_list,
        "table": _cmd_table,
        "report": _cmd_report,
        "compare": _cmd_compare,
        "sweep": _cmd_sweep,
    }
    try:
        if command not in handlers:
            parser.parse_args(argv)  # prints help/version or the "invalid choice" error
            return 0
        return handlers[command](rest)
    except RunInterrupted as exc:
        print(f"clbench: {exc}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other command-line tools do.
        sys.stderr.close()
        return 0
    except ClbenchError as exc:
        _print_error(exc, verbose="--verbose" in rest)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("clbench: interrupted", file=sys.stderr)
        return 130


def _print_error(exc: ClbenchError, verbose: bool) -> None:
    """One line on stderr; the lines after an error's first (an expected data layout, say) only
    with ``--verbose``."""
    summary, _, details = str(exc).partition("\n")
    print(f"clbench: error: {summary}", file=sys.stderr)
    if verbose and details:
        print(details, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (a ``UsageError``: exit 2) naming the closest valid
    option or choice (difflib) instead of printing the whole usage."""

    args: Sequence[str] = ()

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self.args = list(sys.argv[1:] if args is None else args)
        return super().parse_args(self.args, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}{_closest(self, message)} (see {self.prog} --help)")


def _closest(parser: _Parser, message: str) -> str:
    """``; did you mean --x?`` for an unrecognized flag or an invalid choice, else ''. A mistyped
    flag is looked for in the arguments too: it may hide behind another error ("required")."""
    options = [o for action in parser._actions for o in action.option_strings]
    typed = [a.split("=")[0] for a in parser.args if a.startswith("--")]
    unknown = [a for a in typed if a not in options and not any(o.startswith(a) for o in options)]
    if unknown:
        word, candidates = unknown[0], options
    elif invalid := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
        word, candidates = invalid.group(1), re.findall(r"'([^']*)'", invalid.group(2))
    else:
        return ""
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _top_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clbench",
        description="Benchmark suite for task-incremental, parameter-isolation continual learning.",
        epilog="Run `clbench run --help` (with --strategy/--benchmark) to see their options.",
    )
    parser.add_argument("--version", action="version", version=f"clbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run a strategy on a benchmark and write a results directory")
    sub.add_parser("list", help="list strategies, benchmarks or plugins")
    sub.add_parser("table", help="compare run directories: per-task accuracy, mean ± std over seeds, size, time")
    sub.add_parser("report", help="write a report folder (tables, plots, one offline HTML page) for runs")
    sub.add_parser("compare", help="check runs against a reference table; exit 1 on a regression")
    sub.add_parser("sweep", help="run a grid of strategies × benchmarks × seeds × settings on Ray")
    return parser


# ------------------------------------------------------------------------------ list
def _cmd_list(args: Sequence[str]) -> int:
    parser = _Parser(prog="clbench list", description="List what the installed plugins provide.")
    parser.add_argument("what", nargs="?", choices=("strategies", "benchmarks", "recipes", "plugins"), default=None)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE", help="also load this plugin file")
    ns = parser.parse_args(args)
    plugins = load_plugins(ns.plugin)
    sections = [ns.what] if ns.what else ["strategies", "benchmarks", "recipes", "plugins"]
    for i, section in enumerate(sections):
        if len(sections) > 1:
            print(("\n" if i else "") + f"{section}:")
        if section == "recipes":
            print(_columns(("benchmark", "recipe (* default)", "purpose and cost"), _recipe_rows(plugins)))
        elif section == "plugins":
            rows = [(p.name, p.version, p.status, ", ".join(p.hooks), p.provider) for p in plugins.info()]
            print(_columns(("name", "version", "status", "hooks", "provider"), rows))
        else:
            registry = plugins.strategies if section == "strategies" else plugins.benchmarks
            rows = [(e.name, e.description, e.provider) for e in registry]
            print(_columns(("name", "description", "provider"), rows))
    return 0


def _recipe_rows(plugins: Plugins) -> list[tuple[str, str, str]]:
    """One row per recipe of every benchmark: its purpose and cost, the default marked, and the
    strategies plugins added entries for."""
    rows = []
    for entry in plugins.benchmarks:
        bench = entry.obj
        for name in plugins.recipes.names(bench):
            mark = " *" if name == bench.default_recipe else ""
            added = sorted(e.strategy for e in plugins.recipes.contributed(bench, name))
            extra = f" [plugin entries: {', '.join(added)}]" if added else ""
            rows.append((entry.name, name + mark, plugins.recipes.note(bench, name) + extra))
    return rows


def load_plugins(files: Sequence[str | Path] = ()) -> Plugins:
    """The installed plugins plus ``files``; one line on stderr per plugin that could not load
    (the command goes on without it)."""
    from clbench.manager import load_plugins as load

    plugins = load(files=files)
    for broken in plugins.broken:
        print(f"clbench: plugin error: {broken.line()}", file=sys.stderr)
    return plugins


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- table
def _cmd_table(args: Sequence[str]) -> int:
    parser = _Parser(
        prog="clbench table",
        description="Compare finished runs: final per-task accuracy, their mean, forgetting, BWT, model size "
        "and wall time; runs that differ only in the seed are one row (mean ± std over seeds).",
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, or folders holding runs"
    )
    parser.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    parser.add_argument("--per-run", action="store_true", help="one row per run instead of per seed group")
    parser.add_argument("--no-notes", action="store_true", help="leave out the footnotes (md, latex)")
    _add_unfinished_flag(parser)
    parser.add_argument(
        "--select",
        choices=("val",),
        default=None,
        help="per strategy, the setting with the best mean validation accuracy over seeds; its test accuracy",
    )
    ns = parser.parse_args(args)
    from clbench import tables

    runs, notes = tables.select_or_refuse(tables.load_runs(ns.run_dirs), ns.include_unfinished)
    _print_notes(notes)
    if ns.select:
        from clbench import selection

        print(selection.render(selection.select_on_validation(runs), ns.format, not ns.no_notes).rstrip("\n"))
        return 0
    table = tables.per_run_table(runs) if ns.per_run else tables.seed_table(runs)
    print(tables.render(table, ns.format, footnotes=not ns.no_notes).rstrip("\n"))
    return 0


def _add_unfinished_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also show interrupted or failed runs (no summary.json), as rows of their own marked [unfinished]",
    )


def _print_notes(notes: Sequence[str]) -> None:
    """One line on stderr per run a table left out (stdout stays the table)."""
    for note in notes:
        print(f"clbench: note: {note}", file=sys.stderr)


# ---- report / compare (issue 6) ----
def _cmd_report(args: Sequence[str]) -> int:
    parser = _Parser(
        prog="clbench report",
        description="Write a report folder: tables (md, csv, tex), PNG plots and one self-contained HTML page.",
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, or folders holding runs"
    )
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="DIR", help="default ./report")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    parser.add_argument("--title", default=None, help="page title")
    _add_unfinished_flag(parser)
    ns = parser.parse_args(args)
    from clbench.report import write_report

    notes: list[str] = []
    out = write_report(
        ns.run_dirs, ns.out, overwrite=ns.overwrite, title=ns.title, include_unfinished=ns.include_unfinished,
        notes=notes,
    )  # fmt: skip
    _print_notes(notes)
    print(f"Report in {out} (open {out / 'index.html'})")
    return 0


def _cmd_compare(args: Sequence[str]) -> int:
    parser = _Parser(
        prog="clbench compare",
        description="Check runs against a reference table (one-sided: a row fails only when the measured value "
        "is worse than reference − tol). Exit 0: all pass; 1: a regression or a missing run; 2: bad input.",
    )
    parser.add_argument(
        "run_dirs", nargs="*", type=Path, metavar="RESULTS", help="run directories, or folders holding runs"
    )
    parser.add_argument(
        "--reference", required=True, metavar="CSV", help="reference CSV, or a benchmark name (packaged table)"
    )
    parser.add_argument("--allow-missing", action="store_true", help="reference rows with no matching run do not fail")
    parser.add_argument("--format", choices=("md", "csv"), default="md")
    ns = parser.parse_args(args)
    from clbench.compare import compare_main

    return compare_main(ns.run_dirs, ns.reference, allow_missing=ns.allow_missing, fmt=ns.format)


# ---- end report / compare (issue 6) ----


# ----------------------------------------------------------------------------- sweep
def _cmd_sweep(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="clbench sweep",
        description="Run every cell of a grid (strategies × benchmarks × seeds × settings) as an ordinary run "
        "directory SWEEP_DIR/<cell>/, in parallel on Ray: embedded on this machine, or on a cluster (--address). "
        "Run it again to skip finished cells and resume the rest. See docs/sweeps.md.",
    )
    parser.add_argument("spec", nargs="?", type=Path, metavar="SPEC.toml", help="[sweep], [run], [<strategy>] …")
    parser.add_argument("--strategies", metavar="A,B", help="strategies (overrides [sweep] strategies)")
    parser.add_argument("--benchmarks", "--benchmark", metavar="A,B", help=f"default {DEFAULT_BENCHMARK}")
    parser.add_argument("--seeds", metavar="0,1,2", help="seeds (default 0)")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="S.FIELD=V1,V2", help="a grid axis, e.g. finetune.lr=0.01,0.05"
    )
    parser.add_argument("--recipe", help="the benchmarks' recipe for every cell ([run] recipe)")
    parser.add_argument("--out", type=Path, metavar="SWEEP_DIR", help="default runs/sweeps/<spec name>")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else Ray embedded here)")
    parser.add_argument("--num-cpus", type=int, metavar="N", help="CPUs the embedded Ray uses (default: all)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N", help="CPUs per cell (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, metavar="F", help="GPUs per cell, 0.5 shares one")
    parser.add_argument("--max-retries", type=int, default=3, metavar="N", help="retries of a cell whose worker died")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="load an unpublished plugin")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    ns = parser.parse_args(args)
    if ns.spec is None and ns.strategies is None:
        raise UsageError("give a sweep spec (clbench sweep SPEC.toml) or --strategies A,B")
    from clbench import sweep, sweep_grid

    spec = sweep_grid.load_spec(
        ns.spec, strategies=ns.strategies, benchmarks=ns.benchmarks, seeds=ns.seeds, grid=ns.grid,
        recipe=ns.recipe, default_benchmark=DEFAULT_BENCHMARK,
    )  # fmt: skip
    cells = sweep_grid.expand(spec)
    options = sweep.SweepOptions(
        address=ns.address, num_cpus=ns.num_cpus, cpus_per_run=ns.cpus_per_run, gpus_per_run=ns.gpus_per_run,
        max_retries=ns.max_retries, plugins=tuple(ns.plugin), quiet=ns.quiet,
    )  # fmt: skip
    out = ns.out or Path("runs") / "sweeps" / (ns.spec.stem if ns.spec else "sweep")
    runner = sweep.CellRunner(resolve=_resolved_spec, run=_run_cell, prepare_goals=_prepare_goals)
    return sweep.run_sweep(out, spec, cells, options, runner)


def _run_cell(args: Sequence[str]) -> int:
    return main(["run", *args])


def _resolved_spec(args: Sequence[str]) -> RunSpec:
    return resolve_run(args)[0]


def _prepare_goals(args: Sequence[str]) -> None:
    """Find or train the accuracy goals of the run ``clbench run ARGS`` (a sweep cell) and stop."""
    from clbench.runner import prepare_goals

    spec, plugins, _ = resolve_run(args)
    prepare_goals(spec, plugins)


# ------------------------------------------------------------------------------- run
def _phase_one_parser() -> argparse.ArgumentParser:
    parser = _Parser(add_help=False)
    parser.add_argument("--strategy")
    parser.add_argument("--benchmark")
    parser.add_argument("-c", "--config", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--recipe")  # for --help: the values the chosen recipe runs with
    return parser


def resolve_run(args: Sequence[str]) -> tuple[RunSpec, Plugins, bool]:
    """The RunSpec, the loaded plugins and whether ``--print-config`` was given, for the
    ``clbench run`` arguments ``args``; nothing is run or written (``clbench sweep`` checks its
    cells with it).

    Raises:
        UsageError: bad input (unknown strategy, benchmark, section, option or value).
    """
    first, _ = _phase_one_parser().parse_known_args(args)
    recorded: dict[str, Any] = {}
    if first.resume is not None:
        if first.config is not None:
            raise UsageError("--resume continues a run with its own config.toml; do not also pass -c")
        first.config = first.resume / "config.toml"
        if not first.config.is_file():
            raise UsageError(f"cannot resume {first.resume}: no config.toml there (is it a clbench run directory?)")
        from clbench import provenance

        recorded = provenance.recorded(first.resume)
        first.plugin = [*first.plugin, *provenance.files_to_reload(first.resume, recorded, first.plugin)]
    file_layers = _read_config_file(first.config) if first.config else {}
    run_file = file_layers.get("run", {})
    strategy_name = first.strategy or run_file.get("strategy") or DEFAULT_STRATEGY
    benchmark_name = first.benchmark or run_file.get("benchmark") or DEFAULT_BENCHMARK

    plugins = load_plugins(first.plugin)
    strategy_cls = _lookup(plugins, "strategy", strategy_name, recorded)
    benchmark_cls = _lookup(plugins, "benchmark", benchmark_name, recorded)
    unknown_sections = set(file_layers) - {"run", strategy_name, benchmark_name}
    if unknown_sections:
        raise UsageError(
            f"{first.config}: unknown section(s) {sorted(unknown_sections)}; "
            f"expected [run], [{strategy_name}] or [{benchmark_name}]"
        )

    recipe_named = first.recipe or run_file.get("recipe") or benchmark_cls.default_recipe
    parser = _run_parser(strategy_name, strategy_cls.Config, benchmark_name, benchmark_cls.Config)
    _show_values_in_help(parser, plugins, strategy_name, benchmark_name, recipe_named, file_layers)
    ns = parser.parse_args(args)
    run_opts = cfg.resolve(RunOptions, "run", [run_file, _explicit(ns, "run__")])
    _setup_logging(run_opts.quiet)

    recipe = run_opts.recipe or benchmark_cls.default_recipe
    layers = plugins.recipes.layers(benchmark_cls, recipe, strategy_name, strategy_cls)
    strategy_fields = cfg.fields_of(strategy_cls.Config)
    flags = _explicit(ns, "s__")
    if run_opts.epochs is not None:
        if "epochs" not in strategy_fields:
            raise UsageError(f"strategy {strategy_name!r} has no epochs option")
        flags.setdefault("epochs", run_opts.epochs)
    strategy_config = cfg.resolve(
        strategy_cls.Config,
        strategy_name,
        [*(layer.values for layer in layers), file_layers.get(strategy_name, {}), flags],
    )
    from clbench.recipes import catch_all_notes

    later = [*file_layers.get(strategy_name, {}), *flags]
    notes = list(catch_all_notes(layers, strategy_name, strategy_cls, later).values())
    bench_flags = _explicit(ns, "b__")
    if run_opts.data_root is not None:
        bench_flags.setdefault("data_root", run_opts.data_root)
    benchmark_config = cfg.resolve(
        benchmark_cls.Config,
        benchmark_name,
        [benchmark_cls.recipe_config_layer(recipe), file_layers.get(benchmark_name, {}), bench_flags],
    )

    if first.resume is not None:
        _check_resume_options(first.resume, run_file, run_opts, strategy_name, benchmark_name)
    if not ns.print_config and not (first.resume is not None and (first.resume / "summary.json").is_file()):
        benchmark_cls(benchmark_config).check_data()  # one line, before torch and the data are loaded

    from clbench.runspec import RunSpec

    spec = RunSpec(
        strategy=strategy_name,
        benchmark=benchmark_name,
        strategy_config=strategy_config,
        benchmark_config=benchmark_config,
        recipe=recipe,
        seed=run_opts.seed,
        device=run_opts.device,
        out=first.resume if first.resume is not None else Path(run_opts.out) if run_opts.out else None,
        overwrite=run_opts.overwrite,
        resume=first.resume is not None,
        quiet=run_opts.quiet,
        deterministic=run_opts.deterministic,
        phase_checkpoints=run_opts.phase_checkpoints,
        notes=tuple(notes),
    )
    return spec, plugins, bool(ns.print_config)


def _lookup(plugins: Plugins, kind: str, name: str, recorded: dict[str, Any]) -> Any:
    """The registered class, or a RegistryError (exit 2) that also names the plugins that did not
    load and, for a resumed run, where the run got it from."""
    registry = plugins.strategies if kind == "strategy" else plugins.benchmarks
    try:
        return registry.get(name)
    except RegistryError as exc:
        from clbench import provenance

        hint = plugins.why_missing(kind, name) + provenance.hint(recorded, kind, name)
        raise RegistryError(f"{exc}{hint}") from None


def _cmd_run(args: Sequence[str]) -> int:
    spec, plugins, print_config = resolve_run(args)
    if print_config:
        from clbench.runner import resolved_toml

        for note in spec.notes:  # TOML comments: the output still feeds back with -c
            print(f"# note: {note}")
        print(resolved_toml(spec), end="")
        return 0
    if spec.resume and spec.out is not None and _finished(spec.out):  # after the identity checks
        return 0

    from clbench import results
    from clbench.runner import run

    state = run(spec, plugins)
    metrics = results.load_metrics(state.run_dir)
    print(results.to_markdown(results.comparison_table([state.run_dir])))
    kind = getattr(plugins.strategies.get(spec.strategy), "kind", "other")
    if kind in ("packing", "masking"):  # the masked network's capacity records
        print("\nPer task (fractions of all weights; sparsity = share of the task's allocation it released):\n")
    else:
        print(f"\nPer task (size counted as for kind {kind!r}: docs/results.md):\n")
    print(results.task_table(metrics).to_markdown(floatfmt=".4f"))
    print("\nAccuracy matrix (rows: after learning task t; columns: task evaluated), %:\n")
    matrix = 100 * results.accuracy_matrix(metrics)
    matrix.index.name = "trained_task"
    print(matrix.astype(object).where(matrix.notna(), None).to_markdown(floatfmt=".2f", missingval=""))
    print(f"\nResults in {state.run_dir}")
    return 0


def _finished(run_dir: Path) -> bool:
    """``--resume`` of a finished run is a no-op: say so and touch nothing (not even the lock)."""
    from clbench.results import SUMMARY_FILE

    if not (run_dir / SUMMARY_FILE).is_file():
        return False
    print(f"clbench: {run_dir} is finished ({SUMMARY_FILE} written): nothing to resume; no file was changed")
    return True


def _check_resume_options(
    run_dir: Path, saved: dict[str, Any], opts: RunOptions, strategy: str, benchmark: str
) -> None:
    """A resumed run keeps its identity: strategy, benchmark, seed and directory."""
    for name, now in (("strategy", strategy), ("benchmark", benchmark), ("seed", opts.seed)):
        if name in saved and saved[name] != now:
            raise UsageError(f"--resume {run_dir}: the run's {name} is {saved[name]!r}; it cannot change to {now!r}")
    if opts.out is not None and Path(opts.out) != run_dir:
        raise UsageError("--resume writes into the run directory itself; do not pass --out")
    if opts.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")


def _run_parser(
    strategy: str, strategy_config: type, benchmark: str, benchmark_config: type
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clbench run",
        description=f"Run a strategy on a benchmark (showing options of {strategy!r} on {benchmark!r}).",
    )
    S = argparse.SUPPRESS
    general = parser.add_argument_group("run")
    general.add_argument("--strategy", default=S, help=f"strategy name (default {DEFAULT_STRATEGY})")
    general.add_argument("--benchmark", default=S, help=f"benchmark name (default {DEFAULT_BENCHMARK})")
    general.add_argument("--recipe", dest="run__recipe", default=S, help="the benchmark's named recipe")
    general.add_argument(
        "-c", "--config", default=S, metavar="FILE.toml", help="config file ([run], [<strategy>], [<benchmark>])"
    )
    general.add_argument(
        "--plugin", action="append", default=S, metavar="FILE.py", help="load an unpublished plugin file"
    )
    general.add_argument("--seed", dest="run__seed", default=S, help="random seed (default 0)")
    general.add_argument("--device", dest="run__device", default=S, help="auto|cpu|cuda (default auto)")
    general.add_argument(
        "--out",
        dest="run__out",
        default=S,
        metavar="DIR",
        help="results directory (default runs/<benchmark>/<strategy>/<time>-s<seed>)",
    )
    general.add_argument(
        "--resume",
        default=S,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last finished phase (changed options restart that task)",
    )
    general.add_argument(
        "--overwrite",
        dest="run__overwrite",
        action="store_const",
        const=True,
        default=S,
        help="replace results already in --out",
    )
    general.add_argument(
        "--deterministic",
        dest="run__deterministic",
        action="store_const",
        const=True,
        default=S,
        help="deterministic kernels on CUDA (slower; CPU runs are deterministic anyway)",
    )
    general.add_argument(
        "--task-checkpoints-only",
        dest="run__phase_checkpoints",
        action="store_const",
        const=False,
        default=S,
        help="checkpoint after every task only, not after every phase (less disk; a resume repeats the task)",
    )
    general.add_argument(
        "--quiet",
        dest="run__quiet",
        action="store_const",
        const=True,
        default=S,
        help="no progress bars or info messages",
    )
    general.add_argument("--epochs", dest="run__epochs", default=S, help=f"shortcut for --{strategy}.epochs")
    general.add_argument(
        "--data-root", dest="run__data_root", default=S, metavar="DIR", help=f"shortcut for --{benchmark}.data-root"
    )
    general.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    general.add_argument(
        "--verbose", action="store_true", help="on an error, also print its details (e.g. the expected data layout)"
    )
    _add_config_flags(parser, strategy, strategy_config, "s__")
    _add_config_flags(parser, benchmark, benchmark_config, "b__")
    return parser


def _add_config_flags(parser: argparse.ArgumentParser, section: str, config: type, prefix: str) -> None:
    from clbench.field_docs import field_comments

    group = parser.add_argument_group(section)
    types_ = cfg.field_types(config)
    comments = field_comments(config)
    for name, field in cfg.fields_of(config).items():
        flags = [f"--{section}.{name.replace('_', '-')}"]
        if "_" in name:
            flags.append(f"--{section}.{name}")
        default = field.default if field.default is not dataclasses.MISSING else None
        group.add_argument(
            *flags,
            dest=prefix + name,
            default=argparse.SUPPRESS,
            metavar=cfg.type_name(types_[name]).upper(),
            help=_with_comment(f"default {default!r}", comments.get(name)),
        )


def _with_comment(values: str, comment: str | None) -> str:
    """``--help`` text of a config flag: the field's cited comment, then the value it runs with.
    argparse formats ``%``, so a literal one is doubled."""
    text = f"{comment}. {values[0].upper()}{values[1:]}" if comment else values
    return text.replace("%", "%%")


def _show_values_in_help(
    parser: argparse.ArgumentParser,
    plugins: Plugins,
    strategy: str,
    benchmark: str,
    recipe: str,
    file_layers: dict[str, dict[str, Any]],
) -> None:
    """Make ``run --help`` say the value each strategy option will run with and where it comes
    from (the Config default, the benchmark's recipe or a plugin's entry in it, the config
    file), after the field's own comment; a catch-all value replacing the strategy's own
    default says so. Benchmark options a recipe (``recipe_config``) or the config file sets
    say so too."""
    from clbench.field_docs import field_comments
    from clbench.recipes import catch_all_notes

    strategy_cls = plugins.strategies.get(strategy)
    benchmark_cls = plugins.benchmarks.get(benchmark)
    if recipe not in plugins.recipes.names(benchmark_cls):
        return  # the run itself reports the unknown recipe
    config = strategy_cls.Config
    sources: dict[str, tuple[Any, str]] = {}
    for name, field in cfg.fields_of(config).items():
        if field.default is not dataclasses.MISSING:
            sources[name] = (field.default, "default")
    layers = plugins.recipes.layers(benchmark_cls, recipe, strategy, strategy_cls)
    for values, origin in [*((layer.values, layer.origin) for layer in layers),
                           (file_layers.get(strategy, {}), "config file")]:  # fmt: skip
        for key, value in values.items():
            sources[key.replace("-", "_")] = (value, origin)
    replaced = catch_all_notes(layers, strategy, strategy_cls, list(file_layers.get(strategy, {})))
    defaults = {name: field.default for name, field in cfg.fields_of(config).items()}
    comments = field_comments(config)
    by_dest = {action.dest: action for action in parser._actions}
    for name, (value, origin) in sources.items():
        action = by_dest.get(f"s__{name}")
        if action is not None:
            own = f"; replaces the strategy's own default {defaults[name]!r}" if name in replaced else ""
            action.help = _with_comment(f"runs with {value!r} ({origin}{own})", comments.get(name))
    bench_comments = field_comments(benchmark_cls.Config)
    for origin, values in (
        (f"recipe {recipe}", benchmark_cls.recipe_config_layer(recipe)),
        ("config file", file_layers.get(benchmark, {})),
    ):
        for key, value in values.items():
            name = key.replace("-", "_")
            action = by_dest.get(f"b__{name}")
            if action is not None:
                action.help = _with_comment(f"runs with {value!r} ({origin})", bench_comments.get(name))
    epochs = by_dest.get("run__epochs")
    if epochs is not None and "epochs" in sources:
        epochs.help = f"shortcut for --{strategy}.epochs (runs with {sources['epochs'][0]!r}: {sources['epochs'][1]})"
    parser.description = (parser.description or "") + (
        f" Values shown are those that run with recipe {recipe!r} of {benchmark_cls.name!r} "
        "(choose another with --recipe; `clbench list recipes` lists them); a flag overrides them."
    )


def _explicit(ns: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in vars(ns).items() if k.startswith(prefix)}


def _read_config_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    for section, table in data.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: top-level key {section!r} must be a table like [{section}]")
    return data


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="clbench: %(message)s",
        stream=sys.stderr,
        force=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
