"""Model selection on validation data (``clbench table SWEEP_DIR --select val``).

Protocol (as DomainBed's training-domain validation; docs/results.md "Choosing hyperparameters"):

1. An *experiment* is the runs of one strategy on one benchmark that agree on everything except
   the seed, the recipe (``run.recipe``) and the strategy's own section (``[<strategy>]``): the
   cells of a sweep that differ only in hyperparameters.
2. A *setting* is one resolved configuration within it (the seed groups of clbench.tables).
3. Each setting's score is its validation accuracy: per run, the unweighted mean over tasks of the
   final ``val_accuracy`` (the row after the last task, ``R_val[T, i]``); then the mean over its seeds.
4. The setting with the best score is chosen (ties: the first in the order the runs were found);
   the table reports its *test* accuracy per task and mean, as mean ± sample std over its seeds.
   The test split never takes part in the choice.

Unfinished runs (no ``summary.json``) take no part.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clbench import results, tables
from clbench.errors import UsageError

NOTES = (
    "Selection on validation: per strategy and benchmark, among runs that differ only in hyperparameters "
    "([<strategy>] section, recipe), the setting with the best mean final validation accuracy over seeds is "
    "chosen; the test split takes no part in the choice (docs/results.md).",
    "val: mean final validation accuracy (%) of the chosen setting; T1…Tn, mean: its test accuracy (%), "
    "mean ± sample std (n − 1) over its n seeds; settings: how many settings were compared.",
)


@dataclass
class Choice:
    """The chosen setting of one experiment."""

    strategy: str
    benchmark: str
    chosen: str  # the chosen values of the settings that differ (``lr=0.05``)
    settings: int  # how many settings were compared
    runs: list[tables.Run]  # the chosen setting's runs (one per seed)
    val: float  # its score: mean over seeds of the mean final validation accuracy (fraction)


def experiment_key(run: tables.Run) -> tuple[str, str, str]:
    """(strategy, benchmark, the config without seed, recipe and the strategy's own section)."""
    rest = {section: dict(table) for section, table in run.config.items() if section != run.strategy}
    rest.get("run", {}).pop("recipe", None)
    return run.strategy, run.benchmark, json.dumps(rest, sort_keys=True, default=str)


def validation_score(run: tables.Run) -> float:
    """Unweighted mean over tasks of the final validation accuracy (fraction).

    Raises:
        UsageError: the run recorded no ``val_accuracy``.
    """
    if not (run.metrics["metric"] == "val_accuracy").any():
        raise UsageError(
            f"{run.path / results.METRICS_FILE} has no val_accuracy rows: --select val needs runs that evaluate "
            f"a validation split"
        )
    return results.mean_accuracy(results.accuracy_matrix(run.metrics, "val_accuracy"))


def select_on_validation(runs: Sequence[tables.Run]) -> list[Choice]:
    """Per experiment, the setting with the best mean validation accuracy over seeds."""
    finished = [r for r in runs if r.summary]
    if len(finished) < len(runs):
        print(f"clbench: --select val leaves out {len(runs) - len(finished)} unfinished run(s)", file=sys.stderr)
    if not finished:
        raise UsageError("--select val found no finished run (a run is finished when it holds summary.json)")
    experiments: dict[tuple[str, str, str], dict[str, list[tables.Run]]] = {}
    for key, members in tables.group_runs(finished).items():
        experiments.setdefault(experiment_key(members[0]), {})[key[2]] = members
    choices = []
    for (strategy, benchmark, _), settings in experiments.items():
        scores = {cid: _mean(validation_score(r) for r in members) for cid, members in settings.items()}
        best = max(scores, key=lambda cid: scores[cid])  # max keeps the first of equal scores
        chosen = _differing(settings, best, strategy)
        choices.append(Choice(strategy, benchmark, chosen, len(settings), settings[best], scores[best]))
    return choices


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values)


def _differing(settings: dict[str, list[tables.Run]], best: str, strategy: str) -> str:
    """``name=value`` of the chosen setting for every hyperparameter that differs between settings."""
    flat = {cid: _hyperparameters(members[0], strategy) for cid, members in settings.items()}
    names = sorted({n for values in flat.values() for n in values})
    differing = [n for n in names if len({repr(v.get(n)) for v in flat.values()}) > 1]
    if not differing:
        return "(one setting)"
    return ", ".join(f"{n}={flat[best].get(n)}" for n in differing)


def _hyperparameters(run: tables.Run, strategy: str) -> dict[str, Any]:
    values = dict(run.config.get(strategy, {}))
    values["recipe"] = run.recipe
    return values


def choice_table(choices: Sequence[Choice]) -> tables.Table:
    """A clbench.tables.Table: keys, the chosen setting's val score and test accuracies ± std."""
    import pandas as pd

    records = [[_test_record(r) for r in choice.runs] for choice in choices]
    tasks = sorted({k for recs in records for rec in recs for k in rec if k != "mean"}, key=lambda k: int(k[1:]))
    values = ["val", *tasks, "mean"]
    rows, spreads = [], []
    for choice, recs in zip(choices, records, strict=True):
        block = pd.DataFrame(recs, columns=values, dtype=float)
        block["val"] = 100 * choice.val
        head = {
            "strategy": choice.strategy,
            "benchmark": choice.benchmark,
            "chosen": choice.chosen,
            "settings": choice.settings,
            "n": len(choice.runs),
            "seeds": " ".join(str(s) for s in sorted(r.seed for r in choice.runs)),
        }
        rows.append({**head, **block.mean(skipna=True).to_dict()})
        spread = block.std(ddof=1, skipna=True) if len(block) > 1 else pd.Series(math.nan, index=values)
        spreads.append({**spread.to_dict(), "val": math.nan})  # val: the score itself, shown without a spread
    keys = ["strategy", "benchmark", "chosen", "settings", "n", "seeds"]
    frame = pd.DataFrame(rows, columns=[*keys, *values])
    std = pd.DataFrame(spreads, columns=values, dtype=float)
    return tables.Table(frame=frame, values=values, std=std, keys=keys)


def _test_record(run: tables.Run) -> dict[str, float]:
    """Final test accuracy per task (T1…Tn) and their mean, in %."""
    record = tables.run_record(run)
    return {k: v for k, v in record.items() if k.startswith("T") or k == "mean"}


def render(choices: Sequence[Choice], fmt: str, footnotes: bool = True) -> str:
    """The choice table as md, csv or latex (clbench.tables.render), with the protocol as notes."""
    table = choice_table(choices)
    text = tables.render(table, fmt, footnotes=False)
    if footnotes and fmt == "md":
        text += "\n\n" + "\n".join(f"{i}. {note}" for i, note in enumerate(NOTES, 1))
    elif footnotes and fmt == "latex":
        text = "\n".join(f"% {tables.latex_escape(note)}" for note in NOTES) + "\n" + text
    return text
