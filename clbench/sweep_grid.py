"""A sweep's grid: strategies × benchmarks × seeds × hyperparameter values, expanded into cells.

A spec file (``clbench sweep SPEC.toml``) holds a ``[sweep]`` table and, as a run config does,
``[run]``, ``[<strategy>]`` and ``[<benchmark>]`` sections that every cell of that strategy or
benchmark gets::

    [sweep]
    strategies = ["finetune", "packnet"]
    benchmarks = ["digits"]            # or benchmark = "digits"
    seeds = [0, 1, 2]
    [sweep.grid]                       # "<section>.<field>" = [values]; section: run, a strategy, a benchmark
    "finetune.lr" = [0.01, 0.05]

    [run]
    recipe = "tiny"

A grid key of a strategy multiplies only that strategy's cells. Each cell is one ordinary run,
described by the config-file layers it is given (:meth:`Cell.config_toml`). Pure Python: no
torch, no Ray.
"""

from __future__ import annotations

import copy
import itertools
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clbench import config as cfg
from clbench.errors import UsageError

GRID_FILE = "sweep.json"  # the expanded grid, saved in the sweep directory
SWEEP_KEYS = ("strategies", "benchmarks", "benchmark", "seeds", "grid")


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its directory name (``id``) and the config-file layers it runs with."""

    id: str
    strategy: str
    benchmark: str
    seed: int
    overrides: dict[str, Any]  # its grid values, "<section>.<field>" -> value
    layers: dict[str, dict[str, Any]]  # [run] (seed included), [<strategy>], [<benchmark>]

    def config_toml(self) -> str:
        """The cell as a ``clbench run -c`` config file."""
        return cfg.to_toml(self.layers)


@dataclass
class SweepSpec:
    """What to sweep over, before expansion."""

    strategies: list[str]
    benchmarks: list[str]
    seeds: list[int]
    grid: dict[str, list[Any]] = field(default_factory=dict)  # "<section>.<field>" -> values
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # fixed [run]/[<strategy>]/[<benchmark>]


def load_spec(
    path: Path | None,
    *,
    strategies: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    grid: Sequence[str] = (),
    recipe: str | None = None,
    default_benchmark: str = "digits",
) -> SweepSpec:
    """The spec in ``path`` (optional), with command-line values on top (flags win).

    ``grid`` holds ``--grid`` flags, ``"<section>.<field>=v1,v2"``; each value is read as a TOML
    value when it parses as one (``0.01``, ``true``) and as text otherwise.

    Raises:
        UsageError: an unreadable or malformed file, an unknown ``[sweep]`` key, a malformed flag.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read sweep spec {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"sweep spec {path} is not valid TOML: {exc}") from None
    where = str(path) if path is not None else "the command line"
    head = data.pop("sweep", {})
    if not isinstance(head, dict):
        raise UsageError(f"{where}: 'sweep' must be a table like [sweep]")
    unknown = sorted(set(head) - set(SWEEP_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown [sweep] key(s) {unknown}; valid keys: {', '.join(SWEEP_KEYS)}")
    for section, table in data.items():
        if not isinstance(table, dict):
            raise UsageError(f"{where}: top-level key {section!r} must be a table like [{section}]")
    file_benchmarks = head.get("benchmarks", [head["benchmark"]] if "benchmark" in head else [default_benchmark])
    file_grid = head.get("grid", {})
    if not isinstance(file_grid, dict):
        raise UsageError(f'{where}: [sweep.grid] must be a table of "<section>.<field>" = [values]')
    spec = SweepSpec(
        strategies=_names(strategies if strategies is not None else head.get("strategies", []), "strategies"),
        benchmarks=_names(benchmarks if benchmarks is not None else file_benchmarks, "benchmarks"),
        seeds=_seeds(seeds if seeds is not None else head.get("seeds", [0])),
        grid={str(k): _values(k, v) for k, v in file_grid.items()},
        sections={name: dict(table) for name, table in data.items()},
    )
    for flag in grid:
        key, values = _grid_flag(flag)
        spec.grid[key] = values
    if recipe is not None:
        spec.sections.setdefault("run", {})["recipe"] = recipe
    return spec


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"sweep {what} must be a list of names, got {value!r}")
    return list(dict.fromkeys(value))


def _seeds(value: Any) -> list[int]:
    try:
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        seeds = [int(v) for v in items]
    except (TypeError, ValueError):
        raise UsageError(f"sweep seeds must be whole numbers like 0,1,2, got {value!r}") from None
    if any(s < 0 for s in seeds):
        raise UsageError(f"sweep seeds must be >= 0, got {seeds}")
    return list(dict.fromkeys(seeds))


def _values(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"grid key {key!r}: expected a list of values, got {value!r}")
    return value


def _grid_flag(text: str) -> tuple[str, list[Any]]:
    key, sep, values = text.partition("=")
    if not sep or "." not in key:
        raise UsageError(f"--grid {text!r}: expected <section>.<field>=v1,v2 (e.g. --grid finetune.lr=0.01,0.05)")
    return key.strip(), [_scalar(v.strip()) for v in values.split(",") if v.strip()]


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of ``spec``, strategy by strategy, benchmark, grid point, then seed.

    Raises:
        UsageError: an empty grid (no strategy, benchmark, seed, or a grid key without values);
            a grid key or section that names no strategy or benchmark of the sweep; ``run.seed``
            in the grid (use seeds); two cells with the same id.
    """
    for what in ("strategies", "benchmarks", "seeds"):
        if not getattr(spec, what):
            raise UsageError(f"empty grid: the sweep has no {what} (set [sweep] {what} or --{what})")
    known = {"run", *spec.strategies, *spec.benchmarks}
    for key, values in spec.grid.items():
        section, _, name = key.partition(".")
        if not name or section not in known:
            raise UsageError(_unknown_section(f"grid key {key!r}", section, spec))
        if name == "seed" and section == "run":
            raise UsageError("grid key 'run.seed': give seeds with [sweep] seeds or --seeds")
        if not values:
            raise UsageError(f"empty grid: grid key {key!r} has no values")
    for section in spec.sections:
        if section not in known:
            raise UsageError(_unknown_section(f"section [{section}]", section, spec))
    cells: list[Cell] = []
    for strategy, benchmark in itertools.product(spec.strategies, spec.benchmarks):
        keys = [k for k in spec.grid if k.partition(".")[0] in ("run", strategy, benchmark)]
        for point in itertools.product(*(spec.grid[k] for k in keys)):
            overrides = dict(zip(keys, point, strict=True))
            for seed in spec.seeds:
                cells.append(_cell(spec, strategy, benchmark, seed, overrides))
    ids = [c.id for c in cells]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UsageError(f"two grid points give the same cell id {twice[0]!r}; make the grid values distinct")
    return cells


def _unknown_section(what: str, section: str, spec: SweepSpec) -> str:
    return (
        f"{what}: {section!r} is neither 'run' nor a strategy or benchmark of this sweep "
        f"(strategies: {', '.join(spec.strategies)}; benchmarks: {', '.join(spec.benchmarks)})"
    )


def _cell(spec: SweepSpec, strategy: str, benchmark: str, seed: int, overrides: dict[str, Any]) -> Cell:
    layers = {name: copy.deepcopy(spec.sections.get(name, {})) for name in ("run", strategy, benchmark)}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        layers[section][name] = value
    layers["run"].update(strategy=strategy, benchmark=benchmark, seed=seed)
    parts = [benchmark, strategy, *(f"{k.partition('.')[2]}={_text(v)}" for k, v in overrides.items()), f"s{seed}"]
    cell_id = re.sub(r"[^A-Za-z0-9._=,+-]", "_", "-".join(parts))
    return Cell(cell_id, strategy, benchmark, seed, overrides, {k: v for k, v in layers.items() if v})


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(_text, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def grid_record(spec: SweepSpec, cells: Iterable[Cell]) -> dict[str, Any]:
    """What ``sweep.json`` holds: the spec and every expanded cell."""
    return {"spec": asdict(spec), "cells": [asdict(c) for c in cells]}


def cells_from_record(record: dict[str, Any]) -> list[Cell]:
    return [Cell(**c) for c in record["cells"]]
